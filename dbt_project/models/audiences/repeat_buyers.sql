-- Customers with two or more completed orders, with their order totals.
{{ config(meta={'audience': {'name': 'Repeat buyers', 'description': 'Customers with two or more completed orders.', 'owner': 'growth@example.com'}}) }}

with

profiles as (

    select * from {{ ref('profiles') }}

),

profile_traits as (

    select * from {{ ref('profile_traits') }}

),

final as (

    select
        profiles.profile_id,
        profiles.user_id,
        profiles.email,
        profile_traits.order_count,
        profile_traits.lifetime_revenue as total_revenue,
        profile_traits.first_order_at
    from profiles
    inner join profile_traits on profiles.profile_id = profile_traits.profile_id
    where profile_traits.order_count >= 2

)

select * from final
