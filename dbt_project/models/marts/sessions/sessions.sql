-- Client sessions per anonymous id: a gap longer than corral_session_timeout_minutes starts a
-- new session (a gap of exactly the timeout stays in the session).
with

profile_events as (

    select * from {{ ref('profile_events') }}

),

client_events as (

    select message_id, profile_id, anonymous_id, message_type, occurred_at, page_url, page_referrer
    from profile_events
    where anonymous_id is not null and message_type in ('page', 'screen', 'track')

),

gaps as (

    select
        *,
        lag(occurred_at) over (partition by anonymous_id order by occurred_at, message_id) as previous_at
    from client_events

),

flagged as (

    select
        *,
        case
            when previous_at is null then 1
            when {{ dbt.datediff('previous_at', 'occurred_at', 'second') }}
                > {{ var('corral_session_timeout_minutes') | int * 60 }} then 1
            else 0
        end as is_session_start
    from gaps

),

numbered as (

    select
        *,
        sum(is_session_start) over (
            partition by anonymous_id order by occurred_at, message_id
            rows between unbounded preceding and current row
        ) as anonymous_session_number
    from flagged

),

session_starts as (

    select anonymous_id, anonymous_session_number, message_id as first_message_id, profile_id,
        page_url as landing_page_url, page_referrer as referrer
    from numbered
    where is_session_start = 1

),

aggregated as (

    select
        anonymous_id,
        anonymous_session_number,
        min(occurred_at) as started_at,
        max(occurred_at) as ended_at,
        count(*) as event_count,
        sum(case when message_type in ('page', 'screen') then 1 else 0 end) as page_view_count
    from numbered
    group by anonymous_id, anonymous_session_number

),

final as (

    select
        {{ surrogate_key(['session_starts.anonymous_id', 'session_starts.first_message_id']) }} as session_id,
        session_starts.anonymous_id,
        session_starts.profile_id,
        aggregated.started_at,
        aggregated.ended_at,
        {{ dbt.datediff('aggregated.started_at', 'aggregated.ended_at', 'second') }} as duration_seconds,
        aggregated.event_count,
        aggregated.page_view_count,
        session_starts.landing_page_url,
        session_starts.referrer
    from aggregated
    inner join session_starts
        on aggregated.anonymous_id = session_starts.anonymous_id
        and aggregated.anonymous_session_number = session_starts.anonymous_session_number

)

select * from final
