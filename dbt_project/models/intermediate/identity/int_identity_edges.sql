-- Every pair of identifiers seen on one message is an edge, kept with the earliest time it was
-- seen. link_rank orders edges of the same time: the pair with the higher-priority identifier
-- first, then by node ids, so every edge has its own place in time order.
with

extracted as (

    select * from {{ ref('int_identifiers_extracted') }}

),

pairs as (

    select
        a.node_id as node_a,
        b.node_id as node_b,
        a.occurred_at,
        case when a.identifier_priority < b.identifier_priority then a.identifier_priority else b.identifier_priority end as priority_high,
        case when a.identifier_priority < b.identifier_priority then b.identifier_priority else a.identifier_priority end as priority_low
    from extracted as a
    inner join extracted as b
        on a.message_id = b.message_id
        and a.node_id < b.node_id

),

final as (

    select
        node_a,
        node_b,
        min(occurred_at) as linked_at,
        {{ dbt.concat([dbt.safe_cast('min(priority_high)', dbt.type_string()), "'.'", dbt.safe_cast('min(priority_low)', dbt.type_string()), "'.'", 'node_a', "'.'", 'node_b']) }} as link_rank
    from pairs
    group by node_a, node_b

)

select * from final
