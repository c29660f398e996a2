-- Each time a build moved identifiers from one profile to another (two profiles merged, a
-- profile became identified, a blocked value split one): previous and new profile_id, when,
-- and how many identifiers moved. Downstream systems follow previous → new.
with

history as (

    select * from {{ ref('int_profile_identifier_history') }}

),

changes as (

    select
        node_id,
        profile_id as new_profile_id,
        lag(profile_id) over (partition by node_id order by recorded_at) as previous_profile_id,
        recorded_at
    from history

),

final as (

    select
        previous_profile_id,
        new_profile_id,
        recorded_at as merged_at,
        count(*) as identifiers_moved
    from changes
    where previous_profile_id is not null and previous_profile_id <> new_profile_id
    group by previous_profile_id, new_profile_id, recorded_at

)

select * from final
