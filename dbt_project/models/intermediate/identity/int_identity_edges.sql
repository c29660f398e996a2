-- Every pair of identifiers seen on one message is an edge (node_a < node_b, by node number),
-- kept with the earliest time it was seen and the priorities of its two identifiers, which
-- order edges of the same time. Incremental: a build adds the pairs of newly staged messages
-- and moves an edge's linked_at earlier when a late message saw the pair before.
{{ config(materialized='incremental', incremental_strategy='delete+insert', unique_key=['node_a', 'node_b'], on_schema_change='fail') }}

with

extracted as (

    select * from {{ ref('int_identifiers_extracted') }}
    {%- if is_incremental() %}
    where loaded_at > {{ loaded_through('last_loaded_at') }}
    {%- endif %}

),

pairs as (

    select
        a.node_number as node_a,
        b.node_number as node_b,
        a.occurred_at,
        a.loaded_at,
        case when a.identifier_priority < b.identifier_priority then a.identifier_priority else b.identifier_priority end as priority_high,
        case when a.identifier_priority < b.identifier_priority then b.identifier_priority else a.identifier_priority end as priority_low
    from extracted as a
    inner join extracted as b
        on a.message_id = b.message_id
        and a.node_number < b.node_number

),

linked as (

    select
        node_a,
        node_b,
        priority_high,
        priority_low,
        min(occurred_at) as linked_at,
        max(loaded_at) as last_loaded_at
    from pairs
    group by node_a, node_b, priority_high, priority_low

),

{% if is_incremental() %}
folded as (

    select node_a, node_b, priority_high, priority_low, min(linked_at) as linked_at, max(last_loaded_at) as last_loaded_at
    from (
        select * from linked
        union all
        select previous.node_a, previous.node_b, previous.priority_high, previous.priority_low, previous.linked_at, previous.last_loaded_at
        from {{ this }} as previous
        inner join linked on previous.node_a = linked.node_a and previous.node_b = linked.node_b
    ) both_builds
    group by node_a, node_b, priority_high, priority_low

),
{% else %}
folded as (

    select * from linked

),
{% endif %}

final as (

    select node_a, node_b, linked_at, priority_high, priority_low, last_loaded_at
    from folded

)

select * from final
