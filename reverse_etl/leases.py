"""One run at a time per sync: a lease row in `corral_sync.sync_leases`, taken before a run
reads or writes the sync's state and given back when it ends.

Two runs of the same sync at once (a schedule and a hand-started run, two `corral sync`s, the
forwarding sensor and a backfill) would each plan from the same state and send the same rows,
and an event sync's two cursors would race. The second run is refused with SyncAlreadyRunning,
naming the run that holds the lease, before it reads anything; other syncs are not affected.

A lease is taken by inserting the row (the sync name is the primary key, so of two runs racing
only one insert commits). A lease left by a run that died is taken over when its process is
gone (same host: the pid no longer runs) or when it has expired (`expires_at`: the run's
deadline plus a margin for committing and folding; any host).
"""

from __future__ import annotations

import os
import socket
from collections.abc import Iterator
from contextlib import contextmanager, suppress
from datetime import datetime, timedelta, timezone

import duckdb

DDL = """
create schema if not exists corral_sync;
create table if not exists corral_sync.sync_leases (
    sync_name varchar primary key,
    run_id varchar not null,
    host varchar not null,
    pid integer not null,
    acquired_at timestamp not null,
    expires_at timestamp not null
);
"""
MARGIN = timedelta(minutes=10)  # beyond the run's deadline: committing answers, folding state


class SyncAlreadyRunning(RuntimeError):
    """Another run of the same sync holds its lease."""


def _now() -> datetime:
    return datetime.now(timezone.utc).replace(tzinfo=None)


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # someone else's process: alive
        return True
    return True


def _stale(host: str, pid: int, expires_at: datetime, now: datetime) -> bool:
    return expires_at < now or (host == socket.gethostname() and pid != os.getpid() and not _alive(pid))


def acquire(con: duckdb.DuckDBPyConnection, sync_name: str, run_id: str, deadline_seconds: float) -> None:
    """Take the sync's lease for this run, or raise SyncAlreadyRunning. The table is created
    with the sync state (state.DDL), once, before runs go side by side."""
    now = _now()
    holder = con.execute(
        "select run_id, host, pid, acquired_at, expires_at from corral_sync.sync_leases where sync_name = ?", [sync_name]
    ).fetchone()
    if holder is not None and not _stale(holder[1], holder[2], holder[4], now):
        raise _busy(sync_name, holder)
    row = [sync_name, run_id, socket.gethostname(), os.getpid(), now, now + timedelta(seconds=deadline_seconds) + MARGIN]
    con.execute("begin transaction")
    try:
        if holder is not None:  # stale: the run that held it is gone
            con.execute("delete from corral_sync.sync_leases where sync_name = ? and run_id = ?", [sync_name, holder[0]])
        con.execute("insert into corral_sync.sync_leases values (?, ?, ?, ?, ?, ?)", row)
        con.execute("commit")
    except duckdb.Error:  # another run inserted first (a constraint error at insert or commit, or a write-write conflict)
        with suppress(duckdb.TransactionException):  # a failed commit has already ended the transaction
            con.execute("rollback")
        current = con.execute(
            "select run_id, host, pid, acquired_at, expires_at from corral_sync.sync_leases where sync_name = ?", [sync_name]
        ).fetchone()
        if current is None:  # the other run's insert is not committed yet
            raise SyncAlreadyRunning(f"sync {sync_name!r} is already running (another run took its lease at the same moment); not started") from None
        raise _busy(sync_name, current) from None


def release(con: duckdb.DuckDBPyConnection, sync_name: str, run_id: str) -> None:
    con.execute("delete from corral_sync.sync_leases where sync_name = ? and run_id = ?", [sync_name, run_id])


@contextmanager
def held(con: duckdb.DuckDBPyConnection, sync_name: str, run_id: str, deadline_seconds: float) -> Iterator[None]:
    acquire(con, sync_name, run_id, deadline_seconds)
    try:
        yield
    finally:
        release(con, sync_name, run_id)


def _busy(sync_name: str, holder: tuple) -> SyncAlreadyRunning:
    run_id, host, pid, acquired_at, expires_at = holder
    return SyncAlreadyRunning(
        f"sync {sync_name!r} is already running (run {run_id}, since {acquired_at:%Y-%m-%d %H:%M:%S} UTC, process {pid} on {host}); "
        f"not started. A lease left by a crashed run is taken over once its process is gone or at {expires_at:%Y-%m-%d %H:%M:%S} UTC"
    )
