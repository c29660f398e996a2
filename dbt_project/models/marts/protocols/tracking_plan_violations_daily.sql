-- Violations per day, source, event and rule: the series behind a drift chart. Per property
-- path, see tracking_plan_violations.
with

violations as (

    select * from {{ ref('tracking_plan_violations') }}

),

daily as (

    select
        violation_date,
        source_id,
        message_type,
        event_name,
        rule,
        count(*) as violation_count,
        count(distinct message_id) as message_count,
        count(distinct case when action = 'blocked' then message_id end) as blocked_message_count,
        sum(case when action = 'omitted' then 1 else 0 end) as omitted_count,
        sum(case when action = 'allowed' then 1 else 0 end) as allowed_count,
        count(distinct property_path) as property_path_count,
        min(received_at) as first_received_at,
        max(received_at) as last_received_at
    from violations
    group by violation_date, source_id, message_type, event_name, rule

),

final as (

    select
        {{ surrogate_key(['violation_date', 'source_id', 'message_type', 'event_name', 'rule']) }} as violation_day_id,
        violation_date,
        source_id,
        message_type,
        event_name,
        rule,
        cast(violation_count as {{ dbt.type_bigint() }}) as violation_count,
        cast(message_count as {{ dbt.type_bigint() }}) as message_count,
        cast(blocked_message_count as {{ dbt.type_bigint() }}) as blocked_message_count,
        cast(omitted_count as {{ dbt.type_bigint() }}) as omitted_count,
        cast(allowed_count as {{ dbt.type_bigint() }}) as allowed_count,
        cast(property_path_count as {{ dbt.type_bigint() }}) as property_path_count,
        first_received_at,
        last_received_at
    from daily

)

select * from final
