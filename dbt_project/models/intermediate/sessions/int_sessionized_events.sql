-- Every client event (page, screen, track) that carries a usable anonymous id, with its session.
-- Per anonymous id, in time order: a gap longer than corral_session_timeout_minutes starts a
-- new session (a gap of exactly the timeout stays in it); a session longer than
-- corral_max_session_hours is cut into pieces of at most that long from the visit's start
-- (piece_number 0, 1, ...). session_id = hash(anonymous id, visit start, piece): the same
-- events always give the same id.
-- Incremental: a build re-sessionizes, whole, every anonymous id that received new or late
-- events since the last one (never a trailing window that would cut sessions in two).
{{ config(materialized='incremental', incremental_strategy='delete+insert', unique_key='anonymous_id', on_schema_change='fail') }}
{%- set timeout_seconds = session_setting('corral_session_timeout_minutes', 1) * 60 %}
{%- set max_seconds = session_setting('corral_max_session_hours', 1) * 3600 %}

with

events as (

    select * from {{ ref('stg_corral__events') }}
    where message_type in ('page', 'screen', 'track')
        and anonymous_id is not null
        and not {{ identity_value_is_blocked('anonymous_id') }}

),

{% if is_incremental() %}
touched as (

    select distinct anonymous_id from events where loaded_at > {{ loaded_through('loaded_at') }}

),

client_events as (

    select events.*
    from events
    inner join touched on events.anonymous_id = touched.anonymous_id

),
{% else %}
client_events as (

    select * from events

),
{% endif %}

gaps as (

    select
        message_id,
        anonymous_id,
        message_type,
        occurred_at,
        loaded_at,
        lag(occurred_at) over (partition by anonymous_id order by occurred_at, message_id) as previous_at
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
        ) as visit_started_at
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
        {#- a visit starts at one moment per anonymous id, so this names the session by its own
            events only: the same events, the same id -#}
        {{ surrogate_key(['anonymous_id', sortable_timestamp('visit_started_at'), 'piece_number']) }} as session_id,
        cast('{{ run_started_at.strftime("%Y-%m-%d %H:%M:%S") }}' as {{ dbt.type_timestamp() }}) as sessionized_at
    from (
        select
            *,
            cast(floor({{ dbt.datediff('visit_started_at', 'occurred_at', 'millisecond') }} / {{ max_seconds * 1000 }}) as {{ dbt.type_int() }}) as piece_number
        from visits
    ) cut

)

select * from final
