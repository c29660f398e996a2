-- Known customers who spent 1,000 or more in total, or 500 or more in the last 90 days.
{{ config(meta={'audience': {'name': 'High-value customers', 'description': 'Known customers with lifetime revenue of at least 1,000, or at least 500 in the last 90 days.', 'owner': 'growth@example.com'}}) }}

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
        profile_traits.lifetime_revenue,
        profile_traits.revenue_last_90_days,
        profile_traits.order_count,
        profile_traits.favorite_category
    from profiles
    inner join profile_traits on profiles.profile_id = profile_traits.profile_id
    where profiles.email is not null
        and (profile_traits.lifetime_revenue >= 1000 or profile_traits.revenue_last_90_days >= 500)

)

select * from final
