-- One row per deduplicated page and screen message (of a known profile), with its URL taken
-- apart, campaign parameters (context.campaign, else the URL's utm_* parameters), gclid,
-- device category and session.
-- Incremental: a build rewrites the page views whose profile or session it just changed.
{{ config(materialized='incremental', incremental_strategy='delete+insert', unique_key='message_id', on_schema_change='fail') }}

with

profile_events as (

    select * from {{ ref('profile_events') }}
    where message_type in ('page', 'screen')

),

sessionized as (

    select message_id, anonymous_id, visit_started_at, piece_number, is_landing_page, is_exit_page, sessionized_at
    from {{ ref('int_sessionized_events') }}
    where message_type in ('page', 'screen')

),

{% if is_incremental() %}
changed as (

    select message_id from profile_events where profiled_at > {{ loaded_through('updated_at') }}
    union
    select message_id from sessionized where sessionized_at > {{ loaded_through('updated_at') }}

),

page_events as (

    select profile_events.*
    from profile_events
    inner join changed on profile_events.message_id = changed.message_id

),
{% else %}
page_events as (

    select * from profile_events

),
{% endif %}

campaigns as (

    select
        page_events.*,
        {{ json_extract_strings('context', [
            ['campaign', 'source'], ['campaign', 'medium'], ['campaign', 'name'], ['campaign', 'term'],
            ['campaign', 'content'], ['device', 'type']
        ]) }} as context_values
    from page_events
    {{ optimization_fence() }}

),

parsed as (

    select
        campaigns.*,
        {{ url_host('page_url') }} as page_host,
        {{ url_path('page_url') }} as parsed_path,
        {{ url_query('page_url') }} as page_query,
        {{ url_host('page_referrer') }} as referrer_host,
        {{ array_item('context_values', 1) }} as campaign_source,
        {{ array_item('context_values', 2) }} as campaign_medium,
        {{ array_item('context_values', 3) }} as campaign_name,
        {{ array_item('context_values', 4) }} as campaign_term,
        {{ array_item('context_values', 5) }} as campaign_content,
        {{ array_item('context_values', 6) }} as device_type
    from campaigns

),

final as (

    select
        parsed.message_id,
        parsed.message_type,
        parsed.profile_id,
        parsed.anonymous_id,
        parsed.user_id,
        {#- hashed here, on the page views that have a session (the join leaves the others null) -#}
        case
            when sessionized.message_id is not null
                then {{ session_id('sessionized.anonymous_id', 'sessionized.visit_started_at', 'sessionized.piece_number') }}
        end as session_id,
        coalesce(sessionized.is_landing_page, false) as is_landing_page,
        coalesce(sessionized.is_exit_page, false) as is_exit_page,
        parsed.occurred_at,
        parsed.page_url,
        parsed.page_host,
        coalesce(parsed.page_path, parsed.parsed_path) as page_path,
        parsed.page_query,
        coalesce(parsed.page_title, parsed.page_name) as page_title,
        parsed.page_name as screen_name,
        parsed.page_referrer as referrer,
        parsed.referrer_host,
        coalesce(parsed.campaign_source, {{ url_parameter('parsed.page_url', 'utm_source') }}) as utm_source,
        coalesce(parsed.campaign_medium, {{ url_parameter('parsed.page_url', 'utm_medium') }}) as utm_medium,
        coalesce(parsed.campaign_name, {{ url_parameter('parsed.page_url', 'utm_campaign') }}) as utm_campaign,
        coalesce(parsed.campaign_term, {{ url_parameter('parsed.page_url', 'utm_term') }}) as utm_term,
        coalesce(parsed.campaign_content, {{ url_parameter('parsed.page_url', 'utm_content') }}) as utm_content,
        {{ url_parameter('parsed.page_url', 'gclid') }} as gclid,
        {{ device_category('parsed.user_agent', 'parsed.device_type') }} as device_category,
        parsed.loaded_at,
        cast('{{ run_started_at.strftime("%Y-%m-%d %H:%M:%S") }}' as {{ dbt.type_timestamp() }}) as updated_at
    from parsed
    left join sessionized on parsed.message_id = sessionized.message_id

)

select * from final
