-- Append-only log of each identifier's profile: a row when an identifier first appears and
-- whenever a build moves it to another profile. Never rebuilt from scratch (full_refresh:
-- false), so profile_merges can show what changed between builds.
{{ config(materialized='incremental', full_refresh=false, on_schema_change='fail') }}

with

resolved as (

    select node_id, identifier_type, identifier_value, profile_id from {{ ref('int_identity_resolved') }}
    {%- if is_incremental() %}
    {#- only what builds since the last record re-resolved #}
    where resolved_at > (select max(recorded_at) from {{ this }})
    {%- endif %}

),

{% if is_incremental() %}
latest as (

    select node_id, profile_id
    from (
        select
            node_id,
            profile_id,
            row_number() over (partition by node_id order by recorded_at desc) as recency
        from {{ this }}
        where node_id in (select node_id from resolved)
    ) ranked
    where recency = 1

),

changed as (

    select resolved.*
    from resolved
    left join latest on resolved.node_id = latest.node_id
    where latest.node_id is null or latest.profile_id <> resolved.profile_id

),
{% else %}
changed as (

    select * from resolved

),
{% endif %}

final as (

    select
        node_id,
        identifier_type,
        identifier_value,
        profile_id,
        cast('{{ run_started_at.strftime("%Y-%m-%d %H:%M:%S") }}' as {{ dbt.type_timestamp() }}) as recorded_at
    from changed

)

select * from final
