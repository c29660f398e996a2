"""An event sync killed (SIGKILL) mid-run loses nothing and resends nothing confirmed: each
batch's answers are committed when it returns, so the next run starts right after the last
confirmed batch; only the batch in flight at the kill goes again, under the same message ids."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from datetime import datetime
from pathlib import Path
from typing import Any

import duckdb
import httpx
import pytest
from fakes.segment import WRITE_KEY, FakeSegment, serve
from test_event_forwarding import FAST, PROFILE_EVENTS_DDL, land, spec

from reverse_etl.destinations.event_base import make_event_destination
from reverse_etl.events import run_event_sync

FORWARDING = """
import sys, duckdb, httpx
sys.path.insert(0, sys.argv[4])
from test_event_forwarding import spec
from reverse_etl.destinations.event_base import make_event_destination
from reverse_etl.events import run_event_sync
con = duckdb.connect(sys.argv[1])
env = {"SEGMENT_BASE_URL": sys.argv[2], "SEGMENT_WRITE_KEY": sys.argv[3]}
run_event_sync(con, spec(settings={"batch_size": 10}, deadline_seconds=120.0), make_event_destination("segment", env, httpx.Client(timeout=60)))
"""


@pytest.mark.slow
def test_an_event_sync_killed_mid_run_resumes_after_the_last_confirmed_batch(tmp_path: Path) -> None:
    path = tmp_path / "warehouse.duckdb"
    with duckdb.connect(str(path)) as setup:
        setup.execute(PROFILE_EVENTS_DDL)
        ids = land(setup, 1, 100, datetime(2026, 11, 1, 12))
    with serve(FakeSegment()) as fake:
        original = fake.handle
        answered: list[int] = []

        def hang_after_four(method: str, target: str, headers: Any, body: bytes) -> Any:
            outcome = original(method, target, headers, body)
            answered.append(outcome[0])
            return (*outcome[:3], 30.0 if len(answered) > 4 else 0.0)  # the fifth batch arrives but its answer never comes back

        fake.handle = hang_after_four  # type: ignore[method-assign]
        tests = str(Path(__file__).resolve().parent)
        process = subprocess.Popen([sys.executable, "-c", FORWARDING, str(path), fake.url, WRITE_KEY, tests],
                                   env={**os.environ, "PYTHONPATH": os.pathsep.join([str(Path(tests).parent), tests])})
        deadline = time.monotonic() + 60
        while len(answered) < 5 and time.monotonic() < deadline:
            time.sleep(0.05)
        time.sleep(0.5)
        process.send_signal(signal.SIGKILL)
        process.wait()
        fake.handle = original  # type: ignore[method-assign]
        assert fake.message_ids() == ids[:50]  # four batches confirmed, the fifth received but unanswered
        with duckdb.connect(str(path)) as con:
            confirmed = [m for (m,) in con.execute("select message_id from corral_sync.event_deliveries where status = 'succeeded'"
                                                   " order by message_id desc").fetchall()]
            assert confirmed == ids[:40]
            with httpx.Client(timeout=5) as client:
                env = {"SEGMENT_BASE_URL": fake.url, "SEGMENT_WRITE_KEY": WRITE_KEY}
                resumed = run_event_sync(con, spec(settings={"batch_size": 10}), make_event_destination("segment", env, client), options=FAST)
            assert (resumed.status, resumed.succeeded) == ("success", 60)
        assert fake.message_ids() == ids[:50] + ids[40:]  # only the batch in flight went twice (same ids: the receiver dedupes)
        assert list(fake.events()) == ids
