-- One row per deduplicated `identify` message: traits and the identifiers they tie together.
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
        email,
        traits,
        device_id,
        user_agent,
        context,
        occurred_at,
        received_at
    from events
    where message_type = 'identify'

)

select * from final
