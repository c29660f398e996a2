-- One row per message the collector kept out of raw.events: spec-invalid (`invalid`, for
-- inspection only) or blocked by a tracking plan (`pending` until `corral replay-rejected`
-- lands it: `replayed`; `already_loaded` when a resend of it was accepted first; `duplicate`
-- for a further copy of a replayed message id).
with

rejected as (

    select * from {{ source('raw', 'rejected_events') }}

),

replayed as (

    select * from {{ source('raw', 'replayed_events') }}

),

final as (

    select
        rejected.rejected_id,
        rejected.message_id,
        rejected.source_id,
        rejected.rejection,
        case
            when rejected.rejection = 'spec' then 'invalid'
            when replayed.outcome = 'landed' then 'replayed'
            when replayed.outcome is not null then replayed.outcome
            else 'pending'
        end as status,
        rejected.reason,
        rejected.message_type,
        rejected.event as event_name,
        rejected.plan_version,
        rejected.received_at,
        replayed.replayed_at,
        replayed.plan_version as replay_plan_version,
        replayed.landing_file as replay_landing_file,
        rejected.landing_file,
        rejected.landing_line,
        rejected.violations,
        rejected.message
    from rejected
    left join replayed on rejected.rejected_id = replayed.rejected_id

)

select * from final
