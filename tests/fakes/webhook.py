"""A webhook receiver on a real local HTTP port that behaves like a strict consumer of the
Standard Webhooks spec (../shared/reference/destination-contracts.md §8): it verifies the
signature and timestamp (401 otherwise), refuses batches over its limit (413), applies each
operation to the records it holds, and can be scripted to answer 429 (with or without
Retry-After), 5xx, stall past the client's timeout, or refuse single records."""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import threading
import time
from collections import deque
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any

from fakes.server import Answer, Scripted, serve_http

SECRET = "whsec_" + base64.b64encode(b"corral-test-signing-key-0123456789").decode()


@dataclass
class FakeWebhook:
    key_field: str
    secret: str = SECRET
    shared_secret: str | None = None  # when set, a Segment-style X-Signature is required too
    max_records: int = 500
    tolerance_seconds: int = 300
    records: dict[str, dict[str, Any]] = field(default_factory=dict)
    script: deque[Scripted] = field(default_factory=deque)
    refuse: Callable[[dict[str, Any]], str | None] = lambda record: None
    requests: int = 0
    deliveries: list[tuple[str, list[str]]] = field(default_factory=list)  # accepted: (operation, keys)
    message_ids: list[str] = field(default_factory=list)
    violations: list[str] = field(default_factory=list)  # requests over max_records
    deny_status: int = 0  # when set, every request is refused with this status (401 or 403)
    lock: threading.Lock = field(default_factory=threading.Lock)
    url: str = ""

    def verify(self, headers: Any, body: bytes) -> str | None:
        message_id, timestamp, signatures = headers.get("webhook-id"), headers.get("webhook-timestamp"), headers.get("webhook-signature")
        if not (message_id and timestamp and signatures):
            return "missing webhook-id, webhook-timestamp or webhook-signature"
        if abs(time.time() - int(timestamp)) > self.tolerance_seconds:
            return "timestamp outside the tolerance"
        key = base64.b64decode(self.secret.removeprefix("whsec_"))
        expected = base64.b64encode(hmac.new(key, f"{message_id}.{timestamp}.".encode() + body, hashlib.sha256).digest()).decode()
        if not any(s.startswith("v1,") and hmac.compare_digest(s[3:], expected) for s in signatures.split()):
            return "no valid v1 signature"
        if self.shared_secret is not None:
            segment = hmac.new(self.shared_secret.encode(), body, hashlib.sha1).hexdigest()
            if not hmac.compare_digest(headers.get("X-Signature", ""), segment):
                return "no valid X-Signature"
        return None

    def handle(self, headers: Any, body: bytes) -> Answer:
        with self.lock:
            self.requests += 1
            if self.script:
                s = self.script.popleft()
                return s.status, s.headers, s.body, s.stall_seconds
            problem = self.verify(headers, body) or (f"denied ({self.deny_status})" if self.deny_status else None)
            if problem and self.deny_status == 403:
                return 403, {}, json.dumps({"error": problem}), 0.0
            if problem:
                return 401, {}, json.dumps({"error": problem}), 0.0
            message = json.loads(body)
            records = message["records"]
            if len(records) > self.max_records:
                self.violations.append(f"{len(records)} records in one request, at most {self.max_records}")
                return 413, {}, json.dumps({"error": f"at most {self.max_records} records per request"}), 0.0
            results = []
            accepted = []
            for record in records:
                reason = None if message["operation"] in ("delete", "remove") else self.refuse(record)
                key = str(record[self.key_field])
                if reason:
                    results.append({"ok": False, "error": reason})
                    continue
                if message["operation"] in ("delete", "remove"):
                    self.records.pop(key, None)
                else:
                    self.records[key] = record
                accepted.append(key)
                results.append({"ok": True, "id": f"hook-{key}"})
            self.deliveries.append((message["operation"], accepted))
            self.message_ids.append(headers.get("webhook-id"))
            return 200, {"content-type": "application/json"}, json.dumps({"results": results}), 0.0

    def sent_keys(self) -> list[str]:
        return [key for _, keys in self.deliveries for key in keys]


@contextmanager
def serve(fake: FakeWebhook) -> Iterator[FakeWebhook]:
    """Run the fake on a free local port (fake.url) until the block ends."""

    def handle(method: str, path: str, headers: Any, body: bytes) -> Answer:
        return fake.handle(headers, body)

    with serve_http(handle) as url:
        fake.url = f"{url}/hook"
        yield fake
