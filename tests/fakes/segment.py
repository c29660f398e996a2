"""A Segment-compatible `/v1/batch` endpoint on a real local port that behaves as the contract
says (../shared/reference/destination-contracts.md §1): Basic auth with the write key (401
otherwise), a JSON body of at most `max_batch_bytes` with events of at most `max_event_bytes`
(400 `{"code", "message"}` otherwise), at most `max_events` per batch (over it: 200, the
events dropped, a violation recorded, as Segment does), every item with a `type` and a
`messageId`, userId or anonymousId (else dropped, still 200), dedup by messageId. It can be
scripted (429 with Retry-After, 5xx, stalls), taken `down` (503 to every request) or made to
refuse credentials. Every limit is a parameter with the documented value as default."""

from __future__ import annotations

import base64
import json
import threading
from collections import deque
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any

from fakes.server import Answer, Scripted, serve_http

WRITE_KEY = "corral-test-write-key"


@dataclass
class FakeSegment:
    write_key: str = WRITE_KEY
    max_events: int = 2500
    max_batch_bytes: int = 500_000
    max_event_bytes: int = 32 * 1024
    script: deque[Scripted] = field(default_factory=deque)
    down: bool = False
    deny_status: int = 0
    requests: int = 0
    received: list[dict[str, Any]] = field(default_factory=list)  # every accepted event, in the order it arrived (duplicates too)
    dropped: list[tuple[str, str]] = field(default_factory=list)  # (messageId, why): accepted with 200 but not kept
    violations: list[str] = field(default_factory=list)  # requests a client should never make
    lock: threading.Lock = field(default_factory=threading.Lock)
    url: str = ""

    def handle(self, method: str, path: str, headers: Any, body: bytes) -> Answer:
        with self.lock:
            self.requests += 1
            if self.script:
                s = self.script.popleft()
                return s.status, s.headers, s.body, s.stall_seconds
            if self.down:
                return 503, {}, "service unavailable", 0.0
            if method != "POST" or path != "/v1/batch":
                return 404, {}, "not found", 0.0
            expected = "Basic " + base64.b64encode(f"{self.write_key}:".encode()).decode()
            if self.deny_status or headers.get("authorization") != expected:
                return self.deny_status or 401, {}, json.dumps({"code": "unauthorized", "message": "invalid write key"}), 0.0
            if len(body) > self.max_batch_bytes:
                self.violations.append(f"a batch of {len(body):,} bytes, at most {self.max_batch_bytes:,}")
                return self._bad("batch_too_large", f"batch over {self.max_batch_bytes} bytes")
            try:
                batch = json.loads(body)["batch"]
                assert isinstance(batch, list)
            except (ValueError, KeyError, TypeError, AssertionError):
                self.violations.append("a body that is not {batch: [...]}")
                return self._bad("invalid_json", "body must be JSON with a batch list")
            for item in batch:
                if len(json.dumps(item, separators=(",", ":"), ensure_ascii=False).encode()) > self.max_event_bytes:
                    self.violations.append(f"an event over {self.max_event_bytes:,} bytes")
                    return self._bad("event_too_large", f"event over {self.max_event_bytes} bytes")
            if len(batch) > self.max_events:
                self.violations.append(f"{len(batch)} events in one batch, at most {self.max_events}")
                self.dropped += [(str(item.get("messageId")), "batch over the event limit") for item in batch]
                return 200, {"content-type": "application/json"}, json.dumps({"success": True}), 0.0
            for item in batch:
                if not isinstance(item, dict) or not item.get("type") or not item.get("messageId"):
                    self.violations.append(f"an item without type or messageId: {item!r:.100}")
                    return self._bad("invalid_item", "every item needs a type and a messageId")
                if not (item.get("userId") or item.get("anonymousId")):
                    self.dropped.append((item["messageId"], "no_user_anon_id"))
                    continue
                self.received.append(item)
            return 200, {"content-type": "application/json"}, json.dumps({"success": True}), 0.0

    @staticmethod
    def _bad(code: str, message: str) -> Answer:
        return 400, {"content-type": "application/json"}, json.dumps({"code": code, "message": message}), 0.0

    def message_ids(self) -> list[str]:
        """Message ids in the order they arrived, duplicates included."""
        with self.lock:
            return [str(item["messageId"]) for item in self.received]

    def events(self) -> dict[str, dict[str, Any]]:
        """What Segment keeps: one event per messageId (the first copy)."""
        with self.lock:
            kept: dict[str, dict[str, Any]] = {}
            for item in self.received:
                kept.setdefault(str(item["messageId"]), item)
            return kept


@contextmanager
def serve(fake: FakeSegment) -> Iterator[FakeSegment]:
    """Run the fake on a free local port (fake.url is the base URL) until the block ends."""
    with serve_http(lambda method, path, headers, body: fake.handle(method, path, headers, body)) as url:  # looked up per request: tests may wrap it
        fake.url = url
        yield fake
