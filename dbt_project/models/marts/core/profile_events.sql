-- Every deduplicated message with its profile: the profile of its highest-priority identifier.
-- Messages whose every identifier is blocked (anonymousId "undefined" and nothing else) belong
-- to no one and are left out.
-- Incremental: a build writes the messages loaded since the last one, and rewrites the messages
-- carrying an identifier the identity build just re-resolved whose profile did move.
{{ config(materialized='incremental', incremental_strategy='delete+insert', unique_key='message_id', on_schema_change='fail') }}

with

{% if is_incremental() %}
reresolved as (

    select node_number from {{ ref('int_identity_resolved') }}
    where loaded_through > {{ loaded_through('loaded_at') }}

),

touched as (

    select message_id from {{ ref('stg_corral__events') }} where loaded_at > {{ loaded_through('loaded_at') }}
    union
    select extracted.message_id
    from {{ ref('int_identifiers_extracted') }} as extracted
    inner join reresolved on extracted.node_number = reresolved.node_number

),

events as (

    select events.*
    from {{ ref('stg_corral__events') }} as events
    inner join touched on events.message_id = touched.message_id

),

extracted as (

    select extracted.*
    from {{ ref('int_identifiers_extracted') }} as extracted
    inner join touched on extracted.message_id = touched.message_id

),
{% else %}
events as (

    select * from {{ ref('stg_corral__events') }}

),

extracted as (

    select * from {{ ref('int_identifiers_extracted') }}

),
{% endif %}

resolved as (

    select node_number, profile_id from {{ ref('int_identity_resolved') }}

),

deciding_identifier as (

    select message_id, node_number
    from (
        select
            message_id,
            node_number,
            row_number() over (partition by message_id order by identifier_priority, node_number) as precedence
        from extracted
    ) ranked
    where precedence = 1

),

profiled as (

    select deciding_identifier.message_id, resolved.profile_id
    from deciding_identifier
    inner join resolved on deciding_identifier.node_number = resolved.node_number

),

{% if is_incremental() %}
{#- of the messages looked at, only the new ones and those whose profile really moved are
    rewritten (and get a new profiled_at, which is what models downstream pick up) -#}
moved as (

    select profiled.*
    from profiled
    left join {{ this }} as previous on profiled.message_id = previous.message_id
    where previous.message_id is null or previous.profile_id <> profiled.profile_id

),
{% else %}
moved as (

    select * from profiled

),
{% endif %}

{#- text columns cast to the contract's varchar: Postgres makes text of trim() and JSON values,
    and an incremental build compares the new rows' column types with the table's -#}
final as (

    select
        cast(events.message_id as {{ type_varchar() }}) as message_id,
        cast(moved.profile_id as {{ type_varchar() }}) as profile_id,
        cast(events.message_type as {{ type_varchar() }}) as message_type,
        cast(events.event_name as {{ type_varchar() }}) as event_name,
        cast(events.page_name as {{ type_varchar() }}) as page_name,
        cast(events.user_id as {{ type_varchar() }}) as user_id,
        cast(events.anonymous_id as {{ type_varchar() }}) as anonymous_id,
        cast(lower(trim(events.email)) as {{ type_varchar() }}) as email,
        cast(events.device_id as {{ type_varchar() }}) as device_id,
        events.occurred_at,
        events.received_at,
        events.loaded_at,
        cast('{{ run_started_at.strftime("%Y-%m-%d %H:%M:%S") }}' as {{ dbt.type_timestamp() }}) as profiled_at,
        cast(events.source_id as {{ type_varchar() }}) as source_id,
        cast(events.page_url as {{ type_varchar() }}) as page_url,
        cast(events.page_path as {{ type_varchar() }}) as page_path,
        cast(events.page_referrer as {{ type_varchar() }}) as page_referrer,
        cast(events.page_title as {{ type_varchar() }}) as page_title,
        cast(events.user_agent as {{ type_varchar() }}) as user_agent,
        events.properties,
        events.traits,
        events.context
    from events
    inner join moved on events.message_id = moved.message_id

)

select * from final
