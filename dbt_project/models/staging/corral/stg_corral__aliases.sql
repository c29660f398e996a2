-- One row per deduplicated `alias` message: links from a previous id to a user id.
with

events as (

    select * from {{ ref('stg_corral__events') }}

),

final as (

    select
        message_id,
        source_id,
        user_id,
        previous_id,
        device_id,
        user_agent,
        context,
        occurred_at,
        received_at
    from events
    where message_type = 'alias'

)

select * from final
