-- Customers who completed two or more orders, with their order totals.
{{ config(meta={'audience': {'name': 'Repeat buyers', 'owner': 'growth@example.com'}}) }}

with

profiles as (

    select * from {{ ref('profiles') }}

),

orders as (

    select
        profile_id,
        count(*) as order_count,
        sum({{ dbt.safe_cast(json_extract_string('properties', ['revenue']), dbt.type_numeric()) }}) as total_revenue,
        max(occurred_at) as last_order_at
    from {{ ref('profile_events') }}
    where message_type = 'track' and event_name = 'Order Completed'
    group by profile_id

),

final as (

    select
        profiles.profile_id,
        profiles.user_id,
        profiles.email,
        orders.order_count,
        orders.total_revenue,
        orders.last_order_at
    from profiles
    inner join orders on profiles.profile_id = orders.profile_id
    where orders.order_count >= 2

)

select * from final
