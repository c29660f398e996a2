-- Every identifier and the profile it belongs to.
with

resolved as (

    select * from {{ ref('int_identity_resolved') }}

),

final as (

    select
        identifier_type,
        identifier_value,
        profile_id,
        first_seen_at,
        last_seen_at,
        message_count
    from resolved

)

select * from final
