"""One scenario for every event destination (an events variant of the conformance suite),
through the real engine against each one's strict fake: the types it takes arrive once each,
in order, with the message id as its dedup key; an unchanged re-run sends nothing; refused
events (in the vendor's partial-failure shape) fail with the vendor's message while the others
go, and go once accepted; an outage and refused credentials stop the run and lose nothing;
no request breaks a documented limit."""

from __future__ import annotations

import json
from collections import Counter
from collections.abc import Callable, Iterator
from contextlib import AbstractContextManager, contextmanager
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any

import duckdb
import httpx
import pytest
from fakes import amplitude, mixpanel, segment, webhook_events
from fakes.webhook import SECRET
from test_event_forwarding import FAST, PROFILE_EVENTS_DDL, land, spec

from reverse_etl.destinations.event_base import event_destinations, make_event_destination
from reverse_etl.events import run_event_sync

T0 = datetime(2026, 11, 1, 12)


@dataclass
class Harness:
    env: dict[str, str]
    delivered: Callable[[], list[str]]  # message ids as they arrived, duplicates included
    set_down: Callable[[bool], None]
    deny: Callable[[bool], None]
    fail: Callable[[set[str], str], None] | None  # refuse these message ids with this message (None: the vendor cannot say per event)
    requests: Callable[[], int]
    violations: Callable[[], list[str]]
    types: set[str]
    fake: Any = None


@contextmanager
def segment_harness() -> Iterator[Harness]:
    with segment.serve(segment.FakeSegment()) as fake:
        yield Harness({"SEGMENT_BASE_URL": fake.url, "SEGMENT_WRITE_KEY": segment.WRITE_KEY}, fake.message_ids,
                      lambda down: setattr(fake, "down", down), lambda deny: setattr(fake, "deny_status", 401 if deny else 0),
                      None, lambda: fake.requests, lambda: fake.violations, {"track", "page", "identify"})


@contextmanager
def webhook_harness() -> Iterator[Harness]:
    with webhook_events.serve(webhook_events.FakeEventWebhook(max_records=500)) as fake:
        down = {"on": False}
        refused: dict[str, str] = {}
        fake.refuse = lambda event: refused.get(event["messageId"])
        original = fake.handle

        def handle(headers: Any, body: bytes) -> Any:
            return (503, {}, "down", 0.0) if down["on"] else original(headers, body)

        fake.handle = handle  # type: ignore[method-assign]

        def fail(ids: set[str], message: str) -> None:
            refused.clear()
            refused.update(dict.fromkeys(ids, message))

        yield Harness({"WEBHOOK_URL": fake.url, "WEBHOOK_SECRET": SECRET}, fake.sent_keys, lambda on: down.update(on=on),
                      lambda deny: setattr(fake, "deny_status", 401 if deny else 0), fail, lambda: fake.requests,
                      lambda: fake.violations, {"track", "page", "identify"})


@contextmanager
def mixpanel_harness() -> Iterator[Harness]:
    with mixpanel.serve(mixpanel.FakeMixpanel()) as fake:
        def fail(ids: set[str], message: str) -> None:
            fake.failing = dict.fromkeys(ids, message)

        env = {"MIXPANEL_BASE_URL": fake.url, "MIXPANEL_SERVICE_ACCOUNT_USER": mixpanel.USER,
               "MIXPANEL_SERVICE_ACCOUNT_SECRET": mixpanel.SECRET, "MIXPANEL_PROJECT_ID": mixpanel.PROJECT}
        yield Harness(env, fake.insert_ids, lambda down: setattr(fake, "down", down),
                      lambda deny: setattr(fake, "deny_status", 401 if deny else 0), fail, lambda: fake.requests,
                      lambda: fake.violations, {"track", "page"}, fake)


@contextmanager
def amplitude_harness() -> Iterator[Harness]:
    with amplitude.serve(amplitude.FakeAmplitude()) as fake:
        def fail(ids: set[str], message: str) -> None:
            fake.failing = dict.fromkeys(ids, message)

        yield Harness({"AMPLITUDE_BASE_URL": fake.url, "AMPLITUDE_API_KEY": amplitude.API_KEY}, fake.insert_ids,
                      lambda down: setattr(fake, "down", down), lambda deny: setattr(fake, "deny", deny), fail,
                      lambda: fake.requests, lambda: fake.violations, {"track", "page", "identify"}, fake)


HARNESSES: dict[str, Callable[[], AbstractContextManager[Harness]]] = {
    "segment": segment_harness, "webhook": webhook_harness, "mixpanel": mixpanel_harness, "amplitude": amplitude_harness,
}


def test_every_event_destination_has_a_case() -> None:
    assert set(event_destinations()) == set(HARNESSES)


def mixed(con: duckdb.DuckDBPyConnection, first: int, at: datetime) -> dict[str, list[str]]:
    """Track, page and identify events loaded together: the ids of each type, in arrival order."""
    return {
        "track": land(con, first, 12, at),
        "page": land(con, first + 12, 3, at, message_type="page", event_name=None, page_name="Pricing"),
        "identify": land(con, first + 15, 2, at, message_type="identify", event_name=None, traits=json.dumps({"plan": "pro"})),
    }


def expected(con: duckdb.DuckDBPyConnection, batches: list[dict[str, list[str]]], types: set[str]) -> list[str]:
    """The ids of these batches' events of `types`, in order of arrival (loaded_at, received_at)."""
    ids = [m for batch in batches for kind in types for m in batch[kind]]
    return [m for (m,) in con.execute("select message_id from profile_events where list_contains(?, message_id)"
                                      " order by loaded_at, received_at, message_id", [ids]).fetchall()]


@pytest.mark.parametrize("name", sorted(HARNESSES))
def test_event_destination_conformance(name: str, tmp_path: Path) -> None:
    con = duckdb.connect(str(tmp_path / "w.duckdb"))
    con.execute(PROFILE_EVENTS_DDL)
    sync = spec(name, settings={"batch_size": 10}, max_attempts=3, deadline_seconds=5.0)
    with HARNESSES[name]() as h, httpx.Client(timeout=httpx.Timeout(3.0)) as client:
        def forward() -> Any:
            return run_event_sync(con, sync, make_event_destination(name, h.env, client), options=FAST)

        first = mixed(con, 1, T0)
        run = forward()
        assert run.status == "success", run.errors
        assert h.delivered() == expected(con, [first], h.types)  # only the types it takes, in order of arrival
        sent = h.requests()
        assert forward().sent == 0 and h.requests() == sent

        if h.fail is not None:  # per-event refusals: the others go, the refused ones fail with the vendor's message
            second = mixed(con, 101, T0 + timedelta(minutes=1))
            refused = {second["track"][1], second["track"][5]}
            h.fail(refused, "value refused by the vendor")
            run = forward()
            assert (run.failed, run.succeeded) == (2, len(expected(con, [second], h.types)) - 2)
            errors = dict(con.execute("select message_id, last_error from corral_sync.event_deliveries where status = 'failed'").fetchall())
            assert set(errors) == refused and all("value refused by the vendor" in e for e in errors.values())
            h.fail(set(), "")
            assert forward().succeeded == 2
            batches = [first, second]
        else:
            batches = [first]

        h.set_down(True)  # an outage: the run stops, nothing counted, nothing lost
        third = mixed(con, 201, T0 + timedelta(minutes=2))
        run = forward()
        assert (run.stopped, run.succeeded, run.failed, run.rejected) == (True, 0, 0, 0)
        h.set_down(False)
        h.deny(True)
        run = forward()
        assert run.stopped and any("401" in e or "API key" in e for e in run.errors)
        h.deny(False)
        assert forward().status == "success"
        delivered = h.delivered()
        assert Counter(delivered) == Counter(expected(con, [*batches, third], h.types))  # each once
        assert delivered[-len(expected(con, [third], h.types)):] == expected(con, [third], h.types)  # the ones that waited, in order
        assert h.violations() == []


def test_wire_forms_of_mixpanel_and_amplitude(tmp_path: Path) -> None:
    con = duckdb.connect(str(tmp_path / "w.duckdb"))
    con.execute(PROFILE_EVENTS_DDL)
    ids = mixed(con, 1, T0)
    with mixpanel_harness() as mp, amplitude_harness() as amp, httpx.Client(timeout=3) as client:
        for name, h in (("mixpanel", mp), ("amplitude", amp)):
            run_event_sync(con, spec(name, name=f"to_{name}"), make_event_destination(name, h.env, client), options=FAST)
    (track,) = [e for e in mixpanel_received(mp) if e["properties"]["$insert_id"] == ids["track"][0]]
    assert track["event"] == "Order Completed" and track["properties"]["distinct_id"] == "u1" and track["properties"]["$device_id"] == "a1"
    assert track["properties"]["time"] == int(datetime(2026, 11, 1, 11, 55, 1, tzinfo=timezone.utc).timestamp() * 1000) and track["properties"]["revenue"] == 1
    pages = {e["event"] for e in mixpanel_received(mp) if e["properties"]["$insert_id"] in ids["page"]}
    assert pages == {"Loaded a Page"}
    by_id = {e["insert_id"]: e for e in amplitude_received(amp)}
    assert by_id[ids["track"][0]]["event_type"] == "Order Completed" and by_id[ids["track"][0]]["event_properties"]["revenue"] == 1
    assert by_id[ids["identify"][0]]["event_type"] == "$identify" and by_id[ids["identify"][0]]["user_properties"] == {"$set": {"plan": "pro"}}
    assert by_id[ids["page"][0]]["event_properties"]["name"] == "Pricing"


def mixpanel_received(h: Harness) -> list[dict[str, Any]]:
    return list(h.fake.received)


def amplitude_received(h: Harness) -> list[dict[str, Any]]:
    return list(h.fake.received)
