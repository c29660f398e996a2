"""The collector, driven by the real Segment and RudderStack client libraries and raw HTTP."""

from __future__ import annotations

import base64
import gzip
import json
import time
import uuid
from collections.abc import Iterator
from contextlib import closing
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any

import httpx
import pytest
import segment.analytics as segment
from rudderstack.analytics import Client as RudderClient

from collector_process import CollectorProcess
from loaders.home import CorralHome
from loaders.load import load_landing
from loaders.warehouse import connect

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def collector(tmp_path_factory: pytest.TempPathFactory) -> Iterator[CollectorProcess]:
    process = CollectorProcess(
        tmp_path_factory.mktemp("collector") / "home", extra_env={"CORRAL_SEGMENT_MAX_AGE_SECONDS": "0.2"}
    ).start()
    yield process
    process.stop()  # SIGTERM: uvicorn shuts down gracefully, then re-raises the signal
    assert "Application shutdown complete" in process.output()
    assert not list(process.home.rglob("*.open")), "a graceful stop seals every segment"


def landed(collector: CollectorProcess, where: str, params: list[Any]) -> list[dict[str, Any]]:
    """Rows of raw.events matching `where`, after the collector sealed what it holds."""
    home = CorralHome(collector.home)
    deadline = time.monotonic() + 10
    while any(home.landing.rglob("*.open")) and time.monotonic() < deadline:
        time.sleep(0.05)
    with closing(connect(home)) as con:
        load_landing(con, home.landing)
        cursor = con.execute(f"select * from raw.events where {where} order by landing_file, landing_line", params)
        names = [d[0] for d in cursor.description]
        return [dict(zip(names, row, strict=True)) for row in cursor.fetchall()]


def rejected(collector: CollectorProcess, source: str) -> list[dict[str, Any]]:
    files = sorted((collector.home / "landing" / "_rejected" / source).glob("*.ndjson*"))
    return [json.loads(line) for path in files for line in path.read_text().splitlines() if line]


def test_segment_python_sdk_delivers_every_call(collector: CollectorProcess) -> None:
    errors: list[Any] = []
    user = f"seg-{uuid.uuid4().hex[:8]}"
    client = segment.Client("server-key", host=collector.url, sync_mode=True, on_error=lambda e, batch: errors.append(e))
    client.identify(user, {"email": "Ada@Example.com", "plan": "pro"})
    client.track(user, "Order Completed", {"revenue": 42.5, "currency": "USD"})
    client.page(user, "Docs", "Getting started", {"path": "/docs"})
    client.screen(user, "App", "Home")
    client.group(user, "acme", {"name": "Acme"})
    client.alias(f"anon-{user}", user)
    client.flush()
    assert errors == []
    rows = landed(collector, "user_id = ?", [user])
    assert [r["type"] for r in rows] == ["identify", "track", "page", "screen", "group", "alias"]
    assert all(r["source_id"] == "server" for r in rows)
    assert json.loads(rows[0]["traits"])["email"] == "Ada@Example.com"
    assert json.loads(rows[1]["properties"]) == {"revenue": 42.5, "currency": "USD"}
    assert rows[5]["previous_id"] == f"anon-{user}"
    now = datetime.now(timezone.utc).replace(tzinfo=None)
    assert all(abs(r["received_at"] - now) < timedelta(minutes=1) for r in rows)
    assert all(json.loads(r["context"])["library"]["name"] == "analytics-python" for r in rows)


def test_segment_sdk_gzip_and_historical_timestamp(collector: CollectorProcess) -> None:
    """A server library passing an explicit (historical) timestamp keeps it: sentAt is the
    library's clock now, so receivedAt - (sentAt - originalTimestamp) lands on it."""
    errors: list[Any] = []
    user = f"gz-{uuid.uuid4().hex[:8]}"
    client = segment.Client("server-key", host=collector.url, sync_mode=True, gzip=True, on_error=lambda e, b: errors.append(e))
    happened = datetime.now(timezone.utc) - timedelta(days=3)
    client.track(user, "Imported", timestamp=happened)
    client.flush()
    assert errors == []
    (row,) = landed(collector, "user_id = ?", [user])
    assert abs(row["timestamp"] - happened.replace(tzinfo=None)) < timedelta(seconds=2)
    assert abs(row["original_timestamp"] - happened.replace(tzinfo=None)) < timedelta(milliseconds=2)


def test_device_clock_skew_is_corrected(collector: CollectorProcess) -> None:
    """A device whose clock is years behind: only the gap between its two clocks counts."""
    anonymous = f"skew-{uuid.uuid4().hex[:8]}"
    body = {"batch": [{"type": "track", "event": "Tapped", "anonymousId": anonymous,
                       "originalTimestamp": "2020-01-01T00:00:00.000Z"}], "sentAt": "2020-01-01T00:00:02.500Z"}
    assert httpx.post(f"{collector.url}/v1/b", json=body, auth=("web-key", "")).status_code == 200
    (row,) = landed(collector, "anonymous_id = ?", [anonymous])
    assert row["timestamp"] == row["received_at"] - timedelta(seconds=2.5)
    assert str(row["sent_at"]) == "2020-01-01 00:00:02.500000"


def test_rudderstack_python_sdk_with_gzip(collector: CollectorProcess) -> None:
    errors: list[Any] = []
    user = f"rs-{uuid.uuid4().hex[:8]}"
    client = RudderClient("web-key", host=collector.url, sync_mode=True, gzip=True, on_error=lambda e, b: errors.append(e))
    client.identify(user, {"email": "grace@example.com"})
    client.track(user, "Signed Up", {"plan": "team"})
    client.flush()
    assert errors == []
    rows = landed(collector, "user_id = ?", [user])
    assert [(r["type"], r["source_id"]) for r in rows] == [("identify", "web"), ("track", "web")]
    # RudderStack sends identify traits in context.traits, not at the top level
    assert rows[0]["traits"] is None
    assert json.loads(rows[0]["context"])["traits"] == {"email": "grace@example.com"}
    assert rows[1]["event"] == "Signed Up"


def test_browser_style_text_plain_short_path(collector: CollectorProcess) -> None:
    """analytics.js posts `text/plain` to /v1/t with the write key in the body."""
    anonymous = f"browser-{uuid.uuid4().hex[:8]}"
    body = {"event": "Clicked", "anonymousId": anonymous, "writeKey": "web-key", "properties": {"x": 1},
            "originalTimestamp": "2026-11-30T10:00:00.000Z", "sentAt": "2026-11-30T10:00:01.000Z"}
    response = httpx.post(f"{collector.url}/v1/t", content=json.dumps(body), headers={"content-type": "text/plain"})
    assert response.status_code == 200
    assert response.headers["access-control-allow-origin"] == "*"
    (row,) = landed(collector, "anonymous_id = ?", [anonymous])
    assert (row["type"], row["event"], row["source_id"]) == ("track", "Clicked", "web")
    assert row["timestamp"] == row["received_at"] - timedelta(seconds=1)
    assert row["message_id"].startswith("corral-")


def test_batch_merges_shared_context_and_rejects_bad_items_one_by_one(collector: CollectorProcess) -> None:
    anonymous = f"batch-{uuid.uuid4().hex[:8]}"
    body = {
        "batch": [
            {"type": "page", "anonymousId": anonymous, "name": "Home", "messageId": f"{anonymous}-1"},
            {"type": "track", "anonymousId": anonymous},
            {"type": "identify", "traits": {"a": 1}},
            {"type": "track", "anonymousId": anonymous, "event": "Ok", "context": {"ip": "9.9.9.9"}, "messageId": f"{anonymous}-2"},
            "not an object",
        ],
        "context": {"ip": "1.1.1.1", "library": {"name": "custom"}},
        "sentAt": "2026-11-30T10:00:00Z",
    }
    response = httpx.post(f"{collector.url}/v1/batch", json=body, auth=("web-key", ""))
    assert response.status_code == 200
    assert response.json() == {
        "success": True, "accepted": 2, "rejected": 3,
        "errors": [
            {"index": 1, "reason": "track without 'event'"},
            {"index": 2, "reason": "missing both 'userId' and 'anonymousId'"},
            {"index": 4, "reason": "not a JSON object"},
        ],
    }
    rows = landed(collector, "anonymous_id = ?", [anonymous])
    assert [json.loads(r["context"]) for r in rows] == [
        {"ip": "1.1.1.1", "library": {"name": "custom"}},
        {"ip": "9.9.9.9", "library": {"name": "custom"}},
    ]
    kept = [r for r in rejected(collector, "web") if r["message"] == "not an object" or (isinstance(r["message"], dict) and r["message"].get("anonymousId") == anonymous)]
    assert [r["reason"] for r in kept] == ["track without 'event'", "not a JSON object"]


def basic(key: str) -> dict[str, str]:
    return {"authorization": "Basic " + base64.b64encode(f"{key}:".encode()).decode()}


def message(**fields: Any) -> dict[str, Any]:
    return {"type": "track", "event": "E", "userId": "u", **fields}


@pytest.mark.parametrize(
    ("path", "kwargs", "status", "code"),
    [
        ("/v1/track", {"json": message()}, 401, "unauthorized"),
        ("/v1/track", {"json": message(), "headers": basic("wrong")}, 401, "unauthorized"),
        ("/v1/track", {"content": b"{nope", "headers": basic("web-key")}, 400, "invalid_json"),
        ("/v1/track", {"json": message(properties={"big": "x" * 33_000}), "headers": basic("web-key")}, 400, "body_too_large"),
        ("/v1/track", {"json": {"userId": "u"}, "headers": basic("web-key")}, 400, "invalid_message"),
        ("/v1/track", {"json": message(type="page"), "headers": basic("web-key")}, 400, "invalid_message"),
        ("/v1/batch", {"json": {"batch": [message()] * 2501}, "headers": basic("web-key")}, 400, "too_many_messages"),
        ("/v1/batch", {"json": {"batch": [message(properties={"p": "x" * 3000})] * 180}, "headers": basic("web-key")}, 400, "body_too_large"),
        ("/v1/batch", {"json": {"batch": [message(properties={"big": "x" * 34_000})]}, "headers": basic("web-key")}, 400, "message_too_large"),
        ("/v1/batch", {"json": [message()], "headers": basic("web-key")}, 400, "invalid_batch"),
        ("/v1/batch", {"content": b"abc", "headers": {**basic("web-key"), "content-encoding": "br"}}, 415, "unsupported_encoding"),
        ("/v1/batch", {"content": b"not gzip", "headers": {**basic("web-key"), "content-encoding": "gzip"}}, 400, "invalid_gzip"),
        ("/v1/nope", {"json": message(), "headers": basic("web-key")}, 404, "not_found"),
        ("/v1/webhook/nope", {"json": {}, "headers": basic("web-key")}, 404, "not_found"),
    ],
)
def test_bad_requests_get_a_clear_status_and_message(
    collector: CollectorProcess, path: str, kwargs: dict[str, Any], status: int, code: str
) -> None:
    response = httpx.post(collector.url + path, **kwargs)
    assert response.status_code == status, response.text
    body = response.json()
    assert body["code"] == code and body["message"]
    assert httpx.get(f"{collector.url}/health").status_code == 200


def test_gzip_bomb_is_refused_without_inflating_it(collector: CollectorProcess) -> None:
    bomb = gzip.compress(b'{"batch": [' + b" " * 200_000_000 + b"]}", compresslevel=9)
    assert len(bomb) < 500_000
    started = time.monotonic()
    response = httpx.post(f"{collector.url}/v1/batch", content=bomb, headers={**basic("web-key"), "content-encoding": "gzip"})
    assert response.status_code == 400 and response.json()["code"] == "body_too_large"
    assert "inflates past" in response.json()["message"]
    assert time.monotonic() - started < 2  # inflating 200 MB would take far longer


def test_webhook_maps_vendor_events_to_tracks(collector: CollectorProcess) -> None:
    conversation = f"c-{uuid.uuid4().hex[:8]}"
    payload = {"data": {"events": [
        {"id": f"{conversation}-1", "type": "conversation.started", "created_at": "2026-11-30T09:00:00Z",
         "user": {"id": "u_77"}, "visitor_id": "v_1", "conversation": {"id": conversation, "channel": "web"}},
        {"id": f"{conversation}-2", "type": "message.sent", "created_at": "2026-11-30T09:00:05Z",
         "visitor_id": "v_1", "conversation": {"id": conversation}, "message": {"role": "user", "length": 42}},
        {"id": f"{conversation}-3", "type": "orphan", "conversation": {"id": conversation}},
    ]}}
    response = httpx.post(f"{collector.url}/v1/webhook/chat_assistant?writeKey=server-key", json=payload)
    assert response.status_code == 200
    assert response.json()["accepted"] == 2 and response.json()["rejected"] == 1
    rows = landed(collector, "properties ->> 'conversation_id' = ?", [conversation])
    assert [(r["event"], r["user_id"], r["anonymous_id"], r["source_id"]) for r in rows] == [
        ("Assistant conversation.started", "u_77", "v_1", "server"),
        ("Assistant message.sent", None, "v_1", "server"),
    ]
    assert str(rows[0]["timestamp"]) == "2026-11-30 09:00:00"
    assert json.loads(rows[1]["properties"])["message_length"] == 42


def test_metrics_count_outcomes_and_keys_are_never_logged(collector: CollectorProcess) -> None:
    httpx.post(f"{collector.url}/v1/track", json=message(), headers=basic("web-key"))
    metrics = httpx.get(f"{collector.url}/metrics").text
    counts = {line.split(" ")[0]: float(line.split(" ")[1]) for line in metrics.splitlines() if not line.startswith("#")}
    assert counts['corral_collector_messages_total{outcome="accepted"}'] >= 1
    assert counts['corral_collector_requests_total{outcome="refused_unauthorized"}'] >= 1
    assert "web-key" not in collector.output() and "server-key" not in collector.output()


def test_refuses_to_start_without_keys_or_with_a_broken_webhook_file(tmp_path: Path) -> None:
    with pytest.raises(RuntimeError, match="CORRAL_WRITE_KEYS is empty"):
        CollectorProcess(tmp_path / "a", write_keys="").start()
    with pytest.raises(RuntimeError, match="not source:key"):
        CollectorProcess(tmp_path / "b", write_keys="web").start()
    broken = tmp_path / "hooks.yml"
    broken.write_text("chat:\n  event: [unclosed\n")
    with pytest.raises(RuntimeError, match=f"(?s){broken}: not valid YAML.*line 2"):
        CollectorProcess(tmp_path / "c", extra_env={"CORRAL_WEBHOOKS": str(broken)}).start()


def test_every_acknowledged_event_survives_sigkill_exactly_once(tmp_path: Path) -> None:
    """Clients push batches; the collector is SIGKILLed mid-load. After a restart (which seals
    what the dead process left open) and `corral load`, every event that got a 200 is in
    raw.events exactly once, including a batch the client retried after the crash."""
    import signal
    import threading

    env = {"CORRAL_SEGMENT_MAX_AGE_SECONDS": "0.3", "CORRAL_SEGMENT_MAX_BYTES": "300000"}
    process = CollectorProcess(tmp_path / "home", extra_env=env).start()
    acked: set[str] = set()
    last_acked: list[dict[str, Any]] = []
    lock = threading.Lock()
    stop = threading.Event()

    def client(number: int) -> None:
        with httpx.Client(base_url=process.url, auth=("web-key", ""), timeout=5) as http:
            sent = 0
            while not stop.is_set():
                batch = [
                    {"type": "track", "event": "Load", "anonymousId": f"a{number}", "messageId": f"{number}-{sent}-{i}",
                     "properties": {"pad": "x" * 300}}
                    for i in range(50)
                ]
                sent += 1
                try:
                    response = http.post("/v1/batch", json={"batch": batch})
                except httpx.TransportError:
                    return
                if response.status_code == 200:
                    with lock:
                        acked.update(m["messageId"] for m in batch)
                        last_acked[:] = batch

    threads = [threading.Thread(target=client, args=(n,)) for n in range(4)]
    for thread in threads:
        thread.start()
    time.sleep(2.0)
    process.stop(signal.SIGKILL)
    stop.set()
    for thread in threads:
        thread.join(timeout=10)
    assert len(acked) >= 1000, "the collector should have acknowledged a fair amount before the kill"
    assert list(process.home.rglob("*.open")), "a SIGKILL leaves the current segment unsealed"

    restarted = CollectorProcess(process.home, extra_env=env).start()
    retry = httpx.post(f"{restarted.url}/v1/batch", json={"batch": last_acked}, auth=("web-key", ""))
    assert retry.status_code == 200
    restarted.stop()
    assert not list(process.home.rglob("*.open"))

    home = CorralHome(process.home)
    with closing(connect(home)) as con:
        load_landing(con, home.landing)
        counts = dict(con.execute("select message_id, count(*) from raw.events group by message_id").fetchall())
    missing = acked - set(counts)
    assert not missing, f"{len(missing)} acknowledged events lost, e.g. {sorted(missing)[:3]}"
    assert set(counts.values()) == {1}


def test_workers_die_with_the_launcher(tmp_path: Path) -> None:
    import os
    import signal

    process = CollectorProcess(tmp_path / "home").start()
    assert process.process is not None
    os.kill(process.process.pid, signal.SIGKILL)  # only the launcher
    process.stop()  # asserts no worker outlives it
