"""Customer.io destination: people identified over the Track API v2 batch endpoint, deleted
(mirror), and manual segment membership over the Track API v1 segment endpoints
(../shared/reference/destination-contracts.md §3.1, §3.2).

Env: `CUSTOMERIO_SITE_ID` and `CUSTOMERIO_API_KEY` (Track API credentials, HTTP Basic
site_id:api_key, both required), `CUSTOMERIO_TRACK_URL` (default https://track.customer.io; EU
workspaces: https://track-eu.customer.io), `CUSTOMERIO_REQUESTS_PER_SECOND` (the Track API's
fair-use limit, default 100: the contract finds 100 in older docs and 1,000 in the newest spec
snapshot, so the lower one unless the account says otherwise).

Settings: `identifier`, `id` (default) or `email`: what people are identified by, and the
mapped field that holds it (the mapping must send some column to that field). Every other
mapped field is an attribute (null removes it; dates and times as ISO 8601 text, except in
attributes named `*_at`, Customer.io's convention for timestamps, which get Unix seconds). The
destination id kept per record is the identifier value, so a removal whose row is gone (only
the primary key is left) still names the person.

- `upsert`: `POST /api/v2/batch` with `{"type":"person","identifiers":{id|email},"action":
  "identify","attributes":{...}}` entries, packed into requests under 500 KB; an entry over
  32 KB fails alone, before sending. A 200 confirms the request; a 207 fails the entries its
  `errors[].batch_index` name, with Customer.io's reason, field and message.
- `mirror`: upsert, and removed rows are sent as `"action":"delete"` entries of the same batch.
- `add_remove` (`settings.segment_id`, a manual segment; `identifier` must be `id`, since
  remove_customers only takes ids): `add` identifies the people (so they exist), then `POST
  /api/v1/segments/{id}/add_customers?id_type=id` `{"ids":[...]}` with those identified, at most
  1,000 ids a call; `remove` sends `remove_customers` the same way. Customer.io ignores ids it
  does not know and answers 200 `{}`: membership is confirmed by that answer.
- Pacing: every request (an add is two, a large batch several) takes a token from a bucket
  with a burst of at most 5 (5% of the limit) and a rate of 95% of the rest, so no second goes
  over the limit; the engine itself does not pace. 429 and 5xx are retried (Retry-After if given, else every worker pauses 1 s first),
  401/403 stop the sync, other 4xx fail the batch with Customer.io's message.

Uncertain: the rate limit (above); whether an identify is processed before a segment add sent
right after it (the Track API is asynchronous: an add that arrives first is ignored silently).
"""

from __future__ import annotations

import base64
import json
import math
from dataclasses import replace
from datetime import UTC, date, datetime
from decimal import Decimal
from typing import Any, ClassVar

import httpx
import pyarrow as pa

from reverse_etl.destinations.base import (
    BatchRejected,
    Capabilities,
    Destination,
    RecordResult,
    json_answer,
    raise_for_status,
    send_request,
)
from reverse_etl.pacing import TokenBucket
from reverse_etl.syncs import SyncConfigError, SyncSpec

TRACK_URL = "https://track.customer.io"
BATCH = "/api/v2/batch"
SEGMENT = "/api/v1/segments/{segment_id}/{action}_customers?id_type={id_type}"
MAX_REQUEST_BYTES = 500_000  # "smaller than 500kb"
MAX_ENTRY_BYTES = 32_000  # "each of the requests within the batch must also be 32kb or smaller"
MAX_SEGMENT_IDS = 1000
DEFAULT_LIMIT = 100.0  # requests per second
HEADROOM = 0.95
MAX_BURST = 5.0
THROTTLED_PAUSE = 1.0  # seconds every worker waits after a 429 without Retry-After
IDENTIFIERS = ("id", "email")
ENVELOPE = len(b'{"batch":[]}')


def attribute_value(name: str, value: Any) -> Any:
    """JSON for an attribute: decimals as numbers, non-finite numbers as null (removed), times
    as ISO 8601 (naive ones are UTC) or, in `*_at` attributes, Unix seconds."""
    if isinstance(value, Decimal):
        value = float(value)
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, datetime):
        moment = value if value.tzinfo else value.replace(tzinfo=UTC)
        return int(moment.timestamp()) if name.endswith("_at") else moment.isoformat().replace("+00:00", "Z")
    if isinstance(value, date):
        return int(datetime(value.year, value.month, value.day, tzinfo=UTC).timestamp()) if name.endswith("_at") \
            else value.isoformat()
    return value


def describe(response: httpx.Response) -> str:
    """Customer.io's error body in one line: `meta.error`, `meta.errors` or `errors[]`."""
    try:
        body = response.json()
    except ValueError:
        return response.text[:300] or "(empty body)"
    if isinstance(body, dict):
        meta = body.get("meta") if isinstance(body.get("meta"), dict) else {}
        if meta.get("error"):
            return str(meta["error"])
        if meta.get("errors"):
            return "; ".join(map(str, meta["errors"]))[:500]
        if isinstance(body.get("errors"), list) and body["errors"]:
            return "; ".join(entry_error(e) for e in body["errors"])[:500]
    return json.dumps(body)[:300]


def entry_error(error: Any) -> str:
    if not isinstance(error, dict):
        return str(error)
    text = ": ".join(str(error[k]) for k in ("reason", "field") if error.get(k))
    return f"{text}: {error['message']}" if error.get("message") and text else str(error.get("message") or text or json.dumps(error))


def encoded(entry: dict[str, Any]) -> bytes:
    return json.dumps(entry, separators=(",", ":"), default=str, allow_nan=False).encode()


class CustomerIoDestination(Destination):
    name: ClassVar[str] = "customerio"
    capabilities: ClassVar[Capabilities] = Capabilities(modes=frozenset({"upsert", "mirror", "add_remove"}), batch_size=200,
                                                         max_concurrency=8)

    def check(self, sync: SyncSpec) -> None:
        super().check(sync)
        for variable in ("CUSTOMERIO_SITE_ID", "CUSTOMERIO_API_KEY"):
            if not (self.env.get(variable) or "").strip():
                raise SyncConfigError(f"sync {sync.name!r}: set the environment variable {variable} (Customer.io Track API credentials)")
        identifier = sync.settings.get("identifier", "id")
        if identifier not in IDENTIFIERS:
            raise SyncConfigError(f"sync {sync.name!r}: settings.identifier must be 'id' or 'email', got {identifier!r}")
        if identifier not in sync.mapping.values():
            raise SyncConfigError(f"sync {sync.name!r}: map a column to the Customer.io field {identifier!r} "
                                  f"(people are identified by it; settings.identifier chooses id or email)")
        if sync.mode == "add_remove":
            if identifier != "id":
                raise SyncConfigError(f"sync {sync.name!r}: mode add_remove needs settings.identifier 'id' "
                                      "(Customer.io removes people from manual segments by id only)")
            if not str(sync.settings.get("segment_id") or "").strip().isdigit():
                raise SyncConfigError(f"sync {sync.name!r}: mode add_remove needs settings.segment_id, the numeric id of a Customer.io "
                                      f"manual segment, got {sync.settings.get('segment_id')!r}")
        if self.client is None:
            raise SyncConfigError(f"sync {sync.name!r}: the customerio destination needs an HTTP client")
        raw = self.env.get("CUSTOMERIO_REQUESTS_PER_SECOND") or str(DEFAULT_LIMIT)
        try:
            limit = float(raw)
        except ValueError:
            limit = 0.0
        if not math.isfinite(limit) or limit < 2:
            raise SyncConfigError(f"sync {sync.name!r}: CUSTOMERIO_REQUESTS_PER_SECOND must be a number of requests, at least 2, got {raw!r}")
        # a token bucket lets through at most burst + rate requests in any second; 5% of the
        # rest is slack for requests that leave on time but arrive bunched
        self.burst = max(1.0, min(MAX_BURST, (1 - HEADROOM) * limit))
        self.rate = HEADROOM * (limit - self.burst)
        if sync.mode == "add_remove":  # one segment call (at most 1,000 ids) per batch
            self.capabilities = replace(self.capabilities, batch_size=MAX_SEGMENT_IDS)  # type: ignore[misc]

    def open(self, sync: SyncSpec, schema: pa.Schema) -> None:
        self.base_url = (self.env.get("CUSTOMERIO_TRACK_URL") or TRACK_URL).rstrip("/")
        self.identifier = sync.settings.get("identifier", "id")
        self.segment_id = str(sync.settings.get("segment_id") or "").strip()
        credentials = base64.b64encode(f"{self.env['CUSTOMERIO_SITE_ID'].strip()}:{self.env['CUSTOMERIO_API_KEY'].strip()}".encode())
        self.headers = {"authorization": f"Basic {credentials.decode()}", "content-type": "application/json", "accept": "application/json"}
        self.bucket = TokenBucket(self.rate, self.burst)

    def send(self, batch: pa.RecordBatch, key_column: str, operation: str) -> list[RecordResult]:
        rows = batch.to_pylist()
        keys = [str(row[key_column]) for row in rows]
        actions = {"upsert": "identify", "add": "identify", "delete": "delete"}
        if operation in actions:
            results = self._batch(rows, keys, actions[operation])
            return self._segment(results, "add") if operation == "add" else results
        if operation == "remove":
            results = [RecordResult(key, ok=True, destination_id=person) if person else
                       RecordResult(key, ok=False, error=f"no Customer.io {self.identifier} for this record, so it cannot be removed "
                                                         f"from segment {self.segment_id}")
                       for key, person in zip(keys, map(self._person, rows), strict=True)]
            return self._segment(results, "remove")
        raise BatchRejected(f"customerio: operation {operation!r} is not supported (upsert, delete, add, remove)")

    def _person(self, row: dict[str, Any]) -> str | None:
        """The identifier value: the mapped field, else (a removed row) the one kept from before."""
        value = row.get(self.identifier)
        if value is None:
            value = row.get("destination_id")
        text = "" if value is None else str(value).strip()
        return text or None

    def _call(self, path: str, payload: dict[str, Any] | bytes, what: str) -> tuple[int, Any]:
        """One POST, paced; the status and JSON answer of a 2xx, else RetryableError,
        AuthorizationFailed or BatchRejected."""
        assert self.client is not None
        body = payload if isinstance(payload, bytes) else encoded(payload)
        self.bucket.acquire()
        response = send_request(self.client, "POST", self.base_url + path, content=body, headers=self.headers, what=f"customerio {what}")
        raise_for_status(response, f"customerio {what}", describe, THROTTLED_PAUSE, pause=self.bucket.pause)  # every worker waits
        return response.status_code, json_answer(response, f"customerio {what}")

    def _batch(self, rows: list[dict[str, Any]], keys: list[str], action: str) -> list[RecordResult]:
        answers: list[RecordResult | None] = [None] * len(rows)
        seen: dict[str, int] = {}
        entries: list[tuple[int, str, bytes]] = []  # row index, identifier value, the encoded entry
        for i, row in enumerate(rows):
            person = self._person(row)
            if person is None:
                answers[i] = RecordResult(keys[i], ok=False, error=f"no {self.identifier}: Customer.io people are identified by it")
                continue
            same = person.lower() if self.identifier == "email" else person
            if same in seen:
                answers[i] = RecordResult(keys[i], ok=False, error=f"{self.identifier} {person!r} is also on record {keys[seen[same]]} "
                                                                   "of this batch; one entry per person")
                continue
            seen[same] = i
            entry: dict[str, Any] = {"type": "person", "identifiers": {self.identifier: person}, "action": action}
            if action == "identify":
                entry["attributes"] = {k: attribute_value(k, v) for k, v in row.items() if k not in ("destination_id", self.identifier)}
            data = encoded(entry)
            if len(data) > MAX_ENTRY_BYTES:
                answers[i] = RecordResult(keys[i], ok=False, error=f"the Customer.io entry for this record is {len(data):,} bytes; "
                                                                   f"the limit is {MAX_ENTRY_BYTES:,}")
                continue
            entries.append((i, person, data))
        for chunk in self._chunks(entries):
            body = b'{"batch":[' + b",".join(data for _, _, data in chunk) + b"]}"
            status, answer = self._call(BATCH, body, f"{action} batch")
            failed: dict[int, list[str]] = {}
            for error in (answer.get("errors") or []) if status == 207 and isinstance(answer, dict) else []:
                index = error.get("batch_index") if isinstance(error, dict) else None
                if isinstance(index, int) and 0 <= index < len(chunk):
                    failed.setdefault(index, []).append(entry_error(error))
            if status == 207 and not failed:
                raise BatchRejected(f"customerio {action} batch: HTTP 207 naming no entry: {json.dumps(answer)[:300]}")
            for n, (i, person, _) in enumerate(chunk):
                answers[i] = RecordResult(keys[i], ok=False, error="; ".join(failed[n])) if n in failed else \
                    RecordResult(keys[i], ok=True, destination_id=person)
        return [a for a in answers if a is not None]

    @staticmethod
    def _chunks(entries: list[tuple[int, str, bytes]]) -> list[list[tuple[int, str, bytes]]]:
        """Entries packed in order into requests under MAX_REQUEST_BYTES."""
        chunks: list[list[tuple[int, str, bytes]]] = []
        size = MAX_REQUEST_BYTES
        for entry in entries:
            if size + len(entry[2]) + 1 > MAX_REQUEST_BYTES:
                chunks.append([])
                size = ENVELOPE
            chunks[-1].append(entry)
            size += len(entry[2]) + 1
        return chunks

    def _segment(self, results: list[RecordResult], action: str) -> list[RecordResult]:
        """Add (or remove) the people of the results that are ok, 1,000 ids a call."""
        ids = list(dict.fromkeys(r.destination_id for r in results if r.ok and r.destination_id))
        for start in range(0, len(ids), MAX_SEGMENT_IDS):
            path = SEGMENT.format(segment_id=self.segment_id, action=action, id_type=self.identifier)
            self._call(path, {"ids": ids[start:start + MAX_SEGMENT_IDS]}, f"segment {self.segment_id} {action}")
        return results
