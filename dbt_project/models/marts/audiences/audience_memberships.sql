-- The current members of every audience, with when they (last) entered it.
with

members as (

    select * from {{ ref('int_audience_members') }}

),

entries as (

    select audience, profile_id, max(occurred_at) as entered_at
    from {{ ref('audience_events') }}
    where event_type = 'entered'
    group by audience, profile_id

),

final as (

    select
        {{ surrogate_key(['members.audience', 'members.profile_id']) }} as membership_id,
        members.audience,
        members.profile_id,
        entries.entered_at
    from members
    inner join entries on members.audience = entries.audience and members.profile_id = entries.profile_id

)

select * from final
