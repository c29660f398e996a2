-- Every audience's members this build: one row per (audience, profile_id). Audiences are the
-- models with meta.audience; list each new one here (the build fails if one is missing).
{{ audience_members([
    'cart_abandoners',
    'engaged_visitors',
    'high_value_customers',
    'recently_inactive_customers',
    'repeat_buyers',
]) }}
