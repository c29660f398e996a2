-- Every identifier on every deduplicated message, normalized, with blocked values removed:
-- one row per (message, identifier). alias messages contribute previousId as an anonymous_id.
-- Incremental: a build reads only the messages staged since the last one (loaded_at), in one
-- pass, each message spread over the identifier types.
{{ config(materialized='incremental', incremental_strategy='append', on_schema_change='fail') }}
{%- set types = identity_types() %}
{%- set settings = identity_settings_fingerprint() %}
{{- identity_check_settings(settings) }}

with

events as (

    select * from {{ ref('stg_corral__events') }}
    {%- if is_incremental() %}
    where loaded_at > {{ loaded_through('loaded_at') }}
    {%- endif %}

),

blocked as (

    select lower(identifier_type) as identifier_type, lower(trim(identifier_value)) as identifier_value
    from {{ ref('identity_blocked_values') }}

),

identifier_types as (

    {%- for type in types %}
    select '{{ type }}' as identifier_type, {{ identity_priority(type) }} as identifier_priority
    union all
    {%- endfor %}
    select 'previous_id' as identifier_type, {{ identity_priority('anonymous_id') if 'anonymous_id' in types else 0 }} as identifier_priority

),

candidates as (

    select
        events.message_id,
        events.occurred_at,
        events.loaded_at,
        case when identifier_types.identifier_type = 'previous_id' then 'anonymous_id' else identifier_types.identifier_type end as identifier_type,
        identifier_types.identifier_priority,
        case identifier_types.identifier_type
            {%- for type in types %}
            when '{{ type }}' then {{ identity_expression(type) }}
            {%- endfor %}
            {%- if 'anonymous_id' in types %}
            {#- an alias's previousId, unless it repeats the message's own anonymousId -#}
            when 'previous_id' then case
                when events.message_type = 'alias' and trim(events.previous_id) <> coalesce({{ identity_expression('anonymous_id') }}, '')
                    then trim(events.previous_id)
            end
            {%- endif %}
        end as identifier_value
    from events
    cross join identifier_types

),

identifiers as (

    select
        candidates.*,
        {{ surrogate_key(['candidates.identifier_type', 'candidates.identifier_value']) }} as node_id
    from candidates
    left join blocked
        on (blocked.identifier_type = candidates.identifier_type or blocked.identifier_type = '*')
        and blocked.identifier_value = lower(candidates.identifier_value)
    where candidates.identifier_value is not null
        and not {{ identity_value_is_blocked('candidates.identifier_value') }}
        and blocked.identifier_value is null

),

final as (

    select
        message_id,
        occurred_at,
        loaded_at,
        identifier_type,
        identifier_priority,
        identifier_value,
        node_id,
        {{ identity_node_number('node_id') }} as node_number,
        '{{ settings }}' as identity_settings
    from identifiers

)

select * from final
