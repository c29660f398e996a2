"""Webhook destination: POSTs each batch as JSON to a URL, signed per Standard Webhooks.

Settings: `env_prefix` (default WEBHOOK): the URL is in `<prefix>_URL`, the signing secret in
`<prefix>_SECRET` (`whsec_<base64>`, Standard Webhooks), and an optional Segment-style shared
secret in `<prefix>_SHARED_SECRET` adds `X-Signature: hex(HMAC-SHA1(secret, body))`;
`batch_size` (default 500, at most 5,000).

Body: `{"type": "corral.sync", "sync", "operation", "records": [...]}`; a removal carries only
the primary key field. Event syncs (`mode: events`) post `{"type": "corral.events", "sync",
"events": [...]}`: Segment-spec messages in order, each with its `messageId` (the idempotency
key), answered the same way (one result per event). Headers `webhook-id` (derived from the body, so a retried batch keeps
its id and the receiver can dedupe), `webhook-timestamp`, `webhook-signature: v1,<base64>`.
A 2xx confirms every record, unless the receiver answers `{"results": [{"ok": bool, "error"?,
"id"?}, ...]}`, one per record, for per-record outcomes. 429 and 5xx are retried (Retry-After
honoured); other answers, redirects included (not followed), fail the batch.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import time
from datetime import date, datetime
from decimal import Decimal
from typing import Any, ClassVar

import httpx
import pyarrow as pa

from reverse_etl.destinations.base import (
    OPERATIONS,
    REMOVALS,
    BatchRejected,
    Capabilities,
    Destination,
    RecordResult,
    raise_for_status,
    send_request,
)
from reverse_etl.destinations.event_base import EventCapabilities, EventDestination, json_bytes
from reverse_etl.syncs import EventSyncSpec, SyncConfigError, SyncSpec


def json_value(value: Any) -> Any:
    """JSON for what Arrow hands back: decimals as numbers, times as ISO 8601 text."""
    if isinstance(value, Decimal):
        return float(value)
    if isinstance(value, (datetime, date)):
        return value.isoformat()
    return str(value)


def standard_signature(secret: str, message_id: str, timestamp: int, body: bytes) -> str:
    """`v1,<base64 HMAC-SHA256>` over `id.timestamp.body` with the base64-decoded secret."""
    key = base64.b64decode(secret.removeprefix("whsec_"))
    digest = hmac.new(key, f"{message_id}.{timestamp}.".encode() + body, hashlib.sha256).digest()
    return "v1," + base64.b64encode(digest).decode()


class WebhookDestination(Destination, EventDestination):
    name: ClassVar[str] = "webhook"
    capabilities: ClassVar[Capabilities] = Capabilities(modes=frozenset({"upsert", "insert", "update", "mirror", "add_remove"}),
                                                        batch_size=500, max_concurrency=4)
    event_capabilities: ClassVar[EventCapabilities] = EventCapabilities(batch_size=500)

    def check(self, sync: SyncSpec) -> None:
        super().check(sync)
        size = self._check_settings(sync)
        self.capabilities = Capabilities(**{**self.capabilities.__dict__, "batch_size": size})  # type: ignore[misc]

    def check_events(self, sync: EventSyncSpec) -> None:
        size = self._check_settings(sync)
        self.event_capabilities = EventCapabilities(**{**self.event_capabilities.__dict__, "batch_size": size})  # type: ignore[misc]

    def _check_settings(self, sync: SyncSpec | EventSyncSpec) -> int:
        size = sync.settings.get("batch_size", 500)
        if not isinstance(size, int) or isinstance(size, bool) or not 1 <= size <= 5000:
            raise SyncConfigError(f"sync {sync.name!r}: settings.batch_size must be a whole number from 1 to 5,000, got {size!r}")
        prefix = self._prefix(sync)
        for suffix in ("URL", "SECRET"):
            if not self.env.get(f"{prefix}_{suffix}"):
                raise SyncConfigError(f"sync {sync.name!r}: set the environment variable {prefix}_{suffix} (the webhook's {suffix.lower()})")
        try:
            base64.b64decode(self.env[f"{prefix}_SECRET"].removeprefix("whsec_"), validate=True)
        except ValueError:
            raise SyncConfigError(f"sync {sync.name!r}: {prefix}_SECRET must be whsec_ followed by base64") from None
        if self.client is None:
            raise SyncConfigError(f"sync {sync.name!r}: the webhook destination needs an HTTP client")
        return size

    @staticmethod
    def _prefix(sync: SyncSpec | EventSyncSpec) -> str:
        return str(sync.settings.get("env_prefix") or "WEBHOOK")

    def open(self, sync: SyncSpec, schema: pa.Schema) -> None:
        self._open(sync)

    def open_events(self, sync: EventSyncSpec) -> None:
        self._open(sync)

    def _open(self, sync: SyncSpec | EventSyncSpec) -> None:
        self.sync = sync
        prefix = self._prefix(sync)
        self.url = self.env[f"{prefix}_URL"]
        self.secret = self.env[f"{prefix}_SECRET"]
        self.shared_secret = self.env.get(f"{prefix}_SHARED_SECRET")

    def send(self, batch: pa.RecordBatch, key_column: str, operation: str) -> list[RecordResult]:
        assert operation in OPERATIONS and self.client is not None
        rows = batch.to_pylist()
        keys = [str(row[key_column]) for row in rows]
        if operation in REMOVALS:
            records: list[dict[str, Any]] = [{key_column: row[key_column]} for row in rows]
        else:
            records = [{k: v for k, v in row.items() if k != "destination_id"} for row in rows]
        body = json.dumps({"type": "corral.sync", "sync": self.sync.name, "operation": operation, "records": records},
                          separators=(",", ":"), default=json_value).encode()
        return self._results(self._post(body), keys)

    def send_events(self, events: list[dict[str, Any]], encoded: list[bytes]) -> list[RecordResult]:
        assert self.client is not None
        head = json_bytes({"type": "corral.events", "sync": self.sync.name})[:-1]
        body = head + b',"events":[' + b",".join(encoded) + b"]}"
        return self._results(self._post(body), [str(event["messageId"]) for event in events])

    def _post(self, body: bytes) -> httpx.Response:
        assert self.client is not None
        message_id = "msg_" + hashlib.sha256(body).hexdigest()[:32]
        timestamp = int(time.time())
        headers = {
            "content-type": "application/json",
            "webhook-id": message_id,
            "webhook-timestamp": str(timestamp),
            "webhook-signature": standard_signature(self.secret, message_id, timestamp, body),
        }
        if self.shared_secret:
            headers["X-Signature"] = hmac.new(self.shared_secret.encode(), body, hashlib.sha1).hexdigest()
        response = send_request(self.client, "POST", self.url, content=body, headers=headers, what="webhook")
        raise_for_status(response, "webhook")
        if response.status_code >= 300:
            raise BatchRejected(f"webhook: HTTP {response.status_code} (redirects are not followed)")
        return response

    @staticmethod
    def _results(response: httpx.Response, keys: list[str]) -> list[RecordResult]:
        try:
            answer = response.json() if response.content else None
        except ValueError:
            answer = None
        results = answer.get("results") if isinstance(answer, dict) else None
        if not isinstance(results, list):
            return [RecordResult(key, ok=True) for key in keys]
        if len(results) != len(keys):
            raise BatchRejected(f"webhook: answered {len(results)} results for {len(keys)} records")
        return [
            RecordResult(key, ok=bool(r.get("ok")), error=None if r.get("ok") else str(r.get("error") or "refused by the receiver"),
                         destination_id=None if r.get("id") is None else str(r.get("id")))
            for key, r in zip(keys, results, strict=True)
        ]
