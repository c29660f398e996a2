-- Each identifier's profile. A component that breaks no limit is one profile. A component
-- that does (two user ids, by default) is split as replaying its links in time order would:
-- by earliest-arrival labels for the default limits, by an actual replay for any others (see
-- the rules in _identity__models.yml). profile_id is the node id of the profile's earliest
-- anchor-type identifier (its user id), else of its earliest identifier.
-- depends_on: {{ ref('int_identity_edges') }}
{{ config(post_hook="{{ identity_drop_work_tables(['ea_result', 'rp_result', 'conflict_nodes', 'conflict_edges']) }}") }}
{%- set limits = identity_limits() %}
{%- set conflict_nodes = identity_work_relation('conflict_nodes') %}
{%- set conflict_edges = identity_work_relation('conflict_edges') %}
{%- if identity_iterating() %}
    {%- set breaks -%}
        {%- for type, limit in limits.items() -%}
            sum(case when nodes.identifier_type = '{{ type }}' then 1 else 0 end) > {{ limit }}{% if not loop.last %} or {% endif %}
        {%- else -%}
            1 = 0
        {%- endfor -%}
    {%- endset %}
    {{ identity_replace_table(conflict_nodes, "
        with conflicted as (
            select components.component_id
            from " ~ ref('int_identity_components') ~ " as components
            inner join " ~ ref('int_identity_nodes') ~ " as nodes on components.node_id = nodes.node_id
            group by components.component_id
            having " ~ breaks ~ "
        )
        select nodes.node_id, nodes.identifier_type, nodes.is_anchor, components.component_id
        from " ~ ref('int_identity_nodes') ~ " as nodes
        inner join " ~ ref('int_identity_components') ~ " as components on nodes.node_id = components.node_id
        inner join conflicted on components.component_id = conflicted.component_id") }}
    {{ identity_replace_table(conflict_edges, "
        select edges.*, conflict_nodes.component_id from " ~ ref('int_identity_edges') ~ " as edges
        inner join " ~ conflict_nodes ~ " as conflict_nodes on edges.node_a = conflict_nodes.node_id") }}
{%- endif %}
{%- if identity_single_anchor() %}
    {%- set split = earliest_arrival_labels(conflict_nodes, conflict_edges) %}
    {%- set split_sql = "select node_id, anchor_id as group_id from " ~ split.relation %}
{%- else %}
    {%- set split = replay_limited_merges(conflict_nodes, conflict_edges, limits) %}
    {%- set split_sql = "select node_id, cluster_id as group_id from " ~ split.relation %}
{%- endif %}

with

nodes as (

    select * from {{ ref('int_identity_nodes') }}

),

components as (

    select * from {{ ref('int_identity_components') }}

),

split as (

    {{ split_sql }}

),

grouped as (

    select
        nodes.*,
        components.component_id,
        coalesce(split.group_id, components.component_id) as group_id
    from nodes
    inner join components on nodes.node_id = components.node_id
    left join split on nodes.node_id = split.node_id

),

namesakes as (

    select
        group_id,
        node_id as profile_id,
        row_number() over (
            partition by group_id
            order by case when is_anchor then 0 else 1 end, first_seen_at, identifier_priority, node_id
        ) as seniority
    from grouped

),

final as (

    select
        grouped.node_id,
        grouped.identifier_type,
        grouped.identifier_value,
        grouped.identifier_priority,
        grouped.is_anchor,
        grouped.first_seen_at,
        grouped.last_seen_at,
        grouped.message_count,
        grouped.component_id,
        namesakes.profile_id
    from grouped
    inner join namesakes
        on grouped.group_id = namesakes.group_id
        and namesakes.seniority = 1

)

select * from final
