"""Braze's REST API on a real local HTTP port, as strict as the contract
(../shared/reference/destination-contracts.md §5): Bearer REST API key (401 otherwise);
`POST /users/track` with at most 75 attribute objects (400 "Max Input Length Exceeded"
otherwise), each identified by external_id / braze_id / email / phone (in that precedence),
refused objects answered inside a 201 as `errors: [{type, input_array, index}]` while the others
are applied (null unsets, `{"add"/"remove": [...]}` edits arrays, `_update_existing_only` never
creates); `POST /users/delete` (50 ids of one kind); `POST /v2/subscription/status/set` (50 ids
per group, known groups only); request bodies at most 4 MB (413). Each endpoint has its own
rolling rate-limit window (`/users/track` 3,000 per 3 s, `/users/delete` 20,000 and subscription
status 5,000 per minute) answering 429 once full, and every answer carries `X-RateLimit-Limit`,
`-Remaining` and `-Reset` (epoch seconds). Scripted answers (5xx, 429, stalls) come first.

`violations` lists every request over a limit (rate windows, batch sizes, payload size), for the
conformance suite; `users` (by a generated braze_id) and `groups` hold the state."""

from __future__ import annotations

import json
import math
import threading
import time
import uuid
from collections import Counter, deque
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any

from fakes.server import Answer, Scripted, serve_http

API_KEY = "braze-rest-key-corral-test"
TRACK, DELETE, SUBSCRIBE = "/users/track", "/users/delete", "/v2/subscription/status/set"
IDENTIFIERS = ("external_id", "braze_id", "email", "phone")  # the precedence Braze matches on
DELETE_KINDS = {"external_ids": "external_id", "braze_ids": "braze_id", "email_addresses": "email", "phone_numbers": "phone"}
SUBSCRIBE_KINDS = {"external_ids": "external_id", "emails": "email", "phones": "phone"}


def invalid_email(attributes: dict[str, Any]) -> str | None:
    """The default per-object validation: an email, when given, needs an @."""
    email = attributes.get("email")
    if email is None or (isinstance(email, str) and "@" in email):
        return None
    return f"'email' is not a valid email address: {email!r}"


def match_key(value: Any) -> str:
    return str(value).strip().lower()


@dataclass
class FakeBraze:
    api_key: str = API_KEY
    track_limit: int = 3000  # /users/track requests per rolling window
    track_window: float = 3.0
    delete_limit: int = 20_000  # per minute
    subscribe_limit: int = 5_000  # per minute
    minute: float = 60.0
    max_objects: int = 75
    max_ids: int = 50
    max_body_bytes: int = 4 * 1024 * 1024  # old docs: 4 MB per request (?)
    retry_after: str | None = None  # a Retry-After value for 429s (Braze documents only the X-RateLimit headers)
    invalid: Callable[[dict[str, Any]], str | None] = invalid_email
    refuse: dict[str, str] = field(default_factory=dict)  # match key (identifier value, lower case) -> error type
    deny_status: int = 0  # answer every request with this status (401, 403); 0: no
    users: dict[str, dict[str, Any]] = field(default_factory=dict)  # braze_id -> attributes (identifiers included)
    groups: dict[str, set[str]] = field(default_factory=dict)  # subscription group id -> subscribed braze_ids; only these exist
    script: deque[Scripted] = field(default_factory=deque)
    requests: int = 0
    throttled: int = 0
    statuses: Counter[int] = field(default_factory=Counter)
    largest_batch: int = 0
    bodies: list[tuple[str, Any]] = field(default_factory=list)  # (path, JSON body) of every accepted request
    violations: list[str] = field(default_factory=list)
    lock: threading.Lock = field(default_factory=threading.Lock)
    url: str = ""

    def __post_init__(self) -> None:
        self.windows: dict[str, deque[float]] = {TRACK: deque(), DELETE: deque(), SUBSCRIBE: deque()}

    def limits(self, path: str) -> tuple[int, float]:
        return {TRACK: (self.track_limit, self.track_window), DELETE: (self.delete_limit, self.minute),
                SUBSCRIBE: (self.subscribe_limit, self.minute)}[path]

    def handle(self, method: str, path: str, headers: Any, body: bytes) -> Answer:
        with self.lock:
            self.requests += 1
            if self.script:
                s = self.script.popleft()
                self.statuses[s.status] += 1
                self.throttled += s.status == 429
                return s.status, s.headers, s.body, s.stall_seconds
            path = path.split("?")[0]
            if self.deny_status:
                return self._answer(self.deny_status, {"message": "Invalid API key" if self.deny_status == 401 else
                                                       "Rate plan doesn't support or account is otherwise inactivated."})
            if headers.get("authorization") != f"Bearer {self.api_key}":
                return self._answer(401, {"message": "Invalid API key"})
            if path not in self.windows or method != "POST":
                return self._answer(404, {"message": f"No route for {method} {path}"})
            limit, window = self.limits(path)
            now = time.monotonic()
            sent = self.windows[path]
            while sent and sent[0] <= now - window:
                sent.popleft()
            if len(sent) >= limit:
                self.throttled += 1
                self.violations.append(f"{path}: request over {limit} per {window:g} s")
                extra = {"Retry-After": self.retry_after} if self.retry_after is not None else {}
                return self._answer(429, {"message": "Rate Limited", "errors": ["Over rate limit"]}, self._limit_headers(path) | extra)
            sent.append(now)
            if len(body) > self.max_body_bytes:
                self.violations.append(f"{path}: body of {len(body)} bytes, over {self.max_body_bytes}")
                return self._answer(413, {"message": "Request Entity Too Large"}, self._limit_headers(path))
            if (headers.get("content-type") or "").split(";")[0].strip() != "application/json":
                return self._answer(400, {"message": "Bad Request", "errors": ["Content-Type must be application/json"]})
            try:
                payload = json.loads(body)
            except ValueError:
                return self._answer(400, {"message": "Bad Request", "errors": ["Invalid JSON"]}, self._limit_headers(path))
            status, answer = {TRACK: self._track, DELETE: self._delete, SUBSCRIBE: self._subscribe}[path](payload)
            if status < 300:
                self.bodies.append((path, payload))
            return self._answer(status, answer, self._limit_headers(path))

    def _answer(self, status: int, answer: Any, headers: dict[str, str] | None = None) -> Answer:
        self.statuses[status] += 1
        return status, {"content-type": "application/json", **(headers or {})}, json.dumps(answer), 0.0

    def _limit_headers(self, path: str) -> dict[str, str]:
        limit, window = self.limits(path)
        sent = self.windows[path]
        frees_in = (sent[0] + window - time.monotonic()) if len(sent) >= limit else 0.0
        return {"X-RateLimit-Limit": str(limit), "X-RateLimit-Remaining": str(max(0, limit - len(sent))),
                "X-RateLimit-Reset": str(math.ceil(time.time() + max(frees_in, 0.0)))}

    def _bad(self, message: str) -> tuple[int, Any]:
        return 400, {"message": message, "errors": [message]}

    def _find(self, kind: str, value: Any) -> str | None:
        """The braze_id of the user with this identifier (the latest, for emails)."""
        if kind == "braze_id":
            return value if value in self.users else None
        found = [b for b, user in self.users.items() if user.get(kind) is not None and match_key(user[kind]) == match_key(value)]
        return found[-1] if found else None

    def _track(self, payload: Any) -> tuple[int, Any]:
        if not isinstance(payload, dict) or not any(isinstance(payload.get(k), list) for k in ("attributes", "events", "purchases")):
            return self._bad("Bad Request: expected 'attributes', 'events' or 'purchases' arrays")
        objects = payload.get("attributes") or []
        self.largest_batch = max(self.largest_batch, len(objects))
        if any(len(payload.get(k) or []) > self.max_objects for k in ("attributes", "events", "purchases")):
            self.violations.append(f"{TRACK}: {len(objects)} attribute objects, over {self.max_objects}")
            return self._bad("Max Input Length Exceeded")
        errors, processed = [], 0
        for index, item in enumerate(objects):
            problem = self._apply(item)
            if problem is None:
                processed += 1
            elif problem:
                errors.append({"type": problem, "input_array": "attributes", "index": index})
        answer: dict[str, Any] = {"message": "success", "attributes_processed": processed}
        if errors:
            answer["errors"] = errors
        return 201, answer

    def _apply(self, item: Any) -> str | None:
        """Apply one attributes object: None if applied, "" if skipped (update-only, unknown
        user), else the reason it is refused."""
        if not isinstance(item, dict):
            return "attributes object must be a JSON object"
        kind = next((k for k in IDENTIFIERS if item.get(k) not in (None, "")), None)
        if kind is None:
            return "'external_id', 'braze_id', 'user_alias', 'email' or 'phone' is required"
        if not isinstance(item[kind], str):
            return f"'{kind}' must be a string"
        if match_key(item[kind]) in self.refuse:
            return self.refuse[match_key(item[kind])]
        if reason := self.invalid(item):
            return reason
        braze_id = self._find(kind, item[kind])
        if braze_id is None:
            if item.get("_update_existing_only") or kind == "braze_id":
                return "" if kind != "braze_id" else f"no user with braze_id {item[kind]!r}"
            braze_id = uuid.uuid4().hex[:24]
            self.users[braze_id] = {"braze_id": braze_id}
        user = self.users[braze_id]
        for name, value in item.items():
            if name in ("_update_existing_only", "push_token_import", "user_alias", "braze_id"):
                continue
            if value is None:
                user.pop(name, None)
            elif isinstance(value, dict) and set(value) <= {"add", "remove"} and value:
                current = list(user.get(name) or [])
                current += [v for v in value.get("add", []) if v not in current]
                user[name] = [v for v in current if v not in value.get("remove", [])]
            elif isinstance(value, dict) and set(value) == {"inc"}:
                user[name] = (user.get(name) or 0) + value["inc"]
            else:
                user[name] = value
        return None

    def _ids(self, payload: Any, kinds: dict[str, str], path: str) -> tuple[str, list[Any]] | tuple[int, Any]:
        present = [k for k in kinds if k in payload]
        if len(present) != 1 or not isinstance(payload[present[0]], list) or not payload[present[0]]:
            return self._bad(f"exactly one of {', '.join(kinds)} must be a non-empty array")
        ids = payload[present[0]]
        if len(ids) > self.max_ids:
            self.violations.append(f"{path}: {len(ids)} ids, over {self.max_ids}")
            return self._bad("The max number of ids per request was exceeded")
        return kinds[present[0]], ids

    def _delete(self, payload: Any) -> tuple[int, Any]:
        if not isinstance(payload, dict):
            return self._bad("Bad Request")
        found = self._ids(payload, DELETE_KINDS, DELETE)
        if isinstance(found[0], int):
            return found  # type: ignore[return-value]
        kind, ids = found
        deleted = 0
        for value in ids:
            while (braze_id := self._find(kind, value)) is not None:
                del self.users[braze_id]
                for members in self.groups.values():
                    members.discard(braze_id)
                deleted += 1
        return 201, {"deleted": deleted, "message": "success"}

    def _subscribe(self, payload: Any) -> tuple[int, Any]:
        if not isinstance(payload, dict) or not isinstance(payload.get("subscription_groups"), list) or not payload["subscription_groups"]:
            return self._bad("'subscription_groups' must be a non-empty array")
        for group in payload["subscription_groups"]:
            if not isinstance(group, dict) or group.get("subscription_group_id") not in self.groups:
                return self._bad(f"Invalid subscription_group_id: {group.get('subscription_group_id') if isinstance(group, dict) else group!r}")
            if group.get("subscription_state") not in ("subscribed", "unsubscribed"):
                return self._bad("subscription_state must be 'subscribed' or 'unsubscribed'")
            if "emails" in group and "phones" in group:
                return self._bad("emails and phones cannot both be sent")
            found = self._ids({k: v for k, v in group.items() if k in SUBSCRIBE_KINDS}, SUBSCRIBE_KINDS, SUBSCRIBE)
            if isinstance(found[0], int):
                return found  # type: ignore[return-value]
        for group in payload["subscription_groups"]:
            members = self.groups[group["subscription_group_id"]]
            for name, kind in SUBSCRIBE_KINDS.items():
                for value in group.get(name) or []:
                    if (braze_id := self._find(kind, value)) is not None:  # unknown users: ignored (?)
                        (members.add if group["subscription_state"] == "subscribed" else members.discard)(braze_id)
        return 201, {"message": "success"}

    def records(self, by: str = "external_id") -> dict[str, dict[str, Any]]:
        """Users by the match key of their `by` identifier."""
        with self.lock:
            return {match_key(user[by]): dict(user) for user in self.users.values() if user.get(by) is not None}

    def members(self, settings: dict[str, Any], by: str = "external_id") -> set[str]:
        """Match keys of the users the membership settings say are in the audience."""
        with self.lock:
            if settings.get("membership") == "subscription_group":
                chosen = [self.users[b] for b in self.groups[settings["subscription_group_id"]]]
            elif settings.get("value") is not None:
                chosen = [u for u in self.users.values() if settings["value"] in (u.get(settings["attribute"]) or [])]
            else:
                chosen = [u for u in self.users.values() if u.get(settings["attribute"]) is True]
            return {match_key(u[by]) for u in chosen if u.get(by) is not None}


@contextmanager
def serve(fake: FakeBraze) -> Iterator[FakeBraze]:
    """Run the fake on a free local port (fake.url is the base URL) until the block ends."""
    with serve_http(fake.handle) as url:
        fake.url = url
        yield fake
