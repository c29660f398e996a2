"""Mixpanel's Import API (`POST /import?strict=1`) on a real local port, strict as the contract
says (../shared/reference/destination-contracts.md §11): Basic auth with a service account
(and `project_id` in the query) or a project token (401 otherwise), a JSON array of at most
`max_events` events and `max_batch_bytes` (400 / 413 and a violation otherwise), each event
validated (`event`, `properties.time` in ms after 1971 and at most an hour ahead, `distinct_id`,
`$insert_id` of at most 36 letters, digits and dashes): the invalid ones are listed in
`failed_records` by index in a 400 while the valid ones of the same request are imported.
Events are kept by `$insert_id` (a resend is a duplicate, not a second event). `fail(ids)`
refuses chosen insert ids; `down`, `deny_status` and `script` play outages."""

from __future__ import annotations

import base64
import json
import re
import threading
import time
from collections import deque
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import parse_qs, urlsplit

from fakes.server import Answer, Scripted, serve_http

USER, SECRET, PROJECT = "corral-sa.test", "sa-secret", "4242"
INSERT_ID = re.compile(r"^[A-Za-z0-9-]{1,36}$")


@dataclass
class FakeMixpanel:
    max_events: int = 2000
    max_batch_bytes: int = 2 * 1024 * 1024
    script: deque[Scripted] = field(default_factory=deque)
    down: bool = False
    deny_status: int = 0
    failing: dict[str, str] = field(default_factory=dict)  # $insert_id -> message
    requests: int = 0
    received: list[dict[str, Any]] = field(default_factory=list)  # imported events in arrival order, duplicates too
    violations: list[str] = field(default_factory=list)
    lock: threading.Lock = field(default_factory=threading.Lock)
    url: str = ""

    def handle(self, method: str, target: str, headers: Any, body: bytes) -> Answer:
        with self.lock:
            self.requests += 1
            if self.script:
                s = self.script.popleft()
                return s.status, s.headers, s.body, s.stall_seconds
            if self.down:
                return 503, {}, "unavailable", 0.0
            url = urlsplit(target)
            query = {k: v[0] for k, v in parse_qs(url.query).items()}
            if method != "POST" or url.path != "/import":
                return 404, {}, "not found", 0.0
            account = "Basic " + base64.b64encode(f"{USER}:{SECRET}".encode()).decode()
            if self.deny_status or headers.get("authorization") != account or query.get("project_id") != PROJECT:
                return self.deny_status or 401, {}, json.dumps({"code": 401, "error": "Invalid credentials", "status": "Unauthorized"}), 0.0
            if query.get("strict") != "1":
                self.violations.append("an import without strict=1")
            if len(body) > self.max_batch_bytes:
                self.violations.append(f"a request of {len(body):,} bytes, at most {self.max_batch_bytes:,}")
                return 413, {}, json.dumps({"code": 413, "error": f"request exceeds max limit of {self.max_batch_bytes} bytes"}), 0.0
            events = json.loads(body)
            if not isinstance(events, list) or len(events) > self.max_events:
                self.violations.append(f"{len(events)} events in one request, at most {self.max_events}")
                return 400, {}, json.dumps({"code": 400, "error": "too many events", "status": "Bad Request"}), 0.0
            failed, imported = [], 0
            for index, event in enumerate(events):
                problem = self._invalid(event)
                if problem:
                    failed.append({"index": index, "insert_id": (event.get("properties") or {}).get("$insert_id"), **problem})
                    continue
                self.received.append(event)
                imported += 1
            if failed:
                return 400, {}, json.dumps({"code": 400, "error": "some data points in the request failed validation", "status": "Bad Request",
                                            "num_records_imported": imported, "failed_records": failed}), 0.0
            return 200, {"content-type": "application/json"}, json.dumps({"code": 200, "num_records_imported": imported, "status": "OK"}), 0.0

    def _invalid(self, event: Any) -> dict[str, str] | None:
        properties = event.get("properties") if isinstance(event, dict) else None
        if not isinstance(properties, dict) or not isinstance(event.get("event"), str) or not event["event"]:
            return {"field": "event", "message": "'event' must be a non-empty string"}
        moment = properties.get("time")
        if not isinstance(moment, int) or not 31_536_000_000 <= moment <= (time.time() + 3600) * 1000:
            return {"field": "properties.time", "message": "'properties.time' is invalid"}
        if not isinstance(properties.get("distinct_id"), str):
            return {"field": "properties.distinct_id", "message": "'properties.distinct_id' must be a string"}
        insert = properties.get("$insert_id")
        if not isinstance(insert, str) or not INSERT_ID.match(insert):
            return {"field": "properties.$insert_id", "message": "'properties.$insert_id' is invalid"}
        if insert in self.failing:
            return {"field": "properties", "message": self.failing[insert]}
        return None

    def insert_ids(self) -> list[str]:
        with self.lock:
            return [e["properties"]["$insert_id"] for e in self.received]


@contextmanager
def serve(fake: FakeMixpanel) -> Iterator[FakeMixpanel]:
    with serve_http(lambda method, path, headers, body: fake.handle(method, path, headers, body)) as url:  # looked up per request: tests may wrap it
        fake.url = url
        yield fake
