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
        {#- not exists, not `not in (subquery)`: Postgres runs the latter as a scan of the whole table per new row #}
        and not exists (select 1 from {{ this }} as staged where staged.message_id = ranked.message_id)
    {%- endif %}

),

{#- each JSON column parsed once for all its fields -#}
parsed as (

    select
        deduplicated.*,
        {{ json_extract_strings('traits', [['email'], ['phone']]) }} as trait_values,
        {{ json_extract_strings('context', [
            ['traits', 'email'], ['traits', 'phone'], ['device', 'id'], ['userAgent'], ['ip'], ['library', 'name'],
            ['page', 'url'], ['page', 'path'], ['page', 'referrer'], ['page', 'title']
        ]) }} as context_values
    from deduplicated
    {{ optimization_fence() }}

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
        coalesce({{ array_item('trait_values', 1) }}, {{ array_item('context_values', 1) }}) as email,
        coalesce({{ array_item('trait_values', 2) }}, {{ array_item('context_values', 2) }}) as phone,
        {{ array_item('context_values', 3) }} as device_id,
        {{ array_item('context_values', 4) }} as user_agent,
        {{ array_item('context_values', 5) }} as ip,
        {{ array_item('context_values', 6) }} as library_name,
        {{ array_item('context_values', 7) }} as page_url,
        {{ array_item('context_values', 8) }} as page_path,
        {{ array_item('context_values', 9) }} as page_referrer,
        {{ array_item('context_values', 10) }} as page_title,
        traits,
        properties,
        context,
        integrations
    from parsed

)

select * from final
