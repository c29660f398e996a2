-- One row per event name a source sent that its tracking plan does not list (rule
-- unplanned_event): when it was first and last seen, how often, whether it is new (first seen
-- within var corral_unplanned_event_new_days of the build's as-of time) and the planned name it
-- is closest to (a likely typo).
{%- set new_days = var('corral_unplanned_event_new_days', 7) %}
{%- if new_days is not number or new_days != new_days | int or new_days < 1 %}
    {{ exceptions.raise_compiler_error("var corral_unplanned_event_new_days must be a whole number of at least 1; got: " ~ new_days) }}
{%- endif %}

with

violations as (

    select * from {{ ref('tracking_plan_violations') }}
    where rule = 'unplanned_event'

),

latest as (

    select
        source_id,
        message_type,
        event_name,
        expected as suggested_event,
        plan_version,
        row_number() over (
            partition by source_id, message_type, event_name
            order by received_at desc, message_id desc
        ) as recency
    from violations

),

seen as (

    select
        source_id,
        message_type,
        event_name,
        min(received_at) as first_seen_at,
        max(received_at) as last_seen_at,
        count(distinct message_id) as message_count,
        count(distinct violation_date) as days_seen,
        count(distinct case when action = 'blocked' then message_id end) as blocked_message_count
    from violations
    group by source_id, message_type, event_name

),

final as (

    select
        {{ surrogate_key(['seen.source_id', 'seen.message_type', 'seen.event_name']) }} as unplanned_event_id,
        seen.source_id,
        seen.message_type,
        seen.event_name,
        seen.first_seen_at,
        seen.last_seen_at,
        cast(seen.message_count as {{ dbt.type_bigint() }}) as message_count,
        cast(seen.days_seen as {{ dbt.type_bigint() }}) as days_seen,
        cast(seen.blocked_message_count as {{ dbt.type_bigint() }}) as blocked_message_count,
        seen.first_seen_at >= {{ dbt.dateadd('day', -1 * (new_days | int), as_of()) }} as is_new,
        latest.suggested_event,
        latest.plan_version as last_plan_version
    from seen
    inner join latest
        on seen.source_id = latest.source_id
        and seen.message_type = latest.message_type
        and seen.event_name = latest.event_name
        and latest.recency = 1

)

select * from final
