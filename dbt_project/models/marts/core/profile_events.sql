-- Every deduplicated message with its profile: the profile of its highest-priority identifier.
-- Messages whose every identifier is blocked (anonymousId "undefined" and nothing else) belong
-- to no one and are left out.
with

events as (

    select * from {{ ref('stg_corral__events') }}

),

extracted as (

    select * from {{ ref('int_identifiers_extracted') }}

),

resolved as (

    select node_number, profile_id from {{ ref('int_identity_resolved') }}

),

deciding_identifier as (

    select message_id, node_number
    from (
        select
            message_id,
            node_number,
            row_number() over (partition by message_id order by identifier_priority, node_number) as precedence
        from extracted
    ) ranked
    where precedence = 1

),

final as (

    select
        events.message_id,
        resolved.profile_id,
        events.message_type,
        events.event_name,
        events.page_name,
        events.user_id,
        events.anonymous_id,
        lower(trim(events.email)) as email,
        events.device_id,
        events.occurred_at,
        events.received_at,
        events.source_id,
        events.page_url,
        events.page_path,
        events.page_referrer,
        events.page_title,
        events.user_agent,
        events.properties,
        events.traits,
        events.context
    from events
    inner join deciding_identifier on events.message_id = deciding_identifier.message_id
    inner join resolved on deciding_identifier.node_number = resolved.node_number

)

select * from final
