"""Segment-format forwarding received by Corral's own collector (`corral collect` in its own
process, as in tests/test_collector.py): what one Corral forwards, another loads into
raw.events with the same message ids, event names, properties, user ids and timestamps; a
resend (the same message ids) is loaded once."""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from contextlib import closing
from datetime import datetime
from pathlib import Path

import duckdb
import httpx
import pytest
from collector_process import CollectorProcess
from test_event_forwarding import FAST, PROFILE_EVENTS_DDL, land, spec

from loaders.home import CorralHome
from loaders.load import load_landing
from loaders.warehouse import connect
from reverse_etl.destinations.event_base import make_event_destination
from reverse_etl.events import run_event_sync

pytestmark = pytest.mark.slow


@pytest.fixture
def collector(tmp_path: Path) -> Iterator[CollectorProcess]:
    process = CollectorProcess(tmp_path / "receiving", extra_env={"CORRAL_SEGMENT_MAX_AGE_SECONDS": "0.2"}).start()
    yield process
    process.stop()


def loaded(collector: CollectorProcess) -> list[tuple[object, ...]]:
    home = CorralHome(collector.home)
    deadline = time.monotonic() + 10
    while any(home.landing.rglob("*.open")) and time.monotonic() < deadline:
        time.sleep(0.05)
    with closing(connect(home)) as con:
        load_landing(con, home.landing)
        return con.execute("select message_id, type, event, user_id, properties, original_timestamp from raw.events order by message_id").fetchall()


def test_corral_forwards_to_a_corral_collector(tmp_path: Path, collector: CollectorProcess) -> None:
    con = duckdb.connect(str(tmp_path / "sending.duckdb"))
    con.execute(PROFILE_EVENTS_DDL)
    ids = land(con, 1, 12, datetime(2026, 11, 1, 12))
    env = {"SEGMENT_BASE_URL": collector.url, "SEGMENT_WRITE_KEY": "server-key"}
    with httpx.Client(timeout=5) as client:
        run = run_event_sync(con, spec(), make_event_destination("segment", env, client), options=FAST)
        assert (run.status, run.succeeded) == ("success", 12)
        con.execute("delete from corral_sync.event_deliveries; delete from corral_sync.event_cursors")  # forget: everything goes again
        assert run_event_sync(con, spec(), make_event_destination("segment", env, client), options=FAST).succeeded == 12
    rows = loaded(collector)
    assert [r[0] for r in rows] == sorted(ids)  # each message once: the receiving loader dedupes the resend by message id
    first = next(r for r in rows if r[0] == ids[0])
    assert first[1:4] == ("track", "Order Completed", "u1")
    assert json.loads(first[4])["revenue"] == 1
    assert str(first[5]).startswith("2026-11-01 11:55:01")
