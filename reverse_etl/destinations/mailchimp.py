"""Mailchimp destination: audience (list) members subscribed or updated in batches, archived
(mirror), and static segment (tag) membership, over the Marketing API v3
(../shared/reference/destination-contracts.md §4).

Env: `MAILCHIMP_API_KEY` (required; HTTP Basic with any user name and the key as password),
`MAILCHIMP_BASE_URL` (default `https://<dc>.api.mailchimp.com`, the data center being the key's
suffix: `...-us21` -> us21), `MAILCHIMP_MAX_CONNECTIONS` (Mailchimp's limit is concurrency, not
a rate: 10 simultaneous connections per user, the default; the sync runs that many workers,
each with one request in flight at a time).

Settings: `list_id` (the audience, required), `status_if_new` (required unless the mapping
sends `status_if_new` or `status` per row: `subscribed` only for people who consented to
marketing email, `pending` for double opt-in, `transactional`, `unsubscribed`): the status of
members the sync creates, never applied to existing ones (someone who unsubscribed stays
unsubscribed). It has no default on purpose: subscribing everyone a sync creates is a consent
decision, not a default. The
mapping must send some column to `email_address`: members are keyed by it. Fields named
`status` (applied to existing members too), `status_if_new`, `language`, `email_type` and `vip`
are member fields; every other field is a merge field and its name is the merge tag (upper
case, at most 10 characters: FNAME, LNAME, ...), sent as text or numbers (null clears: "").
The destination id kept per record is the subscriber hash (MD5 of the lower-cased email).

- `upsert`: `POST /3.0/lists/{list_id}` `{"members":[...],"update_existing":true}`, 500 members
  a request. Mailchimp answers 200 even when members fail: each member is confirmed by
  `new_members` / `updated_members`, or failed by `errors[]` (`error_code`, `error`,
  `field_message`) matched by email; a member named by neither fails.
- `mirror`: upsert, and removed members are archived one by one (`DELETE
  /lists/{id}/members/{hash}`, by the kept hash; 404: not on the list any more, done).
- `add_remove` (`settings.segment_id`, a static segment or tag): `add` subscribes or updates
  the members, then `POST /lists/{id}/segments/{segment_id}` `{"members_to_add": [emails]}`
  (errors[] fail the emails they name); `remove` sends `members_to_remove` (500 emails) when the
  sync's primary key is the email, else `DELETE .../segments/{segment_id}/members/{hash}` per
  member (404: not a member, done).
- 429 (too many connections: no Retry-After) and 5xx are retried after a 1 s pause then
  backoff, 401/403 stop the sync, other 4xx fail the batch with Mailchimp's problem detail.

Uncertain: whether `updated_members` lists members whose data did not change (they are
failed as unconfirmed if not); whether idle keep-alive connections count toward the 10.
"""

from __future__ import annotations

import base64
import hashlib
import json
import math
import re
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
    json_answer,
    raise_for_status,
    send_request,
)
from reverse_etl.syncs import SyncConfigError, SyncSpec

API_URL = "https://{dc}.api.mailchimp.com"
BATCH = "/3.0/lists/{list_id}"
SEGMENT = "/3.0/lists/{list_id}/segments/{segment_id}"
MEMBER = "/3.0/lists/{list_id}/members/{hash}"
SEGMENT_MEMBER = "/3.0/lists/{list_id}/segments/{segment_id}/members/{hash}"
MAX_MEMBERS = 500  # per batch subscribe, and per members_to_add / members_to_remove
DEFAULT_CONNECTIONS = 10
MEMBER_FIELDS = ("email_address", "status", "status_if_new", "language", "email_type", "vip")
STATUSES = ("subscribed", "unsubscribed", "pending", "transactional")
MERGE_TAG = re.compile(r"[A-Z0-9_]{1,10}")
DATA_CENTER = re.compile(r"-([a-z]+[0-9]+)$")
THROTTLED_PAUSE = 1.0  # Mailchimp's 429s carry no Retry-After


def subscriber_hash(email: str) -> str:
    return hashlib.md5(email.strip().lower().encode()).hexdigest()


def merge_value(value: Any) -> Any:
    """A merge field value: text or a number; "" clears; dates as YYYY-MM-DD."""
    if value is None:
        return ""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, Decimal):
        value = float(value)
    if isinstance(value, float) and not math.isfinite(value):
        return ""
    if isinstance(value, datetime):
        return (value if value.tzinfo else value.replace(tzinfo=UTC)).isoformat().replace("+00:00", "Z")
    if isinstance(value, date):
        return value.isoformat()
    if isinstance(value, (int, float, str)):
        return value
    return json.dumps(value, default=str, separators=(",", ":"))


def describe(response: httpx.Response) -> str:
    """Mailchimp's problem document in one line: title, detail, field errors."""
    try:
        body = response.json()
    except ValueError:
        return response.text[:300] or "(empty body)"
    if not isinstance(body, dict) or not (body.get("title") or body.get("detail")):
        return json.dumps(body)[:300]
    text = ": ".join(str(body[k]) for k in ("title", "detail") if body.get(k))
    fields = [f"{e.get('field')}: {e.get('message')}" for e in body.get("errors") or [] if isinstance(e, dict)]
    return text + (f" ({'; '.join(fields)})"[:400] if fields else "")


def member_error(error: dict[str, Any]) -> str:
    text = f"{error.get('error_code') or 'ERROR'}: {error.get('error') or json.dumps(error)[:300]}"
    return text + (f" ({error.get('field')}: {error['field_message']})" if error.get("field_message") else "")


class MailchimpDestination(Destination):
    name: ClassVar[str] = "mailchimp"
    capabilities: ClassVar[Capabilities] = Capabilities(modes=frozenset({"upsert", "mirror", "add_remove"}), batch_size=MAX_MEMBERS,
                                                         max_concurrency=DEFAULT_CONNECTIONS)

    def check(self, sync: SyncSpec) -> None:
        super().check(sync)
        key = (self.env.get("MAILCHIMP_API_KEY") or "").strip()
        if not key:
            raise SyncConfigError(f"sync {sync.name!r}: set the environment variable MAILCHIMP_API_KEY (a Mailchimp API key)")
        if not self.env.get("MAILCHIMP_BASE_URL") and not DATA_CENTER.search(key):
            raise SyncConfigError(f"sync {sync.name!r}: MAILCHIMP_API_KEY does not end with its data center (like ...-us21); "
                                  "use the whole key, or set MAILCHIMP_BASE_URL")
        if not re.fullmatch(r"[0-9A-Za-z]+", str(sync.settings.get("list_id") or "")):
            raise SyncConfigError(f"sync {sync.name!r}: set settings.list_id, the id of the Mailchimp audience, got {sync.settings.get('list_id')!r}")
        if "email_address" not in sync.mapping.values():
            raise SyncConfigError(f"sync {sync.name!r}: map a column to the Mailchimp field 'email_address' (members are keyed by it)")
        if bad := sorted(f for f in sync.mapping.values() if f not in MEMBER_FIELDS and not MERGE_TAG.fullmatch(f)):
            raise SyncConfigError(f"sync {sync.name!r}: field(s) {', '.join(map(repr, bad))} are neither member fields "
                                  f"({', '.join(MEMBER_FIELDS)}) nor merge tags (upper case letters, digits, _; at most 10 characters)")
        if "status_if_new" not in sync.settings and not {"status", "status_if_new"} & set(sync.mapping.values()):
            raise SyncConfigError(f"sync {sync.name!r}: set settings.status_if_new, the status of the members this sync creates: "
                                  "'subscribed' only if they consented to marketing email, 'pending' to have Mailchimp ask them "
                                  "(double opt-in), 'transactional' or 'unsubscribed' (or map a column to status_if_new per member)")
        if sync.settings.get("status_if_new", "subscribed") not in STATUSES:
            raise SyncConfigError(f"sync {sync.name!r}: settings.status_if_new must be one of {', '.join(STATUSES)}, "
                                  f"got {sync.settings.get('status_if_new')!r}")
        if sync.mode == "add_remove" and not str(sync.settings.get("segment_id") or "").strip().isdigit():
            raise SyncConfigError(f"sync {sync.name!r}: mode add_remove needs settings.segment_id, the numeric id of a Mailchimp "
                                  f"static segment or tag, got {sync.settings.get('segment_id')!r}")
        if self.client is None:
            raise SyncConfigError(f"sync {sync.name!r}: the mailchimp destination needs an HTTP client")
        raw = self.env.get("MAILCHIMP_MAX_CONNECTIONS") or str(DEFAULT_CONNECTIONS)
        if not raw.strip().isdigit() or not 1 <= int(raw) <= 100:
            raise SyncConfigError(f"sync {sync.name!r}: MAILCHIMP_MAX_CONNECTIONS must be a whole number of connections, 1 to 100, got {raw!r}")
        self.capabilities = replace(self.capabilities, max_concurrency=int(raw))  # type: ignore[misc]

    def open(self, sync: SyncSpec, schema: pa.Schema) -> None:
        key = self.env["MAILCHIMP_API_KEY"].strip()
        data_center = DATA_CENTER.search(key)
        self.base_url = (self.env.get("MAILCHIMP_BASE_URL") or API_URL.format(dc=data_center.group(1) if data_center else "")).rstrip("/")
        self.headers = {"authorization": "Basic " + base64.b64encode(f"corral:{key}".encode()).decode(),
                        "content-type": "application/json", "accept": "application/json"}
        self.list_id = str(sync.settings["list_id"])
        self.segment_id = str(sync.settings.get("segment_id") or "").strip()
        self.status_if_new = sync.settings.get("status_if_new")  # None: each row says (check() made sure the mapping can)

    def send(self, batch: pa.RecordBatch, key_column: str, operation: str) -> list[RecordResult]:
        rows = batch.to_pylist()
        keys = [str(row[key_column]) for row in rows]
        if operation == "upsert":
            return self._subscribe(rows, keys)[0]
        if operation == "add":
            return self._segment_add(*self._subscribe(rows, keys))
        if operation in ("delete", "remove"):
            return self._remove(rows, keys, operation)
        raise BatchRejected(f"mailchimp: operation {operation!r} is not supported (upsert, delete, add, remove)")

    def _call(self, method: str, path: str, payload: Any, what: str, missing_ok: bool = False) -> tuple[int, Any]:
        """One request; the status and JSON answer of a 2xx (or of a 404 when `missing_ok`),
        else RetryableError, AuthorizationFailed or BatchRejected."""
        assert self.client is not None
        body = None if payload is None else json.dumps(payload, separators=(",", ":")).encode()
        response = send_request(self.client, method, self.base_url + path, content=body, headers=self.headers, what=f"mailchimp {what}")
        if response.status_code == 404 and missing_ok:
            return 404, {}
        raise_for_status(response, f"mailchimp {what}", describe, THROTTLED_PAUSE)
        return response.status_code, json_answer(response, f"mailchimp {what}")

    def _subscribe(self, rows: list[dict[str, Any]], keys: list[str]) -> tuple[list[RecordResult], list[str | None]]:
        """Subscribe or update the members; the results, and each record's email."""
        answers: list[RecordResult | None] = [None] * len(rows)
        emails: list[str | None] = [None] * len(rows)
        sent: dict[str, int] = {}  # lower-cased email -> row index
        members = []
        for i, row in enumerate(rows):
            email = "" if row.get("email_address") is None else str(row["email_address"]).strip()
            if not email:
                answers[i] = RecordResult(keys[i], ok=False, error="no email_address: Mailchimp members are keyed by it")
                continue
            if email.lower() in sent:
                answers[i] = RecordResult(keys[i], ok=False, error=f"email_address {email!r} is also on record {keys[sent[email.lower()]]} "
                                                                   "of this batch; one entry per member")
                continue
            wrong = next((f"{f} {row[f]!r} is not one of {', '.join(STATUSES)}" for f in ("status", "status_if_new")
                          if row.get(f) is not None and row[f] not in STATUSES), None)
            status_if_new = row.get("status_if_new") or self.status_if_new or row.get("status")
            if status_if_new is None:
                wrong = "no status_if_new or status for this member, and no settings.status_if_new: its consent is not known"
            if wrong:  # Mailchimp would refuse the whole request for it
                answers[i] = RecordResult(keys[i], ok=False, error=wrong)
                continue
            sent[email.lower()] = i
            emails[i] = email
            member: dict[str, Any] = {"email_address": email, "status_if_new": status_if_new}
            member.update({f: str(row[f]) for f in ("status", "language", "email_type") if row.get(f) is not None})
            if row.get("vip") is not None:
                member["vip"] = bool(row["vip"])
            merge = {k: merge_value(v) for k, v in row.items() if k not in MEMBER_FIELDS and k != "destination_id"}
            if merge:
                member["merge_fields"] = merge
            members.append(member)
        if members:
            _, answer = self._call("POST", BATCH.format(list_id=self.list_id), {"members": members, "update_existing": True},
                                   f"list {self.list_id} batch subscribe")
            if not isinstance(answer, dict):
                raise BatchRejected(f"mailchimp list {self.list_id} batch subscribe: unexpected answer {json.dumps(answer)[:200]}")
            confirmed = {str(m["email_address"]).lower(): str(m.get("id") or subscriber_hash(m["email_address"]))
                         for m in [*(answer.get("new_members") or []), *(answer.get("updated_members") or [])]
                         if isinstance(m, dict) and m.get("email_address")}
            errors = {str(e["email_address"]).strip().lower(): member_error(e) for e in answer.get("errors") or []
                      if isinstance(e, dict) and e.get("email_address")}
            for email, i in sent.items():
                if email in errors:
                    answers[i] = RecordResult(keys[i], ok=False, error=errors[email])
                elif email in confirmed:
                    answers[i] = RecordResult(keys[i], ok=True, destination_id=confirmed[email])
                else:
                    answers[i] = RecordResult(keys[i], ok=False, error="Mailchimp answered no result for this member")
        return [a for a in answers if a is not None], emails

    def _segment_add(self, results: list[RecordResult], emails: list[str | None]) -> list[RecordResult]:
        adding = [email for r, email in zip(results, emails, strict=True) if r.ok and email]
        if not adding:
            return results
        _, answer = self._call("POST", SEGMENT.format(list_id=self.list_id, segment_id=self.segment_id), {"members_to_add": adding},
                               f"segment {self.segment_id} add")
        refused = self._segment_errors(answer)
        return [replace(r, ok=False, error=f"Mailchimp did not add {email} to segment {self.segment_id}: {refused[email.lower()]}")
                if r.ok and email and email.lower() in refused else r for r, email in zip(results, emails, strict=True)]

    @staticmethod
    def _segment_errors(answer: Any) -> dict[str, str]:
        return {str(email).strip().lower(): str(e.get("error") or json.dumps(e)[:200])
                for e in (answer.get("errors") or [] if isinstance(answer, dict) else []) if isinstance(e, dict)
                for email in e.get("email_addresses") or []}

    def _remove(self, rows: list[dict[str, Any]], keys: list[str], operation: str) -> list[RecordResult]:
        """Archive members (delete) or take them out of the segment (remove): by email in bulk
        when the rows still have it (the primary key is the email), else one by one by hash."""
        results: list[RecordResult] = []
        bulk: dict[str, int] = {}
        for i, row in enumerate(rows):
            email = "" if row.get("email_address") is None else str(row["email_address"]).strip()
            member = row.get("destination_id") or (subscriber_hash(email) if email else None)
            if member is None:
                results.append(RecordResult(keys[i], ok=False, error="no email_address or subscriber hash is kept for this record "
                                                                     "(was it ever synced?), so Mailchimp cannot be told"))
            elif operation == "remove" and email:
                results.append(RecordResult(keys[i], ok=True, destination_id=str(member)))
                bulk[email] = i
            else:
                results.append(self._remove_one(keys[i], str(member), operation))
        if bulk:
            _, answer = self._call("POST", SEGMENT.format(list_id=self.list_id, segment_id=self.segment_id),
                                   {"members_to_remove": list(bulk)}, f"segment {self.segment_id} remove")
            refused = self._segment_errors(answer)
            for email, i in bulk.items():
                if email.lower() in refused:
                    results[i] = replace(results[i], ok=False, error=f"Mailchimp did not remove {email} from segment "
                                                                     f"{self.segment_id}: {refused[email.lower()]}")
        return results

    def _remove_one(self, key: str, member: str, operation: str) -> RecordResult:
        if operation == "delete":
            path, what = MEMBER.format(list_id=self.list_id, hash=member), f"list {self.list_id} archive member {member}"
        else:
            path = SEGMENT_MEMBER.format(list_id=self.list_id, segment_id=self.segment_id, hash=member)
            what = f"segment {self.segment_id} remove member {member}"
        try:
            self._call("DELETE", path, None, what, missing_ok=True)  # 404: not there any more, which is what was asked
        except AuthorizationFailed:
            raise
        except BatchRejected as exc:  # this member only (405: "This list member cannot be removed")
            return RecordResult(key, ok=False, error=str(exc), destination_id=member)
        return RecordResult(key, ok=True, destination_id=member)
