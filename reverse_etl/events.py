"""Runs one event sync: forwards the new rows of profile_events to a destination, in order of
arrival, each at least once, with its message id as the idempotency key.

The cursor. Rows are read in order of `loaded_at` (when the loader landed the message; set
once per message, kept by full refreshes and by rewrites when a profile moves, unlike
`profiled_at`), then `received_at`, then `message_id`. Each sync keeps, in schema
corral_sync:

- `event_cursors`: the position (loaded_at, message_id) up to which every event is settled
  (delivered, finally rejected, or filtered out), and the start (events loaded at or before it
  are never sent: `start: now` takes the newest loaded_at at the first run);
- `event_deliveries`: per message id the destination's last answer (succeeded / failed /
  rejected, attempts, reason), kept while the event is within `overlap_seconds` behind the
  cursor, or failed.

A run sends the events that pass the sync's filters (compiled to SQL, run in the warehouse),
are loaded after `cursor - overlap_seconds` (a message committed late, behind rows already
seen, is still found) or failed before, and are not settled in `event_deliveries` (so an
event confirmed once is never sent again). Each batch's answers are committed as soon as it
returns (row_log + event_deliveries, one transaction): nothing is held only in memory, and a
crash resends at most the batch in flight, under the same message ids. The cursor then moves
to just before the first event still pending, never back; it is recomputed from the tables at
the start of every run, so a run that died is caught up.

Failures. Batches go one at a time, in order. A destination that is down (429/5xx/timeouts
until the retries or the run's deadline run out) or refuses the credentials stops the run:
the events of that batch and after it wait in the warehouse, no attempt counted, and go first
next run. An event the destination refuses (per event, or a 4xx for its batch) is logged with
the reason and retried on later runs, up to `max_attempts`, then rejected; an event over the
destination's size limit is rejected at once. Other event syncs are not held up: each run is
its own (dagster_defs/forwarding.py runs them side by side).
"""

from __future__ import annotations

import json
import random
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone
from typing import Any

import duckdb
import pyarrow as pa

from reverse_etl import state
from reverse_etl.destinations.base import AuthorizationFailed, BatchRejected, RetryableError
from reverse_etl.destinations.event_base import EventDestination
from reverse_etl.engine import EngineOptions, SyncRunResult, recorded_run
from reverse_etl.filters import FilterError
from reverse_etl.pacing import DeadlineExceeded, TokenBucket, with_retries
from reverse_etl.syncs import EventSyncSpec, SyncConfigError

EVENT_DDL = """
create schema if not exists corral_sync;
create table if not exists corral_sync.event_cursors (
    sync_name varchar not null,
    start_loaded_at timestamp,
    cursor_loaded_at timestamp,
    cursor_message_id varchar,
    updated_at timestamp not null
);
create table if not exists corral_sync.event_deliveries (
    sync_name varchar not null,
    message_id varchar not null,
    loaded_at timestamp not null,
    status varchar not null,
    attempts integer not null,
    last_error varchar,
    run_id varchar not null,
    updated_at timestamp not null
);
"""
REQUIRED_COLUMNS = ("message_id", "message_type", "loaded_at")
ALWAYS_FORWARDED = ("track", "page", "screen", "identify")  # group needs group_id, alias previous_id: sent when the model has them
READ_ROWS = 1000


@dataclass(frozen=True)
class Cursor:
    start: datetime | None
    loaded_at: datetime | None
    message_id: str | None


def prepare(con: duckdb.DuckDBPyConnection) -> None:
    con.execute(state.DDL)
    con.execute(EVENT_DDL)


def check_event_sync(con: duckdb.DuckDBPyConnection, sync: EventSyncSpec, takes: frozenset[str] | None = None) -> tuple[list[str], str]:
    """The model's columns and the SQL condition an event must meet to be sent (forwarded
    types the destination `takes`, and filters); SyncConfigError names the sync and the problem."""
    try:
        columns = [row[0] for row in con.execute(f"describe select * from {sync.relation}").fetchall()]
    except duckdb.Error as exc:
        raise SyncConfigError(f"sync {sync.name!r}: cannot read model {sync.model!r} ({sync.relation}); build it first ({exc})") from exc
    if missing := [c for c in REQUIRED_COLUMNS if c not in columns]:
        raise SyncConfigError(f"sync {sync.name!r}: model {sync.model!r} has no column(s) {', '.join(missing)}; event syncs read profile_events")
    types = [*ALWAYS_FORWARDED, *(["group"] if "group_id" in columns else []), *(["alias"] if "previous_id" in columns else [])]
    types = [t for t in types if takes is None or t in takes]
    try:
        filters = sync.filters.where_sql(columns)
    except FilterError as error:
        raise SyncConfigError(f"sync {sync.name!r}: filter refused before running: {error}") from None
    forwarded = f"coalesce(e.message_type in ({', '.join(repr(t) for t in types)}), false)" if types else "false"
    condition = f"e.loaded_at is not null and {forwarded} and {filters}"  # a row without loaded_at has no place in the order
    try:
        con.execute(f"select count(*) from (select e.message_id from {sync.relation} as e where {condition} limit 0)").fetchall()
    except duckdb.Error as exc:
        raise SyncConfigError(f"sync {sync.name!r}: filter refused before running: the warehouse does not accept it ({exc})") from None
    return columns, condition


def run_event_sync(
    con: duckdb.DuckDBPyConnection,
    sync: EventSyncSpec,
    destination: EventDestination,
    dry_run: bool = False,
    options: EngineOptions | None = None,
    echo: Callable[[str], None] | None = None,
) -> SyncRunResult:
    """Forward what is new since the cursor; the result says what happened. Configuration
    problems (filters included) raise SyncConfigError before anything is read or sent."""
    options = options or EngineOptions()
    destination.check_events(sync)
    columns, condition = check_event_sync(con, sync, destination.event_capabilities.types)
    prepare(con)
    result = SyncRunResult(sync=sync.name, run_id=uuid.uuid4().hex, dry_run=dry_run)
    with recorded_run(con, result, sync.deadline_seconds) as clock:
        cursor = _cursor(con, sync, keep=not dry_run)  # a dry run leaves the cursor as it is
        if not dry_run:
            cursor = advance_cursor(con, sync, condition, cursor)  # a run that died after committing answers is caught up
        sql, params = _candidates(sync, condition, columns, cursor)
        result.planned = _one(con.execute(f"select count(*) from ({sql})", params))[0]
        retried = _one(con.execute(f"select count(*) from ({sql}) where _attempts > 0", params))[0]
        result.changes = {"added": result.planned - retried, "changed": retried}
        if dry_run:
            sample, _ = _candidates(sync, condition, columns, cursor, limit=5)
            rows = con.sql(sample, params=params).to_arrow_table().to_pylist()
            result.samples = {"forward": [sync.filters.shape(build_event(row)) for row in rows]}
        elif result.planned:
            _forward(con, sync, destination, sql, params, result, options, clock)
        if not dry_run:
            cursor = advance_cursor(con, sync, condition, cursor)
        result.metadata = {"cursor_loaded_at": str(cursor.loaded_at), "cursor_message_id": cursor.message_id}
        if echo is not None:
            echo(f"{sync.name}: {result.succeeded:,} of {result.planned:,} events delivered, {result.failed + result.rejected:,} failed")
    return result


def _cursor(con: duckdb.DuckDBPyConnection, sync: EventSyncSpec, keep: bool = True) -> Cursor:
    """The sync's cursor; at its first run, its start (kept unless `keep` is false)."""
    row = _one(con.execute("select start_loaded_at, cursor_loaded_at, cursor_message_id from corral_sync.event_cursors where sync_name = $sync",
                           {"sync": sync.name}))
    if row:
        return Cursor(*row)
    if sync.start == "beginning":
        start = None
    elif sync.start == "now":
        start = _one(con.execute(f"select max(loaded_at) from {sync.relation}"))[0]
    else:
        parsed = datetime.fromisoformat(sync.start)
        start = parsed.astimezone(timezone.utc).replace(tzinfo=None) if parsed.tzinfo else parsed
    if keep:
        con.execute("insert into corral_sync.event_cursors values ($sync, $start, null, null, now()::timestamp)",
                    {"sync": sync.name, "start": start})
    return Cursor(start, None, None)


def _one(relation: duckdb.DuckDBPyConnection) -> Any:
    """The first row of a result, read to the end (the connection takes no other work before)."""
    rows = relation.fetchall()
    return rows[0] if rows else None


def _window(sync: EventSyncSpec, cursor: Cursor) -> datetime | None:
    return None if cursor.loaded_at is None else cursor.loaded_at - timedelta(seconds=sync.overlap_seconds)


def _candidates(sync: EventSyncSpec, condition: str, columns: list[str], cursor: Cursor, limit: int | None = None) -> tuple[str, dict[str, Any]]:
    """The events to send this run, in order: passing `condition`, after the start, within the
    window or failed before, not settled."""
    order = "e.loaded_at, e.received_at, e.message_id" if "received_at" in columns else "e.loaded_at, e.message_id"
    sql = f"""
        select e.*, coalesce(d.attempts, 0) as _attempts
        from {sync.relation} as e
        left join (select message_id, status, attempts from corral_sync.event_deliveries where sync_name = $sync) as d
            on d.message_id = e.message_id
        where (d.status is null or d.status = 'failed')
            and {condition}
            and (cast($start as timestamp) is null or e.loaded_at > cast($start as timestamp))
            and (d.status = 'failed' or cast($window as timestamp) is null or e.loaded_at >= cast($window as timestamp))
        order by {order}
        limit {int(limit or sync.max_events_per_run)}
    """
    return sql, {"sync": sync.name, "start": cursor.start, "window": _window(sync, cursor)}


def advance_cursor(con: duckdb.DuckDBPyConnection, sync: EventSyncSpec, condition: str, cursor: Cursor) -> Cursor:
    """Move the cursor to the last event before the first one still pending (never back), and
    forget settled deliveries that fell out of the overlap window."""
    row = _one(con.execute(
        f"""
        with seen as (
            select e.loaded_at, e.message_id, coalesce({condition}, false) as passes
            from {sync.relation} as e
            where (cast($start as timestamp) is null or e.loaded_at > cast($start as timestamp))
                and (cast($window as timestamp) is null or e.loaded_at >= cast($window as timestamp))
        ),
        deliveries as (
            select * from corral_sync.event_deliveries where sync_name = $sync
        ),
        pending as (
            select seen.loaded_at, seen.message_id
            from seen left join deliveries as d on d.message_id = seen.message_id
            where seen.passes and (d.status is null or d.status = 'failed')
            union all
            select d.loaded_at, d.message_id  -- failed before, still there and still passing the filters, wherever it is
            from deliveries as d inner join {sync.relation} as e on e.message_id = d.message_id
            where d.status = 'failed' and coalesce({condition}, false)
        ),
        first_pending as (
            select loaded_at, message_id from pending order by loaded_at, message_id limit 1
        )
        select seen.loaded_at, seen.message_id
        from seen
        where not exists (select 1 from first_pending)
            or seen.loaded_at < (select loaded_at from first_pending)
            or (seen.loaded_at = (select loaded_at from first_pending) and seen.message_id < (select message_id from first_pending))
        order by seen.loaded_at desc, seen.message_id desc
        limit 1
        """,
        {"sync": sync.name, "start": cursor.start, "window": _window(sync, cursor)},
    ))
    if row is None or (cursor.loaded_at is not None and (row[0], row[1]) <= (cursor.loaded_at, cursor.message_id or "")):
        return cursor
    moved = Cursor(cursor.start, row[0], row[1])
    con.execute("begin transaction")
    try:
        con.execute("update corral_sync.event_cursors set cursor_loaded_at = $at, cursor_message_id = $id, updated_at = now()::timestamp"
                    " where sync_name = $sync", {"sync": sync.name, "at": moved.loaded_at, "id": moved.message_id})
        con.execute("delete from corral_sync.event_deliveries where sync_name = $sync and status in ('succeeded', 'rejected')"
                    " and loaded_at < $window", {"sync": sync.name, "window": _window(sync, moved)})
        con.execute("commit")
    except Exception:
        con.execute("rollback")
        raise
    return moved


def build_event(row: dict[str, Any]) -> dict[str, Any]:
    """A profile_events row as a Segment-spec message; the profile Corral resolved travels in
    context.corral.profileId."""
    kind = row["message_type"]
    event: dict[str, Any] = {"type": kind, "messageId": row["message_id"]}
    for column, key in (("user_id", "userId"), ("anonymous_id", "anonymousId")):
        if row.get(column) is not None:
            event[key] = row[column]
    if kind == "track":
        event["event"] = row.get("event_name")
    if kind in ("page", "screen") and row.get("page_name") is not None:
        event["name"] = row["page_name"]
    if kind in ("track", "page", "screen"):
        event["properties"] = _object(row.get("properties"))
    if kind in ("identify", "group"):
        event["traits"] = _object(row.get("traits"))
    if kind == "group":
        event["groupId"] = row.get("group_id")
    if kind == "alias":
        event["previousId"] = row.get("previous_id")
    event["context"] = _object(row.get("context"))
    if row.get("profile_id") is not None:
        event["context"]["corral"] = {"profileId": row["profile_id"]}
    if isinstance(row.get("occurred_at"), datetime):
        event["timestamp"] = _iso(row["occurred_at"])
    return event


def _object(value: Any) -> dict[str, Any]:
    if isinstance(value, str):
        value = json.loads(value)
    return value if isinstance(value, dict) else {}


def _iso(value: datetime) -> str:
    if value.tzinfo is not None:
        value = value.astimezone(timezone.utc).replace(tzinfo=None)
    return value.isoformat(timespec="milliseconds") + "Z"


@dataclass
class _Batch:
    rows: list[dict[str, Any]]
    events: list[dict[str, Any]]
    encoded: list[bytes]
    size: int


def _forward(con: duckdb.DuckDBPyConnection, sync: EventSyncSpec, destination: EventDestination, sql: str, params: dict[str, Any],
             result: SyncRunResult, options: EngineOptions, clock: float) -> None:
    caps = destination.event_capabilities
    bucket = TokenBucket(caps.requests_per_second, caps.burst) if caps.requests_per_second else None
    deadline = clock + sync.deadline_seconds
    rng = random.Random(options.seed)
    writer = con.cursor()  # answers are committed on their own cursor while the candidates stream on `con`
    destination.open_events(sync)
    batch = _Batch([], [], [], caps.envelope_bytes)

    def send() -> bool:
        """Send the batch and commit its answers; False when the run must stop (the batch waits)."""
        nonlocal batch
        current, batch = batch, _Batch([], [], [], caps.envelope_bytes)

        def counted(error: RetryableError, wait: float) -> None:
            result.requests_retried += 1

        try:
            answers = with_retries(lambda: destination.send_events(current.events, current.encoded), options.retry, bucket, deadline,
                                   rng, sleep=options.sleep, on_retry=counted)
            if len(answers) != len(current.events):
                raise BatchRejected(f"the destination answered {len(answers)} events for a batch of {len(current.events)}")
            outcome = [(a.ok, a.error, a.destination_id) for a in answers]
        except DeadlineExceeded as exc:
            return _stop(result, f"deadline: {exc}; {len(current.events):,} events of this batch and those after it wait for the next run")
        except AuthorizationFailed as exc:
            return _stop(result, f"stopped: {exc}; the events wait for the next run")
        except RetryableError as exc:
            return _stop(result, f"{sync.destination} unavailable ({exc}); {len(current.events):,} events of this batch and those after it "
                                 f"wait in the warehouse for the next run")
        except BatchRejected as exc:
            outcome = [(False, str(exc), None)] * len(current.events)
        result.sent += len(current.events)
        _commit(writer, sync, result, current.rows, current.events, outcome)
        return True

    try:
        reader = con.sql(sql, params=params).to_arrow_reader(READ_ROWS)
        try:
            for record_batch in reader:
                for row in record_batch.to_pylist():
                    event = sync.filters.shape(build_event(row))
                    data = destination.encode(event)
                    if caps.max_event_bytes is not None and len(data) > caps.max_event_bytes:
                        reason = f"the event is {len(data):,} bytes, over {destination.name}'s limit of {caps.max_event_bytes:,} per event"
                        result.sent += 1
                        _commit(writer, sync, result, [{**row, "_attempts": sync.max_attempts - 1}], [event], [(False, reason, None)])
                        continue
                    too_big = caps.max_batch_bytes is not None and batch.size + len(data) + 1 > caps.max_batch_bytes
                    if batch.events and (len(batch.events) >= caps.batch_size or too_big) and not send():
                        return
                    batch.rows.append(row)
                    batch.events.append(event)
                    batch.encoded.append(data)
                    batch.size += len(data) + 1
            if batch.events:
                send()
        finally:
            reader.close()
    finally:
        writer.close()
        result.metadata = destination.close_events()


def _stop(result: SyncRunResult, message: str) -> bool:
    result.stopped = True
    result.error(message)
    return False


def _commit(writer: duckdb.DuckDBPyConnection, sync: EventSyncSpec, result: SyncRunResult, rows: list[dict[str, Any]],
            events: list[dict[str, Any]], outcome: list[tuple[bool, str | None, str | None]]) -> None:
    """One batch's answers into the row log and event_deliveries, in one transaction."""
    statuses, attempts = [], []
    for row, (ok, _, _) in zip(rows, outcome, strict=True):
        tries = int(row["_attempts"]) + 1
        attempts.append(tries)
        statuses.append("succeeded" if ok else "rejected" if tries >= sync.max_attempts else "failed")
    for event, (ok, error, _), status in zip(events, outcome, statuses, strict=True):
        if not ok:
            result.error(f"{status} {event['messageId']}: {error}")
    answers = pa.table({
        "message_id": pa.array([str(row["message_id"]) for row in rows], pa.string()),
        "loaded_at": pa.array([row["loaded_at"] for row in rows], pa.timestamp("us")),
        "status": pa.array(statuses, pa.string()),
        "attempts": pa.array(attempts, pa.int32()),
        "error": pa.array([o[1] if not o[0] else None for o in outcome], pa.string()),
        "destination_id": pa.array([o[2] for o in outcome], pa.string()),
        "payload": pa.array([None if o[0] else json.dumps(e, default=str) for e, o in zip(events, outcome, strict=True)], pa.string()),
    })
    writer.register("answers", answers)
    writer.execute("begin transaction")
    try:
        writer.execute(
            """
            insert into corral_sync.row_log
                (run_id, sync_name, record_key, operation, status, error, destination_id, payload, logged_at, row_hash, attempts)
            select $run, $sync, message_id, 'forward', status, error, destination_id, cast(payload as json), now()::timestamp, null, attempts
            from answers
            """,
            {"run": result.run_id, "sync": sync.name},
        )
        writer.execute("delete from corral_sync.event_deliveries where sync_name = $sync and message_id in (select message_id from answers)",
                       {"sync": sync.name})
        writer.execute(
            """
            insert into corral_sync.event_deliveries
            select $sync, message_id, loaded_at, status, attempts, error, $run, now()::timestamp from answers
            """,
            {"run": result.run_id, "sync": sync.name},
        )
        writer.execute("commit")
    except Exception:
        writer.execute("rollback")
        raise
    finally:
        writer.unregister("answers")
    result.succeeded += statuses.count("succeeded")
    result.failed += statuses.count("failed")
    result.rejected += statuses.count("rejected")
