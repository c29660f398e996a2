-- Every message once: deduplicated by message_id (first received copy wins), typed, with the
-- event time corrected for device clock skew as Segment does:
--   occurred_at = received_at - (sent_at - original_timestamp)
-- Incremental: a build takes in only the loads since the last one (raw.events.loaded_at), so
-- every model downstream can find what is new; the loader never lands a message id twice, and
-- a copy that slips in later still loses to the one already staged.
{{ config(materialized='incremental', incremental_strategy='append', on_schema_change='fail') }}

with

source as (

    select * from {{ source('raw', 'events') }}
    {%- if is_incremental() %}
    where loaded_at > {{ loaded_through('loaded_at') }}
    {%- endif %}

),

ranked as (

    select
        *,
        row_number() over (
            partition by message_id
            order by received_at, loaded_at, landing_file, landing_line
        ) as copy_number
    from source

),

deduplicated as (

    select * from ranked
    where copy_number = 1
    {%- if is_incremental() %}
        and message_id not in (select message_id from {{ this }})
    {%- endif %}

),

final as (

    select
        message_id,
        type as message_type,
        source_id,
        nullif(trim(user_id), '') as user_id,
        nullif(trim(anonymous_id), '') as anonymous_id,
        nullif(trim(previous_id), '') as previous_id,
        nullif(trim(group_id), '') as group_id,
        event as event_name,
        name as page_name,
        category,
        coalesce(
            {{ adapter.quote('timestamp') }},
            case
                when sent_at is not null and original_timestamp is not null
                    then {{ dbt.dateadd(
                        'millisecond',
                        '-1 * ' ~ dbt.datediff('original_timestamp', 'sent_at', 'millisecond'),
                        'received_at'
                    ) }}
            end,
            original_timestamp,
            received_at
        ) as occurred_at,
        original_timestamp,
        sent_at,
        received_at,
        loaded_at,
        coalesce(
            {{ json_extract_string('traits', ['email']) }},
            {{ json_extract_string('context', ['traits', 'email']) }}
        ) as email,
        coalesce(
            {{ json_extract_string('traits', ['phone']) }},
            {{ json_extract_string('context', ['traits', 'phone']) }}
        ) as phone,
        {{ json_extract_string('context', ['device', 'id']) }} as device_id,
        {{ json_extract_string('context', ['userAgent']) }} as user_agent,
        {{ json_extract_string('context', ['ip']) }} as ip,
        {{ json_extract_string('context', ['library', 'name']) }} as library_name,
        {{ json_extract_string('context', ['page', 'url']) }} as page_url,
        {{ json_extract_string('context', ['page', 'path']) }} as page_path,
        {{ json_extract_string('context', ['page', 'referrer']) }} as page_referrer,
        {{ json_extract_string('context', ['page', 'title']) }} as page_title,
        traits,
        properties,
        context,
        integrations
    from deduplicated

)

select * from final
