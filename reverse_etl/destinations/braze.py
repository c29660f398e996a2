"""Braze destination: user attributes over the REST API's `/users/track`, audience membership
as a custom attribute or a subscription group, and users deleted for mirror syncs
(../shared/reference/destination-contracts.md §5).

Env: `BRAZE_API_KEY` (a REST API key with `users.track`, plus `users.delete` for mirror and
`subscription.status.set` for subscription groups; required), `BRAZE_REST_ENDPOINT` (the
workspace's instance, e.g. https://rest.fra-01.braze.eu; default https://rest.iad-01.braze.com),
`BRAZE_REQUESTS_PER_3S` (the workspace's `/users/track` limit, default 3,000 per 3 s),
`BRAZE_BATCH_SIZE` (attribute objects per request, default and most 75; 50 on "Monthly Active
Users CY 24-25" contracts).

Matching: `settings.identifier` (default `external_id`; or `email`, `braze_id`) is the mapped
field that names the user; its value, as sent, is kept as the record's destination id, so
removals find the user even when the row (and its fields) is gone.

- `upsert` / `mirror`: `POST /users/track` `{"attributes": [...]}`, one object per record with
  every mapped field (dates and times ISO 8601 in UTC, null unsets). Braze answers 2xx with
  `message: "success"` and, for refused objects, `errors: [{type, input_array, index}]` inside
  that same answer: those records fail with `type`, the others succeed. An error naming no
  object fails every record of the request (Braze confirmed none of them in particular).
- `delete` (mirror): `POST /users/delete` with `external_ids` / `email_addresses` /
  `braze_ids`, 50 a request (a batch of 75 is two requests).
- `add_remove`, `settings.membership`:
  - `attribute` (default) with `settings.attribute`: add sends the user's fields and sets the
    attribute true; remove sets it false (`_update_existing_only`, so a user that is gone is
    not created again). With `settings.value` the attribute is an array: `{"add": [value]}` /
    `{"remove": [value]}`.
  - `subscription_group` with `settings.subscription_group_id` (identifier external_id or
    email): batches of 50; add sends the fields by `/users/track`, then
    `POST /v2/subscription/status/set` `subscribed` for the users it accepted; remove sets
    `unsubscribed` by the kept identifiers.
- Pacing: the token bucket keeps every window of every endpoint a mode uses under 95% of its
  limit (`/users/track` the env limit per 3 s; `/users/delete` 20,000 and subscription status
  5,000 a minute). Every answer's `X-RateLimit-Remaining` / `-Reset` (epoch seconds) is read:
  at 0 remaining, the next send of that endpoint waits for the reset without asking; a 429
  waits for `Retry-After` or the reset (else 1 s). 5xx and timeouts are retried; 401/403 (and
  404, Braze's unknown key) stop the sync; other 4xx fail the batch with Braze's message.

Uncertain: the body of `/v2/subscription/status/set` answers (taken as `{"message":
"success"}`, anything else refused); whether a 202 `queued` (maintenance) is later applied
(taken as accepted: Braze says it queued the request); what update-only objects for unknown
users answer (taken as nothing).
"""

from __future__ import annotations

import json
import math
import threading
import time
from dataclasses import replace
from datetime import UTC, date, datetime
from decimal import Decimal
from typing import Any, ClassVar

import httpx
import pyarrow as pa

from reverse_etl.destinations.base import (
    AuthorizationFailed,
    BatchRejected,
    Capabilities,
    Destination,
    RecordResult,
    RetryableError,
    retry_after_seconds,
    send_request,
)
from reverse_etl.syncs import SyncConfigError, SyncSpec

BASE_URL = "https://rest.iad-01.braze.com"
TRACK, DELETE, SUBSCRIBE = "/users/track", "/users/delete", "/v2/subscription/status/set"
MAX_OBJECTS = 75  # attribute objects per /users/track request
MAX_IDS = 50  # ids per /users/delete and per subscription group update
DEFAULT_LIMIT = 3000  # /users/track requests per 3 s
WINDOW_SECONDS = 3.0
OTHER_LIMITS = {DELETE: 20_000, SUBSCRIBE: 5_000}  # requests per minute
HEADROOM = 0.95
MAX_BURST = 5.0
THROTTLED_PAUSE = 1.0  # seconds to wait after a 429 that says nothing
IDENTIFIERS = {"external_id": "external_ids", "email": "email_addresses", "braze_id": "braze_ids"}  # -> /users/delete key
SUBSCRIBABLE = {"external_id": "external_ids", "email": "emails"}


def attribute_value(value: Any) -> Any:
    """A Braze attribute value: times ISO 8601 in UTC (naive ones are UTC, dates are midnight),
    decimals as numbers, NaN as null, arrays and objects as they are."""
    if isinstance(value, bool) or value is None or isinstance(value, (str, int)):
        return value
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    if isinstance(value, Decimal):
        return float(value)
    if isinstance(value, datetime):
        utc = value.astimezone(UTC).replace(tzinfo=None) if value.tzinfo else value
        return utc.isoformat(timespec="milliseconds") + "Z"
    if isinstance(value, date):
        return f"{value.isoformat()}T00:00:00.000Z"
    if isinstance(value, (list, tuple)):
        return [attribute_value(v) for v in value]
    if isinstance(value, dict):
        return {str(k): attribute_value(v) for k, v in value.items()}
    return str(value)


def describe(response: httpx.Response) -> str:
    """Braze's error body in one line: its message, then its errors."""
    try:
        body = response.json()
    except ValueError:
        return response.text[:300] or "(empty body)"
    if not isinstance(body, dict):
        return json.dumps(body)[:300]
    errors = body.get("errors")
    return str(body.get("message") or "(no message)") + (f": {json.dumps(errors)[:300]}" if errors else "")


def whole(env: Any, variable: str, default: int, low: int, high: int | None, sync: SyncSpec) -> int:
    raw = (env.get(variable) or str(default)).strip()
    if not raw.isdigit() or int(raw) < low or (high is not None and int(raw) > high):
        bounds = f"from {low} to {high}" if high is not None else f"at least {low}"
        raise SyncConfigError(f"sync {sync.name!r}: {variable} must be a whole number {bounds}, got {raw!r}")
    return int(raw)


class BrazeDestination(Destination):
    name: ClassVar[str] = "braze"
    capabilities: ClassVar[Capabilities] = Capabilities(
        modes=frozenset({"upsert", "mirror", "add_remove"}), batch_size=MAX_OBJECTS, max_concurrency=8,
        requests_per_second=HEADROOM * DEFAULT_LIMIT / (1.1 * WINDOW_SECONDS), burst=MAX_BURST,
    )

    def check(self, sync: SyncSpec) -> None:
        super().check(sync)
        def fail(problem: str) -> SyncConfigError:
            return SyncConfigError(f"sync {sync.name!r}: {problem}")

        if not self.env.get("BRAZE_API_KEY"):
            raise fail("set the environment variable BRAZE_API_KEY (a Braze REST API key with users.track permission)")
        endpoint = self.env.get("BRAZE_REST_ENDPOINT") or BASE_URL
        if not endpoint.startswith(("https://", "http://")):
            raise fail(f"BRAZE_REST_ENDPOINT must be the instance's REST URL, like {BASE_URL}, got {endpoint!r}")
        identifier = sync.settings.get("identifier", "external_id")
        if identifier not in IDENTIFIERS:
            raise fail(f"settings.identifier must be one of {', '.join(IDENTIFIERS)}, got {identifier!r}")
        if identifier not in sync.mapping.values():
            raise fail(f"map a column to the Braze field {identifier!r} (users are matched on settings.identifier, {identifier!r})")
        if shadowing := [f for f in ("external_id", "braze_id") if f != identifier and f in sync.mapping.values()]:
            raise fail(f"the mapping sends {shadowing[0]!r}, which Braze would match users on instead of {identifier!r}")
        membership = sync.settings.get("membership", "attribute")
        batch = whole(self.env, "BRAZE_BATCH_SIZE", MAX_OBJECTS, 1, MAX_OBJECTS, sync)
        if sync.mode == "add_remove":
            if membership == "attribute":
                attribute = sync.settings.get("attribute")
                if not isinstance(attribute, str) or not attribute.strip():
                    raise fail("mode add_remove with membership 'attribute' needs settings.attribute, the custom attribute that says membership")
                if attribute in sync.mapping.values():
                    raise fail(f"settings.attribute {attribute!r} is also a mapped field; pick another name")
            elif membership == "subscription_group":
                if not str(sync.settings.get("subscription_group_id") or "").strip():
                    raise fail("mode add_remove with membership 'subscription_group' needs settings.subscription_group_id")
                if identifier not in SUBSCRIBABLE:
                    raise fail(f"subscription groups take external ids or emails, not {identifier!r} (settings.identifier)")
                batch = min(batch, MAX_IDS)
            else:
                raise fail(f"settings.membership must be 'attribute' or 'subscription_group', got {membership!r}")
        if self.client is None:
            raise fail("the braze destination needs an HTTP client")
        track = whole(self.env, "BRAZE_REQUESTS_PER_3S", DEFAULT_LIMIT, 3, None, sync)
        limits = [(track, WINDOW_SECONDS, 1)]  # (limit, window, requests per send) of each endpoint the mode uses
        if sync.mode == "mirror":
            limits.append((OTHER_LIMITS[DELETE], 60.0, math.ceil(batch / MAX_IDS)))
        if sync.mode == "add_remove" and membership == "subscription_group":
            limits.append((OTHER_LIMITS[SUBSCRIBE], 60.0, 1))
        bursts, rates = [], []
        for limit, window, per_send in limits:  # burst + rate * window stays under the limit, with 10% slack for latency
            sends = limit / per_send
            bursts.append(max(1.0, min(MAX_BURST, (1 - HEADROOM) * sends)))
            rates.append(min(HEADROOM * sends, sends - bursts[-1]) / (1.1 * window))
        self.capabilities = replace(self.capabilities, batch_size=batch, requests_per_second=min(rates),  # type: ignore[misc]
                                    burst=min(bursts))

    def open(self, sync: SyncSpec, schema: pa.Schema) -> None:
        self.base_url = (self.env.get("BRAZE_REST_ENDPOINT") or BASE_URL).rstrip("/")
        self.headers = {"authorization": f"Bearer {self.env['BRAZE_API_KEY']}", "content-type": "application/json",
                        "accept": "application/json"}
        self.identifier = sync.settings.get("identifier", "external_id")
        self.membership = sync.settings.get("membership", "attribute")
        self.attribute = sync.settings.get("attribute")
        self.value = sync.settings.get("value")
        self.group = str(sync.settings.get("subscription_group_id") or "").strip()
        self.lock = threading.Lock()
        self.not_before: dict[str, float] = {}  # endpoint -> epoch seconds its X-RateLimit window resets
        self.refused: str | None = None  # set by a 401/403: every later send is refused without asking

    def send(self, batch: pa.RecordBatch, key_column: str, operation: str) -> list[RecordResult]:
        rows = batch.to_pylist()
        keys = [str(row[key_column]) for row in rows]
        ids = [self._user(row) for row in rows]
        if operation == "upsert":
            return self._track(rows, keys, ids)
        if operation == "delete":
            return self._delete(keys, ids)
        if operation == "add" and self.membership == "attribute":
            return self._track(rows, keys, ids, {self.attribute: {"add": [self.value]} if self.value is not None else True})
        if operation == "add":
            return self._subscribe(self._track(rows, keys, ids), "subscribed")
        if operation == "remove" and self.membership == "attribute":
            change = {self.attribute: {"remove": [self.value]} if self.value is not None else False, "_update_existing_only": True}
            return self._track([{} for _ in rows], keys, ids, change)
        if operation == "remove":
            return self._subscribe([RecordResult(k, ok=True, destination_id=i) for k, i in zip(keys, ids, strict=True)], "unsubscribed")
        raise BatchRejected(f"braze: operation {operation!r} is not supported (upsert, delete, add, remove)")

    def _user(self, row: dict[str, Any]) -> str | None:
        """The identifier a record is known by: its field, else the one kept from last time."""
        value = row.get(self.identifier)
        value = row.get("destination_id") if value is None or str(value).strip() == "" else value
        return None if value is None or str(value).strip() == "" else str(value).strip()

    def _call(self, path: str, payload: Any, what: str) -> dict[str, Any]:
        """One POST; Braze's JSON answer of a 2xx, else RetryableError / AuthorizationFailed /
        BatchRejected. Honours the endpoint's X-RateLimit window before and after."""
        assert self.client is not None
        with self.lock:
            if self.refused:
                raise AuthorizationFailed(self.refused)
            wait = self.not_before.get(path, 0.0) - time.time()
        if wait > 0:
            raise RetryableError(f"braze {what}: X-RateLimit-Remaining was 0, waiting {wait:.1f} s for X-RateLimit-Reset", wait)
        body = json.dumps(payload, separators=(",", ":")).encode()
        response = send_request(self.client, "POST", self.base_url + path, content=body, headers=self.headers, what=f"braze {what}")
        reset = self._reset_in(response)
        status = response.status_code
        if reset is not None and response.headers.get("x-ratelimit-remaining", "").strip() in ("0", "-1"):
            with self.lock:
                self.not_before[path] = max(self.not_before.get(path, 0.0), time.time() + reset)
        if status == 429 or status >= 500:
            asked = [s for s in (retry_after_seconds(response), reset if status == 429 else None) if s is not None]
            raise RetryableError(f"braze {what}: HTTP {status}: {describe(response)}",
                                 max(asked) if asked else THROTTLED_PAUSE if status == 429 else None)
        if status in (401, 403, 404):  # Braze answers 404 for an unknown REST API key
            message = f"braze {what}: HTTP {status}: {describe(response)}"
            with self.lock:
                self.refused = message
            raise AuthorizationFailed(message)
        if not 200 <= status < 300:
            raise BatchRejected(f"braze {what}: HTTP {status}: {describe(response)}")
        try:
            answer = response.json()
        except ValueError:
            raise BatchRejected(f"braze {what}: HTTP {status} with a body that is not JSON: {response.text[:200]!r}") from None
        if not isinstance(answer, dict) or answer.get("message") not in ("success", "queued"):
            raise BatchRejected(f"braze {what}: HTTP {status} but not a success: {describe(response)}")
        return answer

    @staticmethod
    def _reset_in(response: httpx.Response) -> float | None:
        """X-RateLimit-Reset as seconds from now (Braze sends epoch seconds; small values are
        taken as seconds already)."""
        raw = response.headers.get("x-ratelimit-reset", "").strip()
        try:
            value = float(raw)
        except ValueError:
            return None
        return max(0.0, value - time.time() if value > 1e9 else value)

    def _track(self, rows: list[dict[str, Any]], keys: list[str], ids: list[str | None],
               extra: dict[str, Any] | None = None) -> list[RecordResult]:
        answers: list[RecordResult | None] = [None] * len(rows)
        objects, sent = [], []  # attribute objects, and the row index of each
        for i, row in enumerate(rows):
            if ids[i] is None:
                answers[i] = RecordResult(keys[i], ok=False, error=f"no {self.identifier}: Braze users are matched on {self.identifier}"
                                          + (" (none was kept from an earlier sync either)" if not row else ""))
                continue
            fields = {k: attribute_value(v) for k, v in row.items() if k != "destination_id"}
            objects.append({**fields, self.identifier: ids[i], **(extra or {})})
            sent.append(i)
        if objects:
            answer = self._call(TRACK, {"attributes": objects}, "users/track")
            refused, unattributed = {}, []
            for error in answer.get("errors") or []:
                if isinstance(error, dict) and error.get("input_array", "attributes") == "attributes" \
                        and isinstance(error.get("index"), int) and 0 <= error["index"] < len(sent):
                    refused[error["index"]] = str(error.get("type") or json.dumps(error))
                else:
                    unattributed.append(error.get("type") or json.dumps(error) if isinstance(error, dict) else str(error))
            for n, i in enumerate(sent):
                if n in refused:
                    answers[i] = RecordResult(keys[i], ok=False, error=f"Braze refused this user: {refused[n]}")
                elif unattributed:
                    answers[i] = RecordResult(keys[i], ok=False, error="Braze answered errors that name no user, so this one is not "
                                              f"confirmed: {'; '.join(map(str, unattributed))[:500]}")
                else:
                    answers[i] = RecordResult(keys[i], ok=True, destination_id=ids[i])
        return [a for a in answers if a is not None]

    def _delete(self, keys: list[str], ids: list[str | None]) -> list[RecordResult]:
        answers = [RecordResult(k, ok=True, destination_id=i) if i else
                   RecordResult(k, ok=False, error=f"no {self.identifier} is kept for this record, so Braze cannot delete it")
                   for k, i in zip(keys, ids, strict=True)]
        known = [n for n, i in enumerate(ids) if i]
        for start in range(0, len(known), MAX_IDS):
            chunk = known[start:start + MAX_IDS]
            try:
                self._call(DELETE, {IDENTIFIERS[self.identifier]: [ids[n] for n in chunk]}, "users/delete")
            except AuthorizationFailed:
                raise
            except BatchRejected as exc:  # the other chunks stand
                for n in chunk:
                    answers[n] = RecordResult(keys[n], ok=False, error=str(exc))
        return answers

    def _subscribe(self, results: list[RecordResult], state: str) -> list[RecordResult]:
        ids = list(dict.fromkeys(r.destination_id for r in results if r.ok and r.destination_id))
        if ids:
            group = {"subscription_group_id": self.group, "subscription_state": state, SUBSCRIBABLE[self.identifier]: ids}
            self._call(SUBSCRIBE, {"subscription_groups": [group]}, f"subscription group {self.group} {state}")
        return [r if r.ok and r.destination_id else
                r if not r.ok else replace(r, ok=False, error=f"no {self.identifier} is kept for this record, so it cannot be "
                                                               f"{state} in subscription group {self.group}")
                for r in results]
