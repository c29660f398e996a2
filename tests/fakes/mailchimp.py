"""Mailchimp's Marketing API v3 on a real local HTTP port, as strict as the contract
(../shared/reference/destination-contracts.md §4): HTTP Basic with any user name and the API
key as password (401 problem document otherwise); at most 10 simultaneous connections (each
request is counted from arrival to answer; one more is answered 429 and written down); batch
subscribe `POST /3.0/lists/{id}` (at most 500 members, schema errors refuse the request with a
400 problem document, while an invalid email, an unknown merge tag, a member without a status
for a new contact, a duplicate, an existing member without `update_existing` or a scripted
refusal fail that member alone inside a 200: `errors[{email_address, error, error_code,
field, field_message}]`, the others listed in `new_members` / `updated_members`;
`status_if_new` never changes an existing member, `status` does); static segments `POST
/3.0/lists/{id}/segments/{segment_id}` (at most 500 emails to add and 500 to remove; emails not
on the list are refused in `errors[{email_addresses, error}]`); member archive `DELETE
/3.0/lists/{id}/members/{hash}` and `DELETE .../segments/{segment_id}/members/{hash}` (204; 404
for a member not on the list). Scripted answers (5xx, 429, stalls) come first; a stall holds its
connection like a slow answer does.

Every request over a documented size and every connection over the limit is written to
`over_limit` (the harness's violations). State for assertions: `members` (list id -> hash ->
member, archived ones kept with status "archived"), `segments`, `batches` (members per batch
subscribe), `segment_calls`, `deletes`, `peak_connections`, `requests`, `statuses`."""

from __future__ import annotations

import base64
import hashlib
import json
import re
import threading
import time
import uuid
from collections import Counter, deque
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urlsplit

from fakes.server import Answer, Scripted, serve_http

API_KEY = "0123456789abcdef0123456789abcdef-us21"
LIST = "a1b2c3d4e5"
STATUSES = ("subscribed", "unsubscribed", "cleaned", "pending", "transactional")
EMAIL = re.compile(r"[^@\s]+@[^@\s]+\.[^@\s]+")
MERGE_TAG = re.compile(r"[A-Z0-9_]{1,10}")
NOT_JSON = object()


def subscriber_hash(email: str) -> str:
    return hashlib.md5(email.lower().encode()).hexdigest()


def no_refusal(member: dict[str, Any]) -> str | None:
    return None


def problem(status: int, title: str, detail: str, **extra: Any) -> tuple[int, dict[str, Any]]:
    return status, {"type": "https://mailchimp.com/developer/marketing/docs/errors/", "title": title, "status": status, "detail": detail,
                    "instance": str(uuid.uuid4()), **extra}


@dataclass
class FakeMailchimp:
    api_key: str = API_KEY
    max_connections: int = 10
    max_members: int = 500
    max_segment_emails: int = 500
    latency_seconds: float = 0.0  # every answer takes this long, holding its connection
    merge_tags: set[str] | None = None  # the audience's merge fields; None: any well-formed tag
    refuse: Callable[[dict[str, Any]], str | None] = no_refusal  # a message fails that member of a batch subscribe
    refuse_segment: Callable[[str], str | None] = lambda email: None  # a message fails that email of a segment add
    members: dict[str, dict[str, dict[str, Any]]] = field(default_factory=dict)  # list id -> hash -> member; only these lists exist
    segments: dict[str, dict[str, set[str]]] = field(default_factory=dict)  # list id -> static segment id -> member hashes
    batches: list[int] = field(default_factory=list)
    segment_calls: list[tuple[str, str, list[str]]] = field(default_factory=list)  # (segment, add|remove, emails)
    deletes: list[tuple[str, str]] = field(default_factory=list)  # (path kind member|segment, hash)
    over_limit: list[str] = field(default_factory=list)
    script: deque[Scripted] = field(default_factory=deque)
    requests: int = 0
    throttled: int = 0
    connections: int = 0
    peak_connections: int = 0
    statuses: Counter[int] = field(default_factory=Counter)
    deny_status: int = 0  # when set, every request is refused with this status (401 or 403)
    lock: threading.Lock = field(default_factory=threading.Lock)
    url: str = ""

    def records(self, list_id: str = LIST) -> dict[str, dict[str, Any]]:
        """Members not archived, by lower-cased email: email_address, vip, status and merge fields."""
        return {m["email_address"].lower(): {"email_address": m["email_address"], "status": m["status"], "vip": m["vip"], **m["merge_fields"]}
                for m in self.members[list_id].values() if m["status"] != "archived"}

    def segment_emails(self, segment_id: str, list_id: str = LIST) -> set[str]:
        return {self.members[list_id][h]["email_address"].lower() for h in self.segments[list_id][segment_id]}

    # -- HTTP ------------------------------------------------------------------------------

    def handle(self, method: str, path: str, headers: Any, body: bytes) -> Answer:
        with self.lock:
            self.requests += 1
            self.connections += 1
            self.peak_connections = max(self.peak_connections, self.connections)
            crowded = self.connections > self.max_connections
            if crowded:
                self.throttled += 1
                self.over_limit.append(f"{method} {path}: {self.connections} simultaneous connections (at most {self.max_connections})")
            scripted = self.script.popleft() if self.script and not crowded else None
        try:
            if crowded:
                return self._answer(*problem(429, "Too Many Requests", f"You have exceeded the limit of {self.max_connections} "
                                                                       "simultaneous connections."))
            if scripted is not None:
                time.sleep(scripted.stall_seconds)  # held here, so the connection counts while it stalls
                with self.lock:
                    self.statuses[scripted.status] += 1
                return scripted.status, scripted.headers, scripted.body, 0.0
            time.sleep(self.latency_seconds)
            try:
                payload = json.loads(body) if body else None
            except ValueError:
                payload = NOT_JSON
            with self.lock:
                return self._answer(*self._authorized(method, path, headers, payload))
        finally:
            with self.lock:
                self.connections -= 1

    def _answer(self, status: int, answer: Any) -> Answer:
        self.statuses[status] += 1
        if status == 204:
            return 204, {}, "", 0.0
        kind = "application/problem+json" if status >= 400 else "application/json"
        return status, {"content-type": f"{kind}; charset=utf-8"}, json.dumps(answer), 0.0

    def _authorized(self, method: str, path: str, headers: Any, payload: Any) -> tuple[int, Any]:
        if self.deny_status == 403:
            return problem(403, "Forbidden", "You don't have permission to access this resource.")
        given = headers.get("authorization") or ""
        try:
            password = base64.b64decode(given.removeprefix("Basic ")).decode().partition(":")[2] if given.startswith("Basic ") else ""
        except ValueError:
            password = ""
        if password != self.api_key or self.deny_status == 401:
            return problem(401, "API Key Invalid", "Your API key may be invalid, or you've attempted to access the wrong datacenter.")
        if payload is NOT_JSON:
            return problem(400, "JSON Parse Exception", "We encountered an unspecified JSON parsing error.")
        return self._route(method, urlsplit(path).path, payload)

    def _route(self, method: str, path: str, payload: Any) -> tuple[int, Any]:
        parts = path.strip("/").split("/")
        if parts[:2] != ["3.0", "lists"] or len(parts) < 3:
            return problem(404, "Resource Not Found", f"The requested resource could not be found: {path}")
        list_id = parts[2]
        if list_id not in self.members:
            return problem(404, "Resource Not Found", "The requested resource could not be found.")
        route = (method, len(parts), parts[3] if len(parts) > 3 else None, parts[5] if len(parts) > 5 else None)
        if route == ("POST", 3, None, None):
            return self._batch(list_id, payload)
        if route == ("POST", 5, "segments", None):
            return self._segment(list_id, parts[4], payload)
        if route == ("DELETE", 5, "members", None):
            return self._archive(list_id, parts[4])
        if route == ("DELETE", 7, "segments", "members"):
            return self._leave(list_id, parts[4], parts[6])
        return problem(405 if len(parts) in (3, 5, 7) else 404, "Method Not Allowed", f"{method} is not allowed on {path}")

    def _batch(self, list_id: str, payload: Any) -> tuple[int, Any]:
        if not isinstance(payload, dict) or not isinstance(payload.get("members"), list):
            return problem(400, "Invalid Resource", "The resource submitted could not be validated.",
                           errors=[{"field": "members", "message": "Required property members was not present."}])
        members = payload["members"]
        self.batches.append(len(members))
        if len(members) > self.max_members:
            self.over_limit.append(f"a batch subscribe of {len(members)} members (at most {self.max_members})")
            return problem(400, "Invalid Resource", "The resource submitted could not be validated.",
                           errors=[{"field": "members", "message": f"Schema describes array, no more than {self.max_members} items"}])
        for n, member in enumerate(members):
            schema = (
                "must be an object" if not isinstance(member, dict)
                else "email_address must be a string" if not isinstance(member.get("email_address"), str)
                else "status must be one of " + ", ".join(STATUSES) if member.get("status", "subscribed") not in STATUSES
                else "status_if_new must be one of " + ", ".join(STATUSES) if member.get("status_if_new", "subscribed") not in STATUSES
                else "merge_fields must be an object" if not isinstance(member.get("merge_fields", {}), dict)
                else "vip must be a boolean" if not isinstance(member.get("vip", False), bool)
                else None
            )
            if schema:
                return problem(400, "Invalid Resource", "The resource submitted could not be validated.",
                               errors=[{"field": f"members.item:{n}", "message": schema}])
        created, updated, errors = [], [], []
        seen: set[str] = set()
        for member in members:
            email = member["email_address"].strip()

            def fail(message: str, code: str = "ERROR_GENERIC", where: str = "", where_message: str = "", email: str = email) -> None:
                errors.append({"email_address": email, "error": message, "error_code": code, "field": where, "field_message": where_message})

            held = self.members[list_id].get(subscriber_hash(email))
            existing = held is not None and held["status"] != "archived"
            bad_tags = sorted(t for t in member.get("merge_fields", {}) if not MERGE_TAG.fullmatch(t)
                              or (self.merge_tags is not None and t not in self.merge_tags))
            if not EMAIL.fullmatch(email):
                fail(f"{email} looks fake or invalid, please enter a real email address.", where="email_address",
                     where_message="Please provide a valid email address.")
            elif email.lower() in seen:
                fail(f"{email} appears more than once in this request.")
            elif bad_tags:
                fail("Your merge fields were invalid.", where="merge_fields", where_message=f"unknown merge field(s) {', '.join(bad_tags)}")
            elif existing and not payload.get("update_existing"):
                fail(f"{email} is already a list member. Use PUT to insert or update list members.", "ERROR_CONTACT_EXISTS")
            elif not existing and "status" not in member and "status_if_new" not in member:
                fail("The status field is required for new members.", where="status", where_message="This value should not be blank.")
            elif refused := self.refuse(member):
                fail(refused)
            else:
                (updated if existing else created).append(self._apply(list_id, member, existing))
            seen.add(email.lower())
        return 200, {"new_members": created, "updated_members": updated, "errors": errors, "total_created": len(created),
                     "total_updated": len(updated), "error_count": len(errors), "_links": []}

    def _apply(self, list_id: str, member: dict[str, Any], existing: bool) -> dict[str, Any]:
        email = member["email_address"].strip()
        key = subscriber_hash(email)
        if not existing:  # new, or archived and back
            self.members[list_id][key] = {"id": key, "email_address": email, "status": member.get("status") or member["status_if_new"],
                                          "merge_fields": {}, "vip": False, "language": "", "email_type": "html", "list_id": list_id}
        held = self.members[list_id][key]
        held["merge_fields"].update(member.get("merge_fields", {}))
        held.update({k: member[k] for k in ("status", "vip", "language", "email_type") if k in member})
        return {**held, "merge_fields": dict(held["merge_fields"]), "unique_email_id": key[:10]}

    def _segment(self, list_id: str, segment_id: str, payload: Any) -> tuple[int, Any]:
        if segment_id not in self.segments.get(list_id, {}):
            return problem(404, "Resource Not Found", "The requested resource could not be found.")
        adding, removing = (payload.get(k, []) if isinstance(payload, dict) else None for k in ("members_to_add", "members_to_remove"))
        if not isinstance(adding, list) or not isinstance(removing, list) or not all(isinstance(e, str) for e in adding + removing):
            return problem(400, "Invalid Resource", "The resource submitted could not be validated.",
                           errors=[{"field": "members_to_add", "message": "expected arrays of email addresses"}])
        for name, emails in (("members_to_add", adding), ("members_to_remove", removing)):
            if len(emails) > self.max_segment_emails:
                self.over_limit.append(f"a segment {name} of {len(emails)} emails (at most {self.max_segment_emails})")
                return problem(400, "Invalid Resource", "The resource submitted could not be validated.",
                               errors=[{"field": name, "message": f"Schema describes array, no more than {self.max_segment_emails} items"}])
        members, listed = self.segments[list_id][segment_id], self.members[list_id]
        added, removed, errors = [], [], []
        self.segment_calls.extend((segment_id, action, list(emails)) for action, emails in (("add", adding), ("remove", removing)) if emails)
        for email in adding:
            key = subscriber_hash(email.strip())
            reason = "Email address is not on the list" if key not in listed or listed[key]["status"] == "archived" \
                else self.refuse_segment(email)
            if reason:
                errors.append({"email_addresses": [email], "error": reason})
            elif key not in members:
                members.add(key)
                added.append(listed[key])
        for email in removing:
            key = subscriber_hash(email.strip())
            if key in members:
                members.discard(key)
                removed.append(listed[key])
        return 200, {"members_added": added, "members_removed": removed, "errors": errors, "total_added": len(added),
                     "total_removed": len(removed), "error_count": len(errors), "_links": []}

    def _archive(self, list_id: str, key: str) -> tuple[int, Any]:
        held = self.members[list_id].get(key)
        if held is None or held["status"] == "archived":
            return problem(404, "Resource Not Found", "The requested resource could not be found.")
        self.deletes.append(("member", key))
        held["status"] = "archived"
        for members in self.segments.get(list_id, {}).values():
            members.discard(key)
        return 204, None

    def _leave(self, list_id: str, segment_id: str, key: str) -> tuple[int, Any]:
        if segment_id not in self.segments.get(list_id, {}) or key not in self.members[list_id]:
            return problem(404, "Resource Not Found", "The requested resource could not be found.")
        self.deletes.append(("segment", key))
        self.segments[list_id][segment_id].discard(key)
        return 204, None


@contextmanager
def serve(fake: FakeMailchimp) -> Iterator[FakeMailchimp]:
    """Run the fake on a free local port (fake.url is the base URL) until the block ends."""
    with serve_http(fake.handle) as url:
        fake.url = url
        yield fake
