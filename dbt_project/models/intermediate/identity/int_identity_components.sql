-- Connected components of the identity graph (every node, with the smallest node id of its
-- component), found by large-star/small-star in O(log n) rounds; see macros/identity/iterate.sql.
{{ config(post_hook="{{ identity_drop_work_tables(['cc_result']) }}") }}
{%- set components = connected_components(ref('int_identity_edges')) %}

with

nodes as (

    select * from {{ ref('int_identity_nodes') }}

),

stars as (

    select * from {{ components.relation }}

),

final as (

    select
        nodes.node_id,
        coalesce(stars.component_id, nodes.node_id) as component_id,
        {{ components.rounds }} as resolution_rounds
    from nodes
    left join stars on nodes.node_id = stars.node_id

)

select * from final
