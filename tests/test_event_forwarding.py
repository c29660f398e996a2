"""Event syncs through the real engine against strict fakes on real ports: the cursor across
runs, start positions, late events inside the overlap window, downtime then recovery (nothing
lost, in order, nothing confirmed sent twice), per-event refusals retried then rejected,
refused credentials, Segment's size limits, filters applied in the warehouse, a malicious
filter refused before anything is read, and the declaration in a dbt manifest."""

from __future__ import annotations

import json
from collections.abc import Iterator
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

import duckdb
import httpx
import pytest
from fakes.segment import WRITE_KEY, FakeSegment
from fakes.segment import serve as serve_segment
from fakes.server import serve_http
from fakes.webhook import SECRET
from fakes.webhook_events import FakeEventWebhook
from fakes.webhook_events import serve as serve_webhook

from reverse_etl.destinations.event_base import make_event_destination
from reverse_etl.engine import EngineOptions, SyncRunResult
from reverse_etl.events import run_event_sync
from reverse_etl.filters import parse_filters, sample_bucket
from reverse_etl.pacing import RetryPolicy
from reverse_etl.syncs import EventSyncSpec, SyncConfigError, load_event_syncs, load_syncs

FAST = EngineOptions(retry=RetryPolicy(attempts=3, base_seconds=0.01, cap_seconds=0.02), seed=1)
T0 = datetime(2026, 11, 1, 12, 0, 0)

PROFILE_EVENTS_DDL = """
create table profile_events (
    message_id varchar not null, profile_id varchar not null, message_type varchar, event_name varchar, page_name varchar,
    user_id varchar, anonymous_id varchar, email varchar, device_id varchar, occurred_at timestamp, received_at timestamp,
    loaded_at timestamp, profiled_at timestamp, source_id varchar, page_url varchar, page_path varchar, page_referrer varchar,
    page_title varchar, user_agent varchar, properties json, traits json, context json
)
"""


@pytest.fixture
def con(tmp_path: Path) -> Iterator[duckdb.DuckDBPyConnection]:
    con = duckdb.connect(str(tmp_path / "warehouse.duckdb"))
    con.execute(PROFILE_EVENTS_DDL)
    yield con
    con.close()


@pytest.fixture
def segment() -> Iterator[FakeSegment]:
    with serve_segment(FakeSegment()) as fake:
        yield fake


def land(con: duckdb.DuckDBPyConnection, first: int, count: int, loaded_at: datetime, **overrides: Any) -> list[str]:
    """`count` track events m<first>... loaded together at `loaded_at`, received one second apart
    (ids are zero-padded so their order is not the arrival order: they are reversed)."""
    ids = []
    for i in range(first, first + count):
        message_id = f"m{(10**6 - i):07d}"  # later events get smaller ids: order must come from received_at, not the id
        row = {
            "message_id": message_id, "profile_id": f"p{i % 7}", "message_type": "track", "event_name": "Order Completed" if i % 3 else "Debug",
            "page_name": None, "user_id": f"u{i % 7}", "anonymous_id": f"a{i}", "email": f"u{i % 7}@example.com", "device_id": None,
            "occurred_at": loaded_at - timedelta(minutes=5) + timedelta(seconds=i), "received_at": loaded_at - timedelta(minutes=1) + timedelta(seconds=i - first),
            "loaded_at": loaded_at, "profiled_at": loaded_at, "source_id": "web", "page_url": None, "page_path": None, "page_referrer": None,
            "page_title": None, "user_agent": None, "properties": json.dumps({"revenue": i, "card": {"last4": "4242", "brand": "visa"}, "n": i}),
            "traits": json.dumps({}), "context": json.dumps({"ip": "10.0.0.1", "page": {"path": f"/p/{i}"}}),
        }
        row.update(overrides)
        con.execute(f"insert into profile_events values ({', '.join('?' * len(row))})", list(row.values()))
        ids.append(message_id)
    return ids


def spec(destination: str = "segment", **overrides: Any) -> EventSyncSpec:
    values: dict[str, Any] = {"name": "events_out", "model": "profile_events", "relation": "main.profile_events", "destination": destination,
                              "start": "beginning", "overlap_seconds": 600.0, "deadline_seconds": 10.0}
    if "filters" in overrides and isinstance(overrides["filters"], list):
        overrides["filters"] = parse_filters(overrides["filters"])
    return EventSyncSpec(**{**values, **overrides})


def forward(con: duckdb.DuckDBPyConnection, fake: FakeSegment | FakeEventWebhook, client: httpx.Client, sync: EventSyncSpec | None = None,
            **kwargs: Any) -> SyncRunResult:
    sync = sync or spec()
    if isinstance(fake, FakeSegment):
        env = {"SEGMENT_BASE_URL": fake.url, "SEGMENT_WRITE_KEY": WRITE_KEY}
    else:
        env = {"WEBHOOK_URL": fake.url, "WEBHOOK_SECRET": SECRET}
    return run_event_sync(con, sync, make_event_destination(sync.destination, env, client), options=kwargs.pop("options", FAST), **kwargs)


def cursor(con: duckdb.DuckDBPyConnection, name: str = "events_out") -> tuple[Any, ...]:
    return con.execute("select cursor_loaded_at, cursor_message_id from corral_sync.event_cursors where sync_name = ?", [name]).fetchone()


def test_each_run_sends_what_is_new_in_order_of_arrival_and_the_cursor_moves_on(con: duckdb.DuckDBPyConnection, segment: FakeSegment,
                                                                                client: httpx.Client) -> None:
    first = land(con, 1, 30, T0)
    run = forward(con, segment, client)
    assert (run.status, run.planned, run.succeeded) == ("success", 30, 30)
    assert segment.message_ids() == first  # in order of arrival (received_at), not of message id
    assert cursor(con) == (T0, max(first))  # the last event in (loaded_at, message_id) order
    again = forward(con, segment, client)
    assert (again.planned, again.sent, segment.requests) == (0, 0, 1)  # nothing new: no request
    second = land(con, 31, 20, T0 + timedelta(minutes=1))
    third = forward(con, segment, client)
    assert (third.planned, third.succeeded) == (20, 20)
    assert segment.message_ids() == first + second and cursor(con) == (T0 + timedelta(minutes=1), max(second))
    event = segment.events()[first[0]]
    assert event["type"] == "track" and event["event"] == "Order Completed" and event["userId"] == "u1" and event["anonymousId"] == "a1"
    assert event["properties"]["revenue"] == 1 and event["context"]["corral"] == {"profileId": "p1"}
    assert event["timestamp"] == "2026-11-01T11:55:01.000Z"
    runs = con.execute("select status, planned, succeeded from corral_sync.runs order by started_at").fetchall()
    assert runs == [("success", 30, 30), ("success", 0, 0), ("success", 20, 20)]
    assert segment.violations == []


def test_start_now_skips_what_was_loaded_before_the_first_run(con: duckdb.DuckDBPyConnection, segment: FakeSegment, client: httpx.Client) -> None:
    land(con, 1, 10, T0)
    assert forward(con, segment, client, spec(start="now")).planned == 0
    new = land(con, 11, 3, T0 + timedelta(seconds=1))
    assert forward(con, segment, client, spec(start="now")).succeeded == 3
    assert segment.message_ids() == new


def test_an_event_committed_late_behind_the_cursor_is_sent_once_inside_the_overlap(con: duckdb.DuckDBPyConnection, segment: FakeSegment,
                                                                                   client: httpx.Client) -> None:
    land(con, 1, 5, T0)
    land(con, 6, 5, T0 + timedelta(minutes=2))
    forward(con, segment, client)
    late = land(con, 11, 2, T0 + timedelta(minutes=1))  # loaded before the last rows seen, visible only now
    too_late = land(con, 13, 1, T0 - timedelta(minutes=20))  # further behind than overlap_seconds (600): the documented limit
    run = forward(con, segment, client)
    assert run.succeeded == 2 and segment.message_ids()[-2:] == late and too_late[0] not in segment.events()
    assert forward(con, segment, client).sent == 0 and len(segment.message_ids()) == 12  # confirmed: never again
    # settled deliveries that fell out of the window are forgotten, the cursor keeps them out
    land(con, 14, 1, T0 + timedelta(minutes=30))
    forward(con, segment, client)
    kept = con.execute("select count(*) from corral_sync.event_deliveries where sync_name = 'events_out'").fetchone()[0]
    assert kept == 1 and len(set(segment.message_ids())) == len(segment.message_ids()) == 13


def test_downtime_then_recovery_loses_nothing_keeps_the_order_and_resends_nothing_confirmed(con: duckdb.DuckDBPyConnection, segment: FakeSegment,
                                                                                             client: httpx.Client) -> None:
    sync = spec(settings={"batch_size": 10})
    early = land(con, 1, 25, T0)
    assert forward(con, segment, client, sync).succeeded == 25
    segment.down = True
    waiting = land(con, 26, 25, T0 + timedelta(minutes=1))
    for _ in range(3):  # down for several runs: no attempt is counted, nothing is rejected, the cursor stays
        run = forward(con, segment, client, sync)
        assert (run.status, run.stopped, run.succeeded, run.failed, run.rejected) == ("failed", True, 0, 0, 0)
        assert "unavailable" in run.errors[0] and "wait in the warehouse" in run.errors[0]
        assert run.sent == 0 and cursor(con) == (T0, max(early))
    more = land(con, 51, 25, T0 + timedelta(minutes=2))
    segment.down = False
    back = forward(con, segment, client, sync)
    assert (back.status, back.succeeded) == ("success", 50)
    assert segment.message_ids() == early + waiting + more  # each once, in order
    assert con.execute("select count(*) from corral_sync.row_log where status <> 'succeeded'").fetchone()[0] == 0
    assert cursor(con) == (T0 + timedelta(minutes=2), max(more))


def test_a_run_that_stops_mid_way_resumes_after_the_last_confirmed_batch(con: duckdb.DuckDBPyConnection, segment: FakeSegment,
                                                                         client: httpx.Client) -> None:
    sync = spec(settings={"batch_size": 10})
    ids = land(con, 1, 40, T0)
    answered = {"batches": 0}

    def flaky(method: str, path: str, headers: Any, body: bytes) -> Any:  # the endpoint goes down after two batches
        answered["batches"] += 1
        return segment.handle(method, path, headers, body) if answered["batches"] <= 2 else (503, {}, "down", 0.0)

    with serve_http(flaky) as url:
        env = {"SEGMENT_BASE_URL": url, "SEGMENT_WRITE_KEY": WRITE_KEY}
        run = run_event_sync(con, sync, make_event_destination("segment", env, client), options=FAST)
        assert (run.stopped, run.succeeded) == (True, 20) and segment.message_ids() == ids[:20]
        answered["batches"] = -100
        assert run_event_sync(con, sync, make_event_destination("segment", env, client), options=FAST).succeeded == 20
    assert segment.message_ids() == ids  # the first 20 not sent again, the rest in order


def test_refused_events_are_logged_with_the_reason_retried_then_rejected(con: duckdb.DuckDBPyConnection, client: httpx.Client) -> None:
    with serve_webhook(FakeEventWebhook(max_records=500)) as hook:
        hook.refuse = lambda event: "revenue must be even" if event.get("properties", {}).get("revenue") == 3 else None
        ids = land(con, 1, 6, T0)
        sync = spec("webhook", max_attempts=2)
        first = forward(con, hook, client, sync)
        assert (first.status, first.succeeded, first.failed) == ("failed", 5, 1)
        log = con.execute("select record_key, status, error, attempts, payload from corral_sync.row_log where status <> 'succeeded'").fetchall()
        assert [(k, s, e, a) for k, s, e, a, _ in log] == [(ids[2], "failed", "revenue must be even", 1)]
        assert json.loads(log[0][4])["messageId"] == ids[2]  # what was sent, for the operator
        assert cursor(con) == (T0, ids[3])  # held just before the failed event, in (loaded_at, message_id) order
        later = land(con, 7, 2, T0 + timedelta(minutes=1))
        second = forward(con, hook, client, sync)  # the failed one goes first, then the new ones
        assert (second.succeeded, second.rejected) == (2, 1)
        assert hook.sent_keys() == [i for i in ids if i != ids[2]] + later
        status = con.execute("select status, attempts, last_error from corral_sync.event_deliveries where message_id = ?", [ids[2]]).fetchone()
        assert status == ("rejected", 2, "revenue must be even")
        assert cursor(con) == (T0 + timedelta(minutes=1), max(later))  # a rejected event no longer holds the cursor
        assert forward(con, hook, client, sync).sent == 0
        assert hook.violations == [] and len(set(hook.message_ids)) == len(hook.message_ids)  # signed, one webhook-id per batch


def test_refused_credentials_stop_the_run_and_the_events_wait(con: duckdb.DuckDBPyConnection, segment: FakeSegment, client: httpx.Client) -> None:
    ids = land(con, 1, 30, T0)
    segment.deny_status = 401
    run = forward(con, segment, client, spec(settings={"batch_size": 10}))
    assert (run.status, run.stopped, run.failed, run.rejected, segment.requests) == ("failed", True, 0, 0, 1)
    assert "HTTP 401" in run.errors[0]
    segment.deny_status = 0
    assert forward(con, segment, client, spec(settings={"batch_size": 10})).succeeded == 30 and segment.message_ids() == ids


def test_segment_batches_stay_under_the_byte_limits_and_an_oversized_event_is_rejected_at_once(
        con: duckdb.DuckDBPyConnection, segment: FakeSegment, client: httpx.Client) -> None:
    ids = land(con, 1, 60, T0, properties=json.dumps({"blob": "x" * 20_000}))
    huge = land(con, 61, 1, T0 + timedelta(seconds=1), properties=json.dumps({"blob": "x" * 40_000}))
    run = forward(con, segment, client)
    assert (run.succeeded, run.rejected) == (60, 1) and segment.violations == []
    assert segment.requests >= 3 and segment.message_ids() == ids  # 60 x 20 KB: at least three requests under 500,000 bytes
    error = con.execute("select status, error from corral_sync.row_log where record_key = ?", huge).fetchone()
    assert error[0] == "rejected" and "over segment's limit of 32,768 per event" in error[1]
    assert forward(con, segment, client).sent == 0  # the rejected event does not hold the cursor or come back


def test_the_segment_fake_is_strict(segment: FakeSegment, client: httpx.Client) -> None:
    import base64

    auth = {"authorization": "Basic " + base64.b64encode(f"{WRITE_KEY}:".encode()).decode()}
    assert client.post(f"{segment.url}/v1/batch", json={"batch": []}).status_code == 401
    assert client.post(f"{segment.url}/v1/batch", content=b"{", headers=auth).status_code == 400
    assert client.post(f"{segment.url}/v1/batch", json={"batch": [{"type": "track"}]}, headers=auth).status_code == 400
    big = {"batch": [{"type": "track", "messageId": "x", "userId": "u", "properties": {"b": "x" * 40_000}}]}
    assert client.post(f"{segment.url}/v1/batch", json=big, headers=auth).status_code == 400
    assert client.post(f"{segment.url}/v1/batch", json={"batch": [{"type": "track", "messageId": "y"}]}, headers=auth).status_code == 200
    assert segment.dropped == [("y", "no_user_anon_id")] and len(segment.violations) == 3


def test_filters_run_in_the_warehouse_and_shape_what_is_sent(con: duckdb.DuckDBPyConnection, segment: FakeSegment, client: httpx.Client) -> None:
    land(con, 1, 300, T0)
    sync = spec(filters=[{"drop": "event = 'Debug'"}, {"keep": "properties.revenue > 100 or context.page.path = '/p/7'"},
                         {"sample": 50}, {"block": ["properties.card.last4", "context.ip"]}])
    run = forward(con, segment, client, sync)
    sent = segment.events()
    expected = {
        f"m{(10**6 - i):07d}" for i in range(1, 301)
        if i % 3 and (i > 100 or i == 7) and sample_bucket(f"m{(10**6 - i):07d}") < 5000
    }
    assert set(sent) == expected and run.succeeded == len(expected) and 60 < len(expected) < 120
    one = next(iter(sent.values()))
    assert one["properties"]["card"] == {"brand": "visa"} and "ip" not in one["context"] and one["context"]["page"]["path"].startswith("/p/")
    assert forward(con, segment, client, sync).sent == 0  # the filtered-out events do not hold the cursor
    assert cursor(con) == (T0, "m0999999")


def test_sampling_is_stable_across_runs_and_syncs(con: duckdb.DuckDBPyConnection, client: httpx.Client) -> None:
    land(con, 1, 400, T0)
    chosen = []
    for name in ("sample_a", "sample_b"):
        with serve_segment(FakeSegment()) as fake:
            forward(con, fake, client, spec(name=name, filters=[{"sample": 25}]))
            chosen.append(set(fake.events()))
    assert chosen[0] == chosen[1] and 60 < len(chosen[0]) < 140
    assert chosen[0] == {m for (m,) in con.execute("select message_id from profile_events").fetchall() if sample_bucket(m) < 2500}


def test_allow_list_keeps_only_the_named_paths(con: duckdb.DuckDBPyConnection, segment: FakeSegment, client: httpx.Client) -> None:
    land(con, 1, 2, T0)
    forward(con, segment, client, spec(filters=[{"allow": ["properties.revenue", "properties.card.brand", "context.page"]}]))
    event = next(iter(segment.events().values()))
    assert event["properties"] == {"revenue": event["properties"]["revenue"], "card": {"brand": "visa"}}
    assert event["context"] == {"page": event["context"]["page"]} and event["traits"] if "traits" in event else True


@pytest.mark.parametrize("condition", [
    "event = 'x'; delete from profile_events",
    "event in (select message_id from corral_sync.event_deliveries)",
    "read_csv('/etc/passwd') is not null",
    "event = 'x' /* sneaky */",
    "secret_column = 1",
    "properties = 'x'",
])
def test_a_malicious_filter_is_refused_before_anything_is_read_or_sent(condition: str, con: duckdb.DuckDBPyConnection, segment: FakeSegment,
                                                                       client: httpx.Client) -> None:
    manifest = {
        "nodes": {"model.corral.profile_events": {"name": "profile_events", "relation_name": "main.profile_events"}},
        "exposures": {"exposure.corral.events_out": {
            "name": "events_out", "original_file_path": "models/marts/core/_core__models.yml",
            "depends_on": {"nodes": ["model.corral.profile_events"]},
            "meta": {"corral_sync": {"mode": "events", "destination": "segment", "filters": [{"drop": condition}]}},
        }},
    }
    with pytest.raises(SyncConfigError, match=r"sync 'events_out' \(models/marts/core/_core__models.yml\): refused before running"):
        load_event_syncs(manifest)
    assert segment.requests == 0 and con.execute("select count(*) from profile_events").fetchone()[0] == 0


def test_a_filter_the_warehouse_cannot_run_is_refused_naming_the_sync(con: duckdb.DuckDBPyConnection, segment: FakeSegment,
                                                                      client: httpx.Client) -> None:
    land(con, 1, 3, T0)
    with pytest.raises(SyncConfigError, match="sync 'events_out': filter refused before running"):
        forward(con, segment, client, spec(filters=[{"keep": "occurred_at > 5"}]))  # a timestamp is not a number
    assert segment.requests == 0


def test_event_syncs_are_declared_beside_record_syncs_and_kept_apart() -> None:
    exposures = {
        "exposure.c.a_events": {"name": "a_events", "depends_on": {"nodes": ["model.c.profile_events"]},
                                "meta": {"corral_sync": {"mode": "events", "destination": "webhook", "start": "beginning",
                                                         "filters": [{"keep": "type = 'track'"}, {"sample": 10}]}}},
        "exposure.c.b_records": {"name": "b_records", "depends_on": {"nodes": ["model.c.people"]},
                                 "meta": {"corral_sync": {"destination": "file", "primary_key": "id", "mapping": {"id": "id"}}}},
    }
    manifest = {"nodes": {"model.c.profile_events": {"name": "profile_events", "relation_name": "main.profile_events"},
                          "model.c.people": {"name": "people", "relation_name": "main.people"}}, "exposures": exposures}
    assert [s.name for s in load_syncs(manifest)] == ["b_records"]
    (events,) = load_event_syncs(manifest)
    assert (events.name, events.destination, events.start, events.filters.sample_percent, events.filters.keep) == \
        ("a_events", "webhook", "beginning", 10.0, ("type = 'track'",))
    exposures["exposure.c.a_events"]["meta"]["corral_sync"]["primary_key"] = "message_id"
    with pytest.raises(SyncConfigError, match="event syncs send whole events"):
        load_event_syncs(manifest)


def test_a_dry_run_shows_what_would_go_and_sends_nothing(con: duckdb.DuckDBPyConnection, segment: FakeSegment, client: httpx.Client) -> None:
    ids = land(con, 1, 8, T0)
    run = forward(con, segment, client, spec(filters=[{"block": ["context.ip"]}]), dry_run=True)
    assert (run.status, run.planned, run.sent, segment.requests) == ("success", 8, 0, 0)
    assert [e["messageId"] for e in run.samples["forward"]] == ids[:5] and "ip" not in run.samples["forward"][0]["context"]
    assert con.execute("select count(*) from corral_sync.event_cursors").fetchall() == [(0,)]  # the dry run kept nothing
    assert forward(con, segment, client).succeeded == 8


def test_a_run_sends_at_most_max_events_per_run_and_the_next_goes_on(con: duckdb.DuckDBPyConnection, segment: FakeSegment,
                                                                     client: httpx.Client) -> None:
    ids = land(con, 1, 25, T0)
    sync = spec(max_events_per_run=10, settings={"batch_size": 4})
    assert [forward(con, segment, client, sync).succeeded for _ in range(4)] == [10, 10, 5, 0]
    assert segment.message_ids() == ids


def test_rows_without_loaded_at_are_left_out_and_hold_nothing_up(con: duckdb.DuckDBPyConnection, segment: FakeSegment, client: httpx.Client) -> None:
    con.execute("create or replace table profile_events as select * from profile_events")  # no constraint on loaded_at, as in the mart
    orphan = land(con, 1, 1, T0)
    con.execute("update profile_events set loaded_at = null where message_id = ?", orphan)
    ids = land(con, 2, 3, T0)
    assert forward(con, segment, client).succeeded == 3 and segment.message_ids() == ids and orphan[0] not in segment.events()
