"""HubSpot CRM v3 on a real local HTTP port, as strict as the contract
(../shared/reference/destination-contracts.md §2): Bearer token (401 otherwise); contacts batch
upsert by email (at most 100 inputs, string property values, one input per email: 400
VALIDATION_ERROR otherwise; stable numeric record ids; results in a shuffled order; invalid
inputs answered 207 with `errors[].context.ids` while the valid ones are applied, or, as an
option since the contract is unsure, 400 for the whole batch); static list membership add and
remove (ids that are not contacts are "missing"; idempotent); a rolling 10-second rate limit
answering 429 with HubSpot's JSON body, `X-HubSpot-RateLimit-*` headers on every answer, no
Retry-After unless asked; scripted answers (5xx, 429, stalls) ahead of everything.

Counters (`requests`, `throttled`, `statuses`, `largest_batch`) and the state it holds
(`contacts`, `record_ids`, `lists`, `memberships`) are there for assertions. Run as a script it
serves until killed, for benchmarks, with two endpoints of its own: GET /__fake__/stats and POST
/__fake__/dump {"path"} (contacts as JSON lines)."""

from __future__ import annotations

import argparse
import json
import random
import resource
import sys
import threading
import time
import uuid
from collections import Counter, deque
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import datetime, timezone
from typing import Any

from fakes.server import Answer, Scripted, serve_http

TOKEN = "pat-na1-00000000-corral-test"
UPSERT = "/crm/v3/objects/contacts/batch/upsert"
NOT_JSON = object()


def invalid_email(contact: dict[str, Any]) -> str | None:
    """The default per-input validation: an email needs an @."""
    if "@" in contact["id"]:
        return None
    return f'Property values were not valid: [{{"isValid":false,"message":"Email address {contact["id"]} is invalid","error":"INVALID_EMAIL","name":"email"}}]'


def error(status: int, category: str, message: str, **extra: Any) -> tuple[int, dict[str, Any]]:
    return status, {"status": "error", "message": message, "correlationId": str(uuid.uuid4()), "category": category, **extra}


@dataclass
class FakeHubSpot:
    token: str = TOKEN
    limit: int = 190  # requests per rolling window (private app, Professional)
    window_seconds: float = 10.0
    daily_limit: int = 650_000
    retry_after: str | None = None  # a Retry-After value for 429s (HubSpot's is unconfirmed: none by default)
    count_throttled: bool = False  # whether a refused request also uses up the window
    max_inputs: int = 100
    max_membership_ids: int | None = None  # unknown for HubSpot: no limit by default
    invalid: Callable[[dict[str, Any]], str | None] = invalid_email
    invalid_as_400: bool = False  # refuse the whole batch for one invalid input instead of a 207
    shuffle: bool = True
    seed: int = 0
    contacts: dict[str, dict[str, str]] = field(default_factory=dict)  # email (lower case) -> properties
    record_ids: dict[str, str] = field(default_factory=dict)  # email (lower case) -> record id
    lists: dict[str, set[str]] = field(default_factory=dict)  # list id -> member record ids; only these lists exist
    memberships: list[tuple[str, str, list[str]]] = field(default_factory=list)  # (list id, add|remove, ids) as sent
    upserted: list[str] = field(default_factory=list)  # emails applied, in order
    script: deque[Scripted] = field(default_factory=deque)
    requests: int = 0
    throttled: int = 0
    statuses: Counter[int] = field(default_factory=Counter)
    largest_batch: int = 0
    lock: threading.Lock = field(default_factory=threading.Lock)
    deny_status: int = 0  # when set, every API request is refused with this status (401 or 403)
    url: str = ""

    def __post_init__(self) -> None:
        self.rng = random.Random(self.seed)
        self.window: deque[float] = deque()
        self.today = 0
        self.next_id = 1001
        self.first_at = self.last_at = 0.0  # wall clock of the first and last request

    def handle(self, method: str, path: str, headers: Any, body: bytes) -> Answer:
        try:
            payload = json.loads(body) if body else None
        except ValueError:
            payload = NOT_JSON
        with self.lock:
            self.requests += 1
            self.last_at = time.time()
            self.first_at = self.first_at or self.last_at
            if self.script:
                s = self.script.popleft()
                self.statuses[s.status] += 1
                self.throttled += s.status == 429
                return s.status, s.headers, s.body, s.stall_seconds
            if self.deny_status == 403:
                return self._answer(*error(403, "MISSING_SCOPES", "This app hasn't been granted all required scopes to make this call. "
                                           "Read more about required scopes here: https://developers.hubspot.com/scopes."), {})
            if headers.get("authorization") != f"Bearer {self.token}" or self.deny_status == 401:
                status, answer = error(401, "INVALID_AUTHENTICATION", "Authentication credentials not found. This API supports "
                                       "OAuth 2.0 authentication and you can find more details at https://developers.hubspot.com/docs/methods/auth/oauth-overview")
                return self._answer(status, answer, {})
            limited = self._rate_limit()
            if limited:
                return limited
            status, answer = self._route(method, path, payload)
            return self._answer(status, answer, self._limit_headers())

    def _answer(self, status: int, answer: Any, headers: dict[str, str]) -> Answer:
        self.statuses[status] += 1
        return status, {"content-type": "application/json;charset=utf-8", **headers}, json.dumps(answer), 0.0

    def _rate_limit(self) -> Answer | None:
        now = time.monotonic()
        while self.window and self.window[0] <= now - self.window_seconds:
            self.window.popleft()
        policy = "TEN_SECONDLY_ROLLING" if len(self.window) >= self.limit else "DAILY" if self.today >= self.daily_limit else None
        if policy is None or self.count_throttled:
            self.window.append(now)
            self.today += 1
        if policy is None:
            return None
        self.throttled += 1
        answer = {"status": "error", "message": f"You have reached your {policy.lower()} limit.", "errorType": "RATE_LIMIT",
                  "correlationId": str(uuid.uuid4()), "policyName": policy, "groupName": "privateapp-api-calls:corral"}
        headers = self._limit_headers() | ({"Retry-After": self.retry_after} if self.retry_after is not None else {})
        return self._answer(429, answer, headers)

    def _limit_headers(self) -> dict[str, str]:
        return {"X-HubSpot-RateLimit-Max": str(self.limit), "X-HubSpot-RateLimit-Remaining": str(max(0, self.limit - len(self.window))),
                "X-HubSpot-RateLimit-Interval-Milliseconds": str(int(self.window_seconds * 1000)),
                "X-HubSpot-RateLimit-Daily": str(self.daily_limit), "X-HubSpot-RateLimit-Daily-Remaining": str(max(0, self.daily_limit - self.today))}

    def _route(self, method: str, path: str, payload: Any) -> tuple[int, Any]:
        parts = path.split("?")[0].strip("/").split("/")
        if path.split("?")[0] == UPSERT:
            if method != "POST":
                return error(405, "METHOD_NOT_ALLOWED", f"{method} is not allowed here")
            return self._upsert(payload)
        if len(parts) == 6 and parts[:3] == ["crm", "v3", "lists"] and parts[4] == "memberships" and parts[5] in ("add", "remove"):
            if method != "PUT":
                return error(405, "METHOD_NOT_ALLOWED", f"{method} is not allowed here")
            return self._membership(parts[3], parts[5], payload)
        return error(404, "OBJECT_NOT_FOUND", f"No route for {method} {path}")

    def _upsert(self, payload: Any) -> tuple[int, Any]:
        if not isinstance(payload, dict) or not isinstance(payload.get("inputs"), list) or not payload["inputs"]:
            return error(400, "VALIDATION_ERROR", "Invalid input JSON: expected an object with a non-empty array `inputs`")
        inputs = payload["inputs"]
        self.largest_batch = max(self.largest_batch, len(inputs))
        if len(inputs) > self.max_inputs:
            return error(400, "VALIDATION_ERROR", f"Batch input limit exceeded: {len(inputs)} inputs, the limit is {self.max_inputs}")
        for n, item in enumerate(inputs):
            problem = (
                "must be an object" if not isinstance(item, dict)
                else "id must be a non-empty string" if not isinstance(item.get("id"), str) or not item["id"]
                else "idProperty must be email (a unique-value property)" if item.get("idProperty") != "email"
                else "properties must be an object" if not isinstance(item.get("properties"), dict)
                else next((f"property {k!r} must be a string, got {json.dumps(v)}" for k, v in item["properties"].items()
                           if not isinstance(v, str)), None)
            )
            if problem:
                return error(400, "VALIDATION_ERROR", f"Invalid input at inputs[{n}]: {problem}")
        emails = Counter(item["id"].lower() for item in inputs)
        if duplicates := sorted(e for e, n in emails.items() if n > 1):
            return error(400, "VALIDATION_ERROR", f"Duplicate IDs found in batch input: {duplicates}")
        refused = {item["id"]: reason for item in inputs if (reason := self.invalid(item))}
        if refused and self.invalid_as_400:
            return error(400, "VALIDATION_ERROR", "; ".join(refused.values()))
        now = datetime.now(timezone.utc).isoformat(timespec="milliseconds").replace("+00:00", "Z")
        results = [self._apply(item, now) for item in inputs if item["id"] not in refused]
        if self.shuffle:
            self.rng.shuffle(results)
        answer: dict[str, Any] = {"status": "COMPLETE", "results": results, "startedAt": now, "completedAt": now}
        if not refused:
            return 200, answer
        answer["numErrors"] = len(refused)
        answer["errors"] = [{"status": "error", "category": "VALIDATION_ERROR", "message": reason, "context": {"ids": [email]},
                             "errors": [], "links": {}} for email, reason in refused.items()]
        return 207, answer

    def _apply(self, item: dict[str, Any], now: str) -> dict[str, Any]:
        email = item["id"].lower()
        new = email not in self.record_ids
        if new:
            self.record_ids[email] = str(self.next_id)
            self.next_id += 1
            self.contacts[email] = {}
        self.contacts[email].update({sys.intern(k): v for k, v in item["properties"].items()})
        self.upserted.append(email)
        record_id = self.record_ids[email]
        return {"id": record_id, "properties": {**item["properties"], "hs_object_id": record_id, "lastmodifieddate": now},
                "createdAt": now, "updatedAt": now, "archived": False, "new": new}

    def _membership(self, list_id: str, action: str, payload: Any) -> tuple[int, Any]:
        if list_id not in self.lists:
            return error(404, "OBJECT_NOT_FOUND", f"List {list_id} does not exist")
        if not isinstance(payload, list) or not all(isinstance(i, str) and i.isdigit() for i in payload):
            return error(400, "VALIDATION_ERROR", "Invalid input JSON: expected an array of record id strings")
        if self.max_membership_ids is not None and len(payload) > self.max_membership_ids:
            return error(400, "VALIDATION_ERROR", f"At most {self.max_membership_ids} record ids per request, got {len(payload)}")
        self.memberships.append((list_id, action, list(payload)))
        known = set(self.record_ids.values())
        members = self.lists[list_id]
        missing = [i for i in dict.fromkeys(payload) if i not in known]
        if action == "add":
            added = [i for i in dict.fromkeys(payload) if i in known and i not in members]
            members.update(added)
            return 200, {"recordsIdsAdded": added, "recordIdsRemoved": [], "recordIdsMissing": missing}
        removed = [i for i in dict.fromkeys(payload) if i in members]
        members.difference_update(removed)
        return 200, {"recordsIdsAdded": [], "recordIdsRemoved": removed, "recordIdsMissing": missing}

    def members(self, list_id: str) -> set[str]:
        """Emails of the list's members."""
        emails = {record_id: email for email, record_id in self.record_ids.items()}
        return {emails[i] for i in self.lists[list_id]}

    def stats(self) -> dict[str, Any]:
        with self.lock:
            return {"requests": self.requests, "throttled": self.throttled, "statuses": dict(self.statuses), "contacts": len(self.contacts),
                    "largest_batch": self.largest_batch, "first_at": self.first_at, "last_at": self.last_at, "maxrss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024}

    def dump(self, path: str) -> int:
        with self.lock, open(path, "w") as out:
            for email, properties in self.contacts.items():
                out.write(json.dumps({"email": email, "id": self.record_ids[email], "properties": properties}) + "\n")
            return len(self.contacts)


@contextmanager
def serve(fake: FakeHubSpot) -> Iterator[FakeHubSpot]:
    """Run the fake on a free local port (fake.url is the base URL) until the block ends."""

    def handle(method: str, path: str, headers: Any, body: bytes) -> Answer:
        if path.startswith("/__fake__/"):  # for the benchmark, which runs the fake in its own process
            answer: Any = fake.stats() if path == "/__fake__/stats" else {"dumped": fake.dump(json.loads(body)["path"])}
            return 200, {"content-type": "application/json"}, json.dumps(answer), 0.0
        return fake.handle(method, path, headers, body)

    with serve_http(handle) as url:
        fake.url = url
        yield fake


def main() -> None:
    parser = argparse.ArgumentParser(description="Serve a fake HubSpot until killed; prints its base URL on the first line.")
    parser.add_argument("--limit-per-10s", type=int, default=190)
    parser.add_argument("--token", default=TOKEN)
    parser.add_argument("--list", action="append", default=[], help="a static list id that exists")
    opts = parser.parse_args()
    with serve(FakeHubSpot(token=opts.token, limit=opts.limit_per_10s, daily_limit=10**9, lists={i: set() for i in opts.list})) as fake:
        print(fake.url, flush=True)
        threading.Event().wait()


if __name__ == "__main__":
    main()
