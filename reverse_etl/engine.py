"""Runs one sync: check it against the warehouse, stream the mart in batches through the
destination, and record the run in `corral_sync.sync_runs`.

The engine knows nothing of any vendor. Reads are streamed from the warehouse as Arrow record
batches of the destination's batch size, never materialized whole in Python.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from datetime import datetime, timezone
from typing import Any

import duckdb

from reverse_etl.destinations.base import Destination
from reverse_etl.syncs import SyncConfigError, SyncSpec

SYNC_DDL = """
create schema if not exists corral_sync;
create table if not exists corral_sync.sync_runs (
    sync_name varchar not null,
    started_at timestamp not null,
    finished_at timestamp not null,
    status varchar not null,
    dry_run boolean not null,
    rows_planned bigint not null,
    rows_sent bigint not null,
    rows_succeeded bigint not null,
    rows_failed bigint not null,
    duration_seconds double not null,
    error varchar
);
"""
MAX_ERRORS_KEPT = 20


@dataclass
class SyncRunResult:
    sync: str
    status: str = "running"
    dry_run: bool = False
    planned: int = 0
    sent: int = 0
    succeeded: int = 0
    failed: int = 0
    duration_seconds: float = 0.0
    errors: list[str] = field(default_factory=list)
    metadata: dict[str, Any] = field(default_factory=dict)


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
    con: duckdb.DuckDBPyConnection, sync: SyncSpec, destination: Destination, dry_run: bool = False
) -> SyncRunResult:
    destination.check(sync)
    check_columns(con, sync)
    con.execute(SYNC_DDL)
    started = datetime.now(timezone.utc).replace(tzinfo=None)
    clock = time.monotonic()
    result = SyncRunResult(sync=sync.name, dry_run=dry_run)
    select = ", ".join(f'"{column}" as "{target}"' for column, target in sync.mapping.items())
    query = f"select {select} from {sync.relation} order by \"{sync.primary_key}\""
    key = sync.mapping[sync.primary_key]
    try:
        if dry_run:
            result.planned = con.execute(f"select count(*) from {sync.relation}").fetchone()[0]
        else:
            _send_all(con, query, sync, destination, key, result)
        result.status = "failed" if result.failed else "success"
    except Exception as exc:
        result.status = "failed"
        result.errors.insert(0, f"{type(exc).__name__}: {exc}")
        raise
    finally:
        result.duration_seconds = time.monotonic() - clock
        _record(con, result, started)
    return result


def _send_all(
    con: duckdb.DuckDBPyConnection, query: str, sync: SyncSpec, destination: Destination, key: str, result: SyncRunResult
) -> None:
    reader = con.sql(query).to_arrow_reader(destination.capabilities.batch_size)
    success = False
    try:
        destination.open(sync, reader.schema)
        for batch in reader:
            result.planned += batch.num_rows
            result.sent += batch.num_rows
            for record in destination.send(batch, key):
                if record.ok:
                    result.succeeded += 1
                else:
                    result.failed += 1
                    if len(result.errors) < MAX_ERRORS_KEPT:
                        result.errors.append(f"{record.key}: {record.error}")
        success = result.failed == 0
    finally:
        reader.close()
        result.metadata = destination.close(success=success)


def _record(con: duckdb.DuckDBPyConnection, result: SyncRunResult, started: datetime) -> None:
    con.execute(
        "insert into corral_sync.sync_runs values (?, ?, now()::timestamp, ?, ?, ?, ?, ?, ?, ?, ?)",
        [
            result.sync,
            started,
            result.status,
            result.dry_run,
            result.planned,
            result.sent,
            result.succeeded,
            result.failed,
            result.duration_seconds,
            "\n".join(result.errors) or None,
        ],
    )
