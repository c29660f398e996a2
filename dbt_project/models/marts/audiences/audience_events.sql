-- One row each time a profile enters or exits an audience (Segment's Audience Entered /
-- Audience Exited), found by comparing this build's members with the members the history says
-- each audience had after the previous build. Append-only; a full refresh keeps the history.
{{ config(materialized='incremental', incremental_strategy='append', full_refresh=false, on_schema_change='fail') }}

with

members as (

    select audience, profile_id from {{ ref('int_audience_members') }}

),

{% if is_incremental() %}
latest_events as (

    select audience, profile_id, event_type
    from (
        select
            audience,
            profile_id,
            event_type,
            row_number() over (partition by audience, profile_id order by occurred_at desc) as recency
        from {{ this }}
    ) ranked
    where recency = 1

),

previous_members as (

    select audience, profile_id from latest_events where event_type = 'entered'

),
{% else %}
previous_members as (

    select audience, profile_id from members where 1 = 0

),
{% endif %}

entered as (

    select members.audience, members.profile_id, 'entered' as event_type
    from members
    left join previous_members
        on members.audience = previous_members.audience and members.profile_id = previous_members.profile_id
    where previous_members.profile_id is null

),

exited as (

    select previous_members.audience, previous_members.profile_id, 'exited' as event_type
    from previous_members
    left join members
        on previous_members.audience = members.audience and previous_members.profile_id = members.profile_id
    where members.profile_id is null

),

changes as (

    select * from entered
    union all
    select * from exited

),

final as (

    select
        {{ surrogate_key(['audience', 'profile_id', 'event_type', build_time()]) }} as audience_event_id,
        audience,
        profile_id,
        cast(event_type as {{ dbt.type_string() }}) as event_type,
        cast(case when event_type = 'entered' then 'Audience Entered' else 'Audience Exited' end as {{ dbt.type_string() }}) as event_name,
        {{ build_time() }} as occurred_at
    from changes

)

select * from final
