"""Customer.io's Track API on a real local HTTP port, as strict as the contract
(../shared/reference/destination-contracts.md §3.1, §3.2): HTTP Basic site_id:api_key (401
otherwise); `POST /api/v2/batch` of person `identify` / `delete` entries (a request over 500 KB
is refused whole with a 400, an entry over 32 KB, an identifier that is not one non-empty
string of at most 150 bytes, an attribute name over 150 bytes, a value over 1,000 bytes or more
than 300 attributes fail that entry alone in a 207 `errors[{batch_index, reason, field,
message}]` while the others are applied; people are found by id or email, an `email`
attribute is their email, null or "" removes an attribute); manual segments
`POST /api/v1/segments/{id}/add_customers|remove_customers?id_type=id|email|cio_id` with
`{"ids": [...]}` of 1 to 1,000 strings (unknown people ignored, 404 for a segment that does not
exist); a rolling rate-limit window (100 requests a second by default, the older documented
fair-use figure) answering 429, with Retry-After only if asked; scripted answers (5xx, 429,
stalls) ahead of everything.

Every request over a documented size or count, and every request over the rate limit, is also
written to `over_limit` (the harness's violations). State for assertions: `people`,
`segments`, `segment_calls`, `batches` (entries per batch request), `requests`, `statuses`."""

from __future__ import annotations

import base64
import json
import threading
import time
from collections import Counter, deque
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import parse_qs, urlsplit

from fakes.server import Answer, Scripted, serve_http

SITE_ID = "corral-site-0001"
API_KEY = "corral-track-api-key"
NOT_JSON = object()


def no_refusal(entry: dict[str, Any]) -> str | None:
    return None


def size(value: Any) -> int:
    return len(value.encode() if isinstance(value, str) else json.dumps(value, separators=(",", ":")).encode())


@dataclass
class FakeCustomerIo:
    site_id: str = SITE_ID
    api_key: str = API_KEY
    limit: float = 100  # requests per rolling window
    window_seconds: float = 1.0
    retry_after: str | None = None  # a Retry-After value for 429s (unconfirmed for Customer.io: none by default)
    max_request_bytes: int = 500_000
    max_entry_bytes: int = 32_000
    max_segment_ids: int = 1000
    max_identifier_bytes: int = 150
    max_attribute_name_bytes: int = 150
    max_attribute_value_bytes: int = 1000
    max_attributes: int = 300
    refuse: Callable[[dict[str, Any]], str | None] = no_refusal  # a message refuses that entry (a 207 error)
    latency_seconds: float = 0.0
    people: dict[str, dict[str, Any]] = field(default_factory=dict)  # cio_id -> {"id", "email", "attributes"}
    segments: dict[str, set[str]] = field(default_factory=dict)  # segment id -> cio_ids; only these segments exist
    segment_calls: list[tuple[str, str, str, list[str]]] = field(default_factory=list)  # (segment, add|remove, id_type, ids)
    batches: list[int] = field(default_factory=list)  # entries of each batch request
    over_limit: list[str] = field(default_factory=list)
    script: deque[Scripted] = field(default_factory=deque)
    requests: int = 0
    throttled: int = 0
    statuses: Counter[int] = field(default_factory=Counter)
    deny_status: int = 0  # when set, every request is refused with this status (401 or 403)
    lock: threading.Lock = field(default_factory=threading.Lock)
    url: str = ""

    def __post_init__(self) -> None:
        self.window: deque[float] = deque()
        self.next_cio = 1
        self.index: dict[str, dict[str, str]] = {"id": {}, "email": {}}  # id / lower-cased email -> cio_id

    # -- lookups ---------------------------------------------------------------------------

    def find(self, kind: str, value: str) -> str | None:
        """The cio_id of the person with this id, email (any case) or cio_id."""
        if kind == "cio_id":
            return value if value in self.people else None
        return self.index[kind].get(value.lower() if kind == "email" else value)

    def _set(self, cio_id: str, kind: str, value: str | None) -> None:
        """Set a person's id or email, keeping the index."""
        person = self.people[cio_id]
        if person[kind] is not None:
            self.index[kind].pop(person[kind].lower() if kind == "email" else person[kind], None)
        person[kind] = value
        if value is not None:
            self.index[kind][value.lower() if kind == "email" else value] = cio_id

    def person(self, kind: str, value: str) -> dict[str, Any] | None:
        cio_id = self.find(kind, value)
        return None if cio_id is None else self.people[cio_id]

    def members(self, segment_id: str) -> set[str]:
        """Ids of the segment's members (their email when they have no id)."""
        return {self.people[c]["id"] or self.people[c]["email"] for c in self.segments[segment_id]}

    # -- HTTP ------------------------------------------------------------------------------

    def handle(self, method: str, path: str, headers: Any, body: bytes) -> Answer:
        try:
            payload = json.loads(body) if body else None
        except ValueError:
            payload = NOT_JSON
        with self.lock:
            self.requests += 1
            if self.script:
                s = self.script.popleft()
                self.statuses[s.status] += 1
                return s.status, s.headers, s.body, s.stall_seconds
            if self.deny_status == 403:
                return self._answer(403, {"meta": {"error": "Forbidden: this API key may not use this workspace"}})
            expected = "Basic " + base64.b64encode(f"{self.site_id}:{self.api_key}".encode()).decode()
            if headers.get("authorization") != expected or self.deny_status == 401:
                return self._answer(401, {"meta": {"error": "Unauthorized request. Make sure that you provided the right credentials."}})
            if limited := self._rate_limit(method, path):
                return limited
            status, answer = self._route(method, path, payload, len(body))
            return self._answer(status, answer)

    def _answer(self, status: int, answer: Any, headers: dict[str, str] | None = None) -> Answer:
        self.statuses[status] += 1
        return status, {"content-type": "application/json", **(headers or {})}, json.dumps(answer), self.latency_seconds

    def _rate_limit(self, method: str, path: str) -> Answer | None:
        now = time.monotonic()
        while self.window and self.window[0] <= now - self.window_seconds:
            self.window.popleft()
        if len(self.window) < self.limit:
            self.window.append(now)
            return None
        self.throttled += 1
        self.over_limit.append(f"{method} {path}: over {self.limit:g} requests in {self.window_seconds:g} s")
        return self._answer(429, {"meta": {"error": "Too many requests: slow down"}},
                            {"Retry-After": self.retry_after} if self.retry_after is not None else {})

    def _route(self, method: str, path: str, payload: Any, length: int) -> tuple[int, Any]:
        url = urlsplit(path)
        parts = url.path.strip("/").split("/")
        if method != "POST":
            return 405, {"meta": {"error": f"{method} is not allowed on {url.path}"}}
        if url.path == "/api/v2/batch":
            return self._batch(payload, length)
        if len(parts) == 5 and parts[:3] == ["api", "v1", "segments"] and parts[4] in ("add_customers", "remove_customers"):
            id_type = (parse_qs(url.query).get("id_type") or ["id"])[0]
            return self._segment(parts[3], parts[4].split("_")[0], id_type, payload)
        return 404, {"meta": {"error": f"no route for {method} {url.path}"}}

    def _batch(self, payload: Any, length: int) -> tuple[int, Any]:
        if length > self.max_request_bytes:
            self.over_limit.append(f"a batch request of {length:,} bytes (at most {self.max_request_bytes:,})")
            return 400, {"errors": [{"reason": "too_large", "field": "batch",
                                     "message": f"the batch request is {length} bytes; it must be smaller than {self.max_request_bytes}"}]}
        if not isinstance(payload, dict) or not isinstance(payload.get("batch"), list) or not payload["batch"]:
            return 400, {"errors": [{"reason": "invalid", "field": "batch", "message": "expected an object with a non-empty array batch"}]}
        self.batches.append(len(payload["batch"]))
        errors = []
        for index, entry in enumerate(payload["batch"]):
            problem = self._problem(entry)
            if problem is None and (refused := self.refuse(entry)):
                problem = ("invalid", "attributes", refused)
            if problem is not None:
                reason, where, message = problem
                errors.append({"batch_index": index, "reason": reason, "field": where, "message": message})
                continue
            self._apply(entry)
        return (207, {"errors": errors}) if errors else (200, {})

    def _problem(self, entry: Any) -> tuple[str, str, str] | None:
        """Why Customer.io would refuse this one entry, or None."""
        if not isinstance(entry, dict):
            return "invalid", "", "each batch entry must be an object"
        if (n := size(entry)) > self.max_entry_bytes:
            self.over_limit.append(f"a batch entry of {n:,} bytes (at most {self.max_entry_bytes:,})")
            return "too_large", "", f"the entry is {n} bytes; each entry must be {self.max_entry_bytes} bytes or smaller"
        if entry.get("type") != "person":
            return "invalid", "type", f"type {entry.get('type')!r} is not supported here (person)"
        if entry.get("action") not in ("identify", "delete"):
            return "invalid", "action", f"action {entry.get('action')!r} is not supported here (identify, delete)"
        identifiers = entry.get("identifiers")
        if not isinstance(identifiers, dict) or len(identifiers) != 1 or next(iter(identifiers)) not in ("id", "email", "cio_id"):
            return "invalid", "identifiers", "identifiers must hold exactly one of id, email, cio_id"
        kind, value = next(iter(identifiers.items()))
        if not isinstance(value, str) or not value.strip():
            return "invalid", f"identifiers.{kind}", f"{kind} must be a non-empty string"
        if len(value.encode()) > self.max_identifier_bytes:
            return "invalid", f"identifiers.{kind}", f"{kind} is longer than {self.max_identifier_bytes} bytes"
        if kind == "email" and "@" not in value:
            return "invalid", "identifiers.email", f"{value!r} is not a valid email address"
        attributes = entry.get("attributes", {})
        if entry["action"] == "identify":
            if not isinstance(attributes, dict):
                return "invalid", "attributes", "attributes must be an object"
            if len(attributes) > self.max_attributes:
                return "invalid", "attributes", f"at most {self.max_attributes} attributes per request"
            for name, value in attributes.items():
                if len(name.encode()) > self.max_attribute_name_bytes:
                    return "invalid", f"attributes.{name[:20]}", f"attribute names are at most {self.max_attribute_name_bytes} bytes"
                if value is not None and size(value) > self.max_attribute_value_bytes:
                    return "invalid", f"attributes.{name}", f"attribute values are at most {self.max_attribute_value_bytes} bytes"
        return None

    def _apply(self, entry: dict[str, Any]) -> None:
        kind, value = next(iter(entry["identifiers"].items()))
        cio_id = self.find(kind, value)
        if entry["action"] == "delete":
            if cio_id is not None:
                self._set(cio_id, "id", None)
                self._set(cio_id, "email", None)
                del self.people[cio_id]
                for members in self.segments.values():
                    members.discard(cio_id)
            return
        if cio_id is None:
            if kind == "cio_id":
                return  # cio_ids only update
            cio_id = f"cio_{self.next_cio:06d}"
            self.next_cio += 1
            self.people[cio_id] = {"id": None, "email": None, "attributes": {}}
            self._set(cio_id, kind, value)
        person = self.people[cio_id]
        for name, attribute in (entry.get("attributes") or {}).items():
            if attribute is None or attribute == "":
                person["attributes"].pop(name, None)
            else:
                person["attributes"][name] = attribute
            if name in ("email", "id"):
                self._set(cio_id, name, None if attribute in (None, "") else str(attribute))

    def _segment(self, segment_id: str, action: str, id_type: str, payload: Any) -> tuple[int, Any]:
        if id_type not in ("id", "email", "cio_id"):
            return 400, {"meta": {"errors": [f"id_type must be one of id, email, cio_id, got {id_type!r}"]}}
        if not isinstance(payload, dict) or not isinstance(payload.get("ids"), list) or not payload["ids"] \
                or not all(isinstance(i, str) for i in payload["ids"]):
            return 400, {"meta": {"errors": ["ids: expected an array of 1 to 1000 strings"]}}
        if len(payload["ids"]) > self.max_segment_ids:
            self.over_limit.append(f"a segment {action} of {len(payload['ids'])} ids (at most {self.max_segment_ids})")
            return 400, {"meta": {"errors": [f"ids: at most {self.max_segment_ids} items, got {len(payload['ids'])}"]}}
        if segment_id not in self.segments:
            return 404, {"meta": {"errors": [f"segment {segment_id} not found"]}}
        self.segment_calls.append((segment_id, action, id_type, list(payload["ids"])))
        found = {c for c in (self.find(id_type, i) for i in payload["ids"]) if c is not None}  # unknown ids are ignored
        if action == "add":
            self.segments[segment_id].update(found)
        else:
            self.segments[segment_id].difference_update(found)
        return 200, {}


@contextmanager
def serve(fake: FakeCustomerIo) -> Iterator[FakeCustomerIo]:
    """Run the fake on a free local port (fake.url is the base URL) until the block ends."""
    with serve_http(fake.handle) as url:
        fake.url = url
        yield fake
