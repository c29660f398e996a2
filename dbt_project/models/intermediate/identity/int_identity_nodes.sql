-- One row per identifier (a node of the identity graph). Incremental: a build folds the
-- identifiers of newly staged messages into the rows they already have.
{{ config(materialized='incremental', incremental_strategy='delete+insert', unique_key='node_number', on_schema_change='fail') }}

with

extracted as (

    select * from {{ ref('int_identifiers_extracted') }}
    {%- if is_incremental() %}
    where loaded_at > {{ loaded_through('last_loaded_at') }}
    {%- endif %}

),

seen as (

    select
        node_number,
        node_id,
        identifier_type,
        identifier_value,
        identifier_priority,
        min(occurred_at) as first_seen_at,
        max(occurred_at) as last_seen_at,
        cast(count(*) as {{ dbt.type_bigint() }}) as message_count,
        max(loaded_at) as last_loaded_at
    from extracted
    group by node_number, node_id, identifier_type, identifier_value, identifier_priority

),

{% if is_incremental() %}
combined as (

    select seen.* from seen

    union all

    select
        previous.node_number,
        previous.node_id,
        previous.identifier_type,
        previous.identifier_value,
        previous.identifier_priority,
        previous.first_seen_at,
        previous.last_seen_at,
        previous.message_count,
        previous.last_loaded_at
    from {{ this }} as previous
    inner join seen on previous.node_number = seen.node_number

),

folded as (

    select
        node_number,
        node_id,
        identifier_type,
        identifier_value,
        identifier_priority,
        min(first_seen_at) as first_seen_at,
        max(last_seen_at) as last_seen_at,
        cast(sum(message_count) as {{ dbt.type_bigint() }}) as message_count,
        max(last_loaded_at) as last_loaded_at
    from combined
    group by node_number, node_id, identifier_type, identifier_value, identifier_priority

),
{% else %}
folded as (

    select * from seen

),
{% endif %}

final as (

    select
        node_number,
        node_id,
        identifier_type,
        identifier_value,
        identifier_priority,
        {{ "identifier_type = '" ~ identity_anchor_type() ~ "'" if identity_anchor_type() else "false" }} as is_anchor,
        first_seen_at,
        last_seen_at,
        message_count,
        last_loaded_at
    from folded

)

select * from final
