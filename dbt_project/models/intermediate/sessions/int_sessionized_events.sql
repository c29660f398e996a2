-- Every client event (page, screen, track) that carries a usable anonymous id, with its session.
-- Per anonymous id, in time order: a gap longer than corral_session_timeout_minutes starts a
-- new session (a gap of exactly the timeout stays in it); a session longer than
-- corral_max_session_hours is cut into pieces of at most that long, flagged is_split.
-- session_id = hash(anonymous id, first message id of the session): the same events always
-- give the same id.
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

    select
        *,
        sum(is_visit_start) over (
            partition by anonymous_id order by occurred_at, message_id
            rows between unbounded preceding and current row
        ) as visit_number
    from flagged

),

pieces as (

    select
        *,
        floor({{ dbt.datediff('visit_started_at', 'occurred_at', 'millisecond') }} / {{ max_seconds * 1000 }}) as piece_number
    from (
        select
            *,
            min(occurred_at) over (partition by anonymous_id, visit_number) as visit_started_at
        from visits
    ) timed

),

sessions as (

    select
        *,
        first_value(message_id) over (
            partition by anonymous_id, visit_number, piece_number order by occurred_at, message_id
            rows between unbounded preceding and unbounded following
        ) as first_message_id,
        max(piece_number) over (partition by anonymous_id, visit_number) as last_piece_number
    from pieces

),

final as (

    select
        message_id,
        anonymous_id,
        message_type,
        occurred_at,
        loaded_at,
        {{ surrogate_key(['anonymous_id', 'first_message_id']) }} as session_id,
        last_piece_number > 0 as is_split,
        cast('{{ run_started_at.strftime("%Y-%m-%d %H:%M:%S") }}' as {{ dbt.type_timestamp() }}) as sessionized_at
    from sessions

)

select * from final
