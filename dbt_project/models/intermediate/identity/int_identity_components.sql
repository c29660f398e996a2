-- Connected components of the identity graph (every node, with the smallest node number of its
-- component), found by large-star/small-star in O(log n) rounds; see macros/identity/iterate.sql.
-- Incremental: edges only ever join components, so a build contracts each component it already
-- knows to its id, finds the components of the new edges over those ids (a small graph), and
-- rewrites only the nodes whose component grew or that were seen again.
{{ config(
    materialized='incremental', incremental_strategy='delete+insert', unique_key='node_number', on_schema_change='fail',
    post_hook="{{ identity_drop_work_tables(['cc_result']) }}"
) }}
{%- if is_incremental() %}
    {%- set new_edges -%}
        (
            select
                coalesce(known_a.component_id, edges.node_a) as node_a,
                coalesce(known_b.component_id, edges.node_b) as node_b
            from {{ ref('int_identity_edges') }} as edges
            left join {{ this }} as known_a on edges.node_a = known_a.node_number
            left join {{ this }} as known_b on edges.node_b = known_b.node_number
            where edges.last_loaded_at > {{ loaded_through() }}
        ) as contracted_edges
    {%- endset %}
    {%- set components = connected_components(new_edges) %}
{%- else %}
    {%- set components = connected_components(ref('int_identity_edges')) %}
{%- endif %}

with

nodes as (

    select * from {{ ref('int_identity_nodes') }}
    {%- if is_incremental() %}
    where last_loaded_at > {{ loaded_through() }}
    {%- endif %}

),

stars as (

    select * from {{ components.relation }}

),

{% if is_incremental() %}
{#- stars maps old component ids and new nodes to their merged component -#}
regrouped as (

    select known.node_number, stars.component_id
    from {{ this }} as known
    inner join stars on known.component_id = stars.node_id

),

touched as (

    select nodes.node_number, coalesce(stars.component_id, known.component_id, nodes.node_number) as component_id
    from nodes
    left join {{ this }} as known on nodes.node_number = known.node_number
    left join stars on coalesce(known.component_id, nodes.node_number) = stars.node_id

),

changed as (

    select node_number, component_id from regrouped
    union
    select node_number, component_id from touched

),
{% else %}
changed as (

    select nodes.node_number, coalesce(stars.component_id, nodes.node_number) as component_id
    from nodes
    left join stars on nodes.node_number = stars.node_id

),
{% endif %}

final as (

    select
        node_number,
        component_id,
        {{ components.rounds }} as resolution_rounds,
        (select max(last_loaded_at) from {{ ref('int_identity_nodes') }}) as loaded_through
    from changed

)

select * from final
