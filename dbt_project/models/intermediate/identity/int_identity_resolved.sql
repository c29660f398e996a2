-- Each identifier's profile. A component that breaks no limit is one profile. A component
-- that does (two user ids, by default) is split as replaying its links in time order would:
-- by earliest-arrival labels for the default limits, by an actual replay for any others (see
-- the rules in _identity__models.yml). profile_id is the node id of the profile's earliest
-- anchor-type identifier (its user id), else of its earliest identifier.
-- Incremental: a build re-resolves only the components that hold an identifier seen since the
-- last one (whole, with all their links), and leaves every other profile as it was.
-- depends_on: {{ ref('int_identity_edges') }}
{{ config(
    materialized='incremental', incremental_strategy='delete+insert', unique_key='node_number', on_schema_change='fail',
    post_hook="{{ identity_drop_work_tables(['ea_result', 'rp_result', 'conflict_nodes', 'conflict_edges']) }}"
) }}
{%- set limits = identity_limits() %}
{%- set conflict_nodes = identity_work_relation('conflict_nodes') %}
{%- set conflict_edges = identity_work_relation('conflict_edges') %}
{%- set scope -%}
    (
        select nodes.*, components.component_id
        from {{ ref('int_identity_nodes') }} as nodes
        inner join {{ ref('int_identity_components') }} as components on nodes.node_number = components.node_number
        {%- if is_incremental() %}
        where components.component_id in (
            select component_id from {{ ref('int_identity_components') }} where loaded_through > {{ loaded_through() }}
        )
        {%- endif %}
    )
{%- endset %}
{%- if identity_iterating() %}
    {%- set breaks -%}
        {%- for type, limit in limits.items() -%}
            sum(case when identifier_type = '{{ type }}' then 1 else 0 end) > {{ limit }}{% if not loop.last %} or {% endif %}
        {%- else -%}
            1 = 0
        {%- endfor -%}
    {%- endset %}
    {{ identity_replace_table(conflict_nodes, "
        with scope as (select * from " ~ scope ~ " as scope),
        conflicted as (
            select component_id from scope group by component_id having " ~ breaks ~ "
        )
        select scope.node_number as node_id, scope.identifier_type, scope.is_anchor, scope.component_id
        from scope inner join conflicted on scope.component_id = conflicted.component_id") }}
    {#- link_rank orders links of the same time: the higher-priority pair first, then node numbers -#}
    {{ identity_replace_table(conflict_edges, "
        select
            edges.node_a,
            edges.node_b,
            edges.linked_at,
            " ~ dbt.concat([
                dbt.safe_cast('edges.priority_high', dbt.type_string()), "'.'",
                dbt.safe_cast('edges.priority_low', dbt.type_string()), "'.'",
                "lpad(" ~ dbt.safe_cast('edges.node_a', dbt.type_string()) ~ ", 19, '0')", "'.'",
                "lpad(" ~ dbt.safe_cast('edges.node_b', dbt.type_string()) ~ ", 19, '0')"
            ]) ~ " as link_rank,
            conflict_nodes.component_id
        from " ~ ref('int_identity_edges') ~ " as edges
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

scope as (

    select * from {{ scope }} as scope

),

split as (

    {{ split_sql }}

),

grouped as (

    select
        scope.*,
        coalesce(split.group_id, scope.component_id) as group_id
    from scope
    left join split on scope.node_number = split.node_id

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
        grouped.node_number,
        grouped.node_id,
        grouped.identifier_type,
        grouped.identifier_value,
        grouped.identifier_priority,
        grouped.is_anchor,
        grouped.first_seen_at,
        grouped.last_seen_at,
        grouped.message_count,
        grouped.component_id,
        namesakes.profile_id,
        (select max(loaded_through) from {{ ref('int_identity_components') }}) as loaded_through,
        cast('{{ run_started_at.strftime("%Y-%m-%d %H:%M:%S") }}' as {{ dbt.type_timestamp() }}) as resolved_at
    from grouped
    inner join namesakes
        on grouped.group_id = namesakes.group_id
        and namesakes.seniority = 1

)

select * from final
