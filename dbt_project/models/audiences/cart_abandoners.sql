-- Known customers who started a checkout in the 7 days before the build's as-of time and have
-- not completed an order since their latest checkout.
{{ config(meta={'audience': {'name': 'Cart abandoners (7 days)', 'description': 'Known customers with a checkout in the last 7 days and no order since.', 'owner': 'growth@example.com'}}) }}

with

profiles as (

    select * from {{ ref('profiles') }}

),

profile_events as (

    select * from {{ ref('profile_events') }}

),

checkouts as (

    select profile_id, max(occurred_at) as last_checkout_at
    from profile_events
    where event_name = 'Checkout Started'
        and occurred_at > {{ dbt.dateadd('day', -7, as_of()) }}
        and occurred_at <= {{ as_of() }}
    group by profile_id

),

later_orders as (

    select distinct checkouts.profile_id
    from checkouts
    inner join profile_events
        on profile_events.profile_id = checkouts.profile_id
        and profile_events.event_name = 'Order Completed'
        and profile_events.occurred_at >= checkouts.last_checkout_at

),

final as (

    select
        profiles.profile_id,
        profiles.user_id,
        profiles.email,
        checkouts.last_checkout_at
    from checkouts
    inner join profiles on checkouts.profile_id = profiles.profile_id
    left join later_orders on checkouts.profile_id = later_orders.profile_id
    where later_orders.profile_id is null and profiles.email is not null

)

select * from final
