-- Client sessions per anonymous id (see int_sessionized_events for the rules), with the landing
-- and exit pages, the first page view's referrer, campaign and click id, a channel from the
-- editable seed channel_rules, the device, and session_number per profile. profile_id is the
-- anonymous id's profile, so earlier sessions follow a visitor who later identifies.
-- Incremental: a build rewrites every session of the anonymous ids it re-sessionized or whose
-- profile moved, and of every other anonymous id of the profiles involved (so session_number
-- stays right when sessions join or leave a profile). Only the sessions int_sessionized_events
-- rebuilt are aggregated again from their events; the others are taken from this table as they
-- were, with their profile and number refreshed.
{{ config(materialized='incremental', incremental_strategy='delete+insert', unique_key='anonymous_id', on_schema_change='fail') }}
{%- set landing_columns = [
    'page_url', 'page_path', 'page_host', 'page_query', 'referrer', 'referrer_host', 'utm_source', 'utm_medium',
    'utm_campaign', 'utm_term', 'utm_content', 'gclid', 'device_category'
] %}
{%- set session_columns = [
    'session_id', 'anonymous_id', 'started_at', 'ended_at', 'duration_seconds', 'event_count', 'page_view_count',
    'is_bounce', 'is_split', 'landing_page_url', 'landing_page_path', 'exit_page_url', 'exit_page_path', 'referrer',
    'referrer_host', 'utm_source', 'utm_medium', 'utm_campaign', 'utm_term', 'utm_content', 'gclid', 'channel',
    'device_category'
] %}

with

anonymous_profiles as (

    select identifier_value as anonymous_id, profile_id, resolved_at
    from {{ ref('int_identity_resolved') }}
    where identifier_type = 'anonymous_id'

),

channel_rules as (

    select * from {{ ref('channel_rules') }}

),

{% if is_incremental() %}
{%- set built_through = loaded_through_value('updated_at') %}
{#- the events int_sessionized_events re-sessionized since this model's last build: for each
    anonymous id, every event from the start of some session on, so the sessions they make are
    aggregated again whole and the anonymous id's earlier sessions cannot have changed -#}
session_events as (

    select * from {{ ref('int_sessionized_events') }}
    where sessionized_at > {{ built_through }}

),

rebuilt_from as (

    select anonymous_id, min(occurred_at) as rebuilt_from_at
    from session_events
    group by anonymous_id

),

reresolved as (

    select anonymous_profiles.anonymous_id
    from anonymous_profiles
    where anonymous_profiles.resolved_at > {{ built_through }}
        and exists (
            select 1 from {{ this }} as previous
            where previous.anonymous_id = anonymous_profiles.anonymous_id
                and previous.profile_id is distinct from anonymous_profiles.profile_id
        )

),

moved as (

    select anonymous_id from rebuilt_from
    union
    select anonymous_id from reresolved

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

{#- the affected anonymous ids' sessions that no re-sessionized event reaches: as they were -#}
kept as (

    select
        {%- for column in session_columns %}
        previous.{{ column }}{{ ',' if not loop.last }}
        {%- endfor %}
    from {{ this }} as previous
    inner join affected on previous.anonymous_id = affected.anonymous_id
    left join rebuilt_from on previous.anonymous_id = rebuilt_from.anonymous_id
    where rebuilt_from.anonymous_id is null or previous.started_at < rebuilt_from.rebuilt_from_at

),

{#- page_views rewrote the page views of every re-sessionized event after int_sessionized_events
    (updated_at: a cheap filter first), and these are the ones of rebuilt sessions -#}
{%- set of_rebuilt_sessions = 'and updated_at > ' ~ built_through ~ ' and session_id in (select session_id from session_events)' %}
{% else %}
session_events as (

    select * from {{ ref('int_sessionized_events') }}

),

{%- set of_rebuilt_sessions = '' %}
{% endif %}

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

{#- the landing and exit page views, flagged by int_sessionized_events: one of each per
    session with page views, so no aggregation and no join back to find them (two narrow
    scans of page_views: cheaper than materializing the page views they share) -#}
landing_page_views as (

    select
        session_id,
        {%- for column in landing_columns %}
        {{ column }} as landing_{{ column }}{{ ',' if not loop.last }}
        {%- endfor %}
    from {{ ref('page_views') }}
    where is_landing_page {{ of_rebuilt_sessions }}

),

exit_page_views as (

    select session_id, page_url as exit_page_url, page_path as exit_page_path
    from {{ ref('page_views') }}
    where is_exit_page {{ of_rebuilt_sessions }}

),

{#- every rule a landing page view matches; the lowest rule_order wins -#}
channel_matches as (

    select landing_page_views.session_id, channel_rules.rule_order, channel_rules.channel
    from landing_page_views
    inner join channel_rules
        on channel_rules.match_on = 'utm_medium' and lower(landing_page_views.landing_utm_medium) = lower(channel_rules.match_value)

    union all

    select landing_page_views.session_id, channel_rules.rule_order, channel_rules.channel
    from landing_page_views
    inner join channel_rules
        on channel_rules.match_on = 'click_id'
        and {{ dbt.position("'&' || lower(channel_rules.match_value) || '='", "'&' || lower(landing_page_views.landing_page_query)") }} > 0

    union all

    select landing_page_views.session_id, referrers.rule_order, referrers.channel
    from landing_page_views
    inner join (
        select hosts.referrer_host, channel_rules.rule_order, channel_rules.channel
        from (
            select distinct landing_referrer_host as referrer_host
            from landing_page_views where landing_referrer_host is not null
        ) as hosts
        inner join channel_rules
            on (channel_rules.match_on = 'referrer_domain'
                and (hosts.referrer_host = lower(channel_rules.match_value)
                    or hosts.referrer_host like '%.' || lower(channel_rules.match_value)))
            or (channel_rules.match_on = 'referrer_prefix' and hosts.referrer_host like lower(channel_rules.match_value) || '%')
    ) as referrers on landing_page_views.landing_referrer_host = referrers.referrer_host

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

rebuilt as (

    select
        aggregated.session_id,
        aggregated.anonymous_id,
        aggregated.started_at,
        aggregated.ended_at,
        {{ dbt.datediff('aggregated.started_at', 'aggregated.ended_at', 'second') }} as duration_seconds,
        aggregated.event_count,
        aggregated.page_view_count,
        aggregated.page_view_count = 1 and aggregated.event_count = 1 as is_bounce,
        split_visits.anonymous_id is not null as is_split,
        landing_page_views.landing_page_url,
        landing_page_views.landing_page_path,
        exit_page_views.exit_page_url,
        exit_page_views.exit_page_path,
        landing_page_views.landing_referrer as referrer,
        landing_page_views.landing_referrer_host as referrer_host,
        landing_page_views.landing_utm_source as utm_source,
        landing_page_views.landing_utm_medium as utm_medium,
        landing_page_views.landing_utm_campaign as utm_campaign,
        landing_page_views.landing_utm_term as utm_term,
        landing_page_views.landing_utm_content as utm_content,
        landing_page_views.landing_gclid as gclid,
        case
            when channels.channel is not null then channels.channel
            when landing_page_views.landing_utm_medium is not null then 'other'
            when landing_page_views.landing_referrer_host is not null
                and landing_page_views.landing_referrer_host <> coalesce(landing_page_views.landing_page_host, '') then 'referral'
            else 'direct'
        end as channel,
        coalesce(landing_page_views.landing_device_category, 'unknown') as device_category
    from aggregated
    left join landing_page_views on aggregated.session_id = landing_page_views.session_id
    left join exit_page_views on aggregated.session_id = exit_page_views.session_id
    left join channels on aggregated.session_id = channels.session_id
    left join split_visits
        on aggregated.anonymous_id = split_visits.anonymous_id
        and aggregated.visit_started_at = split_visits.visit_started_at

),

all_sessions as (

    select * from rebuilt
    {%- if is_incremental() %}
    union all
    select * from kept
    {%- endif %}

),

final as (

    select
        all_sessions.session_id,
        all_sessions.anonymous_id,
        anonymous_profiles.profile_id,
        {%- for column in session_columns[2:] %}
        all_sessions.{{ column }},
        {%- endfor %}
        row_number() over (
            partition by coalesce(anonymous_profiles.profile_id, all_sessions.anonymous_id)
            order by all_sessions.started_at, all_sessions.session_id
        ) as session_number,
        cast('{{ run_started_at.strftime("%Y-%m-%d %H:%M:%S") }}' as {{ dbt.type_timestamp() }}) as updated_at
    from all_sessions
    left join anonymous_profiles on all_sessions.anonymous_id = anonymous_profiles.anonymous_id

)

select * from final
