"""Segment-format forwarding (event syncs only): `POST <base>/v1/batch` to Segment, RudderStack,
Corral's own collector or any Segment-compatible endpoint, so Corral can sit in front of an
existing workspace (../shared/reference/destination-contracts.md §1).

Settings: `env_prefix` (default SEGMENT): the endpoint's base URL in `<prefix>_BASE_URL`
(default https://api.segment.io; EU: https://events.eu1.segmentapis.com), the source's write
key in `<prefix>_WRITE_KEY`, sent as Basic auth (`base64(writeKey + ":")`); `batch_size`
(default and at most 2,500 events).

Limits: at most 2,500 events and 500,000 bytes per request, 32 KB per event (an event over it
is rejected before sending, as Segment would answer 400 for the whole batch). Each event keeps
its `messageId`, Segment's dedup key. A 2xx confirms the batch (Segment answers 200 even for
events it drops later); 400 fails the batch's events; 429/5xx are retried (Retry-After
honoured); 401/403 stop the sync.
"""

from __future__ import annotations

import base64
from typing import Any, ClassVar

from reverse_etl.destinations.base import BatchRejected, RecordResult, raise_for_status, send_request
from reverse_etl.destinations.event_base import EventCapabilities, EventDestination
from reverse_etl.syncs import EventSyncSpec, SyncConfigError

MAX_EVENTS = 2500
MAX_BATCH_BYTES = 500_000
MAX_EVENT_BYTES = 32 * 1024


class SegmentDestination(EventDestination):
    name: ClassVar[str] = "segment"
    event_capabilities: ClassVar[EventCapabilities] = EventCapabilities(
        batch_size=MAX_EVENTS, max_batch_bytes=MAX_BATCH_BYTES, max_event_bytes=MAX_EVENT_BYTES, envelope_bytes=64,
    )

    @staticmethod
    def _prefix(sync: EventSyncSpec) -> str:
        return str(sync.settings.get("env_prefix") or "SEGMENT")

    def check_events(self, sync: EventSyncSpec) -> None:
        if unknown := sorted(set(sync.settings) - {"env_prefix", "batch_size"}):
            raise SyncConfigError(f"sync {sync.name!r}: unknown segment setting(s) {unknown} (known: batch_size, env_prefix)")
        size = sync.settings.get("batch_size", MAX_EVENTS)
        if not isinstance(size, int) or isinstance(size, bool) or not 1 <= size <= MAX_EVENTS:
            raise SyncConfigError(f"sync {sync.name!r}: settings.batch_size must be a whole number from 1 to {MAX_EVENTS:,}, got {size!r}")
        if not self.env.get(f"{self._prefix(sync)}_WRITE_KEY"):
            raise SyncConfigError(f"sync {sync.name!r}: set the environment variable {self._prefix(sync)}_WRITE_KEY (the source's write key)")
        if self.client is None:
            raise SyncConfigError(f"sync {sync.name!r}: the segment destination needs an HTTP client")
        self.event_capabilities = EventCapabilities(**{**self.event_capabilities.__dict__, "batch_size": size})  # type: ignore[misc]

    def open_events(self, sync: EventSyncSpec) -> None:
        prefix = self._prefix(sync)
        self.url = self.env.get(f"{prefix}_BASE_URL", "https://api.segment.io").rstrip("/") + "/v1/batch"
        key = self.env[f"{prefix}_WRITE_KEY"]
        self.authorization = "Basic " + base64.b64encode(f"{key}:".encode()).decode()

    def send_events(self, events: list[dict[str, Any]], encoded: list[bytes]) -> list[RecordResult]:
        assert self.client is not None
        body = b'{"batch":[' + b",".join(encoded) + b"]}"
        headers = {"content-type": "application/json", "authorization": self.authorization, "user-agent": "corral-forwarding"}
        response = send_request(self.client, "POST", self.url, content=body, headers=headers, what="segment")
        raise_for_status(response, "segment")
        if response.status_code >= 300:
            raise BatchRejected(f"segment: HTTP {response.status_code} (redirects are not followed)")
        return [RecordResult(str(event["messageId"]), ok=True) for event in events]
