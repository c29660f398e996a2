-- Profiles with three or more sessions that were not bounces in the last 30 days, known or
-- not yet: the people to retarget or nudge to sign up.
{{ config(meta={'audience': {'name': 'Engaged visitors', 'description': 'Three or more non-bounce sessions in the last 30 days.', 'owner': 'growth@example.com'}}) }}

with

profiles as (

    select * from {{ ref('profiles') }}

),

sessions as (

    select * from {{ ref('sessions') }}

),

recent_sessions as (

    select
        profile_id,
        count(*) as engaged_sessions,
        max(started_at) as last_session_at
    from sessions
    where not is_bounce
        and started_at > {{ dbt.dateadd('day', -30, as_of()) }}
        and started_at <= {{ as_of() }}
        and profile_id is not null
    group by profile_id

),

final as (

    select
        profiles.profile_id,
        profiles.user_id,
        profiles.email,
        recent_sessions.engaged_sessions,
        recent_sessions.last_session_at
    from recent_sessions
    inner join profiles on recent_sessions.profile_id = profiles.profile_id
    where recent_sessions.engaged_sessions >= 3

)

select * from final
