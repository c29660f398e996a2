-- Each anonymous id mapped to the user id it was first seen with (on any message carrying both,
-- or an alias). First wins, so a shared device stays with its first user. A deliberately thin
-- one-hop mapping: the full identity graph replaces it.
with

events as (

    select * from {{ ref('stg_corral__events') }}

),

aliases as (

    select * from {{ ref('stg_corral__aliases') }}

),

pairs as (

    select anonymous_id, user_id, occurred_at, message_id
    from events
    where anonymous_id is not null and user_id is not null

    union all

    select previous_id as anonymous_id, user_id, occurred_at, message_id
    from aliases
    where user_id is not null

),

ranked as (

    select
        *,
        row_number() over (partition by anonymous_id order by occurred_at, message_id) as pair_rank
    from pairs

),

final as (

    select
        anonymous_id,
        user_id,
        occurred_at as first_identified_at
    from ranked
    where pair_rank = 1

)

select * from final
