"""Amplitude's HTTP V2 API (`POST /2/httpapi`, and `/batch`) on a real local port, strict as
the contract says (../shared/reference/destination-contracts.md §12): `api_key` in the JSON
body (400 "Invalid API key" otherwise), at most `max_events` events and under
`max_batch_bytes` (413 and a violation otherwise), each event with `event_type`, `user_id` or
`device_id` and an integer ms `time`; a 400 lists the bad events by index
(`events_with_missing_fields`, `events_with_invalid_fields`) and ingests nothing of the
request. Events are kept once per `insert_id`. `fail(ids)` refuses chosen insert ids; `down`,
`deny` (an invalid key) and `script` play outages."""

from __future__ import annotations

import json
import threading
from collections import deque
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any

from fakes.server import Answer, Scripted, serve_http

API_KEY = "corral-amplitude-key"


@dataclass
class FakeAmplitude:
    max_events: int = 2000
    max_batch_bytes: int = 1_000_000
    script: deque[Scripted] = field(default_factory=deque)
    down: bool = False
    deny: bool = False
    failing: dict[str, str] = field(default_factory=dict)  # insert_id -> field name refused
    requests: int = 0
    received: list[dict[str, Any]] = field(default_factory=list)  # ingested events in arrival order, duplicates too
    violations: list[str] = field(default_factory=list)
    lock: threading.Lock = field(default_factory=threading.Lock)
    url: str = ""

    def handle(self, method: str, path: str, headers: Any, body: bytes) -> Answer:
        with self.lock:
            self.requests += 1
            if self.script:
                s = self.script.popleft()
                return s.status, s.headers, s.body, s.stall_seconds
            if self.down:
                return 503, {}, json.dumps({"code": 503, "error": "unavailable"}), 0.0
            if method != "POST" or path not in ("/2/httpapi", "/batch"):
                return 400, {}, json.dumps({"code": 400, "error": "Invalid request path"}), 0.0
            if len(body) >= self.max_batch_bytes:
                self.violations.append(f"a request of {len(body):,} bytes, under {self.max_batch_bytes:,} allowed")
                return 413, {}, json.dumps({"code": 413, "error": "Payload too large"}), 0.0
            try:
                payload = json.loads(body)
            except ValueError:
                return 400, {}, json.dumps({"code": 400, "error": "Invalid JSON request body"}), 0.0
            if self.deny or payload.get("api_key") != API_KEY:
                return 400, {}, json.dumps({"code": 400, "error": "Invalid API key: " + str(payload.get("api_key"))}), 0.0
            events = payload.get("events")
            if not isinstance(events, list) or len(events) > self.max_events:
                self.violations.append(f"{len(events) if isinstance(events, list) else 'no'} events in one request, at most {self.max_events}")
                return 413, {}, json.dumps({"code": 413, "error": "Payload too large"}), 0.0
            missing: dict[str, list[int]] = {}
            invalid: dict[str, list[int]] = {}
            for index, event in enumerate(events):
                if not event.get("event_type"):
                    missing.setdefault("event_type", []).append(index)
                if not (event.get("user_id") or event.get("device_id")):
                    missing.setdefault("user_id", []).append(index)
                if not isinstance(event.get("time"), int):
                    invalid.setdefault("time", []).append(index)
                if event.get("insert_id") in self.failing:
                    invalid.setdefault(self.failing[event["insert_id"]], []).append(index)
            if missing or invalid:
                answer: dict[str, Any] = {"code": 400, "error": "Invalid field values on some events"}
                if missing:
                    answer["events_with_missing_fields"] = missing
                if invalid:
                    answer["events_with_invalid_fields"] = invalid
                return 400, {}, json.dumps(answer), 0.0
            self.received += events
            return 200, {"content-type": "application/json"}, json.dumps({"code": 200, "events_ingested": len(events),
                                                                           "payload_size_bytes": len(body), "server_upload_time": 0}), 0.0

    def insert_ids(self) -> list[str]:
        with self.lock:
            return [e["insert_id"] for e in self.received]


@contextmanager
def serve(fake: FakeAmplitude) -> Iterator[FakeAmplitude]:
    with serve_http(lambda method, path, headers, body: fake.handle(method, path, headers, body)) as url:  # looked up per request: tests may wrap it
        fake.url = url
        yield fake
