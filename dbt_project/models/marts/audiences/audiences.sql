-- One row per audience: its meta (name, description, owner) and its size this build.
with

catalog as (

    {{ audience_catalog() }}

),

members as (

    select * from {{ ref('int_audience_members') }}

),

sizes as (

    select audience, count(*) as member_count
    from members
    group by audience

),

final as (

    select
        catalog.audience,
        catalog.audience_name,
        catalog.description,
        catalog.owner,
        coalesce(sizes.member_count, 0) as member_count,
        {{ build_time() }} as computed_at
    from catalog
    left join sizes on catalog.audience = sizes.audience

)

select * from final
