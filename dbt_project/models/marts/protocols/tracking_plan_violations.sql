-- One row per tracking-plan violation the collector found: a message, the property path, the
-- rule it broke (a JSON Schema keyword, or unplanned_event). A message resent by an SDK counts
-- once: the first landed copy of each (message_id, property_path, rule) wins.
with

violations as (

    select * from {{ source('raw', 'violations') }}

),

ranked as (

    select
        violations.*,
        row_number() over (
            partition by message_id, property_path, rule
            order by received_at, loaded_at, landing_file, landing_line
        ) as copy_number
    from violations

),

final as (

    select
        {{ surrogate_key(['message_id', 'property_path', 'rule']) }} as violation_id,
        message_id,
        source_id,
        message_type,
        coalesce(event, message_type) as event_name,
        property_path,
        rule,
        expected,
        received_type,
        description,
        action,
        plan_version,
        plan_file,
        received_at,
        cast({{ dbt.date_trunc('day', 'received_at') }} as date) as violation_date,
        loaded_at
    from ranked
    where copy_number = 1

)

select * from final
