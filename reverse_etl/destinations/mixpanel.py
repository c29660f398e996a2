"""Mixpanel (event syncs only): the Import API, `POST <base>/import?strict=1`
(../shared/reference/destination-contracts.md §11).

Env (prefix `settings.env_prefix`, default MIXPANEL): `<prefix>_BASE_URL` (default
https://api.mixpanel.com; EU https://api-eu.mixpanel.com), and either a service account
(`<prefix>_SERVICE_ACCOUNT_USER`, `<prefix>_SERVICE_ACCOUNT_SECRET`, `<prefix>_PROJECT_ID`:
Basic user:secret and `project_id` in the query) or `<prefix>_PROJECT_TOKEN` (Basic token:).

Events: track as its event name, page as `Loaded a Page`, screen as `Loaded a Screen` (Segment's
names), with the properties, `time` in ms, `distinct_id` (the user id, else `$device:<anonymous
id>`), `$user_id` / `$device_id`, and `$insert_id` from the message id (as is when it is at most
36 letters, digits and dashes, else the md5 of it in hex: stable, so Mixpanel dedupes a resend).
Identify, group and alias are profile calls, not events: left out in the warehouse.

Limits: 2,000 events and 2 MB per request (the older, lower of the documented 2 MB / 10 MB), 1 MB
per event. With strict=1 a 400 is a partial success: `failed_records` (by `index`) failed with
Mixpanel's message, every other event of the request was imported. 429/5xx are retried (back off,
Mixpanel documents no Retry-After), 401/403 stop the sync.
"""

from __future__ import annotations

import base64
import hashlib
import re
from datetime import UTC, datetime
from typing import Any, ClassVar

import httpx

from reverse_etl.destinations.base import (
    AuthorizationFailed,
    BatchRejected,
    RecordResult,
    raise_for_status,
    send_request,
)
from reverse_etl.destinations.event_base import EventCapabilities, EventDestination, json_bytes
from reverse_etl.syncs import EventSyncSpec, SyncConfigError

INSERT_ID = re.compile(r"^[A-Za-z0-9-]{1,36}$")
EVENT_NAMES = {"page": "Loaded a Page", "screen": "Loaded a Screen"}


def insert_id(message_id: str) -> str:
    return message_id if INSERT_ID.match(message_id) else hashlib.md5(message_id.encode()).hexdigest()


def epoch_ms(timestamp: str | None) -> int | None:
    if not timestamp:
        return None
    parsed = datetime.fromisoformat(timestamp)
    return int((parsed if parsed.tzinfo else parsed.replace(tzinfo=UTC)).timestamp() * 1000)


class MixpanelDestination(EventDestination):
    name: ClassVar[str] = "mixpanel"
    event_capabilities: ClassVar[EventCapabilities] = EventCapabilities(
        batch_size=2000, max_batch_bytes=2 * 1024 * 1024, max_event_bytes=1024 * 1024, envelope_bytes=2,
        types=frozenset({"track", "page", "screen"}),
    )

    @staticmethod
    def _prefix(sync: EventSyncSpec) -> str:
        return str(sync.settings.get("env_prefix") or "MIXPANEL")

    def check_events(self, sync: EventSyncSpec) -> None:
        if unknown := sorted(set(sync.settings) - {"env_prefix", "batch_size"}):
            raise SyncConfigError(f"sync {sync.name!r}: unknown mixpanel setting(s) {unknown} (known: batch_size, env_prefix)")
        size = sync.settings.get("batch_size", 2000)
        if not isinstance(size, int) or isinstance(size, bool) or not 1 <= size <= 2000:
            raise SyncConfigError(f"sync {sync.name!r}: settings.batch_size must be a whole number from 1 to 2,000, got {size!r}")
        p = self._prefix(sync)
        account = [self.env.get(f"{p}_{k}") for k in ("SERVICE_ACCOUNT_USER", "SERVICE_ACCOUNT_SECRET", "PROJECT_ID")]
        if not all(account) and not self.env.get(f"{p}_PROJECT_TOKEN"):
            raise SyncConfigError(f"sync {sync.name!r}: set {p}_SERVICE_ACCOUNT_USER, {p}_SERVICE_ACCOUNT_SECRET and {p}_PROJECT_ID "
                                  f"(a service account), or {p}_PROJECT_TOKEN")
        if self.client is None:
            raise SyncConfigError(f"sync {sync.name!r}: the mixpanel destination needs an HTTP client")
        self.event_capabilities = EventCapabilities(**{**self.event_capabilities.__dict__, "batch_size": size})  # type: ignore[misc]

    def open_events(self, sync: EventSyncSpec) -> None:
        p = self._prefix(sync)
        self.url = self.env.get(f"{p}_BASE_URL", "https://api.mixpanel.com").rstrip("/") + "/import"
        self.params = {"strict": "1"}
        if self.env.get(f"{p}_SERVICE_ACCOUNT_USER") and self.env.get(f"{p}_SERVICE_ACCOUNT_SECRET") and self.env.get(f"{p}_PROJECT_ID"):
            user = f"{self.env[f'{p}_SERVICE_ACCOUNT_USER']}:{self.env[f'{p}_SERVICE_ACCOUNT_SECRET']}"
            self.params["project_id"] = self.env[f"{p}_PROJECT_ID"]
        else:
            user = f"{self.env[f'{p}_PROJECT_TOKEN']}:"
        self.authorization = "Basic " + base64.b64encode(user.encode()).decode()

    def encode(self, event: dict[str, Any]) -> bytes:
        properties: dict[str, Any] = {**(event.get("properties") or {})}
        user, device = event.get("userId"), event.get("anonymousId")
        properties.update({
            "time": epoch_ms(event.get("timestamp")),
            "distinct_id": str(user) if user else f"$device:{device}" if device else "",
            "$insert_id": insert_id(str(event["messageId"])),
        })
        if user:
            properties["$user_id"] = str(user)
        if device:
            properties["$device_id"] = str(device)
        if event.get("name"):
            properties.setdefault("name", event["name"])
        name = event.get("event") if event["type"] == "track" else EVENT_NAMES.get(event["type"], event["type"])
        return json_bytes({"event": name, "properties": {k: v for k, v in properties.items() if v is not None}})

    def send_events(self, events: list[dict[str, Any]], encoded: list[bytes]) -> list[RecordResult]:
        assert self.client is not None
        keys = [str(event["messageId"]) for event in events]
        body = b"[" + b",".join(encoded) + b"]"
        headers = {"content-type": "application/json", "authorization": self.authorization, "accept": "application/json"}
        response = send_request(self.client, "POST", self.url, params=self.params, content=body, headers=headers, what="mixpanel")
        if response.status_code == 400:
            return self._partial(response, keys)
        raise_for_status(response, "mixpanel")
        if response.status_code >= 300:
            raise BatchRejected(f"mixpanel: HTTP {response.status_code} (redirects are not followed)")
        return [RecordResult(key, ok=True) for key in keys]

    @staticmethod
    def _partial(response: httpx.Response, keys: list[str]) -> list[RecordResult]:
        """strict=1: the listed records failed, the others were imported."""
        try:
            answer = response.json()
        except ValueError:
            answer = None
        failed = answer.get("failed_records") if isinstance(answer, dict) else None
        if not isinstance(failed, list) or not failed:
            message = answer.get("error") if isinstance(answer, dict) else response.text[:300]
            if isinstance(message, str) and "credential" in message.lower():
                raise AuthorizationFailed(f"mixpanel: HTTP 400: {message}")
            raise BatchRejected(f"mixpanel: HTTP 400: {message}")
        reasons: dict[int, str] = {}
        for record in failed:
            if isinstance(record, dict) and isinstance(record.get("index"), int) and 0 <= record["index"] < len(keys):
                reasons[record["index"]] = f"{record.get('field', '?')}: {record.get('message', 'failed validation')}"
        return [RecordResult(key, ok=i not in reasons, error=reasons.get(i)) for i, key in enumerate(keys)]
