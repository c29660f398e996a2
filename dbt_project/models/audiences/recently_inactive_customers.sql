-- Customers who have ordered before and were active in the 60 days before the build's as-of
-- time, but not in the last 14: the win-back window, before they are gone for good.
{{ config(meta={'audience': {'name': 'Recently inactive customers', 'description': 'Customers with an order, last active 14 to 60 days ago.', 'owner': 'lifecycle@example.com'}}) }}

with

profiles as (

    select * from {{ ref('profiles') }}

),

profile_traits as (

    select * from {{ ref('profile_traits') }}

),

final as (

    select
        profiles.profile_id,
        profiles.user_id,
        profiles.email,
        profile_traits.last_active_at,
        profile_traits.order_count
    from profiles
    inner join profile_traits on profiles.profile_id = profile_traits.profile_id
    where profile_traits.order_count >= 1
        and profile_traits.last_active_at <= {{ dbt.dateadd('day', -14, as_of()) }}
        and profile_traits.last_active_at > {{ dbt.dateadd('day', -60, as_of()) }}

)

select * from final
