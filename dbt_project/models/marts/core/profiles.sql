-- One row per customer profile, with the merged traits of its identify calls (latest non-null
-- value per key, from traits and context.traits).
{%- set anchor = identity_anchor_type() %}

with

identifiers as (

    select * from {{ ref('int_identity_resolved') }}

),

profile_events as (

    select * from {{ ref('profile_events') }}

),

identifies as (

    select message_id, profile_id, occurred_at, traits, {{ json_extract_path('context', ['traits']) }} as context_traits
    from profile_events
    where message_type = 'identify'

),

trait_entries as (

    select profile_id, occurred_at, message_id, entry_key, entry_value, 2 as source_rank
    from ({{ json_entries('identifies', 'context_traits', ['profile_id', 'occurred_at', 'message_id']) }}) context_entries

    union all

    select profile_id, occurred_at, message_id, entry_key, entry_value, 1 as source_rank
    from ({{ json_entries('identifies', 'traits', ['profile_id', 'occurred_at', 'message_id']) }}) trait_entries

),

latest_traits as (

    select profile_id, entry_key, entry_value
    from (
        select
            *,
            row_number() over (
                partition by profile_id, entry_key order by occurred_at desc, source_rank, message_id desc
            ) as recency
        from trait_entries
    ) ranked
    where recency = 1

),

merged_traits as (

    select profile_id, {{ json_object_agg('entry_key', 'entry_value') }} as traits
    from latest_traits
    group by profile_id

),

latest_email as (

    select profile_id, identifier_value as email
    from (
        select
            profile_id,
            identifier_value,
            row_number() over (partition by profile_id order by last_seen_at desc, identifier_value) as recency
        from identifiers
        where identifier_type = 'email'
    ) ranked
    where recency = 1

),

activity as (

    select
        profile_id,
        min(occurred_at) as first_seen_at,
        max(occurred_at) as last_seen_at,
        count(*) as event_count
    from profile_events
    group by profile_id

),

summary as (

    select
        profile_id,
        {% if anchor == 'user_id' %}max(case when identifier_type = 'user_id' and node_id = profile_id then identifier_value end){% else %}cast(null as {{ dbt.type_string() }}){% endif %} as user_id,
        min(first_seen_at) as first_identified_at,
        count(*) as identifier_count,
        count(case when identifier_type = 'anonymous_id' then 1 end) as anonymous_id_count
    from identifiers
    group by profile_id

),

final as (

    select
        summary.profile_id,
        summary.user_id,
        latest_email.email,
        coalesce(activity.first_seen_at, summary.first_identified_at) as first_seen_at,
        activity.last_seen_at,
        coalesce(activity.event_count, 0) as event_count,
        summary.identifier_count,
        summary.anonymous_id_count,
        merged_traits.traits
    from summary
    left join activity on summary.profile_id = activity.profile_id
    left join latest_email on summary.profile_id = latest_email.profile_id
    left join merged_traits on summary.profile_id = merged_traits.profile_id

)

select * from final
