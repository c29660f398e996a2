-- One row per deduplicated `track` message: named user actions with their properties.
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
        event_name,
        properties,
        device_id,
        user_agent,
        context,
        occurred_at,
        received_at
    from events
    where message_type = 'track'

)

select * from final
