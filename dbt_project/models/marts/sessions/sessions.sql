-- Client sessions per anonymous id (see int_sessionized_events for the rules), with the landing
-- and exit pages, the first page view's referrer, campaign and click id, a channel from the
-- editable seed channel_rules, the device, and session_number per profile. profile_id is the
-- anonymous id's profile, so earlier sessions follow a visitor who later identifies.
-- Incremental (strategy replace_tail, macros/replace_tail.sql): per anonymous id, a build
-- rewrites its sessions from the first one that changed (re-sessionized, or moved to another
-- profile) and, in every profile involved before or after, every anonymous id's sessions from
-- the profile's earliest change on, so session_number stays right across devices. Earlier
-- sessions are not touched. Only the sessions int_sessionized_events rebuilt are aggregated
-- again from their events; the others in the tails are taken from this table as they were,
-- with their profile and number refreshed.
{{ config(materialized='incremental', incremental_strategy='replace_tail', unique_key='anonymous_id', tail_column='started_at', on_schema_change='fail') }}
{%- set landing_columns = [
    'page_url', 'page_path', 'page_host', 'page_query', 'referrer', 'referrer_host', 'utm_source', 'utm_medium',
    'utm_campaign', 'utm_term', 'utm_content', 'gclid', 'device_category'
] %}
{%- set no_rule = 2147483647 %}
{#- bigint on every engine in both paths (Spark's row_number is an int, its count a bigint) -#}
{%- set session_number -%}
    row_number() over (partition by coalesce(profile_id, anonymous_id) order by started_at, session_id)
{%- endset %}
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

{#- the channel rules in the order they win (lowest rule_order, then the channel's name): each
    session's candidates are reduced to one number, the smallest `preference`, with no sort -#}
ranked_rules as (

    select
        match_on,
        lower(match_value) as match_value,
        channel,
        dense_rank() over (order by rule_order, channel) as preference
    from {{ ref('channel_rules') }}

),

rule_channels as (

    select distinct preference, channel
    from ranked_rules

),

utm_medium_preferences as (

    select match_value as utm_medium, min(preference) as preference
    from ranked_rules
    where match_on = 'utm_medium'
    group by match_value

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

{#- the anonymous ids resolved to another profile since the last build: their old profile and
    first session (all their sessions move) -#}
moved as (

    select previous.anonymous_id, previous.profile_id as previous_profile_id, min(previous.started_at) as first_started_at
    from {{ this }} as previous
    inner join anonymous_profiles on previous.anonymous_id = anonymous_profiles.anonymous_id
    where anonymous_profiles.resolved_at > {{ built_through }}
        and previous.profile_id is distinct from anonymous_profiles.profile_id
    group by previous.anonymous_id, previous.profile_id

),

{#- each anonymous id whose sessions change, and from when: a re-sessionized one from its first
    rebuilt session, a moved one from its first session -#}
changed as (

    select anonymous_id, min(changed_from_at) as changed_from_at
    from (
        select anonymous_id, rebuilt_from_at as changed_from_at from rebuilt_from
        union all
        select anonymous_id, first_started_at from moved
    ) as changes
    group by anonymous_id

),

{#- the changed anonymous ids' profiles now: matched to the few changed ids once, so the joins
    below do not each build a hash table of every anonymous id's profile -#}
changed_profiles as (

    select anonymous_profiles.anonymous_id, anonymous_profiles.profile_id
    from anonymous_profiles
    inner join changed on anonymous_profiles.anonymous_id = changed.anonymous_id

),

{#- sessions are numbered per profile (per anonymous id without one): every profile a changed
    anonymous id belongs to, before or after this build, is renumbered from its earliest change;
    its sessions before that keep their numbers -#}
renumbered as (

    select numbering_key, min(changed_from_at) as renumber_from_at
    from (
        select coalesce(changed_profiles.profile_id, changed.anonymous_id) as numbering_key, changed.changed_from_at
        from changed left join changed_profiles on changed.anonymous_id = changed_profiles.anonymous_id
        union all
        select coalesce(previous_profile_id, anonymous_id), first_started_at from moved
    ) as keys
    group by numbering_key

),

{#- what this build writes, per anonymous id (with its profile now): its sessions from here on
    (the strategy replaces exactly those), so every renumbered profile's sessions from its
    renumbering point. The profile's members before this build are its members now, plus those
    that moved out (changed). -#}
tails as (

    select anonymous_id, profile_id, min(renumber_from_at) as tail_from_at
    from (
        select anonymous_profiles.anonymous_id, anonymous_profiles.profile_id, renumbered.renumber_from_at
        from anonymous_profiles inner join renumbered on anonymous_profiles.profile_id = renumbered.numbering_key
        union all
        select changed.anonymous_id, changed_profiles.profile_id, changed.changed_from_at
        from changed left join changed_profiles on changed.anonymous_id = changed_profiles.anonymous_id
    ) as members
    group by anonymous_id, profile_id

),

{#- how many sessions each renumbered profile has before its renumbering point (unchanged) -#}
numbered_before as (

    select renumbered.numbering_key, count(*) as sessions_before
    from {{ this }} as previous
    inner join renumbered on coalesce(previous.profile_id, previous.anonymous_id) = renumbered.numbering_key
    where previous.started_at < renumbered.renumber_from_at
    group by renumbered.numbering_key

),

{#- the tails' sessions that no re-sessionized event reaches: as they were, with their profile
    refreshed. One inner join with the range to keep per anonymous id (its tail, up to where it
    was rebuilt), so the table is probed once by the few tails. -#}
kept as (

    select
        previous.session_id,
        previous.anonymous_id,
        kept_ranges.profile_id,
        {%- for column in session_columns[2:] %}
        previous.{{ column }}{{ ',' if not loop.last }}
        {%- endfor %}
    from {{ this }} as previous
    inner join (
        select tails.anonymous_id, tails.profile_id, tails.tail_from_at, rebuilt_from.rebuilt_from_at
        from tails left join rebuilt_from on tails.anonymous_id = rebuilt_from.anonymous_id
    ) as kept_ranges
        on previous.anonymous_id = kept_ranges.anonymous_id
        and previous.started_at >= kept_ranges.tail_from_at
        and (kept_ranges.rebuilt_from_at is null or previous.started_at < kept_ranges.rebuilt_from_at)

),

{#- page_views rewrote the page views of every re-sessionized event after int_sessionized_events
    (updated_at: a cheap filter first), and these are the ones of rebuilt sessions -#}
{%- set of_rebuilt_sessions = 'and updated_at > ' ~ built_through ~ ' and session_id in (select session_id from aggregated)' %}
{#- every rebuilt session's anonymous id changed, so tails has its profile -#}
{%- set profiles = 'tails' %}
{% else %}
session_events as (

    select * from {{ ref('int_sessionized_events') }}

),

{%- set of_rebuilt_sessions = '' %}
{%- set profiles = 'anonymous_profiles' %}
{% endif %}

{#- a session is (anonymous id, visit start, piece); its id is hashed once per session, here -#}
aggregated as (

    select
        {{ session_id('anonymous_id', 'visit_started_at', 'piece_number') }} as session_id,
        grouped.*
    from (
        select
            anonymous_id,
            visit_started_at,
            piece_number,
            min(occurred_at) as started_at,
            max(occurred_at) as ended_at,
            count(*) as event_count,
            sum(case when message_type in ('page', 'screen') then 1 else 0 end) as page_view_count
        from session_events
        group by anonymous_id, visit_started_at, piece_number
    ) as grouped

),

{#- each session's profile and, in a full build, its number: the window sorts these narrow rows
    (over the wide rows of the final select it costs several times more). An incremental build
    numbers at the end instead, where the kept sessions of the affected anonymous ids join in. -#}
profiled as (

    select
        with_profiles.*
        {%- if not is_incremental() %},
        cast({{ session_number }} as {{ dbt.type_bigint() }}) as session_number
        {%- endif %}
    from (
        select aggregated.*, {{ profiles }}.profile_id
        from aggregated
        left join {{ profiles }} on aggregated.anonymous_id = {{ profiles }}.anonymous_id
    ) as with_profiles

),

{#- a visit longer than corral_max_session_hours was cut into pieces: all of them are flagged -#}
split_visits as (

    select anonymous_id, visit_started_at
    from aggregated
    group by anonymous_id, visit_started_at
    having max(piece_number) > 0

),

{#- the landing and exit page views, flagged by int_sessionized_events: one of each per
    session with page views, so no aggregation and no join back to find them. page_views is
    scanned once per use, narrowly: cheaper than materializing the landing page views that
    the rules below also read. -#}
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

{#- the best referrer rule of each distinct referrer host (few: the rules run per host, not per session) -#}
referrer_preferences as (

    select hosts.referrer_host, min(ranked_rules.preference) as preference
    from (
        select distinct referrer_host
        from {{ ref('page_views') }}
        where is_landing_page and referrer_host is not null {{ of_rebuilt_sessions }}
    ) as hosts
    inner join ranked_rules
        on (ranked_rules.match_on = 'referrer_domain'
            and (hosts.referrer_host = ranked_rules.match_value or hosts.referrer_host like '%.' || ranked_rules.match_value))
        or (ranked_rules.match_on = 'referrer_prefix' and hosts.referrer_host like ranked_rules.match_value || '%')
    group by hosts.referrer_host

),

{#- the best click id rule of the landing page views whose URL has one of those parameters -#}
click_id_preferences as (

    select landing_queries.session_id, min(ranked_rules.preference) as preference
    from (
        select session_id, page_query
        from {{ ref('page_views') }}
        where is_landing_page and page_query is not null {{ of_rebuilt_sessions }}
    ) as landing_queries
    inner join ranked_rules
        on ranked_rules.match_on = 'click_id'
        and {{ dbt.position("'&' || ranked_rules.match_value || '='", "'&' || lower(landing_queries.page_query)") }} > 0
    group by landing_queries.session_id

),

rebuilt as (

    select
        profiled.session_id,
        profiled.anonymous_id,
        profiled.profile_id,
        profiled.started_at,
        profiled.ended_at,
        {{ dbt.datediff('profiled.started_at', 'profiled.ended_at', 'second') }} as duration_seconds,
        profiled.event_count,
        profiled.page_view_count,
        profiled.page_view_count = 1 and profiled.event_count = 1 as is_bounce,
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
            when rule_channels.channel is not null then rule_channels.channel
            when landing_page_views.landing_utm_medium is not null then 'other'
            when landing_page_views.landing_referrer_host is not null
                and landing_page_views.landing_referrer_host <> coalesce(landing_page_views.landing_page_host, '') then 'referral'
            else 'direct'
        end as channel,
        coalesce(landing_page_views.landing_device_category, 'unknown') as device_category
        {%- if not is_incremental() %},
        profiled.session_number
        {%- endif %}
    from profiled
    left join landing_page_views on profiled.session_id = landing_page_views.session_id
    left join exit_page_views on profiled.session_id = exit_page_views.session_id
    left join utm_medium_preferences on lower(landing_page_views.landing_utm_medium) = utm_medium_preferences.utm_medium
    left join referrer_preferences on landing_page_views.landing_referrer_host = referrer_preferences.referrer_host
    left join click_id_preferences on profiled.session_id = click_id_preferences.session_id
    left join rule_channels
        on rule_channels.preference = least(
            coalesce(utm_medium_preferences.preference, {{ no_rule }}),
            coalesce(referrer_preferences.preference, {{ no_rule }}),
            coalesce(click_id_preferences.preference, {{ no_rule }})
        )
    left join split_visits
        on profiled.anonymous_id = split_visits.anonymous_id
        and profiled.visit_started_at = split_visits.visit_started_at

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
        {%- if is_incremental() %}
        {%- for column in session_columns[:2] + ['profile_id'] + session_columns[2:] %}
        all_sessions.{{ column }},
        {%- endfor %}
        cast(coalesce(numbered_before.sessions_before, 0) + {{ session_number }} as {{ dbt.type_bigint() }}) as session_number,
        {%- else %}
        *,
        {%- endif %}
        cast('{{ run_started_at.strftime("%Y-%m-%d %H:%M:%S") }}' as {{ dbt.type_timestamp() }}) as updated_at
    from all_sessions
    {%- if is_incremental() %}
    left join numbered_before on coalesce(all_sessions.profile_id, all_sessions.anonymous_id) = numbered_before.numbering_key
    {%- endif %}

)

select * from final
