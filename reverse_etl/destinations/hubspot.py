"""HubSpot destination: contacts upserted by email and static list membership, over CRM v3
(../shared/reference/destination-contracts.md §2).

Env: `HUBSPOT_ACCESS_TOKEN` (private-app or OAuth token, required), `HUBSPOT_BASE_URL` (default
https://api.hubapi.com), `HUBSPOT_REQUESTS_PER_10S` (the token's rolling 10-second limit,
default 190: a Professional/Enterprise private app). The mapping must send some column to the
field `email`: contacts are keyed by it.

- `upsert`: `POST /crm/v3/objects/contacts/batch/upsert`, 100 inputs a request, `idProperty`
  email, every mapped field a property, as text (null clears it: ""). A 200 confirms each
  contact with its record id, matched by email (HubSpot does not keep the input order); a 207
  fails the inputs its `errors[].context.ids` name, with HubSpot's message.
- `add_remove` (`settings.list_id`, a MANUAL or SNAPSHOT list): `add` upserts the contacts,
  then `PUT /crm/v3/lists/{id}/memberships/add` with their record ids; `remove` sends the ids
  kept from the add to `.../memberships/remove`. Two requests per add batch: the pace halves.
- Pacing: 95% of the limit with a burst of at most 5 requests, so no rolling 10-second window
  goes over it. 429 (body `policyName` TEN_SECONDLY_ROLLING) and 5xx are retried: Retry-After
  if HubSpot sends one (unconfirmed), else a 1 s pause of every worker, then backoff. Other
  4xx fail the batch with HubSpot's message; 401 and 403 stop the sync.
"""

from __future__ import annotations

import json
from dataclasses import replace
from datetime import date, datetime
from typing import Any, ClassVar

import httpx
import orjson
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
from reverse_etl.syncs import SyncConfigError, SyncSpec

BASE_URL = "https://api.hubapi.com"
UPSERT = "/crm/v3/objects/contacts/batch/upsert"
MEMBERSHIPS = "/crm/v3/lists/{list_id}/memberships/{action}"
MAX_INPUTS = 100
DEFAULT_LIMIT = 190  # requests per rolling 10 s, private app on Professional / Enterprise
WINDOW_SECONDS = 10.0
HEADROOM = 0.95
MAX_BURST = 5.0
THROTTLED_PAUSE = 1.0  # seconds every worker waits after a 429 without Retry-After


def property_value(value: Any) -> str:
    """HubSpot property values are text: "" clears, booleans true/false, times ISO 8601 (naive
    ones are UTC), lists ;-separated (multi-select)."""
    if isinstance(value, str):
        return value
    if value is None:
        return ""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, datetime):
        return value.isoformat() + ("Z" if value.tzinfo is None else "")
    if isinstance(value, date):
        return value.isoformat()
    if isinstance(value, (list, tuple)):
        return ";".join(property_value(v) for v in value)
    if isinstance(value, dict):
        return json.dumps(value, default=str, separators=(",", ":"))
    return str(value)


def email_key(value: Any) -> str:
    return str(value).strip().lower()  # HubSpot emails are case-insensitive


def describe(response: httpx.Response) -> str:
    """HubSpot's error body in one line: category or policy, message, correlation id."""
    try:
        body = response.json()
    except ValueError:
        return response.text[:300] or "(empty body)"
    if not isinstance(body, dict):
        return json.dumps(body)[:300]
    kind = body.get("category") or body.get("policyName") or body.get("errorType")
    text = f"{kind}: {body.get('message')}" if kind else str(body.get("message") or json.dumps(body)[:300])
    return text + (f" (correlationId {body['correlationId']})" if body.get("correlationId") else "")


class HubSpotDestination(Destination):
    name: ClassVar[str] = "hubspot"
    capabilities: ClassVar[Capabilities] = Capabilities(
        modes=frozenset({"upsert", "add_remove"}), batch_size=MAX_INPUTS, max_concurrency=4,
        requests_per_second=HEADROOM * DEFAULT_LIMIT / WINDOW_SECONDS, burst=MAX_BURST,
    )

    def check(self, sync: SyncSpec) -> None:
        super().check(sync)
        if not self.env.get("HUBSPOT_ACCESS_TOKEN"):
            raise SyncConfigError(f"sync {sync.name!r}: set the environment variable HUBSPOT_ACCESS_TOKEN (a HubSpot private-app token)")
        if "email" not in sync.mapping.values():
            raise SyncConfigError(f"sync {sync.name!r}: map a column to the HubSpot field 'email' (contacts are upserted by email)")
        if sync.mode == "add_remove" and not str(sync.settings.get("list_id") or "").strip().isdigit():
            raise SyncConfigError(f"sync {sync.name!r}: mode add_remove needs settings.list_id, the numeric id of a HubSpot static list, "
                                  f"got {sync.settings.get('list_id')!r}")
        if self.client is None:
            raise SyncConfigError(f"sync {sync.name!r}: the hubspot destination needs an HTTP client")
        raw = self.env.get("HUBSPOT_REQUESTS_PER_10S") or str(DEFAULT_LIMIT)
        if not raw.strip().isdigit() or int(raw) < 10:
            raise SyncConfigError(f"sync {sync.name!r}: HUBSPOT_REQUESTS_PER_10S must be a whole number of requests, at least 10, got {raw!r}")
        # a send is one request, an add two (upsert, then membership): pace sends so that
        # requests in any 10 s stay under the limit, burst included
        sends = int(raw) / (2 if sync.mode == "add_remove" else 1)
        burst = max(1.0, min(MAX_BURST, (1 - HEADROOM) * sends))
        rate = min(HEADROOM * sends, sends - burst) / WINDOW_SECONDS
        self.capabilities = replace(self.capabilities, requests_per_second=rate, burst=burst)  # type: ignore[misc]

    def open(self, sync: SyncSpec, schema: pa.Schema) -> None:
        self.base_url = (self.env.get("HUBSPOT_BASE_URL") or BASE_URL).rstrip("/")
        self.list_id = str(sync.settings.get("list_id") or "").strip()
        self.headers = {"authorization": f"Bearer {self.env['HUBSPOT_ACCESS_TOKEN']}", "content-type": "application/json",
                        "accept": "application/json"}

    def send(self, batch: pa.RecordBatch, key_column: str, operation: str) -> list[RecordResult]:
        rows = batch.to_pylist()
        keys = [str(row[key_column]) for row in rows]
        if operation == "upsert":
            return self._upsert(rows, keys)
        if operation == "add":
            return self._add(self._upsert(rows, keys))
        if operation == "remove":
            return self._remove(rows, keys)
        raise BatchRejected(f"hubspot: operation {operation!r} is not supported (upsert, add, remove)")

    def _call(self, method: str, path: str, payload: Any, what: str) -> Any:
        """One request; the JSON answer of a 2xx, else RetryableError or BatchRejected."""
        assert self.client is not None
        body = orjson.dumps(payload)
        response = send_request(self.client, method, self.base_url + path, content=body, headers=self.headers, what=f"hubspot {what}")
        raise_for_status(response, f"hubspot {what}", describe, THROTTLED_PAUSE)  # 401/403: a bad or revoked token, or a missing scope
        return json_answer(response, f"hubspot {what}", orjson.loads)

    def _upsert(self, rows: list[dict[str, Any]], keys: list[str]) -> list[RecordResult]:
        answers: list[RecordResult | None] = [None] * len(rows)
        sent: dict[str, int] = {}  # email key -> row index
        inputs = []
        for i, row in enumerate(rows):
            email = row.get("email")
            key = "" if email is None else email_key(email)
            if not key:
                answers[i] = RecordResult(keys[i], ok=False, error="no email: HubSpot contacts are upserted by email")
            elif key in sent:
                answers[i] = RecordResult(keys[i], ok=False, error=f"email {email!r} is also on record {keys[sent[key]]} "
                                          "of this batch; HubSpot takes one input per contact")
            else:
                sent[key] = i
                inputs.append({"id": str(email), "idProperty": "email",
                               "properties": {k: property_value(v) for k, v in row.items() if k != "destination_id"}})
        if inputs:
            answer = self._call("POST", UPSERT, {"inputs": inputs}, "contacts batch upsert")
            ids, errors, unattributed = self._outcomes(answer)
            for email, i in sent.items():
                if email in errors:
                    answers[i] = RecordResult(keys[i], ok=False, error=errors[email])
                elif email in ids:
                    answers[i] = RecordResult(keys[i], ok=True, destination_id=ids[email])
                else:
                    answers[i] = RecordResult(keys[i], ok=False, error="HubSpot answered no result for this contact"
                                              + (f" ({'; '.join(unattributed)[:500]})" if unattributed else ""))
        return [a for a in answers if a is not None]

    @staticmethod
    def _outcomes(answer: Any) -> tuple[dict[str, str], dict[str, str], list[str]]:
        """Record ids by email from `results`, messages by email from `errors[].context.ids`,
        and the messages of errors that name no contact."""
        if not isinstance(answer, dict):
            raise BatchRejected(f"hubspot contacts batch upsert: unexpected answer {json.dumps(answer)[:200]}")
        ids = {email_key(r["properties"]["email"]): str(r["id"]) for r in answer.get("results") or []
               if isinstance(r, dict) and r.get("id") is not None and (r.get("properties") or {}).get("email")}
        errors: dict[str, str] = {}
        unattributed = []
        for error in answer.get("errors") or []:
            message = f"{error.get('category') or 'error'}: {error.get('message') or json.dumps(error)[:300]}"
            named = (error.get("context") or {}).get("ids") or []
            errors.update((email_key(email), message) for email in named)
            if not named:
                unattributed.append(message)
        return ids, errors, unattributed

    def _add(self, upserted: list[RecordResult]) -> list[RecordResult]:
        ids = list(dict.fromkeys(r.destination_id for r in upserted if r.ok and r.destination_id))
        if not ids:
            return upserted
        answer = self._call("PUT", MEMBERSHIPS.format(list_id=self.list_id, action="add"), ids, f"list {self.list_id} add")
        missing = {str(i) for i in (answer.get("recordIdsMissing") or [])} if isinstance(answer, dict) else set()
        return [replace(r, ok=False, error=f"HubSpot could not add record {r.destination_id} to list {self.list_id}: no such record")
                if r.ok and r.destination_id in missing else r for r in upserted]

    def _remove(self, rows: list[dict[str, Any]], keys: list[str]) -> list[RecordResult]:
        ids = [None if row.get("destination_id") is None else str(row["destination_id"]) for row in rows]
        if any(ids):  # ids HubSpot does not know are not in the list either: removed all the same
            self._call("PUT", MEMBERSHIPS.format(list_id=self.list_id, action="remove"), list(dict.fromkeys(i for i in ids if i)),
                       f"list {self.list_id} remove")
        return [RecordResult(key, ok=True, destination_id=i) if i else
                RecordResult(key, ok=False, error=f"no HubSpot record id is kept for this record (was it ever added?), "
                                                  f"so it cannot be removed from list {self.list_id}")
                for key, i in zip(keys, ids, strict=True)]
