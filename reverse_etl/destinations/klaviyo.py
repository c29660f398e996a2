"""Klaviyo destination: profiles upserted by bulk import jobs, and static list membership, over
the revisioned JSON:API (../shared/reference/destination-contracts.md §6).

Env: `KLAVIYO_API_KEY` (a private key with profiles and lists read/write; required),
`KLAVIYO_BASE_URL` (default https://a.klaviyo.com), `KLAVIYO_REVISION` (the `revision` header
every request carries, default 2026-07-15), `KLAVIYO_BURST_PER_SECOND` and
`KLAVIYO_STEADY_PER_MINUTE` (the account's limits, which Klaviyo applies to each endpoint;
default 10 and 150, the published tier of every endpoint used here), `KLAVIYO_POLL_SECONDS`
(first wait before polling a job, default 2; it grows 1.5x to 15 s, and is the base of the
backoff inside a send), `KLAVIYO_JOB_TIMEOUT_SECONDS` (default 1800).

Matching: `settings.identifier`, `email` (default) or `external_id`, must be a mapped field.
Fields named like Klaviyo's profile attributes (email, phone_number, external_id, first_name,
last_name, organization, locale, title, image; `location.<city|zip|...>`) are sent there, all
others as custom `properties`; a null custom property is unset (`meta.patch_properties.unset`).

- `upsert`: `POST /api/profile-bulk-import-jobs` (at most 10,000 profiles and 5 MB a job,
  100 KB a profile; a bigger batch is split into several jobs), answered 202 with the job id.
  The job is polled (`GET .../{id}`) until complete, cancelled or failed; then its import errors
  (`GET .../{id}/import-errors`, 100 a page) name their profile by `source.pointer`
  (`/data/attributes/profiles/data/<n>`) or by `original_payload`: those records fail with
  Klaviyo's message and the others are confirmed. A job that does not complete, or errors that
  name no profile, confirm nothing of that job.
- `add_remove` (`settings.list_id`): an add is the same job with the list as a relationship
  (profiles imported and added in one); the job's profiles (`GET .../{id}/profiles`, 100 a
  page) then give each record's profile id, kept as its destination id. A remove sends the
  kept ids to `DELETE /api/lists/{id}/relationships/profiles`, 1,000 a request.
- Pacing: requests to each endpoint are spaced so that neither its burst nor its steady limit
  is reached at 90% (0.44 s apart by default: the steady limit binds), whichever worker sends
  them; spacing rather than bursting also keeps back-to-back syncs under the limits. A 429's
  Retry-After is honoured: creating a job is retried by the engine; polling and reading a job
  retry inside the send (the job is not created again), 6 tries. 5xx and timeouts likewise;
  401/403 stop the sync; other 4xx fail the batch with Klaviyo's `errors[]` message.

Uncertain: Retry-After on 429 (contract: a truncated doc and a third party; without one the
wait is 1 s); whether a null standard attribute clears it (sent as null); whether POST and
DELETE of list relationships share a limit (paced as one); a job status `failed` (the OpenAPI
lists queued, processing, complete, cancelled; anything terminal but complete confirms nothing).
"""

from __future__ import annotations

import json
import math
import re
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

BASE_URL = "https://a.klaviyo.com"
REVISION = "2026-07-15"
JOBS = "/api/profile-bulk-import-jobs"
JOB, JOB_ERRORS, JOB_PROFILES = JOBS + "/{id}", JOBS + "/{id}/import-errors", JOBS + "/{id}/profiles"
LIST_PROFILES = "/api/lists/{id}/relationships/profiles"
MAX_PROFILES = 10_000
MAX_PAYLOAD = 5 * 1024 * 1024
MAX_PROFILE_BYTES = 100 * 1024
MAX_LIST_IDS = 1000
PAGE_SIZE = 100
HEADROOM = 0.9
TERMINAL = ("complete", "cancelled", "failed")
TRIES = 6  # for requests inside a send, once a job exists
MAX_POLL_WAIT = 15.0
THROTTLED_PAUSE = 1.0
ATTRIBUTES = {"email", "phone_number", "external_id", "first_name", "last_name", "organization", "locale", "title", "image"}
LOCATION = {"address1", "address2", "city", "country", "region", "zip", "timezone", "latitude", "longitude", "ip"}
POINTER = re.compile(r"^/data/attributes/profiles/data/(\d+)(/|$)")


def json_value(value: Any) -> Any:
    """A profile value: times ISO 8601 in UTC (naive ones are UTC), dates ISO, decimals as
    numbers, NaN as null."""
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    if isinstance(value, Decimal):
        return float(value)
    if isinstance(value, datetime):
        return (value.astimezone(UTC).replace(tzinfo=None) if value.tzinfo else value).isoformat() + "Z"
    if isinstance(value, date):
        return value.isoformat()
    if isinstance(value, (list, tuple)):
        return [json_value(v) for v in value]
    if isinstance(value, dict):
        return {str(k): json_value(v) for k, v in value.items()}
    return value


def profile(row: dict[str, Any], identifier: str, ident: str) -> dict[str, Any]:
    """The JSON:API profile resource of one record."""
    attributes: dict[str, Any] = {}
    location: dict[str, Any] = {}
    properties: dict[str, Any] = {}
    unset = []
    for name, raw in row.items():
        value = json_value(raw)
        if name == "destination_id":
            continue
        if name in ATTRIBUTES:
            attributes[name] = None if value is None else str(value)
        elif name.startswith("location.") and name[len("location."):] in LOCATION:
            location[name[len("location."):]] = value
        elif value is None:
            unset.append(name)
        else:
            properties[name] = value
    attributes[identifier] = ident
    if location:
        attributes["location"] = location
    if properties:
        attributes["properties"] = properties
    resource: dict[str, Any] = {"type": "profile", "attributes": attributes}
    if unset:
        resource["meta"] = {"patch_properties": {"unset": unset}}
    return resource


def describe(response: httpx.Response) -> str:
    """Klaviyo's `errors[]` in one line: title, detail, code and where."""
    try:
        errors = response.json().get("errors")
    except (ValueError, AttributeError):
        return response.text[:300] or "(empty body)"
    if not isinstance(errors, list) or not errors:
        return response.text[:300]
    return "; ".join(f"{e.get('title')} {e.get('detail')} ({e.get('code')}"
                     + (f" at {(e.get('source') or {}).get('pointer')}" if (e.get("source") or {}).get("pointer") else "") + ")"
                     for e in errors if isinstance(e, dict))[:600]


class Spacing:
    """Requests to each endpoint at least `gap` seconds apart, whichever worker sends them."""

    def __init__(self, gap: float) -> None:
        self.gap = gap
        self.next: dict[str, float] = {}
        self.lock = threading.Lock()

    def wait(self, endpoint: str) -> None:
        with self.lock:
            now = time.monotonic()
            at = max(now, self.next.get(endpoint, now))
            self.next[endpoint] = at + self.gap
        if at > now:
            time.sleep(at - now)


class KlaviyoDestination(Destination):
    name: ClassVar[str] = "klaviyo"
    capabilities: ClassVar[Capabilities] = Capabilities(
        modes=frozenset({"upsert", "add_remove"}), batch_size=MAX_PROFILES, max_concurrency=4,
        requests_per_second=HEADROOM * 150 / 60, burst=1.0,
    )

    def check(self, sync: SyncSpec) -> None:
        super().check(sync)

        def fail(problem: str) -> SyncConfigError:
            return SyncConfigError(f"sync {sync.name!r}: {problem}")

        def number(variable: str, default: float, whole: bool) -> float:
            raw = (self.env.get(variable) or str(default)).strip()
            try:
                value = int(raw) if whole else float(raw)
            except ValueError:
                value = -1
            if value <= 0 or not math.isfinite(value):
                raise fail(f"{variable} must be a positive {'whole number' if whole else 'number of seconds'}, got {raw!r}")
            return value

        if not self.env.get("KLAVIYO_API_KEY"):
            raise fail("set the environment variable KLAVIYO_API_KEY (a Klaviyo private API key)")
        if not (self.env.get("KLAVIYO_BASE_URL") or BASE_URL).startswith(("https://", "http://")):
            raise fail(f"KLAVIYO_BASE_URL must be a URL like {BASE_URL}, got {self.env.get('KLAVIYO_BASE_URL')!r}")
        revision = self.env.get("KLAVIYO_REVISION") or REVISION
        if not re.fullmatch(r"\d{4}-\d{2}-\d{2}(\.[a-z0-9]+)?", revision):
            raise fail(f"KLAVIYO_REVISION must be a revision date like {REVISION} (YYYY-MM-DD[.suffix]), got {revision!r}")
        identifier = sync.settings.get("identifier", "email")
        if identifier not in ("email", "external_id"):
            raise fail(f"settings.identifier must be 'email' or 'external_id', got {identifier!r}")
        if identifier not in sync.mapping.values():
            raise fail(f"map a column to the Klaviyo field {identifier!r} (profiles are matched on settings.identifier, {identifier!r})")
        if sync.mode == "add_remove" and not str(sync.settings.get("list_id") or "").strip():
            raise fail("mode add_remove needs settings.list_id, the id of a Klaviyo list")
        if self.client is None:
            raise fail("the klaviyo destination needs an HTTP client")
        burst = number("KLAVIYO_BURST_PER_SECOND", 10, True)
        steady = number("KLAVIYO_STEADY_PER_MINUTE", 150, True)
        self.poll = number("KLAVIYO_POLL_SECONDS", 2.0, False)
        self.timeout = number("KLAVIYO_JOB_TIMEOUT_SECONDS", 1800.0, False)
        self.gap = max(60.0 / steady, 1.0 / burst) / HEADROOM
        self.capabilities = replace(self.capabilities, requests_per_second=1.0 / self.gap)  # type: ignore[misc]

    def open(self, sync: SyncSpec, schema: pa.Schema) -> None:
        self.base_url = (self.env.get("KLAVIYO_BASE_URL") or BASE_URL).rstrip("/")
        self.headers = {"authorization": f"Klaviyo-API-Key {self.env['KLAVIYO_API_KEY']}",
                        "revision": self.env.get("KLAVIYO_REVISION") or REVISION,
                        "accept": "application/vnd.api+json", "content-type": "application/vnd.api+json"}
        self.identifier = sync.settings.get("identifier", "email")
        self.list_id = str(sync.settings.get("list_id") or "").strip()
        self.spacing = Spacing(self.gap)
        self.refused: str | None = None  # set by a 401/403: every later request is refused without asking

    def send(self, batch: pa.RecordBatch, key_column: str, operation: str) -> list[RecordResult]:
        rows = batch.to_pylist()
        keys = [str(row[key_column]) for row in rows]
        if operation in ("upsert", "add"):
            return self._import(rows, keys, to_list=operation == "add")
        if operation == "remove":
            return self._remove(rows, keys)
        raise BatchRejected(f"klaviyo: operation {operation!r} is not supported (upsert, add, remove)")

    def _match(self, value: Any) -> str:
        text = "" if value is None else str(value).strip()
        return text.lower() if self.identifier == "email" else text

    def _call(self, method: str, url: str, endpoint: str, what: str, payload: Any = None,
              params: dict[str, Any] | None = None, tries: int = 1) -> dict[str, Any]:
        """One request (paced per endpoint), retried `tries` times on 429 / 5xx / timeouts;
        the JSON answer of a 2xx ({} for 204), else RetryableError / AuthorizationFailed /
        BatchRejected with Klaviyo's message."""
        assert self.client is not None
        body = None if payload is None else json.dumps(payload, separators=(",", ":")).encode()
        for attempt in range(tries):
            if self.refused:
                raise AuthorizationFailed(self.refused)
            self.spacing.wait(endpoint)
            try:
                response = send_request(self.client, method, url if url.startswith("http") else self.base_url + url, content=body,
                                        params=params, headers=self.headers, what=f"klaviyo {what}")
            except RetryableError as exc:
                error = exc
            else:
                status = response.status_code
                message = f"klaviyo {what}: HTTP {status}: {describe(response)}"
                if 200 <= status < 300:
                    try:
                        return response.json() if response.content else {}
                    except ValueError:
                        raise BatchRejected(f"klaviyo {what}: HTTP {status} with a body that is not JSON: {response.text[:200]!r}") from None
                if status in (401, 403):
                    self.refused = message
                    raise AuthorizationFailed(message)
                if status != 429 and status < 500:
                    raise BatchRejected(message)
                error = RetryableError(message, retry_after_seconds(response) or (THROTTLED_PAUSE if status == 429 else None))
            if attempt + 1 == tries:
                raise error
            time.sleep(max(error.retry_after or 0.0, self.poll * 2 ** attempt))
        raise AssertionError("unreachable")

    def _import(self, rows: list[dict[str, Any]], keys: list[str], to_list: bool) -> list[RecordResult]:
        answers: list[RecordResult | None] = [None] * len(rows)
        entries: list[tuple[int, str, dict[str, Any], int]] = []  # row index, match key, profile resource, its size
        seen: dict[str, int] = {}
        for i, row in enumerate(rows):
            match = self._match(row.get(self.identifier))
            if not match:
                answers[i] = RecordResult(keys[i], ok=False, error=f"no {self.identifier}: Klaviyo profiles are matched on {self.identifier}")
            elif match in seen:
                answers[i] = RecordResult(keys[i], ok=False, error=f"{self.identifier} {row[self.identifier]!r} is also on record "
                                          f"{keys[seen[match]]} of this batch; a Klaviyo import takes one profile per {self.identifier}")
            else:
                resource = profile(row, self.identifier, str(row[self.identifier]).strip())
                size = len(json.dumps(resource, separators=(",", ":")).encode())
                if size > MAX_PROFILE_BYTES:
                    answers[i] = RecordResult(keys[i], ok=False, error=f"the profile is {size:,} bytes; Klaviyo imports at most {MAX_PROFILE_BYTES:,}")
                else:
                    seen[match] = i
                    entries.append((i, match, resource, size))
        chunk: list[tuple[int, str, dict[str, Any], int]] = []
        used = 500  # the job's envelope
        for entry in entries + [(-1, "", {}, MAX_PAYLOAD)]:  # a sentinel flushes the last job
            if chunk and (used + entry[3] + 1 > 0.98 * MAX_PAYLOAD or len(chunk) == MAX_PROFILES):
                for i, result in self._job(chunk, keys, to_list).items():
                    answers[i] = result
                chunk, used = [], 500
            chunk.append(entry)
            used += entry[3] + 1
        return [a for a in answers if a is not None]

    def _job(self, chunk: list[tuple[int, str, dict[str, Any], int]], keys: list[str], to_list: bool) -> dict[int, RecordResult]:
        """Import one job's profiles and say per row index what became of each."""
        body: dict[str, Any] = {"data": {"type": "profile-bulk-import-job", "attributes": {"profiles": {"data": [e[2] for e in chunk]}}}}
        if to_list:
            body["data"]["relationships"] = {"lists": {"data": [{"type": "list", "id": self.list_id}]}}
        created = self._call("POST", JOBS, JOBS, "bulk profile import", body)
        job_id = str((created.get("data") or {}).get("id") or "")
        if not job_id:
            raise BatchRejected(f"klaviyo bulk profile import: answered without a job id: {json.dumps(created)[:200]}")
        what = f"Klaviyo import job {job_id}"
        job = self._wait(job_id)
        attributes = job.get("attributes") or {}
        status = attributes.get("status")
        if status != "complete":
            ended = f"was still {status} after {self.timeout:g} s" if status not in TERMINAL else f"ended {status}"
            message = (f"{what} {ended} ({attributes.get('completed_count') or 0} of {attributes.get('total_count')} done, "
                       f"{attributes.get('failed_count') or 0} failed); none of its profiles is confirmed")
            return {e[0]: RecordResult(keys[e[0]], ok=False, error=message) for e in chunk}
        errors = self._pages(JOB_ERRORS.format(id=job_id), JOB_ERRORS, f"import errors of job {job_id}", {"page[size]": PAGE_SIZE})
        at: dict[int, str] = {}
        named: dict[str, str] = {}
        loose: list[str] = []
        for error in errors:
            details = error.get("attributes") or {}
            message = f"{details.get('title')} {details.get('detail')} ({details.get('code')})"
            pointer = POINTER.match(str((details.get("source") or {}).get("pointer") or ""))
            sent = details.get("original_payload") or {}
            sent = sent.get("attributes", sent) if isinstance(sent, dict) else {}
            if pointer and int(pointer.group(1)) < len(chunk):
                at[int(pointer.group(1))] = message
            elif self._match(sent.get(self.identifier)):
                named[self._match(sent.get(self.identifier))] = message
            else:
                loose.append(message)
        if (attributes.get("failed_count") or 0) > len(errors):
            loose.append(f"Klaviyo counted {attributes['failed_count']} failed profiles but listed {len(errors)} import errors")
        ids: dict[str, str] = {}
        if to_list:
            params = {"page[size]": PAGE_SIZE, "fields[profile]": self.identifier}
            for found in self._pages(JOB_PROFILES.format(id=job_id), JOB_PROFILES, f"profiles of job {job_id}", params):
                ids[self._match((found.get("attributes") or {}).get(self.identifier))] = str(found.get("id"))
        results = {}
        for n, (i, match, _, _) in enumerate(chunk):
            refused = at.get(n) or named.get(match)
            if refused:
                results[i] = RecordResult(keys[i], ok=False, error=f"Klaviyo did not import this profile: {refused}")
            elif loose:
                results[i] = RecordResult(keys[i], ok=False, error=f"{what} reported failures that name no profile, so this one is not "
                                          f"confirmed: {'; '.join(loose)[:500]}")
            elif to_list and match not in ids:
                results[i] = RecordResult(keys[i], ok=False, error=f"{what} completed without an error for this profile, but it is not "
                                          f"among the job's profiles, so its membership of list {self.list_id} is not confirmed")
            else:
                results[i] = RecordResult(keys[i], ok=True, destination_id=ids.get(match))
        return results

    def _wait(self, job_id: str) -> dict[str, Any]:
        """Poll the job until it ends or the timeout passes; its last state."""
        deadline = time.monotonic() + self.timeout
        pause = self.poll
        while True:
            time.sleep(max(0.0, min(pause, deadline - time.monotonic())))
            job = self._call("GET", JOB.format(id=job_id), JOB, f"import job {job_id}", tries=TRIES).get("data") or {}
            if (job.get("attributes") or {}).get("status") in TERMINAL or time.monotonic() >= deadline:
                return job
            pause = min(pause * 1.5, MAX_POLL_WAIT)

    def _pages(self, path: str, endpoint: str, what: str, params: dict[str, Any]) -> list[dict[str, Any]]:
        """Every item of a paginated collection, following `links.next`."""
        items: list[dict[str, Any]] = []
        url: str | None = path
        while url:
            page = self._call("GET", url, endpoint, what, params=params, tries=TRIES)
            items += [item for item in page.get("data") or [] if isinstance(item, dict)]
            url, params = (page.get("links") or {}).get("next"), None  # the next link carries the query
        return items

    def _remove(self, rows: list[dict[str, Any]], keys: list[str]) -> list[RecordResult]:
        ids = [None if row.get("destination_id") is None else str(row["destination_id"]) for row in rows]
        answers = [RecordResult(key, ok=True, destination_id=i) if i else
                   RecordResult(key, ok=False, error=f"no Klaviyo profile id is kept for this record (was it ever added?), "
                                                     f"so it cannot be removed from list {self.list_id}")
                   for key, i in zip(keys, ids, strict=True)]
        unique = list(dict.fromkeys(i for i in ids if i))
        for start in range(0, len(unique), MAX_LIST_IDS):
            chunk = unique[start:start + MAX_LIST_IDS]
            try:
                self._call("DELETE", LIST_PROFILES.format(id=self.list_id), LIST_PROFILES, f"list {self.list_id} remove",
                           {"data": [{"type": "profile", "id": i} for i in chunk]})
            except AuthorizationFailed:
                raise
            except BatchRejected as exc:  # the other requests stand
                answers = [replace(a, ok=False, error=str(exc)) if a.destination_id in chunk else a for a in answers]
        return answers
