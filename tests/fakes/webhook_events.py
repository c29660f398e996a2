"""The strict webhook receiver of fakes/webhook.py for event syncs: the same signature and
timestamp checks (401/403), scripting, and per-item refusals, for bodies
`{"type": "corral.events", "sync", "events": [...]}`; it keeps the events it accepted in the
order they arrived (`sent_keys()`: their message ids) and answers one result per event."""

from __future__ import annotations

import json
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

from fakes.server import Answer, serve_http
from fakes.webhook import FakeWebhook


@dataclass
class FakeEventWebhook(FakeWebhook):
    key_field: str = "messageId"

    def handle(self, headers: Any, body: bytes) -> Answer:
        with self.lock:
            self.requests += 1
            if self.script:
                s = self.script.popleft()
                return s.status, s.headers, s.body, s.stall_seconds
            problem = self.verify(headers, body) or (f"denied ({self.deny_status})" if self.deny_status else None)
            if problem:
                return self.deny_status or 401, {}, json.dumps({"error": problem}), 0.0
            message = json.loads(body)
            if message.get("type") != "corral.events" or not isinstance(message.get("events"), list):
                self.violations.append("a body that is not corral.events")
                return 400, {}, json.dumps({"error": "expected corral.events"}), 0.0
            events = message["events"]
            if len(events) > self.max_records:
                self.violations.append(f"{len(events)} events in one request, at most {self.max_records}")
                return 413, {}, json.dumps({"error": f"at most {self.max_records} events per request"}), 0.0
            results, accepted = [], []
            for event in events:
                reason = self.refuse(event)
                if reason:
                    results.append({"ok": False, "error": reason})
                    continue
                key = str(event[self.key_field])
                self.records[key] = event
                accepted.append(key)
                results.append({"ok": True})
            self.deliveries.append(("forward", accepted))
            self.message_ids.append(headers.get("webhook-id"))
            return 200, {"content-type": "application/json"}, json.dumps({"results": results}), 0.0


@contextmanager
def serve(fake: FakeEventWebhook) -> Iterator[FakeEventWebhook]:
    def handle(method: str, path: str, headers: Any, body: bytes) -> Answer:
        return fake.handle(headers, body)

    with serve_http(handle) as url:
        fake.url = f"{url}/hook"
        yield fake
