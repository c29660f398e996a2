-- Client sessions per anonymous id (see int_sessionized_events for the rules), with the landing
-- and exit pages, the first page view's referrer, campaign and click id, a channel from the
-- editable seed channel_rules, the device, and session_number per profile. profile_id is the
-- anonymous id's profile, so earlier sessions follow a visitor who later identifies.
-- Incremental: a build rewrites every session of the anonymous ids it re-sessionized or whose
-- profile moved, and of every other anonymous id of the profiles involved (so session_number
-- stays right when sessions join or leave a profile).
{{ config(materialized='incremental', incremental_strategy='delete+insert', unique_key='anonymous_id', on_schema_change='fail') }}

with

anonymous_profiles as (

    select identifier_value as anonymous_id, profile_id, resolved_at
    from {{ ref('int_identity_resolved') }}
    where identifier_type = 'anonymous_id'

),

{% if is_incremental() %}
moved as (

    select anonymous_id from {{ ref('int_sessionized_events') }} where sessionized_at > {{ loaded_through('updated_at') }}
    union
    select reresolved.anonymous_id
    from anonymous_profiles as reresolved
    inner join (select distinct anonymous_id, profile_id from {{ this }}) as previous
        on reresolved.anonymous_id = previous.anonymous_id
    where reresolved.resolved_at > {{ loaded_through('updated_at') }}
        and reresolved.profile_id is distinct from previous.profile_id

),

involved_profiles as (

    select anonymous_profiles.profile_id
    from anonymous_profiles inner join moved on anonymous_profiles.anonymous_id = moved.anonymous_id
    union
    select previous.profile_id
    from {{ this }} as previous inner join moved on previous.anonymous_id = moved.anonymous_id

),

affected as (

    select anonymous_id from moved
    union
    select anonymous_profiles.anonymous_id
    from anonymous_profiles inner join involved_profiles on anonymous_profiles.profile_id = involved_profiles.profile_id
    union
    select previous.anonymous_id
    from {{ this }} as previous inner join involved_profiles on previous.profile_id = involved_profiles.profile_id

),

session_events as (

    select events.*
    from {{ ref('int_sessionized_events') }} as events
    inner join affected on events.anonymous_id = affected.anonymous_id

),

page_views as (

    select page_views.*
    from {{ ref('page_views') }} as page_views
    inner join affected on page_views.anonymous_id = affected.anonymous_id

),
{% else %}
session_events as (

    select * from {{ ref('int_sessionized_events') }}

),

page_views as (

    select * from {{ ref('page_views') }}

),
{% endif %}

channel_rules as (

    select * from {{ ref('channel_rules') }}

),

aggregated as (

    select
        session_id,
        anonymous_id,
        visit_started_at,
        piece_number,
        min(occurred_at) as started_at,
        max(occurred_at) as ended_at,
        count(*) as event_count,
        sum(case when message_type in ('page', 'screen') then 1 else 0 end) as page_view_count
    from session_events
    group by session_id, anonymous_id, visit_started_at, piece_number

),

{#- a visit longer than corral_max_session_hours was cut into pieces: all of them are flagged -#}
split_visits as (

    select anonymous_id, visit_started_at
    from aggregated
    group by anonymous_id, visit_started_at
    having max(piece_number) > 0

),

{#- first and last page view of each session, by min / max of (time, message id) as text: a
    hash aggregation instead of two sorts of every page view -#}
page_view_ends as (

    select
        session_id,
        min({{ sortable_timestamp('occurred_at') }} || message_id) as first_key,
        max({{ sortable_timestamp('occurred_at') }} || message_id) as last_key
    from page_views
    where session_id is not null
    group by session_id

),

landing as (

    select page_views.*
    from page_view_ends
    inner join page_views on page_views.message_id = substr(page_view_ends.first_key, 27)

),

exit_page as (

    select page_view_ends.session_id, page_views.page_url as exit_page_url, page_views.page_path as exit_page_path
    from page_view_ends
    inner join page_views on page_views.message_id = substr(page_view_ends.last_key, 27)

),

{#- every rule a landing page view matches; the lowest rule_order wins -#}
channel_matches as (

    select landing.session_id, channel_rules.rule_order, channel_rules.channel
    from landing
    inner join channel_rules
        on channel_rules.match_on = 'utm_medium' and lower(landing.utm_medium) = lower(channel_rules.match_value)

    union all

    select landing.session_id, channel_rules.rule_order, channel_rules.channel
    from landing
    inner join channel_rules
        on channel_rules.match_on = 'click_id'
        and {{ dbt.position("'&' || lower(channel_rules.match_value) || '='", "'&' || lower(landing.page_query)") }} > 0

    union all

    select landing.session_id, referrers.rule_order, referrers.channel
    from landing
    inner join (
        select hosts.referrer_host, channel_rules.rule_order, channel_rules.channel
        from (select distinct referrer_host from landing where referrer_host is not null) as hosts
        inner join channel_rules
            on (channel_rules.match_on = 'referrer_domain'
                and (hosts.referrer_host = lower(channel_rules.match_value)
                    or hosts.referrer_host like '%.' || lower(channel_rules.match_value)))
            or (channel_rules.match_on = 'referrer_prefix' and hosts.referrer_host like lower(channel_rules.match_value) || '%')
    ) as referrers on landing.referrer_host = referrers.referrer_host

),

channels as (

    select session_id, channel
    from (
        select
            session_id,
            channel,
            row_number() over (partition by session_id order by rule_order, channel) as preference
        from channel_matches
    ) ranked
    where preference = 1

),

final as (

    select
        aggregated.session_id,
        aggregated.anonymous_id,
        anonymous_profiles.profile_id,
        aggregated.started_at,
        aggregated.ended_at,
        {{ dbt.datediff('aggregated.started_at', 'aggregated.ended_at', 'second') }} as duration_seconds,
        aggregated.event_count,
        aggregated.page_view_count,
        aggregated.page_view_count = 1 and aggregated.event_count = 1 as is_bounce,
        split_visits.anonymous_id is not null as is_split,
        landing.page_url as landing_page_url,
        landing.page_path as landing_page_path,
        exit_page.exit_page_url,
        exit_page.exit_page_path,
        landing.referrer,
        landing.referrer_host,
        landing.utm_source,
        landing.utm_medium,
        landing.utm_campaign,
        landing.utm_term,
        landing.utm_content,
        landing.gclid,
        case
            when channels.channel is not null then channels.channel
            when landing.utm_medium is not null then 'other'
            when landing.referrer_host is not null and landing.referrer_host <> coalesce(landing.page_host, '') then 'referral'
            else 'direct'
        end as channel,
        coalesce(landing.device_category, 'unknown') as device_category,
        row_number() over (
            partition by coalesce(anonymous_profiles.profile_id, aggregated.anonymous_id)
            order by aggregated.started_at, aggregated.session_id
        ) as session_number,
        cast('{{ run_started_at.strftime("%Y-%m-%d %H:%M:%S") }}' as {{ dbt.type_timestamp() }}) as updated_at
    from aggregated
    left join landing on aggregated.session_id = landing.session_id
    left join exit_page on aggregated.session_id = exit_page.session_id
    left join channels on aggregated.session_id = channels.session_id
    left join anonymous_profiles on aggregated.anonymous_id = anonymous_profiles.anonymous_id
    left join split_visits
        on aggregated.anonymous_id = split_visits.anonymous_id
        and aggregated.visit_started_at = split_visits.visit_started_at

)

select * from final
