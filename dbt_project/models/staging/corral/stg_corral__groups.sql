-- One row per deduplicated `group` message: users joining accounts / organisations.
with

events as (

    select * from {{ ref('stg_corral__events') }}

),

final as (

    select
        message_id,
        source_id,
        user_id,
        anonymous_id,
        group_id,
        traits,
        device_id,
        user_agent,
        context,
        occurred_at,
        received_at
    from events
    where message_type = 'group'

)

select * from final
