-- Each identifier's profile. A component with at most one anchor (user id) is one profile. A
-- component holding several anchors is split by earliest arrival: each identifier joins the
-- anchor whose link reached it first (see the rules in _identity__models.yml). profile_id is
-- the node id of the profile's anchor, or of its earliest identifier when it has none.
-- depends_on: {{ ref('int_identity_edges') }}
{{ config(post_hook="{{ identity_drop_work_tables(['ea_result', 'conflict_nodes', 'conflict_edges']) }}") }}
{%- set conflict_nodes = identity_work_relation('conflict_nodes') %}
{%- set conflict_edges = identity_work_relation('conflict_edges') %}
{%- if identity_iterating() %}
    {{ identity_replace_table(conflict_nodes, "
        with conflicted as (
            select components.component_id
            from " ~ ref('int_identity_components') ~ " as components
            inner join " ~ ref('int_identity_nodes') ~ " as nodes on components.node_id = nodes.node_id
            group by components.component_id
            having sum(case when nodes.is_anchor then 1 else 0 end) > 1
        )
        select nodes.node_id, nodes.is_anchor
        from " ~ ref('int_identity_nodes') ~ " as nodes
        inner join " ~ ref('int_identity_components') ~ " as components on nodes.node_id = components.node_id
        inner join conflicted on components.component_id = conflicted.component_id") }}
    {{ identity_replace_table(conflict_edges, "
        select edges.* from " ~ ref('int_identity_edges') ~ " as edges
        inner join " ~ conflict_nodes ~ " as conflict_nodes on edges.node_a = conflict_nodes.node_id") }}
{%- endif %}
{%- set labels = earliest_arrival_labels(conflict_nodes, conflict_edges) %}

with

nodes as (

    select * from {{ ref('int_identity_nodes') }}

),

components as (

    select * from {{ ref('int_identity_components') }}

),

labels as (

    select * from {{ labels.relation }}

),

component_anchors as (

    select
        components.component_id,
        sum(case when nodes.is_anchor then 1 else 0 end) as anchor_count,
        min(case when nodes.is_anchor then nodes.node_id end) as anchor_id
    from components
    inner join nodes on components.node_id = nodes.node_id
    group by components.component_id

),

assigned as (

    select
        nodes.*,
        components.component_id,
        case when component_anchors.anchor_count > 1 then labels.anchor_id else component_anchors.anchor_id end as anchor_id
    from nodes
    inner join components on nodes.node_id = components.node_id
    inner join component_anchors on components.component_id = component_anchors.component_id
    left join labels on nodes.node_id = labels.node_id

),

earliest as (

    select
        component_id,
        node_id as earliest_node_id,
        row_number() over (
            partition by component_id order by first_seen_at, identifier_priority, node_id
        ) as seniority
    from assigned
    where anchor_id is null

),

final as (

    select
        assigned.node_id,
        assigned.identifier_type,
        assigned.identifier_value,
        assigned.identifier_priority,
        assigned.is_anchor,
        assigned.first_seen_at,
        assigned.last_seen_at,
        assigned.message_count,
        assigned.component_id,
        coalesce(assigned.anchor_id, earliest.earliest_node_id) as profile_id
    from assigned
    left join earliest
        on assigned.component_id = earliest.component_id
        and earliest.seniority = 1

)

select * from final
