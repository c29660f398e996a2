"""One run at a time per sync (reverse_etl/leases.py): a second run of a sync that is running is
refused before it reads or sends anything, naming the run that holds it, while other syncs go;
the lease is given back however the run ends; a lease left by a dead process or past its expiry
is taken over."""

from __future__ import annotations

import socket
import subprocess
import sys
import threading
from collections.abc import Iterator
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any

import duckdb
import httpx
import pytest
from fakes.segment import WRITE_KEY, FakeSegment
from fakes.segment import serve as serve_segment
from test_event_forwarding import FAST, PROFILE_EVENTS_DDL, T0, land, spec

from reverse_etl import leases, state
from reverse_etl.destinations.base import RecordResult
from reverse_etl.destinations.file import FileDestination
from reverse_etl.destinations.segment import SegmentDestination
from reverse_etl.engine import SyncRunResult, run_sync
from reverse_etl.events import run_event_sync
from reverse_etl.leases import SyncAlreadyRunning
from reverse_etl.syncs import SyncSpec


@pytest.fixture
def con(tmp_path: Path) -> Iterator[duckdb.DuckDBPyConnection]:
    con = duckdb.connect(str(tmp_path / "warehouse.duckdb"))
    con.execute(PROFILE_EVENTS_DDL)
    con.execute(state.DDL)
    yield con
    con.close()


@pytest.fixture
def segment() -> Iterator[FakeSegment]:
    with serve_segment(FakeSegment()) as fake:
        yield fake


class Gate:
    """Holds a destination's first send until opened, and says when a send is waiting."""

    def __init__(self) -> None:
        self.waiting = threading.Event()
        self.open = threading.Event()

    def __call__(self) -> None:
        self.waiting.set()
        assert self.open.wait(10), "the gate was never opened"


class GatedSegment(SegmentDestination):
    gate: Gate

    def send_events(self, events: list[dict[str, Any]], encoded: list[bytes]) -> list[RecordResult]:
        self.gate()
        return super().send_events(events, encoded)


class GatedFile(FileDestination):
    gate: Gate

    def send(self, batch: Any, key_column: str, operation: str = "upsert") -> list[RecordResult]:
        self.gate()
        return super().send(batch, key_column, operation)


def segment_env(fake: FakeSegment) -> dict[str, str]:
    return {"SEGMENT_BASE_URL": fake.url, "SEGMENT_WRITE_KEY": WRITE_KEY}


def in_thread(target: Any) -> tuple[threading.Thread, dict[str, Any]]:
    out: dict[str, Any] = {}

    def run() -> None:
        try:
            out["result"] = target()
        except BaseException as exc:  # noqa: BLE001 - handed to the test
            out["error"] = exc

    thread = threading.Thread(target=run)
    thread.start()
    return thread, out


def test_a_second_run_of_a_running_event_sync_is_refused_and_sends_nothing(con: duckdb.DuckDBPyConnection, segment: FakeSegment) -> None:
    ids = land(con, 1, 30, T0)
    gate = Gate()
    with httpx.Client(timeout=5) as client:
        first = GatedSegment(segment_env(segment), client)
        first.gate = gate
        thread, out = in_thread(lambda: run_event_sync(con.cursor(), spec(), first, options=FAST))
        assert gate.waiting.wait(10)  # the first run holds the lease and is about to send
        with pytest.raises(SyncAlreadyRunning, match=r"sync 'events_out' is already running \(run [0-9a-f]{32}, since .* process \d+ on "):
            run_event_sync(con.cursor(), spec(), SegmentDestination(segment_env(segment), client), options=FAST)
        other = run_event_sync(con.cursor(), spec(name="other_events"), SegmentDestination(segment_env(segment), client), options=FAST)
        assert (other.status, other.succeeded) == ("success", 30)  # another sync is not held up
        gate.open.set()
        thread.join(20)
        result: SyncRunResult = out["result"]
        assert (result.status, result.succeeded) == ("success", 30)
        assert segment.message_ids() == ids + ids  # each sync delivered each event once: the refused run sent nothing
        # the lease went with the run: the next run starts, and has nothing to send
        again = run_event_sync(con.cursor(), spec(), SegmentDestination(segment_env(segment), client), options=FAST)
        assert (again.status, again.planned) == ("success", 0)
    runs = con.execute("select count(*) from corral_sync.runs where sync_name = 'events_out'").fetchone()[0]
    assert runs == 2  # the refused run left no trace in the run history
    assert con.execute("select count(*) from corral_sync.sync_leases").fetchone()[0] == 0


def record_sync(con: duckdb.DuckDBPyConnection, tmp_path: Path) -> SyncSpec:
    con.execute("create table members as select 'p' || i as profile_id, 'p' || i || '@example.com' as email from range(50) t(i)")
    return SyncSpec(name="members_to_file", model="members", relation="main.members", destination="file", mode="mirror",
                    primary_key="profile_id", mapping={"profile_id": "profile_id", "email": "email"},
                    settings={"filename": "members.csv", "directory": str(tmp_path / "exports")})


def test_a_second_run_of_a_running_record_sync_is_refused(con: duckdb.DuckDBPyConnection, tmp_path: Path) -> None:
    sync = record_sync(con, tmp_path)
    gate = Gate()
    first = GatedFile({})
    first.gate = gate
    thread, out = in_thread(lambda: run_sync(con.cursor(), sync, first, options=FAST))
    assert gate.waiting.wait(10)
    with pytest.raises(SyncAlreadyRunning, match="sync 'members_to_file' is already running"):
        run_sync(con.cursor(), sync, FileDestination({}), options=FAST)
    with pytest.raises(SyncAlreadyRunning):  # a dry run would build the same plan table: refused too
        run_sync(con.cursor(), sync, FileDestination({}), dry_run=True, options=FAST)
    gate.open.set()
    thread.join(20)
    assert out["result"].status == "success" and out["result"].succeeded == 50
    assert (tmp_path / "exports" / "members.csv").read_text().count("\n") == 51
    assert run_sync(con.cursor(), sync, FileDestination({}), options=FAST).status == "success"


def test_the_lease_is_given_back_when_a_run_fails(con: duckdb.DuckDBPyConnection, tmp_path: Path) -> None:
    sync = record_sync(con, tmp_path)

    class Broken(FileDestination):
        def send(self, batch: Any, key_column: str, operation: str = "upsert") -> list[RecordResult]:
            raise OSError("disk full")

    with pytest.raises(OSError, match="disk full"):
        run_sync(con, sync, Broken({}), options=FAST)
    assert con.execute("select count(*) from corral_sync.sync_leases").fetchone()[0] == 0
    assert run_sync(con, sync, FileDestination({}), options=FAST).status == "success"


def hold(con: duckdb.DuckDBPyConnection, name: str, host: str, pid: int, expires_at: datetime) -> None:
    con.execute("insert into corral_sync.sync_leases values (?, 'r-old', ?, ?, ?, ?)", [name, host, pid, expires_at - timedelta(hours=1), expires_at])


def utcnow() -> datetime:
    return datetime.now(timezone.utc).replace(tzinfo=None)


def dead_pid() -> int:
    process = subprocess.Popen([sys.executable, "-c", "pass"])
    process.wait()
    return process.pid


def test_a_lease_left_by_a_dead_process_on_this_host_is_taken_over(con: duckdb.DuckDBPyConnection, segment: FakeSegment) -> None:
    land(con, 1, 5, T0)
    hold(con, "events_out", socket.gethostname(), dead_pid(), utcnow() + timedelta(hours=1))
    with httpx.Client(timeout=5) as client:
        result = run_event_sync(con, spec(), SegmentDestination(segment_env(segment), client), options=FAST)
    assert (result.status, result.succeeded) == ("success", 5)
    assert con.execute("select count(*) from corral_sync.sync_leases").fetchone()[0] == 0


def test_a_live_lease_from_another_host_is_respected_until_it_expires(con: duckdb.DuckDBPyConnection, segment: FakeSegment) -> None:
    land(con, 1, 5, T0)
    hold(con, "events_out", "another-host", 1, utcnow() + timedelta(hours=1))  # its pid means nothing here
    with httpx.Client(timeout=5) as client:
        with pytest.raises(SyncAlreadyRunning, match="process 1 on another-host"):
            run_event_sync(con, spec(), SegmentDestination(segment_env(segment), client), options=FAST)
        assert segment.requests == 0
        con.execute("update corral_sync.sync_leases set expires_at = ?", [utcnow() - timedelta(seconds=1)])
        result = run_event_sync(con, spec(), SegmentDestination(segment_env(segment), client), options=FAST)
    assert (result.status, result.succeeded) == ("success", 5)


def test_of_runs_racing_for_a_lease_exactly_one_gets_it(con: duckdb.DuckDBPyConnection) -> None:
    for round_number in range(20):
        barrier = threading.Barrier(4)
        outcomes: list[str] = []

        def take(n: int, cursor: duckdb.DuckDBPyConnection, barrier: threading.Barrier = barrier, outcomes: list[str] = outcomes,
                 round_number: int = round_number) -> None:
            barrier.wait()
            try:
                leases.acquire(cursor, "raced", f"r{round_number}-{n}", 60)
                outcomes.append("won")
            except SyncAlreadyRunning:
                outcomes.append("refused")

        threads = [threading.Thread(target=take, args=(n, con.cursor())) for n in range(4)]
        for t in threads:
            t.start()
        for t in threads:
            t.join(10)
        assert sorted(outcomes) == ["refused", "refused", "refused", "won"]
        (holder,) = con.execute("select run_id from corral_sync.sync_leases where sync_name = 'raced'").fetchone()
        leases.release(con, "raced", holder)
