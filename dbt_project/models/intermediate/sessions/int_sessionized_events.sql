-- Every client event (page, screen, track) that carries a usable anonymous id, with its session.
-- Per anonymous id, in time order: a gap longer than corral_session_timeout_minutes starts a
-- new session (a gap of exactly the timeout stays in it); a session longer than
-- corral_max_session_hours is cut into pieces of at most that long from the visit's start
-- (piece_number 0, 1, ...). A session is (anonymous id, visit start, piece): a visit starts at
-- one moment per anonymous id, so the same events always make the same session. Its id (macro
-- session_id, a hash of the three) is computed per session downstream, not stored per event.
-- is_landing_page / is_exit_page mark each session's first and last page view (by time, then
-- message id), computed along the same window, so sessions needs no join back to find them.
-- Incremental: for every anonymous id that received new or late events since the last build,
-- the sessions from the first one those events can touch onwards are rebuilt, whole: an old
-- session that ended more than the timeout before the earliest new event cannot change, and
-- nothing is ever cut at an arbitrary window (the dbt-labs package's trailing 3 hours).
-- Strategy replace_tail (macros/replace_tail.sql): per anonymous id, the rows from the rebuilt
-- part's first event on are replaced; its earlier events are not rewritten.
{{ config(materialized='incremental', incremental_strategy='replace_tail', unique_key='anonymous_id', tail_column='occurred_at', on_schema_change='fail') }}
{%- set timeout_seconds = whole_number_var('corral_session_timeout_minutes', 1) * 60 %}
{%- set max_seconds = whole_number_var('corral_max_session_hours', 1) * 3600 %}

with

{% if is_incremental() %}
{#- the staged messages loaded since the last build (loaded_at only grows: a cheap filter) -#}
new_events as (

    select message_id, anonymous_id, message_type, occurred_at, loaded_at
    from {{ ref('stg_corral__events') }}
    where loaded_at > {{ loaded_through('loaded_at') }}
        and message_type in ('page', 'screen', 'track')
        and anonymous_id is not null

),

arrivals as (

    select anonymous_id, min(occurred_at) as earliest_new_at
    from new_events
    group by anonymous_id

),

{#- the already sessionized events of the anonymous ids that received new ones: read once from
    this table (narrower than staging), for where to start and for what to rebuild -#}
previous_events as (

    select message_id, anonymous_id, message_type, occurred_at, loaded_at, visit_started_at
    from {{ this }}
    where anonymous_id in (select anonymous_id from arrivals)

),

{#- per anonymous id, where rebuilding starts: the start of the first old visit that ended
    within the timeout before the earliest new event (or later), else that event itself. An old
    event at most the timeout before the earliest new one, or after it, belongs to such a visit
    and carries its start; a visit that starts after the new event is rebuilt from that event. -#}
rebuild_from as (

    select
        arrivals.anonymous_id,
        case
            when min(previous_events.visit_started_at) < arrivals.earliest_new_at then min(previous_events.visit_started_at)
            else arrivals.earliest_new_at
        end as rebuild_from_at
    from arrivals
    left join previous_events
        on arrivals.anonymous_id = previous_events.anonymous_id
        and previous_events.occurred_at >= {{ dbt.dateadd('second', -1 * timeout_seconds, 'arrivals.earliest_new_at') }}
    group by arrivals.anonymous_id, arrivals.earliest_new_at

),

{#- every event from there on: the old ones (staged events are never restaged, so these and the
    new ones are disjoint) and the new ones -#}
events as (

    select previous_events.message_id, previous_events.anonymous_id, previous_events.message_type,
        previous_events.occurred_at, previous_events.loaded_at
    from previous_events
    inner join rebuild_from
        on previous_events.anonymous_id = rebuild_from.anonymous_id
        and previous_events.occurred_at >= rebuild_from.rebuild_from_at

    union all

    select new_events.message_id, new_events.anonymous_id, new_events.message_type,
        new_events.occurred_at, new_events.loaded_at
    from new_events
    inner join rebuild_from
        on new_events.anonymous_id = rebuild_from.anonymous_id
        and new_events.occurred_at >= rebuild_from.rebuild_from_at

),
{% else %}
events as (

    select message_id, anonymous_id, message_type, occurred_at, loaded_at
    from {{ ref('stg_corral__events') }}

),
{% endif %}

client_events as (

    select * from events
    where message_type in ('page', 'screen', 'track')
        and anonymous_id is not null
        and not {{ identity_value_is_blocked('anonymous_id') }}

),

gaps as (

    select
        message_id,
        anonymous_id,
        message_type,
        occurred_at,
        loaded_at,
        lag(occurred_at) over (partition by anonymous_id order by occurred_at, message_id) as previous_at,
        {#- the neighbouring page views, for the landing and exit flags: same window, no extra sort -#}
        max(case when message_type in ('page', 'screen') then occurred_at end) over (
            partition by anonymous_id order by occurred_at, message_id
            rows between unbounded preceding and 1 preceding
        ) as previous_page_at,
        {{ following_min("case when message_type in ('page', 'screen') then occurred_at end", 'anonymous_id', ['occurred_at', 'message_id']) }} as next_page_at
    from client_events

),

flagged as (

    select
        *,
        case
            when previous_at is null then 1
            {#- compared as timestamps: datediff counts boundaries crossed, so 30:00.5 would read as 30:00 #}
            when occurred_at > {{ dbt.dateadd('second', timeout_seconds, 'previous_at') }} then 1
            else 0
        end as is_visit_start
    from gaps

),

visits as (

    {#- same window as the gaps: times only grow along it, so the running max of start times is
        the start of the visit a row belongs to (one sort for both passes on most engines) -#}
    select
        *,
        max(case when is_visit_start = 1 then occurred_at end) over (
            partition by anonymous_id order by occurred_at, message_id
            rows between unbounded preceding and current row
        ) as visit_started_at,
        {{ following_min('case when is_visit_start = 1 then occurred_at end', 'anonymous_id', ['occurred_at', 'message_id']) }} as next_visit_started_at
    from flagged

),

final as (

    select
        message_id,
        anonymous_id,
        message_type,
        occurred_at,
        loaded_at,
        visit_started_at,
        piece_number,
        cast('{{ run_started_at.strftime("%Y-%m-%d %H:%M:%S") }}' as {{ dbt.type_timestamp() }}) as sessionized_at,
        {#- the session's first and last page view (by time, then message id): the previous /
            next page view of the anonymous id is in another visit or another piece -#}
        message_type in ('page', 'screen') and (
            previous_page_at is null
            or previous_page_at < visit_started_at
            or {{ session_piece('visit_started_at', 'previous_page_at', max_seconds) }} <> piece_number
        ) as is_landing_page,
        message_type in ('page', 'screen') and (
            next_page_at is null
            or (next_visit_started_at is not null and next_page_at >= next_visit_started_at)
            or {{ session_piece('visit_started_at', 'next_page_at', max_seconds) }} <> piece_number
        ) as is_exit_page
    from (
        select
            *,
            {{ session_piece('visit_started_at', 'occurred_at', max_seconds) }} as piece_number
        from visits
    ) cut

)

select * from final
