-- One row per deduplicated page and screen message (of a known profile), with its URL taken
-- apart, campaign parameters (context.campaign, else the URL's utm_* parameters), gclid,
-- device category and session.
-- Incremental: a build parses the page views that are new to the table, and rewrites the page
-- views already in it that it re-profiled or re-sessionized with their new profile and session,
-- keeping the columns parsed from the message (a message's URL, campaign and device never change).
-- Every re-sessionized page view is rewritten, changed or not: sessions finds the page views of
-- the sessions it rebuilds by updated_at.
{{ config(materialized='incremental', incremental_strategy='delete+insert', unique_key='message_id', on_schema_change='fail') }}

{#- the columns parsed from the message, in table order after the session flags -#}
{%- set parsed_columns = [
    'occurred_at', 'page_url', 'page_host', 'page_path', 'page_query', 'page_title', 'screen_name', 'referrer',
    'referrer_host', 'utm_source', 'utm_medium', 'utm_campaign', 'utm_term', 'utm_content', 'gclid',
    'device_category', 'loaded_at'
] -%}
{%- set updated_at = "cast('" ~ run_started_at.strftime("%Y-%m-%d %H:%M:%S") ~ "' as " ~ dbt.type_timestamp() ~ ")" -%}

with

{#- an incremental build reads the page views whose profile it wrote (new ones and moved ones)
    and those of the anonymous ids it re-sessionized (every new page view among them) -#}
{%- set since = loaded_through_value('updated_at') if is_incremental() else none %}
profiled as (

    select * from {{ ref('profile_events') }}
    where message_type in ('page', 'screen')
    {%- if since %} and profiled_at > {{ since }}{% endif %}

),

sessionized as (

    select
        message_id,
        {{ session_id('anonymous_id', 'visit_started_at', 'piece_number') }} as session_id,
        is_landing_page,
        is_exit_page
    from {{ ref('int_sessionized_events') }}
    where message_type in ('page', 'screen')
    {%- if since %} and sessionized_at > {{ since }}{% endif %}

),

{% if is_incremental() %}
{#- the page views already in the table that either changed -#}
previous as (

    select *
    from {{ this }}
    where message_id in (
        select message_id from profiled
        union
        select message_id from sessionized
    )

),

{#- the page views new to the table: parsed below -#}
page_events as (

    select profiled.*
    from profiled
    left join previous on profiled.message_id = previous.message_id
    where previous.message_id is null

),

{#- a re-sessionized page view takes its new session; a re-profiled one its new profile -#}
changed_page_views as (

    select
        previous.message_id,
        previous.message_type,
        coalesce(profiled.profile_id, previous.profile_id) as profile_id,
        previous.anonymous_id,
        previous.user_id,
        case when sessionized.message_id is not null then sessionized.session_id else previous.session_id end as session_id,
        case when sessionized.message_id is not null then sessionized.is_landing_page else previous.is_landing_page end as is_landing_page,
        case when sessionized.message_id is not null then sessionized.is_exit_page else previous.is_exit_page end as is_exit_page,
        {%- for column in parsed_columns %}
        previous.{{ column }},
        {%- endfor %}
        {{ updated_at }} as updated_at
    from previous
    left join profiled on previous.message_id = profiled.message_id
    left join sessionized on previous.message_id = sessionized.message_id

),
{% else %}
page_events as (

    select * from profiled

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

new_page_views as (

    select
        parsed.message_id,
        parsed.message_type,
        parsed.profile_id,
        parsed.anonymous_id,
        parsed.user_id,
        sessionized.session_id,
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
        {{ updated_at }} as updated_at
    from parsed
    left join sessionized on parsed.message_id = sessionized.message_id

)

select * from new_page_views
{% if is_incremental() %}
union all
select * from changed_page_views
{% endif %}
