"""Amplitude (event syncs only): HTTP V2, `POST <base>/2/httpapi`, or the Batch API,
`POST <base>/batch` (`settings.api: batch`, for backfills)
(../shared/reference/destination-contracts.md §12).

Env (prefix `settings.env_prefix`, default AMPLITUDE): `<prefix>_API_KEY` (sent in the body, as
Amplitude wants), `<prefix>_BASE_URL` (default https://api2.amplitude.com; EU
https://api.eu.amplitude.com).

Events: track as its event name, page as `Loaded a Page`, screen as `Loaded a Screen`, identify
as `$identify` with the traits under `user_properties.$set`; `user_id`, `device_id` (the
anonymous id), `time` in ms, `event_properties`, and `insert_id` = the message id (Amplitude
ignores an insert_id it saw in the past 7 days, so a resend is not counted twice).
`options.min_id_length: 1`, so short ids are kept rather than silently dropped.

Limits: 2,000 events and under 1 MB per HTTP V2 request (Batch: 20 MB). A 400 ingests nothing:
the events it names (`events_with_invalid_fields`, `events_with_missing_fields`, ...) fail with
the reason and the rest of the batch is sent again at once (up to three rounds). An invalid API
key stops the sync; 429 (throttled users or devices) waits 30 s, 5xx are retried.
"""

from __future__ import annotations

from typing import Any, ClassVar

from reverse_etl.destinations.base import (
    AuthorizationFailed,
    BatchRejected,
    RecordResult,
    RetryableError,
    raise_for_status,
    send_request,
)
from reverse_etl.destinations.event_base import EventCapabilities, EventDestination, json_bytes
from reverse_etl.destinations.mixpanel import EVENT_NAMES, epoch_ms
from reverse_etl.syncs import EventSyncSpec, SyncConfigError

INDEX_MAPS = ("events_with_invalid_fields", "events_with_missing_fields", "events_with_invalid_id_lengths", "silenced_events")
ROUNDS = 3


class AmplitudeDestination(EventDestination):
    name: ClassVar[str] = "amplitude"
    event_capabilities: ClassVar[EventCapabilities] = EventCapabilities(
        batch_size=2000, max_batch_bytes=1_000_000 - 1, max_event_bytes=1_000_000 - 256, envelope_bytes=256,
        types=frozenset({"track", "page", "screen", "identify"}),
    )

    @staticmethod
    def _prefix(sync: EventSyncSpec) -> str:
        return str(sync.settings.get("env_prefix") or "AMPLITUDE")

    def check_events(self, sync: EventSyncSpec) -> None:
        if unknown := sorted(set(sync.settings) - {"env_prefix", "batch_size", "api"}):
            raise SyncConfigError(f"sync {sync.name!r}: unknown amplitude setting(s) {unknown} (known: api, batch_size, env_prefix)")
        api = sync.settings.get("api", "http_v2")
        if api not in ("http_v2", "batch"):
            raise SyncConfigError(f"sync {sync.name!r}: settings.api must be http_v2 or batch, got {api!r}")
        size = sync.settings.get("batch_size", 2000)
        if not isinstance(size, int) or isinstance(size, bool) or not 1 <= size <= 2000:
            raise SyncConfigError(f"sync {sync.name!r}: settings.batch_size must be a whole number from 1 to 2,000, got {size!r}")
        if not self.env.get(f"{self._prefix(sync)}_API_KEY"):
            raise SyncConfigError(f"sync {sync.name!r}: set the environment variable {self._prefix(sync)}_API_KEY")
        if self.client is None:
            raise SyncConfigError(f"sync {sync.name!r}: the amplitude destination needs an HTTP client")
        limit = 20_000_000 if api == "batch" else 1_000_000 - 1
        self.event_capabilities = EventCapabilities(  # type: ignore[misc]
            **{**self.event_capabilities.__dict__, "batch_size": size, "max_batch_bytes": limit, "max_event_bytes": min(limit - 256, 1_000_000)})

    def open_events(self, sync: EventSyncSpec) -> None:
        p = self._prefix(sync)
        path = "/batch" if sync.settings.get("api") == "batch" else "/2/httpapi"
        self.url = self.env.get(f"{p}_BASE_URL", "https://api2.amplitude.com").rstrip("/") + path
        self.head = json_bytes({"api_key": self.env[f"{p}_API_KEY"], "options": {"min_id_length": 1}})[:-1]

    def encode(self, event: dict[str, Any]) -> bytes:
        kind = event["type"]
        out: dict[str, Any] = {
            "event_type": "$identify" if kind == "identify" else event.get("event") if kind == "track" else EVENT_NAMES.get(kind, kind),
            "user_id": event.get("userId"), "device_id": event.get("anonymousId"), "time": epoch_ms(event.get("timestamp")),
            "insert_id": str(event["messageId"]),
        }
        if kind == "identify":
            out["user_properties"] = {"$set": event.get("traits") or {}}
        else:
            out["event_properties"] = {**(event.get("properties") or {}), **({"name": event["name"]} if event.get("name") else {})}
        return json_bytes({k: v for k, v in out.items() if v is not None})

    def send_events(self, events: list[dict[str, Any]], encoded: list[bytes]) -> list[RecordResult]:
        assert self.client is not None
        keys = [str(event["messageId"]) for event in events]
        reasons: dict[int, str] = {}
        for _ in range(ROUNDS):
            left = [i for i in range(len(keys)) if i not in reasons]
            if not left:
                break
            answer = self._post([encoded[i] for i in left])
            if answer is None:
                return [RecordResult(key, ok=i not in reasons, error=reasons.get(i)) for i, key in enumerate(keys)]
            reasons.update({left[j]: why for j, why in answer.items()})
        return [RecordResult(key, ok=False, error=reasons.get(i, "amplitude refused the request it was part of three times"))
                for i, key in enumerate(keys)]

    def _post(self, encoded: list[bytes]) -> dict[int, str] | None:
        """None when every event was ingested; else the refused ones (index in `encoded`: why),
        the others not ingested and to be sent again."""
        body = self.head + b',"events":[' + b",".join(encoded) + b"]}"
        response = send_request(self.client, "POST", self.url, content=body, headers={"content-type": "application/json", "accept": "*/*"},
                                what="amplitude")
        try:
            answer = response.json()
        except ValueError:
            answer = {}
        answer = answer if isinstance(answer, dict) else {}
        if response.status_code == 429:
            raise RetryableError(f"amplitude: HTTP 429: {answer.get('error', response.text[:200])}", retry_after=30.0)
        if response.status_code == 400:
            error = str(answer.get("error", response.text[:200]))
            if error.startswith("Invalid API key"):
                raise AuthorizationFailed(f"amplitude: HTTP 400: {error}")
            refused: dict[int, str] = {}
            for key in INDEX_MAPS:
                value = answer.get(key)
                items = value.items() if isinstance(value, dict) else [(key, value)] if isinstance(value, list) else []
                for field, indexes in items:
                    for index in indexes if isinstance(indexes, list) else []:
                        if isinstance(index, int) and 0 <= index < len(encoded):
                            refused.setdefault(index, f"{error} ({key.removeprefix('events_with_')}: {field})")
            if not refused:
                raise BatchRejected(f"amplitude: HTTP 400: {error}")
            return refused
        raise_for_status(response, "amplitude")
        if response.status_code >= 300:
            raise BatchRejected(f"amplitude: HTTP {response.status_code} (redirects are not followed)")
        return None
