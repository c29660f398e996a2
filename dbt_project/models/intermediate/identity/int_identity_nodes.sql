-- One row per identifier (a node of the identity graph).
with

extracted as (

    select * from {{ ref('int_identifiers_extracted') }}

),

final as (

    select
        node_id,
        identifier_type,
        identifier_value,
        identifier_priority,
        {{ "identifier_type = '" ~ identity_anchor_type() ~ "'" if identity_anchor_type() else "false" }} as is_anchor,
        min(occurred_at) as first_seen_at,
        max(occurred_at) as last_seen_at,
        count(*) as message_count
    from extracted
    group by node_id, identifier_type, identifier_value, identifier_priority

)

select * from final
