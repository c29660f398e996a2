-- One row per audience per build: members, and how many entered and exited in that build --
-- the series behind a chart of audience size over time. Append-only; a full refresh keeps it.
{{ config(materialized='incremental', incremental_strategy='append', full_refresh=false, on_schema_change='fail') }}

with

audiences as (

    select * from {{ ref('audiences') }}

),

changes as (

    select
        audience,
        sum(case when event_type = 'entered' then 1 else 0 end) as entered_count,
        sum(case when event_type = 'exited' then 1 else 0 end) as exited_count
    from {{ ref('audience_events') }}
    where occurred_at = {{ build_time() }}
    group by audience

),

final as (

    select
        {{ surrogate_key(['audiences.audience', build_time()]) }} as audience_size_id,
        audiences.audience,
        {{ build_time() }} as computed_at,
        audiences.member_count,
        cast(coalesce(changes.entered_count, 0) as {{ dbt.type_bigint() }}) as entered_count,
        cast(coalesce(changes.exited_count, 0) as {{ dbt.type_bigint() }}) as exited_count
    from audiences
    left join changes on audiences.audience = changes.audience

)

select * from final
