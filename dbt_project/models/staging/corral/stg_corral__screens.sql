-- One row per deduplicated `screen` message: mobile screen views.
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
        page_name,
        category,
        properties,
        device_id,
        user_agent,
        context,
        occurred_at,
        received_at
    from events
    where message_type = 'screen'

)

select * from final
