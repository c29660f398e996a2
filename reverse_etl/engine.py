"""Runs one sync: plan it in the warehouse, send what the plan says in batches, commit each
batch's answers, and record the run.

- Plan: the mart diffed against the sync's state in SQL (reverse_etl/state.py): added,
  changed, removed, unchanged; the sync's mode says what each becomes.
- Execute: the plan is streamed from the warehouse as Arrow batches of the destination's
  batch size (never all rows in Python), sent by up to `max_concurrency` workers paced by a
  token bucket at the destination's declared rate; 429s, 5xx and timeouts back off
  exponentially with jitter, honouring Retry-After, until the sync's deadline.
- Commit: each batch's per-record answers are appended to the row log as soon as it returns
  (grouped, about once a second), so a crash loses at most the batches in flight, which the
  next run sends again; a confirmed record is never sent again for the same version. The log
  is folded into the sync's state when the run ends (or when the next one starts). Failures are retried on later runs, up to
  `max_attempts` runs, then reported as rejected.

The engine knows nothing of any vendor.
"""

from __future__ import annotations

import random
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from concurrent.futures import FIRST_COMPLETED, Future, ThreadPoolExecutor, wait
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import datetime, timezone
from typing import Any

import duckdb
import pyarrow as pa

from reverse_etl import leases, state
from reverse_etl.destinations.base import (
    AuthorizationFailed,
    BatchRejected,
    Destination,
    RecordResult,
    RetryableError,
)
from reverse_etl.pacing import DeadlineExceeded, RetryPolicy, TokenBucket, with_retries
from reverse_etl.syncs import SyncConfigError, SyncSpec

MAX_ERRORS_KEPT = 20
SEND_ORDER = ("upsert", "insert", "update", "add", "delete", "remove")
QUEUED_PER_WORKER = 8  # batches read ahead per worker: requests keep going while answers are committed


@dataclass(frozen=True)
class EngineOptions:
    retry: RetryPolicy = RetryPolicy()
    progress_every_seconds: float = 5.0
    commit_every_rows: int = 2000
    commit_every_seconds: float = 1.0
    seed: int | None = None
    sleep: Callable[[float], None] = time.sleep


@dataclass
class SyncRunResult:
    sync: str
    run_id: str = ""
    status: str = "running"
    dry_run: bool = False
    full: bool = False
    changes: dict[str, int] = field(default_factory=dict)
    operations: dict[str, int] = field(default_factory=dict)
    planned: int = 0
    sent: int = 0
    succeeded: int = 0
    failed: int = 0
    rejected: int = 0
    skipped: int = 0
    requests_retried: int = 0
    stopped: bool = False  # the run stopped before sending everything (deadline, refused credentials)
    duration_seconds: float = 0.0
    errors: list[str] = field(default_factory=list)
    samples: dict[str, list[dict[str, Any]]] = field(default_factory=dict)
    metadata: dict[str, Any] = field(default_factory=dict)

    def error(self, message: str) -> None:
        if len(self.errors) < MAX_ERRORS_KEPT:
            self.errors.append(message)


def prepare_connection(con: duckdb.DuckDBPyConnection, memory_limit: str = "64MB") -> None:
    """Set up a connection for syncing: the state tables exist, and DuckDB's working memory is
    capped (plans of millions of rows spill to disk rather than grow the process)."""
    con.execute(f"set memory_limit = '{memory_limit}'")
    con.execute("set preserve_insertion_order = false")  # plans are streamed in no particular order; spares memory
    con.execute("set enable_progress_bar = false")
    con.execute(state.DDL)


def check_columns(con: duckdb.DuckDBPyConnection, sync: SyncSpec) -> None:
    """Every mapped column must exist in the mart; fail naming the sync and the column."""
    try:
        columns = {row[0] for row in con.execute(f"describe select * from {sync.relation}").fetchall()}
    except duckdb.Error as exc:
        raise SyncConfigError(f"sync {sync.name!r}: cannot read model {sync.model!r} ({sync.relation}); build it first ({exc})") from exc
    missing = [column for column in sync.mapping if column not in columns]
    if missing:
        raise SyncConfigError(
            f"sync {sync.name!r}: model {sync.model!r} has no column(s) {', '.join(map(repr, missing))} "
            f"named in its mapping (columns: {', '.join(sorted(columns))})"
        )


def run_sync(
    con: duckdb.DuckDBPyConnection,
    sync: SyncSpec,
    destination: Destination,
    dry_run: bool = False,
    full: bool = False,
    options: EngineOptions = EngineOptions(),
    echo: Callable[[str], None] | None = None,
) -> SyncRunResult:
    """Plan, send and commit one sync; the result says what happened. Configuration problems
    raise SyncConfigError before anything is sent."""
    destination.check(sync)
    check_columns(con, sync)
    state.check_keys(con, sync)
    con.execute(state.DDL)
    result = SyncRunResult(sync=sync.name, run_id=uuid.uuid4().hex, dry_run=dry_run, full=full)
    # answers of a run that stopped before folding them (a crash) count first; this run's, at its end
    with recorded_run(con, result, sync.deadline_seconds, settle=lambda: state.fold(con, sync)) as clock:
        result.changes = state.build_plan(con, sync, full, keep_unchanged=destination.capabilities.snapshot)
        result.operations = state.operation_counts(con, sync)
        sendable = {op: n for op, n in result.operations.items() if op not in ("baseline", "forget")}
        result.planned = sum(sendable.values())
        result.skipped = result.changes.get("rejected", 0) if not full else 0
        if dry_run:
            result.samples = _samples(con, sync, sendable)
        elif destination.capabilities.snapshot:
            _send_snapshot(con, sync, destination, result)
        else:
            state.apply_silent(con, sync)
            _send_plan(con, sync, destination, sendable, result, options, echo, clock)
    return result


def _samples(con: duckdb.DuckDBPyConnection, sync: SyncSpec, operations: dict[str, int]) -> dict[str, list[dict[str, Any]]]:
    columns = ", ".join(["record_key", *(state.quote(t) for t in sync.mapping.values())])
    return {
        op: con.sql(
            f"select {columns} from {state.plan_table(sync)} where operation = $op order by record_key limit 5", params={"op": op}
        ).to_arrow_table().to_pylist()
        for op in operations
    }


def _send_snapshot(con: duckdb.DuckDBPyConnection, sync: SyncSpec, destination: Destination, result: SyncRunResult) -> None:
    """Snapshot destinations (files) take every current row, and only when something changed."""
    if not result.planned and not result.full and destination.snapshot_exists(sync):
        return
    columns = ", ".join(["record_key", *(state.quote(t) for t in sync.mapping.values())])
    order = state.quote(sync.mapping[sync.primary_key])
    reader = con.sql(f"select {columns} from {state.plan_table(sync)} where row_hash is not null order by {order}") \
        .to_arrow_reader(destination.capabilities.batch_size)
    success = False
    try:
        destination.open(sync, _payload_schema(reader.schema))
        for batch in reader:
            payload = batch.select(batch.schema.names[1:])
            result.sent += payload.num_rows
            destination.send(payload, sync.mapping[sync.primary_key], "upsert")
        success = True
    finally:
        reader.close()
        result.metadata = destination.close(success=success)
    state.commit_snapshot(con, sync)
    result.succeeded = result.sent
    result.planned = result.sent


def _payload_schema(schema: pa.Schema) -> pa.Schema:
    return pa.schema([f for f in schema if f.name != "record_key"])


def _send_plan(
    con: duckdb.DuckDBPyConnection,
    sync: SyncSpec,
    destination: Destination,
    operations: dict[str, int],
    result: SyncRunResult,
    options: EngineOptions,
    echo: Callable[[str], None] | None,
    clock: float,
) -> None:
    caps = destination.capabilities
    bucket = TokenBucket(caps.requests_per_second, caps.burst) if caps.requests_per_second else None
    deadline = clock + sync.deadline_seconds
    rng = random.Random(options.seed)
    commits = _Committer(con.cursor(), sync, result, options)  # commits on their own cursor while the plan streams on `con`
    success = False
    destination.open(sync, pa.schema([]))
    last_progress = time.monotonic()
    try:
        with ThreadPoolExecutor(max_workers=caps.max_concurrency, thread_name_prefix=f"sync-{sync.name}") as pool:
            in_flight: dict[Future[list[RecordResult]], tuple[str, pa.RecordBatch]] = {}
            for operation, batch in _batches(con, sync, operations, caps.batch_size):
                if commits.stop:
                    break
                if len(in_flight) >= caps.max_concurrency * QUEUED_PER_WORKER:
                    commits.collect(in_flight)
                payload = batch.select(["destination_id", *sync.mapping.values()])

                def call(payload: pa.RecordBatch = payload, operation: str = operation) -> list[RecordResult]:
                    if commits.stopped.is_set():  # checked after pacing, right before the request
                        raise NotSent("the sync stopped before this batch was sent")
                    try:
                        return destination.send(payload, sync.mapping[sync.primary_key], operation)
                    except AuthorizationFailed:
                        commits.stopped.set()  # at once, not when the answer is committed
                        raise

                in_flight[pool.submit(_attempt, call, options, bucket, deadline, rng, result)] = (operation, batch)
                result.sent += batch.num_rows
                if echo is not None and time.monotonic() - last_progress >= options.progress_every_seconds:
                    last_progress = time.monotonic()
                    echo(f"{sync.name}: {result.succeeded + result.failed + result.rejected:,} of {result.planned:,} answered, "
                         f"{result.failed + result.rejected:,} failed")
                if commits.stop:
                    _abandon(in_flight, result)
            while in_flight:
                commits.collect(in_flight)
                if commits.stop:
                    _abandon(in_flight, result)
        commits.close()
        result.stopped = commits.stop  # deadline or refused credentials: records left pending make the run a failure
        success = result.failed == 0 and result.rejected == 0 and not commits.stop
    finally:
        commits.close()
        result.metadata = destination.close(success=success)


def _abandon(in_flight: dict[Future[list[RecordResult]], tuple[str, pa.RecordBatch]], result: SyncRunResult) -> None:
    """The sync stops: batches not yet started are not sent (they stay pending for the next
    run); requests already under way finish and are committed."""
    for future in list(in_flight):
        if future.cancel():
            result.sent -= in_flight.pop(future)[1].num_rows


def _batches(con: duckdb.DuckDBPyConnection, sync: SyncSpec, operations: dict[str, int], size: int) -> Iterator[tuple[str, pa.RecordBatch]]:
    columns = ", ".join([*state.BOOKKEEPING[:-1], "destination_id", *(state.quote(t) for t in sync.mapping.values())])
    for operation in sorted(operations, key=SEND_ORDER.index):
        reader = con.sql(
            f"select {columns} from {state.plan_table(sync)} where operation = $op", params={"op": operation}  # unsorted: no sort to hold
        ).to_arrow_reader(size)
        try:
            for batch in reader:
                yield operation, batch
        finally:
            reader.close()


def _attempt(call: Callable[[], list[RecordResult]], options: EngineOptions, bucket: TokenBucket | None,
             deadline: float, rng: random.Random, result: SyncRunResult) -> list[RecordResult]:
    def counted(error: RetryableError, wait: float) -> None:
        result.requests_retried += 1

    return with_retries(call, options.retry, bucket, deadline, rng, sleep=options.sleep, on_retry=counted)


class NotSent(Exception):
    """A batch the sync stopped before sending; its records stay pending."""


class _Committer:
    """Turns finished batches into state: answers are grouped and written together (a commit
    costs about the same for one batch or twenty), at least every `commit_every_seconds`, while
    up to QUEUED_PER_WORKER batches per worker keep requests going. A crash loses only the
    answers not yet written; those records are sent again next run."""

    def __init__(self, cursor: duckdb.DuckDBPyConnection, sync: SyncSpec, result: SyncRunResult, options: EngineOptions) -> None:
        self.cursor, self.sync, self.result, self.options = cursor, sync, result, options
        self.pending: list[pa.Table] = []
        self.pending_rows = 0
        self.last_flush = time.monotonic()
        self.stop = False
        self.stopped = threading.Event()  # seen by the workers: batches not yet sent are not sent
        self.closed = False

    def collect(self, in_flight: dict[Future[list[RecordResult]], tuple[str, pa.RecordBatch]]) -> None:
        """Wait for a batch to finish, but not past the next commit time: answers already in
        are written even while other requests hang."""
        due = self.last_flush + self.options.commit_every_seconds - time.monotonic()
        done, _ = wait(list(in_flight), timeout=max(0.0, due) if self.pending else None, return_when=FIRST_COMPLETED)
        for future in [f for f in in_flight if f in done]:  # in the order they were sent
            operation, batch = in_flight.pop(future)
            self._answered(operation, batch, future)
        if self.pending_rows >= self.options.commit_every_rows or time.monotonic() - self.last_flush >= self.options.commit_every_seconds:
            self.flush()

    def _answered(self, operation: str, batch: pa.RecordBatch, future: Future[list[RecordResult]]) -> None:
        keys = batch.column("record_key").to_pylist()
        try:
            answers = future.result()
            if len(answers) != len(keys):
                raise BatchRejected(f"the destination answered {len(answers)} records for a batch of {len(keys)}")
            outcome = [(a.ok, a.error, a.destination_id) for a in answers]
        except NotSent:
            self.result.sent -= len(keys)  # stays pending for the next run
            return
        except DeadlineExceeded as exc:
            self.stop = True
            self.stopped.set()
            self.result.sent -= len(keys)
            self.result.error(f"deadline: {exc}; {len(keys):,} records of this batch were not sent and stay pending")
            return
        except AuthorizationFailed as exc:
            self.stop = True  # every further request would be refused the same way
            self.stopped.set()
            self.result.error(f"stopped: {exc}")
            outcome = [(False, str(exc), None)] * len(keys)
        except (RetryableError, BatchRejected) as exc:
            outcome = [(False, str(exc), None)] * len(keys)
        for key, (ok, error, _) in zip(keys, outcome, strict=True):
            if not ok:
                self.result.error(f"{operation} {key}: {error}")
        table = pa.Table.from_batches([batch]).rename_columns(
            ["previous_destination_id" if name == "destination_id" else name for name in batch.schema.names]
        )
        table = table.append_column("operation", pa.array([operation] * len(keys), pa.string()))
        table = table.append_column("ok", pa.array([o[0] for o in outcome], pa.bool_()))
        table = table.append_column("error", pa.array([o[1] for o in outcome], pa.string()))
        table = table.append_column("destination_id", pa.array([o[2] for o in outcome], pa.string()))
        self.pending.append(table)
        self.pending_rows += len(keys)

    def flush(self) -> None:
        if not self.pending:
            return
        answers = pa.concat_tables(self.pending, promote_options="permissive")
        self.pending, self.pending_rows, self.last_flush = [], 0, time.monotonic()
        counts = state.commit_answers(self.cursor, self.sync, self.result.run_id, answers, self.sync.max_attempts)
        self.result.succeeded += counts["succeeded"]
        self.result.failed += counts["failed"]
        self.result.rejected += counts["rejected"]

    def close(self) -> None:
        """Write what is left and wait for it (once; later calls do nothing)."""
        if self.closed:
            return
        self.closed = True
        try:
            self.flush()
        finally:
            self.cursor.close()


@contextmanager
def recorded_run(
    con: duckdb.DuckDBPyConnection, result: SyncRunResult, deadline_seconds: float, settle: Callable[[], None] | None = None
) -> Iterator[float]:
    """The bookkeeping around every run, record syncs and event syncs alike: take the sync's
    lease (one run at a time; SyncAlreadyRunning otherwise, before anything is read), `settle`
    (if given) before the run row is written and again when the body ends, however it ends; the
    run row, marked failed with the error when the body raises; the lease given back. Yields
    the run's monotonic start time. The body fills `result`; its status is set here."""
    clock = time.monotonic()
    leases.acquire(con, result.sync, result.run_id, deadline_seconds)
    try:
        if settle is not None:
            settle()
        start_run(con, result, datetime.now(timezone.utc).replace(tzinfo=None))
        try:
            yield clock
            result.status = "failed" if (result.failed or result.rejected or result.stopped) else "success"
        except Exception as exc:
            result.status = "failed"
            result.errors.insert(0, f"{type(exc).__name__}: {exc}")
            raise
        finally:
            try:
                if settle is not None:
                    settle()
            finally:
                result.duration_seconds = time.monotonic() - clock
                finish_run(con, result)
    finally:
        leases.release(con, result.sync, result.run_id)


def start_run(con: duckdb.DuckDBPyConnection, result: SyncRunResult, started: datetime) -> None:
    con.execute(
        "insert into corral_sync.runs (run_id, sync_name, started_at, status, dry_run, full_resync, planned, added, changed,"
        " removed, unchanged, sent, succeeded, failed, rejected, skipped, state_folded)"
        " values (?, ?, ?, 'running', ?, ?, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, false)",
        [result.run_id, result.sync, started, result.dry_run, result.full],
    )


def finish_run(con: duckdb.DuckDBPyConnection, result: SyncRunResult) -> None:
    c = result.changes
    con.execute(
        """
        update corral_sync.runs set finished_at = now()::timestamp, status = ?, planned = ?, added = ?, changed = ?,
            removed = ?, unchanged = ?, sent = ?, succeeded = ?, failed = ?, rejected = ?, skipped = ?,
            duration_seconds = ?, error = ?
        where run_id = ?
        """,
        [result.status, result.planned, c.get("added", 0), c.get("changed", 0), c.get("removed", 0), c.get("unchanged", 0),
         result.sent, result.succeeded, result.failed, result.rejected, result.skipped, result.duration_seconds,
         "\n".join(result.errors) or None, result.run_id],
    )
