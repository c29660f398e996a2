-- Every deduplicated message with the profile it belongs to.
with

events as (

    select * from {{ ref('stg_corral__events') }}

),

mapped as (

    select * from {{ ref('int_anonymous_ids_mapped') }}

),

resolved as (

    select
        events.*,
        coalesce(events.user_id, mapped.user_id) as resolved_user_id
    from events
    left join mapped on events.anonymous_id = mapped.anonymous_id

),

final as (

    select
        message_id,
        {{ surrogate_key([
            "case when resolved_user_id is not null then 'user_id' else 'anonymous_id' end",
            "coalesce(resolved_user_id, anonymous_id, previous_id)"
        ]) }} as profile_id,
        message_type,
        event_name,
        page_name,
        user_id,
        anonymous_id,
        resolved_user_id,
        lower(trim(email)) as email,
        device_id,
        occurred_at,
        received_at,
        source_id,
        page_url,
        page_path,
        page_referrer,
        page_title,
        user_agent,
        properties,
        traits,
        context
    from resolved

)

select * from final
