"""Sessions and page views: incremental builds with late events equal a full refresh, and equal
a plain Python reading of the gap rule; sessions follow a visitor who identifies later."""

from __future__ import annotations

import json
import os
from collections.abc import Iterable
from contextlib import closing
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

import duckdb
import pytest
from hypothesis import HealthCheck, Phase, given, settings
from hypothesis import strategies as st

from dagster_defs.dbt_runner import run_dbt
from loaders.home import CorralHome
from loaders.load import load_files
from loaders.warehouse import connect

pytestmark = pytest.mark.slow
BASE = datetime(2026, 3, 1, 8, 0)
MODELS = ["+sessions", "+page_views", "--indirect-selection", "cautious"]  # tests of these models only
TIMEOUT = timedelta(minutes=30)


def message(anonymous_id: str, minute: float, kind: str = "page", **fields: Any) -> dict[str, Any]:
    at = BASE + timedelta(minutes=minute)
    base: dict[str, Any] = {
        "type": kind,
        "messageId": f"{anonymous_id}-{kind}-{minute}",
        "anonymousId": anonymous_id,
        "timestamp": at.isoformat() + "Z",
        "context": {"page": {"url": f"https://www.shop.example/p/{minute}?utm_campaign=c{int(minute) % 3}"}},
    }
    if kind == "track":
        base["event"] = "Clicked"
    return {**base, **fields}


class Home:
    """A Corral home that loads batches of messages and builds the session models."""

    def __init__(self, root: Path) -> None:
        self.home = CorralHome(root / "home")
        self.batches = 0

    def load(self, messages: Iterable[dict[str, Any]]) -> None:
        path = self.home.root.parent / f"batch-{self.batches}.ndjson"
        self.batches += 1
        path.write_text("".join(json.dumps(m) + "\n" for m in messages))
        with closing(connect(self.home)) as con:
            load_files(con, [path])

    def build(self, *flags: str) -> None:
        run_dbt(self.home, ["build", "--select", *MODELS, *flags], echo=lambda line: None)

    def query(self, sql: str) -> list[tuple[Any, ...]]:
        with closing(duckdb.connect(str(self.home.warehouse), read_only=True)) as con:
            return con.execute(sql).fetchall()

    def snapshot(self) -> dict[str, list[tuple[Any, ...]]]:
        """Every column of both models but updated_at (when a row was written), in a fixed order."""
        return {
            "sessions": self.query("select * exclude (updated_at) from marts.sessions order by all"),
            "page_views": self.query("select * exclude (updated_at) from marts.page_views order by all"),
        }


def span(session: tuple[Any, ...]) -> tuple[datetime, datetime, int]:
    """A snapshot's session row as (started_at, ended_at, event_count)."""
    return session[3], session[4], session[6]


def reference_sessions(messages: list[dict[str, Any]]) -> dict[str, list[tuple[datetime, datetime, int]]]:
    """The gap rule read plainly: per anonymous id in time order, a gap over 30 minutes splits."""
    by_visitor: dict[str, list[tuple[datetime, str]]] = {}
    for m in messages:
        at = datetime.fromisoformat(m["timestamp"].rstrip("Z"))
        by_visitor.setdefault(m["anonymousId"], []).append((at, m["messageId"]))
    sessions: dict[str, list[tuple[datetime, datetime, int]]] = {}
    for visitor, events in by_visitor.items():
        events.sort()
        runs: list[list[datetime]] = []
        for at, _ in events:
            if runs and at - runs[-1][-1] <= TIMEOUT:
                runs[-1].append(at)
            else:
                runs.append([at])
        sessions[visitor] = [(run[0], run[-1], len(run)) for run in runs]
    return sessions


def test_late_events_inside_between_and_before_old_sessions(tmp_path: Path) -> None:
    home = Home(tmp_path)
    first = [message("a1", 120), message("a1", 130, "track"), message("a1", 240), message("a1", 245)]
    home.load(first)
    home.build()
    assert sorted(span(r) for r in home.snapshot()["sessions"]) == [
        (BASE + timedelta(minutes=120), BASE + timedelta(minutes=130), 2),
        (BASE + timedelta(minutes=240), BASE + timedelta(minutes=245), 2),
    ]
    late = [
        message("a1", 125),  # inside the first session
        message("a1", 160), message("a1", 190), message("a1", 220),  # bridges the two: they merge
        message("a1", 30), message("a1", 95),  # before the first: a session of its own, and one that joins
    ]
    home.load(late)
    home.build()
    incremental = home.snapshot()
    expected = reference_sessions(first + late)["a1"]
    assert sorted(span(r) for r in incremental["sessions"]) == expected
    assert len(expected) == 2  # 30 alone (65-minute gap to 95), then 95 ... 245 as one session
    home.build("--full-refresh")
    assert home.snapshot() == incremental


def test_sessions_follow_a_visitor_who_identifies_later(tmp_path: Path) -> None:
    home = Home(tmp_path)
    home.load([
        message("phone", 0), message("phone", 5),
        message("laptop", 600), message("laptop", 610, "identify", userId="kim"),
        message("phone", 2000),
    ])
    home.build()
    sessions = home.query("select anonymous_id, profile_id, session_number from marts.sessions order by anonymous_id, session_number")
    kim = {p for a, p, _ in sessions if a == "laptop"}
    phone = {p for a, p, _ in sessions if a == "phone"}
    assert kim != phone
    home.load([message("phone", 3000, "identify", userId="kim")])  # the phone's visitor logs in
    home.build()
    sessions = home.query("select anonymous_id, profile_id, session_number, started_at from marts.sessions order by started_at")
    assert {p for _, p, _, _ in sessions} == kim  # the phone's earlier sessions moved to kim
    assert [(a, n) for a, _, n, _ in sessions] == [("phone", 1), ("laptop", 2), ("phone", 3)]  # numbered across devices
    pages = home.query("select distinct profile_id from marts.page_views")
    assert {p for (p,) in pages} == kim


EXAMPLES = int(os.environ.get("CORRAL_SESSION_EXAMPLES", "2"))
visitor_minutes = st.lists(st.integers(0, 40).map(lambda step: step * 15), min_size=1, max_size=10, unique=True)


@settings(
    max_examples=EXAMPLES, deadline=None, phases=[Phase.explicit, Phase.reuse, Phase.generate],
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(
    visits=st.lists(visitor_minutes, min_size=1, max_size=6),
    batch_of=st.lists(st.integers(0, 2), min_size=60, max_size=60),
)
def test_any_sequence_of_incremental_builds_equals_the_rule_and_a_full_refresh(
    visits: list[list[int]], batch_of: list[int], tmp_path_factory: pytest.TempPathFactory
) -> None:
    """Minutes on a 15-minute grid, so gaps of exactly 30 minutes are common; messages arrive in
    up to three loads in random order of time (late events everywhere)."""
    home = Home(tmp_path_factory.mktemp("sessions"))
    messages = [
        message(f"v{v}", minute, "track" if (v + minute) % 4 == 0 else "page")
        for v, minutes in enumerate(visits) for minute in minutes
    ]
    for batch in range(3):
        chosen = [m for i, m in enumerate(messages) if batch_of[i % len(batch_of)] == batch]
        if chosen:
            home.load(chosen)
            home.build()
    incremental = home.snapshot()
    expected = reference_sessions(messages)
    got: dict[str, list[tuple[datetime, datetime, int]]] = {}
    for row in incremental["sessions"]:
        got.setdefault(row[1], []).append(span(row))
    assert {v: sorted(s) for v, s in got.items()} == expected
    home.build("--full-refresh")
    assert home.snapshot() == incremental


def test_a_bad_session_setting_fails_the_build_naming_the_var(tmp_path: Path) -> None:
    home = Home(tmp_path)
    home.load([message("a1", 0)])
    with pytest.raises(Exception, match="dbt build failed"):
        run_dbt(home.home, ["build", "--select", *MODELS], dbt_vars={"corral_session_timeout_minutes": "half an hour"}, echo=lambda line: None)
    log = (home.home.root / "dbt" / "logs" / "dbt.log").read_text()
    assert "var corral_session_timeout_minutes must be a whole number of at least 1; got: half an hour" in log


def numbering_errors(sessions: list[tuple[Any, ...]]) -> list[str]:
    """session_number read plainly from a snapshot's sessions: per profile (per anonymous id
    without one), 1, 2, ... in order of start, then session id."""
    by_key: dict[str, list[tuple[Any, ...]]] = {}
    for row in sessions:
        by_key.setdefault(row[2] or row[1], []).append(row)
    return [
        f"{key}: session {row[0]} numbered {row[-1]}, expected {n}"
        for key, rows in by_key.items()
        for n, row in enumerate(sorted(rows, key=lambda r: (r[3], r[0])), start=1)
        if row[-1] != n
    ]


@settings(
    max_examples=EXAMPLES, deadline=None, phases=[Phase.explicit, Phase.reuse, Phase.generate],
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(
    visits=st.lists(visitor_minutes, min_size=2, max_size=6),
    users=st.lists(st.sampled_from([None, "kim", "lee"]), min_size=6, max_size=6),
    batch_of=st.lists(st.integers(0, 2), min_size=60, max_size=60),
)
def test_sessions_keep_their_numbers_right_while_visitors_identify_across_builds(
    visits: list[list[int]], users: list[str | None], batch_of: list[int], tmp_path_factory: pytest.TempPathFactory
) -> None:
    """Visitors (anonymous ids) log in as one of two people at their last event, in any load, while
    late events land anywhere: every build numbers each profile's sessions 1, 2, ... in order,
    across devices, and the last equals a full refresh (which renumbers everything)."""
    home = Home(tmp_path_factory.mktemp("numbering"))
    messages = []
    for v, minutes in enumerate(visits):
        messages += [message(f"v{v}", minute, "track" if (v + minute) % 4 == 0 else "page") for minute in minutes]
        if users[v]:
            messages.append(message(f"v{v}", max(minutes) + 1, "identify", userId=users[v]))
    for batch in range(3):
        chosen = [m for i, m in enumerate(messages) if batch_of[i % len(batch_of)] == batch]
        if chosen:
            home.load(chosen)
            home.build()
            assert numbering_errors(home.snapshot()["sessions"]) == []
    incremental = home.snapshot()
    profiles = {row[1]: row[2] for row in incremental["sessions"]}
    for v, user in enumerate(users[:len(visits)]):  # everyone who logged in as the same person shares a profile
        for w, other in enumerate(users[:len(visits)]):
            if user and user == other:
                assert profiles[f"v{v}"] == profiles[f"v{w}"]
    home.build("--full-refresh")
    assert home.snapshot() == incremental


def test_a_late_event_renumbers_the_other_devices_later_sessions(tmp_path: Path) -> None:
    """A late event on the phone, before the laptop's sessions of the same person: it gets its
    own session, and the laptop's later sessions move up by one; earlier ones keep their numbers."""
    home = Home(tmp_path)
    home.load([
        message("phone", 0), message("phone", 1, "identify", userId="kim"),
        message("laptop", 200), message("laptop", 201, "identify", userId="kim"),
        message("laptop", 400), message("phone", 600),
    ])
    home.build()
    numbered = "select anonymous_id, started_at, session_number from marts.sessions order by session_number"
    assert [(a, n) for a, _, n in home.query(numbered)] == [("phone", 1), ("laptop", 2), ("laptop", 3), ("phone", 4)]
    home.load([message("phone", 300)])
    home.build()
    assert [(a, at, n) for a, at, n in home.query(numbered)] == [
        ("phone", BASE, 1), ("laptop", BASE + timedelta(minutes=200), 2), ("phone", BASE + timedelta(minutes=300), 3),
        ("laptop", BASE + timedelta(minutes=400), 4), ("phone", BASE + timedelta(minutes=600), 5),
    ]
    incremental = home.snapshot()
    assert numbering_errors(incremental["sessions"]) == []
    home.build("--full-refresh")
    assert home.snapshot() == incremental
