-- One row per deduplicated `page` message: web page views.
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
        page_url,
        page_path,
        page_referrer,
        page_title,
        properties,
        device_id,
        user_agent,
        context,
        occurred_at,
        received_at
    from events
    where message_type = 'page'

)

select * from final
