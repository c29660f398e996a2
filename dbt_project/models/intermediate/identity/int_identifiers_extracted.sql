-- Every identifier on every deduplicated message, normalized, with blocked values removed:
-- one row per (message, identifier). alias messages contribute previousId as an anonymous_id.
{%- set types = identity_types() %}

with

events as (

    select * from {{ ref('stg_corral__events') }}

),

blocked as (

    select lower(identifier_type) as identifier_type, lower(trim(identifier_value)) as identifier_value
    from {{ ref('identity_blocked_values') }}

),

candidates as (

    {%- for type in types %}
    select
        message_id,
        occurred_at,
        '{{ type }}' as identifier_type,
        {{ identity_priority(type) }} as identifier_priority,
        {{ identity_expression(type) }} as identifier_value
    from events
    {%- if type == 'anonymous_id' %}

    union all

    select
        message_id,
        occurred_at,
        'anonymous_id' as identifier_type,
        {{ identity_priority(type) }} as identifier_priority,
        trim(previous_id) as identifier_value
    from events
    where message_type = 'alias'
    {%- endif %}
    {%- if not loop.last %}

    union all
    {% endif %}
    {%- endfor %}

),

final as (

    select distinct
        candidates.message_id,
        candidates.occurred_at,
        candidates.identifier_type,
        candidates.identifier_priority,
        candidates.identifier_value,
        {{ surrogate_key(['candidates.identifier_type', 'candidates.identifier_value']) }} as node_id
    from candidates
    left join blocked
        on (blocked.identifier_type = candidates.identifier_type or blocked.identifier_type = '*')
        and blocked.identifier_value = lower(candidates.identifier_value)
    where candidates.identifier_value is not null
        and not {{ identity_value_is_blocked('candidates.identifier_value') }}
        and blocked.identifier_value is null

)

select * from final
