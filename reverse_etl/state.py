"""What each sync last delivered, kept in the warehouse (schema corral_sync), and the SQL that
diffs a mart against it. Nothing here pulls rows into Python: plans and commits are statements.

- `records`: per sync and primary key, the hash of the version the destination confirmed
  (`confirmed_hash`, null if never), the destination's id for it, and failure bookkeeping:
  the version that failed (`attempted_hash`, '' for a removal), in how many runs (`attempts`),
  the destination's message, and `status` synced / failed / rejected (failed `max_attempts`
  runs in a row: not retried until the row changes).
- `runs`: one row per run with its counts; `row_log`: one row per record sent, with the payload,
  the version sent (`row_hash`), the destination's answer and the attempts so far.
- `plan__<sync>`: the last plan of a sync: one row per key with its change and operation.

The row log is the journal: while a run sends, each commit only appends the answers to it
(cheap whatever the size of the state), and `fold` writes a run's answers into `records` when
it ends, and before the next run plans, so a run that crashed mid-way is folded then.
`runs.state_folded` says which runs' answers are in `records`.
"""

from __future__ import annotations

from collections import Counter

import duckdb
import pyarrow as pa

from reverse_etl.destinations.base import REMOVALS
from reverse_etl.leases import DDL as LEASES_DDL
from reverse_etl.syncs import SyncConfigError, SyncSpec

DDL = """
create schema if not exists corral_sync;
create table if not exists corral_sync.records (
    sync_name varchar not null,
    record_key varchar not null,
    confirmed_hash varchar,
    attempted_hash varchar,
    destination_id varchar,
    status varchar not null,
    attempts integer not null,
    last_error varchar,
    synced_at timestamp,
    updated_at timestamp not null
);
create table if not exists corral_sync.runs (
    run_id varchar primary key,
    sync_name varchar not null,
    started_at timestamp not null,
    finished_at timestamp,
    status varchar not null,
    dry_run boolean not null,
    full_resync boolean not null,
    planned bigint not null,
    added bigint not null,
    changed bigint not null,
    removed bigint not null,
    unchanged bigint not null,
    sent bigint not null,
    succeeded bigint not null,
    failed bigint not null,
    rejected bigint not null,
    skipped bigint not null,
    duration_seconds double,
    error varchar
);
create table if not exists corral_sync.row_log (
    run_id varchar not null,
    sync_name varchar not null,
    record_key varchar not null,
    operation varchar not null,
    status varchar not null,
    error varchar,
    destination_id varchar,
    payload json,
    logged_at timestamp not null
);
alter table corral_sync.row_log add column if not exists row_hash varchar;
alter table corral_sync.row_log add column if not exists attempts integer;
alter table corral_sync.runs add column if not exists state_folded boolean default true;
""" + LEASES_DDL

# What each mode does with each change. 'baseline': remember the row as delivered without
# sending it (an update sync starts from what is there; an insert sync ignores changes);
# 'forget': drop the state row without sending anything.
MODE_OPERATIONS: dict[str, dict[str, str]] = {
    "upsert": {"added": "upsert", "changed": "upsert", "removed": "forget"},
    "insert": {"added": "insert", "changed": "baseline", "removed": "forget"},
    "update": {"added": "baseline", "changed": "update", "removed": "forget"},
    "mirror": {"added": "upsert", "changed": "upsert", "removed": "delete"},
    "add_remove": {"added": "add", "changed": "baseline", "removed": "remove"},
}
FULL_OPERATION = {"upsert": "upsert", "insert": "insert", "update": "update", "mirror": "upsert", "add_remove": "add"}


def plan_table(sync: SyncSpec) -> str:
    return f'corral_sync."plan__{sync.name}"'


def quote(name: str) -> str:
    return '"' + name.replace('"', '""') + '"'


def check_keys(con: duckdb.DuckDBPyConnection, sync: SyncSpec) -> None:
    """The primary key must be present and unique in the mart, or nothing is sent."""
    key = quote(sync.primary_key)
    bad = con.execute(
        f"select cast({key} as varchar) as k, count(*) from {sync.relation} group by k having count(*) > 1 or k is null"
        f" order by 2 desc limit 5"
    ).fetchall()
    if bad:
        shown = ", ".join("null" if k is None else f"{k!r} ({n} rows)" for k, n in bad)
        raise SyncConfigError(f"sync {sync.name!r}: primary key {sync.primary_key!r} of model {sync.model!r} must be unique and not null; found {shown}")


def build_plan(con: duckdb.DuckDBPyConnection, sync: SyncSpec, full: bool, keep_unchanged: bool = False) -> dict[str, int]:
    """Diff the mart against the sync's state into plan__<sync>: record_key, row_hash (null for
    a removed row), destination_id, change (added, changed, removed, unchanged, rejected,
    dropped), operation (what to do: a destination operation, baseline, forget, or null) and
    the mapped fields under their destination names. Unchanged rows are counted but not kept
    (an unchanged re-sync of millions of rows writes nothing) unless `full` resends them or
    `keep_unchanged` (snapshot destinations take every row). Returns the count per change."""
    fields = ", ".join(f"{quote(column)} as {quote(target)}" for column, target in sync.mapping.items())
    hashed = ", ".join(f"{quote(column)} := {quote(column)}" for column in sync.mapping)
    operations = MODE_OPERATIONS[sync.mode]
    resend = f"'{FULL_OPERATION[sync.mode]}'" if full else "null"  # --full: unchanged and rejected rows go again
    key_type = {row[0]: row[1] for row in con.execute(f"describe select * from {sync.relation}").fetchall()}[sync.primary_key]
    key_target = quote(sync.mapping[sync.primary_key])
    targets = ", ".join(  # a removed row keeps its key (the state has it as text), its other fields are null
        f"coalesce(current.{key_target}, cast(state.record_key as {key_type})) as {key_target}" if target == sync.mapping[sync.primary_key]
        else f"current.{quote(target)}"
        for target in sync.mapping.values()
    )
    con.execute(f"drop table if exists {plan_table(sync)}")
    con.execute(
        f"""
        create table {plan_table(sync)} as
        with current as (
            select
                cast({quote(sync.primary_key)} as varchar) as record_key,
                md5(cast(to_json(struct_pack({hashed})) as varchar)) as row_hash,
                {fields}
            from {sync.relation}
        ),
        state as (
            select * from corral_sync.records where sync_name = $sync
        ),
        diffed as (
            select
                coalesce(current.record_key, state.record_key) as record_key,
                current.row_hash,
                state.destination_id,
                state.attempts,
                state.attempted_hash,
                state.confirmed_hash,
                case
                    when current.record_key is null and state.confirmed_hash is null then 'dropped'
                    when current.record_key is null and state.status = 'rejected' and state.attempted_hash = '' then 'rejected'
                    when current.record_key is null then 'removed'
                    when state.status = 'rejected' and state.attempted_hash = current.row_hash then 'rejected'
                    when state.confirmed_hash is null then 'added'
                    when state.confirmed_hash = current.row_hash then 'unchanged'
                    else 'changed'
                end as change,
                {targets}
            from current
            full outer join state on current.record_key = state.record_key
        )
        select
            *,
            case change
                when 'added' then '{operations["added"]}'
                when 'changed' then '{operations["changed"] if not full else FULL_OPERATION[sync.mode]}'
                when 'removed' then '{operations["removed"]}'
                when 'dropped' then 'forget'
                when 'unchanged' then {resend}
                when 'rejected' then case when row_hash is null then null else {resend} end
            end as operation
        from diffed
        {"" if full or keep_unchanged else "where change <> 'unchanged'"}
        """,
        {"sync": sync.name},
    )
    counts = {change: count for change, count in con.execute(f"select change, count(*) from {plan_table(sync)} group by change").fetchall()}
    if not (full or keep_unchanged):  # every current row is in the plan but the unchanged ones
        current, planned = con.execute(
            f"select (select count(*) from {sync.relation}), (select count(*) from {plan_table(sync)} where row_hash is not null)"
        ).fetchone()
        if current > planned:
            counts["unchanged"] = current - planned
    return counts


def operation_counts(con: duckdb.DuckDBPyConnection, sync: SyncSpec) -> dict[str, int]:
    rows = con.execute(f"select operation, count(*) from {plan_table(sync)} where operation is not null group by 1").fetchall()
    return {operation: count for operation, count in rows}


def apply_silent(con: duckdb.DuckDBPyConnection, sync: SyncSpec) -> None:
    """Record 'baseline' rows as delivered and drop 'forget' rows; nothing is sent for either."""
    plan = plan_table(sync)
    con.execute("begin transaction")
    con.execute(
        f"delete from corral_sync.records where sync_name = $sync and record_key in"
        f" (select record_key from {plan} where operation in ('baseline', 'forget'))",
        {"sync": sync.name},
    )
    con.execute(
        f"""
        insert into corral_sync.records
        select $sync, plan.record_key, plan.row_hash, null, plan.destination_id, 'synced', 0, null, now()::timestamp, now()::timestamp
        from {plan} as plan where plan.operation = 'baseline'
        """,
        {"sync": sync.name},
    )
    con.execute("commit")


BOOKKEEPING = ("record_key", "row_hash", "attempts", "attempted_hash", "confirmed_hash", "previous_destination_id")


def commit_answers(con: duckdb.DuckDBPyConnection, sync: SyncSpec, run_id: str, answers: pa.Table, max_attempts: int) -> dict[str, int]:
    """Append the destination's answers for one or more batches to the row log, in one
    statement. `answers` holds, per record, the plan's bookkeeping (BOOKKEEPING: the version
    sent and the state it had when planned), `operation`, `ok`, `error`, the
    `destination_id` it answered, and the fields sent. A failure counts an attempt (the
    attempts of the same version before, plus one) and is rejected at `max_attempts`. No join
    with the plan or the state and no keyed write: a commit costs the same however large they
    are; `fold` moves the answers into `records`. Returns counts of succeeded, failed, rejected."""
    payload = ", ".join(f"{quote(t)} := {quote(t)}" for t in sync.mapping.values())
    con.register("answers", answers)
    try:
        statuses = con.execute(
            f"""
            insert into corral_sync.row_log
                (run_id, sync_name, record_key, operation, status, error, destination_id, payload, logged_at, row_hash, attempts)
            select
                $run, $sync, record_key, operation,
                case when ok then 'succeeded' when tries >= $cap then 'rejected' else 'failed' end,
                error, coalesce(destination_id, previous_destination_id), to_json(struct_pack({payload})), now()::timestamp,
                row_hash, tries
            from (
                select *, case when ok then 0
                               else (case when attempted_hash = coalesce(row_hash, '') then attempts else 0 end) + 1 end as tries
                from answers
            )
            returning status
            """,
            {"sync": sync.name, "run": run_id, "cap": max_attempts},
        ).fetchall()
    finally:
        con.unregister("answers")
    counts = Counter(status for (status,) in statuses)
    return {"succeeded": counts["succeeded"], "failed": counts["failed"], "rejected": counts["rejected"]}


def fold(con: duckdb.DuckDBPyConnection, sync: SyncSpec) -> int:
    """Write the answers of the sync's runs not yet folded into `records`, run by run in the
    order they started, each in one transaction: confirmed records take the version sent
    (confirmed removals leave), failed ones keep their confirmed version and count the attempt.
    A run answers each record at most once, so a run's answers replace state rows one for one.
    Returns how many state rows it wrote."""
    runs = [run for (run,) in con.execute(
        "select run_id from corral_sync.runs where sync_name = $sync and not coalesce(state_folded, true) order by started_at",
        {"sync": sync.name},
    ).fetchall()]
    written = 0
    for run in runs:
        con.execute("begin transaction")
        try:
            con.execute(
                f"""
                create or replace temp table folded as
                select
                    f.record_key,
                    case when f.status = 'succeeded' then f.row_hash else r.confirmed_hash end as confirmed_hash,
                    case when f.status = 'succeeded' then null else coalesce(f.row_hash, '') end as attempted_hash,
                    f.destination_id,
                    case when f.status = 'succeeded' then 'synced' else f.status end as status,
                    f.attempts,
                    case when f.status <> 'succeeded' then f.error end as last_error,
                    case when f.status = 'succeeded' then f.logged_at else r.synced_at end as synced_at,
                    f.status = 'succeeded' and f.operation in {REMOVALS} as gone
                from corral_sync.row_log as f
                left join corral_sync.records as r on r.sync_name = $sync and r.record_key = f.record_key
                where f.run_id = $run
                """,
                {"sync": sync.name, "run": run},
            )
            con.execute("delete from corral_sync.records where sync_name = $sync and record_key in (select record_key from folded)",
                        {"sync": sync.name})
            count = con.execute(
                """
                insert into corral_sync.records
                select $sync, record_key, confirmed_hash, attempted_hash, destination_id, status, attempts, last_error, synced_at,
                    now()::timestamp
                from folded where not gone
                """,
                {"sync": sync.name},
            ).fetchone()
            con.execute("update corral_sync.runs set state_folded = true where run_id = $run", {"run": run})
            con.execute("drop table folded")
            con.execute("commit")
        except Exception:
            con.execute("rollback")
            raise
        written += count[0] if count else 0
    return written


def commit_snapshot(con: duckdb.DuckDBPyConnection, sync: SyncSpec) -> None:
    """A snapshot destination took every current row: all delivered, removed rows gone."""
    plan = plan_table(sync)
    con.execute("begin transaction")
    con.execute("delete from corral_sync.records where sync_name = $sync", {"sync": sync.name})
    con.execute(
        f"""
        insert into corral_sync.records
        select $sync, record_key, row_hash, null, destination_id, 'synced', 0, null, now()::timestamp, now()::timestamp
        from {plan} where row_hash is not null
        """,
        {"sync": sync.name},
    )
    con.execute("commit")
