"""Klaviyo's JSON:API on a real local HTTP port, as strict as the contract
(../shared/reference/destination-contracts.md §6): `Authorization: Klaviyo-API-Key <key>` (401
otherwise) and a known `revision` header (400 when missing or unknown) on every request;
JSON:API bodies (`application/vnd.api+json` or `application/json`).

- `POST /api/profile-bulk-import-jobs`: at most 10,000 profiles, 5 MB, 100 KB a profile, only
  Klaviyo's profile attributes (custom fields go in `properties`), lists that exist; answered 202
  with a queued job. The job runs as it is polled (`GET .../{id}`): queued, processing, then
  (after `polls_to_complete` polls) `end_status`; only a complete job applies its profiles
  (upsert by email, else external_id; null clears a standard attribute, `patch_properties.unset`
  a property) and adds them to its lists. Invalid profiles (no identifier, an email without @,
  keys given to `refuse`) become import errors with `source.pointer` and
  `original_payload` (or, by `attribution`, only one of them).
- `GET .../{id}/import-errors` and `.../{id}/profiles`: pages of `page[size]` (default 20, at
  most 100) with `links.next`; `fields[profile]` honoured.
- `POST` / `DELETE /api/lists/{id}/relationships/profiles`: at most 1,000 profile ids, 204
  (unknown ids ignored).
- Rate limits per endpoint (one limit for each path shape, whatever the method): at most
  `burst` requests in any rolling second and `steady` in any rolling minute (stricter than
  Klaviyo's fixed windows), else 429 with Retry-After and `errors[].code` throttled; other
  answers carry RateLimit-Limit / -Remaining / -Reset.

Every refused over-limit request is also a line of `violations`; scripted answers (5xx, 429,
stalls) come first, or, in `script_on`, for one endpoint."""

from __future__ import annotations

import json
import re
import threading
import time
import uuid
from collections import Counter, deque
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any
from urllib.parse import parse_qs, urlencode, urlsplit

from fakes.server import Answer, Scripted, serve_http

API_KEY = "pk_corral_test_0000000000000000"
REVISIONS = frozenset({"2024-10-15", "2025-01-15", "2025-04-15", "2025-07-15", "2025-10-15", "2026-01-15", "2026-04-15", "2026-07-15"})
JOBS = "/api/profile-bulk-import-jobs"
ATTRIBUTES = {"email", "phone_number", "external_id", "_kx", "first_name", "last_name", "organization", "locale", "title", "image",
              "location", "properties"}
ROUTES = [  # (path shape, regex, methods)
    (JOBS, re.compile(r"^/api/profile-bulk-import-jobs$"), {"POST"}),
    (JOBS + "/{id}", re.compile(r"^/api/profile-bulk-import-jobs/([^/]+)$"), {"GET"}),
    (JOBS + "/{id}/import-errors", re.compile(r"^/api/profile-bulk-import-jobs/([^/]+)/import-errors$"), {"GET"}),
    (JOBS + "/{id}/profiles", re.compile(r"^/api/profile-bulk-import-jobs/([^/]+)/profiles$"), {"GET"}),
    ("/api/lists/{id}/relationships/profiles", re.compile(r"^/api/lists/([^/]+)/relationships/profiles$"), {"POST", "DELETE"}),
]


def invalid(attributes: dict[str, Any]) -> str | None:
    """The default per-profile validation: an identifier, and an email with an @."""
    if not any(attributes.get(k) for k in ("email", "phone_number", "external_id")):
        return "A profile needs at least one of email, phone_number or external_id."
    email = attributes.get("email")
    if email is not None and (not isinstance(email, str) or "@" not in email):
        return f"Invalid email address: {email!r}."
    return None


def error(status: int, code: str, title: str, detail: str, pointer: str | None = None) -> tuple[int, dict[str, Any]]:
    item: dict[str, Any] = {"id": str(uuid.uuid4()), "status": status, "code": code, "title": title, "detail": detail}
    if pointer:
        item["source"] = {"pointer": pointer}
    return status, {"errors": [item]}


def now() -> str:
    return datetime.now(UTC).isoformat()


@dataclass
class FakeKlaviyo:
    api_key: str = API_KEY
    revisions: frozenset[str] = REVISIONS
    burst: int = 10  # requests per rolling second, per endpoint
    steady: int = 150  # requests per rolling minute, per endpoint
    retry_after: str | None = "1"
    max_profiles: int = 10_000
    max_payload: int = 5 * 1024 * 1024
    max_profile_bytes: int = 100 * 1024
    max_page_size: int = 100
    max_list_ids: int = 1000
    polls_to_complete: int = 2
    end_status: str = "complete"  # or cancelled / failed: the job ends so, applying nothing
    attribution: str = "both"  # what import errors carry: source.pointer and original_payload, or only "pointer" or "payload"
    invalid: Callable[[dict[str, Any]], str | None] = invalid
    refuse: dict[str, str] = field(default_factory=dict)  # match key (email or external_id, lower case) -> detail
    deny_status: int = 0
    profiles: dict[str, dict[str, Any]] = field(default_factory=dict)  # profile id -> attributes (properties nested)
    lists: dict[str, set[str]] = field(default_factory=dict)  # list id -> profile ids; only these lists exist
    jobs: dict[str, dict[str, Any]] = field(default_factory=dict)
    list_calls: list[tuple[str, str, list[str]]] = field(default_factory=list)  # (method, list id, profile ids)
    revisions_seen: Counter[str] = field(default_factory=Counter)
    calls: Counter[str] = field(default_factory=Counter)  # "METHOD path shape" -> requests answered by the fake itself
    script: deque[Scripted] = field(default_factory=deque)
    script_on: dict[str, deque[Scripted]] = field(default_factory=dict)  # path shape -> answers its next requests get instead
    requests: int = 0
    throttled: int = 0
    statuses: Counter[int] = field(default_factory=Counter)
    violations: list[str] = field(default_factory=list)
    lock: threading.Lock = field(default_factory=threading.Lock)
    url: str = ""

    def __post_init__(self) -> None:
        self.windows: dict[str, deque[float]] = {shape: deque() for shape, _, _ in ROUTES}
        self.index: dict[tuple[str, str], str] = {}  # (email | external_id, lower-cased value) -> profile id

    def handle(self, method: str, target: str, headers: Any, body: bytes) -> Answer:
        with self.lock:
            self.requests += 1
            if self.script:
                s = self.script.popleft()
                self.statuses[s.status] += 1
                self.throttled += s.status == 429
                return s.status, s.headers, s.body, s.stall_seconds
            if self.deny_status == 403:
                return self._answer(*error(403, "permission_denied", "You do not have permission to perform this action.",
                                           "This API key is missing required scopes."))
            if self.deny_status or headers.get("authorization") != f"Klaviyo-API-Key {self.api_key}":
                return self._answer(*error(401, "not_authenticated", "Authentication credentials were not provided.",
                                           "Missing or invalid private key."))
            revision = headers.get("revision")
            self.revisions_seen[revision or ""] += 1
            if not revision:
                return self._answer(*error(400, "invalid", "Invalid input.", "Missing `revision` header."))
            if revision not in self.revisions:
                return self._answer(*error(400, "invalid", "Invalid input.", f"Invalid revision `{revision}`."))
            parts = urlsplit(target)
            query = {k: v[0] for k, v in parse_qs(parts.query).items()}
            route = next(((shape, m, methods) for shape, pattern, methods in ROUTES if (m := pattern.match(parts.path))), None)
            if route is None or method not in route[2]:
                return self._answer(*error(404, "not_found", "Not found.", f"No route for {method} {parts.path}."))
            shape, match, _ = route
            if self.script_on.get(shape):
                s = self.script_on[shape].popleft()
                self.statuses[s.status] += 1
                return s.status, s.headers, s.body, s.stall_seconds
            if limited := self._rate_limit(shape):
                return limited
            self.calls[f"{method} {shape}"] += 1
            payload: Any = None
            if method in ("POST", "DELETE"):
                if (headers.get("content-type") or "").split(";")[0].strip() not in ("application/vnd.api+json", "application/json"):
                    return self._answer(*error(415, "unsupported_media_type", "Unsupported media type.",
                                               f"Unsupported media type \"{headers.get('content-type')}\" in request."))
                try:
                    payload = json.loads(body)
                except ValueError:
                    return self._answer(*error(400, "parse_error", "Malformed request.", "JSON parse error."))
            if shape == JOBS:
                status, answer = self._create(payload, len(body))
            elif shape.endswith("import-errors"):
                status, answer = self._page(parts.path, query, (self.jobs[match[1]]["errors"] if match[1] in self.jobs else None))
            elif shape.endswith("/profiles") and shape.startswith(JOBS):
                status, answer = self._job_profiles(parts.path, match[1], query)
            elif shape.startswith(JOBS):
                status, answer = self._poll(match[1])
            else:
                status, answer = self._membership(method, match[1], payload)
            return self._answer(status, answer, self._limit_headers(shape))

    def _answer(self, status: int, answer: Any, headers: dict[str, str] | None = None) -> Answer:
        self.statuses[status] += 1
        text = "" if answer is None else json.dumps(answer)
        return status, {"content-type": "application/vnd.api+json", **(headers or {})}, text, 0.0

    def _rate_limit(self, shape: str) -> Answer | None:
        at = time.monotonic()
        sent = self.windows[shape]
        while sent and sent[0] <= at - 60.0:
            sent.popleft()
        in_second = sum(1 for t in sent if t > at - 1.0)
        if in_second < self.burst and len(sent) < self.steady:
            sent.append(at)
            return None
        self.throttled += 1
        window = "burst" if in_second >= self.burst else "steady"
        self.violations.append(f"{shape}: over the {window} limit ({self.burst}/s, {self.steady}/min)")
        status, answer = error(429, "throttled", "Request was throttled.", "Request was throttled. Expected available in 1 second.")
        return self._answer(status, answer, {"Retry-After": self.retry_after} if self.retry_after is not None else {})

    def _limit_headers(self, shape: str) -> dict[str, str]:
        return {"RateLimit-Limit": str(self.steady), "RateLimit-Remaining": str(max(0, self.steady - len(self.windows[shape]))),
                "RateLimit-Reset": "60"}

    def _create(self, payload: Any, size: int) -> tuple[int, Any]:
        if size > self.max_payload:
            self.violations.append(f"{JOBS}: a body of {size:,} bytes, over {self.max_payload:,}")
            return error(413, "request_too_large", "Request too large.", f"The maximum allowed payload size is {self.max_payload} bytes.")
        data = payload.get("data") if isinstance(payload, dict) else None
        if not isinstance(data, dict) or data.get("type") != "profile-bulk-import-job":
            return error(400, "invalid", "Invalid input.", "`type` must be `profile-bulk-import-job`.", "/data/type")
        profiles = ((data.get("attributes") or {}).get("profiles") or {}).get("data")
        if not isinstance(profiles, list) or not profiles:
            return error(400, "invalid", "Invalid input.", "`profiles.data` must be a non-empty array.", "/data/attributes/profiles/data")
        if len(profiles) > self.max_profiles:
            self.violations.append(f"{JOBS}: {len(profiles):,} profiles, over {self.max_profiles:,}")
            return error(400, "invalid", "Invalid input.", f"A maximum of {self.max_profiles} profiles can be imported per request.",
                         "/data/attributes/profiles/data")
        for n, item in enumerate(profiles):
            pointer = f"/data/attributes/profiles/data/{n}"
            if not isinstance(item, dict) or item.get("type") != "profile" or not isinstance(item.get("attributes"), dict):
                return error(400, "invalid", "Invalid input.", "Each profile must be a `profile` resource with `attributes`.", pointer)
            if unknown := sorted(set(item["attributes"]) - ATTRIBUTES):
                return error(400, "invalid", "Invalid input.", f"'{unknown[0]}' is not a valid field for the resource 'profile'.",
                             f"{pointer}/attributes/{unknown[0]}")
            if len(json.dumps(item, separators=(",", ":"))) > self.max_profile_bytes:
                self.violations.append(f"{JOBS}: profile {n} over {self.max_profile_bytes:,} bytes")
                return error(400, "invalid", "Invalid input.", "The maximum allowed payload size per-profile is 100KB.", pointer)
        lists = [r.get("id") for r in (((data.get("relationships") or {}).get("lists") or {}).get("data") or []) if isinstance(r, dict)]
        if missing := [i for i in lists if i not in self.lists]:
            return error(404, "not_found", "Not found.", f"List {missing[0]} does not exist.", "/data/relationships/lists/data/0/id")
        job_id = uuid.uuid4().hex.upper()[:26]
        self.jobs[job_id] = {"status": "queued", "polls": 0, "profiles": profiles, "lists": lists, "errors": [], "ids": [],
                             "created_at": now(), "completed_at": None, "completed_count": 0, "failed_count": 0}
        return 202, {"data": self._job_resource(job_id), "links": {"self": f"{self.url}{JOBS}/{job_id}"}}

    def _job_resource(self, job_id: str) -> dict[str, Any]:
        job = self.jobs[job_id]
        return {"type": "profile-bulk-import-job", "id": job_id,
                "attributes": {"status": job["status"], "created_at": job["created_at"], "total_count": len(job["profiles"]),
                               "completed_count": job["completed_count"], "failed_count": job["failed_count"],
                               "started_at": job["created_at"], "completed_at": job["completed_at"], "expires_at": None},
                "relationships": {"lists": {"data": [{"type": "list", "id": i} for i in job["lists"]]}},
                "links": {"self": f"{self.url}{JOBS}/{job_id}"}}

    def _poll(self, job_id: str) -> tuple[int, Any]:
        if job_id not in self.jobs:
            return error(404, "not_found", "Not found.", f"Job {job_id} does not exist.")
        job = self.jobs[job_id]
        job["polls"] += 1
        if job["status"] in ("queued", "processing"):
            if job["polls"] >= self.polls_to_complete:
                self._run(job)
            else:
                job["status"] = "processing"
        return 200, {"data": self._job_resource(job_id), "links": {"self": f"{self.url}{JOBS}/{job_id}"}}

    def _run(self, job: dict[str, Any]) -> None:
        job["completed_at"] = now()
        if self.end_status != "complete":
            job["status"] = self.end_status
            return
        for n, item in enumerate(job["profiles"]):
            attributes = item["attributes"]
            keys = [str(attributes[k]).strip().lower() for k in ("email", "external_id") if attributes.get(k)]
            problem = next((self.refuse[k] for k in keys if k in self.refuse), None) or self.invalid(attributes)
            if problem:
                job["errors"].append({"type": "import-error", "id": str(uuid.uuid4()), "attributes": {
                    "code": "invalid", "title": "Invalid input.", "detail": problem,
                    "source": {"pointer": f"/data/attributes/profiles/data/{n}" if self.attribution != "payload" else None},
                    "original_payload": attributes if self.attribution != "pointer" else None}})
                job["failed_count"] += 1
                continue
            job["ids"].append(self._upsert(item))
            job["completed_count"] += 1
        for list_id in job["lists"]:
            self.lists[list_id].update(job["ids"])
        job["status"] = "complete"

    def _upsert(self, item: dict[str, Any]) -> str:
        attributes = item["attributes"]
        found = next((self.index[(kind, str(attributes[kind]).lower())] for kind in ("email", "external_id")
                      if attributes.get(kind) and (kind, str(attributes[kind]).lower()) in self.index), None)
        profile_id = found or "01" + uuid.uuid4().hex.upper()[:24]
        self.index.update({(kind, str(attributes[kind]).lower()): profile_id for kind in ("email", "external_id") if attributes.get(kind)})
        held = self.profiles.setdefault(profile_id, {"properties": {}})
        for name, value in attributes.items():
            if name == "properties":
                held["properties"].update(value or {})
            elif name == "location":
                held.setdefault("location", {}).update(value or {})
            else:
                held[name] = value
        unset = ((item.get("meta") or {}).get("patch_properties") or {}).get("unset") or []
        for name in [unset] if isinstance(unset, str) else unset:
            held["properties"].pop(name, None)
        return profile_id

    def _page(self, path: str, query: dict[str, str], items: list[Any] | None) -> tuple[int, Any]:
        if items is None:
            return error(404, "not_found", "Not found.", "The job does not exist.")
        size = query.get("page[size]", "20")
        if not size.isdigit() or not 1 <= int(size) <= self.max_page_size:
            self.violations.append(f"{path}: page[size]={size}, over {self.max_page_size}")
            return error(400, "invalid", "Invalid input.", f"page[size] must be between 1 and {self.max_page_size}.")
        start = int(query.get("page[cursor]", "0"))
        links = {"self": f"{self.url}{path}?{urlencode(query)}"}
        if start + int(size) < len(items):
            links["next"] = f"{self.url}{path}?{urlencode({**query, 'page[cursor]': str(start + int(size))})}"
        return 200, {"data": items[start:start + int(size)], "links": links}

    def _job_profiles(self, path: str, job_id: str, query: dict[str, str]) -> tuple[int, Any]:
        job = self.jobs.get(job_id)
        wanted = query["fields[profile]"].split(",") if "fields[profile]" in query else None
        items = None if job is None else [
            {"type": "profile", "id": i, "attributes": {k: v for k, v in self.profiles[i].items() if wanted is None or k in wanted},
             "links": {"self": f"{self.url}/api/profiles/{i}"}} for i in job["ids"] if i in self.profiles]
        return self._page(path, query, items)

    def _membership(self, method: str, list_id: str, payload: Any) -> tuple[int, Any]:
        if list_id not in self.lists:
            return error(404, "not_found", "Not found.", f"List {list_id} does not exist.")
        data = payload.get("data") if isinstance(payload, dict) else None
        if not isinstance(data, list) or not data or not all(isinstance(d, dict) and d.get("type") == "profile"
                                                             and isinstance(d.get("id"), str) for d in data):
            return error(400, "invalid", "Invalid input.", "`data` must be a non-empty array of profile identifiers.", "/data")
        if len(data) > self.max_list_ids:
            self.violations.append(f"/api/lists/{list_id}/relationships/profiles: {len(data)} profiles, over {self.max_list_ids}")
            return error(400, "invalid", "Invalid input.", f"A maximum of {self.max_list_ids} profiles can be sent per request.", "/data")
        ids = [d["id"] for d in data]
        self.list_calls.append((method, list_id, ids))
        known = [i for i in ids if i in self.profiles]
        (self.lists[list_id].update if method == "POST" else self.lists[list_id].difference_update)(known)
        return 204, None

    def records(self) -> dict[str, dict[str, Any]]:
        """Profiles by email (lower case), attributes and properties side by side."""
        with self.lock:
            flat = [{**{k: v for k, v in p.items() if k not in ("properties", "location")}, **p["properties"],
                     **{f"location.{k}": v for k, v in (p.get("location") or {}).items()}} for p in self.profiles.values()]
            return {str(p["email"]).strip().lower(): p for p in flat if p.get("email")}

    def members(self, list_id: str) -> set[str]:
        with self.lock:
            return {str(self.profiles[i]["email"]).lower() for i in self.lists[list_id] if self.profiles[i].get("email")}


@contextmanager
def serve(fake: FakeKlaviyo) -> Iterator[FakeKlaviyo]:
    """Run the fake on a free local port (fake.url is the base URL) until the block ends."""
    with serve_http(fake.handle) as url:
        fake.url = url
        yield fake
