-- One row per customer profile.
with

profile_events as (

    select * from {{ ref('profile_events') }}

),

latest_email as (

    select profile_id, email
    from (
        select
            profile_id,
            email,
            row_number() over (partition by profile_id order by occurred_at desc, message_id) as recency
        from profile_events
        where email is not null
    ) ranked
    where recency = 1

),

activity as (

    select
        profile_id,
        max(resolved_user_id) as user_id,
        min(occurred_at) as first_seen_at,
        max(occurred_at) as last_seen_at,
        count(*) as event_count,
        count(distinct anonymous_id) as anonymous_id_count
    from profile_events
    group by profile_id

),

final as (

    select
        activity.profile_id,
        activity.user_id,
        latest_email.email,
        activity.first_seen_at,
        activity.last_seen_at,
        activity.event_count,
        activity.anonymous_id_count
    from activity
    left join latest_email on activity.profile_id = latest_email.profile_id

)

select * from final
