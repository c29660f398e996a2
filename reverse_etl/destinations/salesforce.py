"""Salesforce destination: records of one sObject (Contact, Lead, a custom object) upserted by an
external id field, over sObject Collections for small syncs and Bulk API 2.0 ingest jobs for
large ones (../shared/reference/destination-contracts.md §7).

Settings: `object` (the sObject API name), `external_id_field` (an External ID field of it, which
the mapping must fill: records are matched on it), `api` (`auto`, the default, `collections` or
`bulk`), `bulk_threshold` (default 2,000: Salesforce's own advice is Bulk API 2.0 above 2,000
records, bulkified REST below), `bulk_batch_size` (records per Bulk API job, default 10,000,
Salesforce's internal batch size; at most 100,000).
Env: `SALESFORCE_INSTANCE_URL` (the org's My Domain URL, required: there is no shared host),
`SALESFORCE_ACCESS_TOKEN` (OAuth access token, required), `SALESFORCE_API_VERSION` (default
62.0, at least 46.0), `SALESFORCE_REQUESTS_PER_SECOND` (default 5), `SALESFORCE_BULK_POLL_SECONDS`
(first wait before polling a job, default 2; it grows 1.5x per poll up to 30 s).

- `upsert`: `PATCH /services/data/vXX.X/composite/sobjects/{object}/{external_id_field}`,
  `allOrNone: false`, at most 200 records; the answer holds one result per record in order
  (`success`, `id`, `created`, `errors[{statusCode, message, fields}]`). Null clears a field.
  A record without an external id value, or with the value of an earlier record of the batch,
  fails here without being sent (Salesforce would fail every record sharing the value).
- `mirror`: upserts as above; removals delete the record id kept from the upsert,
  `DELETE /composite/sobjects?ids=...&allOrNone=false` (200 ids); ENTITY_IS_DELETED counts as
  deleted. A removal without a kept id fails (Salesforce deletes by record id only).
- Bulk API 2.0: one ingest job per batch: create (`operation` upsert + `externalIdFieldName`, or
  delete), upload the CSV (`PUT .../batches`, LF, `#N/A` clears a field; over 100 MB the batch
  fails: lower bulk_batch_size), `UploadComplete`, poll until JobComplete / Failed / Aborted,
  then read `successfulResults` (`sf__Id`, `sf__Created`) and `failedResults` (`sf__Error`),
  attributed by the external id (or Id) column, since their order is not the upload's. Records
  in neither file fail with the job's errorMessage (a job that failed as a whole). A job still
  running near the sync's deadline is aborted and read the same way. Once data is uploaded,
  polls and downloads that fail transiently are retried here, so a job is never sent twice.
- `api: auto` plans batches of bulk_batch_size: a batch over bulk_threshold (a large sync) goes
  as a job, a smaller one (a small sync, the tail of a large one) as Collections requests.
- Pacing: Salesforce has no per-second limit but a 24-hour request allocation per org and 25
  concurrent long requests. The engine paces sends, and every request (a job makes several)
  takes a token from one bucket per run: about 90% of SALESFORCE_REQUESTS_PER_SECOND, bursts of
  at most 5, so that no second holds more. 4 sends at once (4 jobs, or 4 collections requests).
  429 and 5xx are retried (Retry-After honoured, else 1 s for a 429). 403 REQUEST_LIMIT_EXCEEDED
  is not an authorization failure: "TotalRequests" (the 24-hour allocation is used up) is
  retried after an hour, so a sync with the default one-hour deadline stops at once with its
  records still pending; other limits (concurrent requests) pause every request 10 s. Other
  401/403 stop the sync (later sends fail without a request).
- Uncertain: the exact statusCode of per-record errors; REQUEST_LIMIT_EXCEEDED message texts
  (TotalRequests vs ConcurrentPerOrgLongTxn/ConcurrentRequests, matched loosely); external id
  values are sent as text (fine for Text and Email external ids; Number ones untested). Access
  tokens expire (session timeout): a 401 INVALID_SESSION_ID stops the sync; refresh it before.
"""

from __future__ import annotations

import csv
import io
import json
import math
import re
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, replace
from datetime import date, datetime
from decimal import Decimal
from typing import Any, ClassVar, TypeVar

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
from reverse_etl.pacing import TokenBucket
from reverse_etl.syncs import SyncConfigError, SyncSpec

T = TypeVar("T")
APIS = ("auto", "collections", "bulk")
COLLECTION_SIZE = 200
BULK_THRESHOLD = 2_000
BULK_BATCH_SIZE = 10_000
MAX_BULK_BATCH_SIZE = 100_000
MAX_UPLOAD_BYTES = 100 * 1024 * 1024  # 150 MB once base64-encoded by Salesforce
DEFAULT_VERSION = "62.0"
MIN_VERSION = 46.0  # sObject Collections upsert
DEFAULT_RATE = 5.0
HEADROOM = 0.9
MAX_BURST = 5.0
DEFAULT_POLL = 2.0
MAX_POLL = 30.0
DAILY_LIMIT_PAUSE = 3600.0  # REQUEST_LIMIT_EXCEEDED TotalRequests: the 24-hour allocation is used up
CONCURRENCY_PAUSE = 10.0
THROTTLED_PAUSE = 1.0
PATIENT_ATTEMPTS = 6
TERMINAL = ("JobComplete", "Failed", "Aborted")
NULL_CSV = "#N/A"
API_NAME = re.compile(r"[A-Za-z][A-Za-z0-9_]*")


@dataclass(frozen=True)
class Config:
    object: str
    external_id_field: str
    api: str
    bulk_threshold: int
    bulk_batch_size: int
    instance_url: str
    token: str
    version: str
    rate: float
    poll_seconds: float


def json_value(value: Any) -> Any:
    """A field value as Salesforce JSON: null clears, times ISO 8601 (naive ones UTC), lists
    ;-separated (multi-select picklists)."""
    if value is None or isinstance(value, (bool, int, str)):
        return value
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    if isinstance(value, Decimal):
        return float(value)
    if isinstance(value, datetime):
        return value.isoformat() + ("Z" if value.tzinfo is None else "")
    if isinstance(value, date):
        return value.isoformat()
    if isinstance(value, (list, tuple)):
        return ";".join(text_value(v) for v in value if v is not None)
    if isinstance(value, dict):
        return json.dumps(value, default=str, separators=(",", ":"))
    return str(value)


def text_value(value: Any) -> str:
    """A field value as Bulk API CSV text: #N/A clears (an empty cell would leave it as is)."""
    value = json_value(value)
    if value is None or value == "":
        return NULL_CSV
    if isinstance(value, bool):
        return "true" if value else "false"
    return str(value)


def chunks(indexes: list[int]) -> list[list[int]]:
    return [indexes[start:start + COLLECTION_SIZE] for start in range(0, len(indexes), COLLECTION_SIZE)]


def pacing(rate: float) -> tuple[float, float]:
    """Token rate and burst for a limit of `rate` requests a second: a second holds at most
    burst + rate tokens, kept under 95% of the limit (slack for the network's jitter), and
    whole requests, so a limit of 1 still allows one a second."""
    burst = max(1.0, min(MAX_BURST, 0.05 * rate))
    return max(min(HEADROOM * rate, 0.95 * rate - burst), rate / 2), burst


def describe(response: httpx.Response) -> str:
    """Salesforce's error body (`[{"errorCode", "message", "fields"?}]`) in one line."""
    try:
        body = response.json()
    except ValueError:
        return response.text[:300] or "(empty body)"
    errors = body if isinstance(body, list) else [body]
    return "; ".join(f"{e.get('errorCode') or e.get('statusCode') or 'error'}: {e.get('message')}" if isinstance(e, dict) else str(e)
                     for e in errors)[:500]


def record_errors(errors: Any) -> str:
    """Per-record `errors[]` of a collections result in one line."""
    parts = []
    for e in errors if isinstance(errors, list) else [errors]:
        e = e if isinstance(e, dict) else {"message": str(e)}
        fields = f" (fields: {', '.join(map(str, e['fields']))})" if e.get("fields") else ""
        parts.append(f"{e.get('statusCode') or e.get('errorCode') or 'error'}: {e.get('message')}{fields}")
    return "; ".join(parts) or "Salesforce answered success false without an error"


class SalesforceDestination(Destination):
    name: ClassVar[str] = "salesforce"
    capabilities: ClassVar[Capabilities] = Capabilities(
        modes=frozenset({"upsert", "mirror"}), batch_size=BULK_BATCH_SIZE, max_concurrency=4,
        requests_per_second=pacing(DEFAULT_RATE)[0], burst=pacing(DEFAULT_RATE)[1],
    )

    def _config(self, sync: SyncSpec) -> Config:
        def fail(problem: str) -> SyncConfigError:
            return SyncConfigError(f"sync {sync.name!r}: {problem}")

        def whole(name: str, default: int, low: int, high: int) -> int:
            value = sync.settings.get(name, default)
            if not isinstance(value, int) or isinstance(value, bool) or not low <= value <= high:
                raise fail(f"settings.{name} must be a whole number from {low:,} to {high:,}, got {value!r}")
            return value

        def number(variable: str, default: float, low: float) -> float:
            raw = self.env.get(variable) or str(default)
            try:
                value = float(raw)
            except ValueError:
                value = math.nan
            if not math.isfinite(value) or value < low or value <= 0:
                raise fail(f"{variable} must be a positive number{f', at least {low:g}' if low else ''}, got {raw!r}")
            return value

        for variable, what in (("SALESFORCE_ACCESS_TOKEN", "an OAuth access token of the org"),
                               ("SALESFORCE_INSTANCE_URL", "the org's My Domain URL, e.g. https://acme.my.salesforce.com")):
            if not self.env.get(variable):
                raise fail(f"set the environment variable {variable} ({what})")
        url = self.env["SALESFORCE_INSTANCE_URL"].rstrip("/")
        if not re.fullmatch(r"https?://[^/\s]+", url):
            raise fail(f"SALESFORCE_INSTANCE_URL must be the org's base URL (https://<domain>, no path), got {url!r}")
        version = self.env.get("SALESFORCE_API_VERSION") or DEFAULT_VERSION
        if not re.fullmatch(r"\d{2,3}\.0", version) or float(version) < MIN_VERSION:
            raise fail(f"SALESFORCE_API_VERSION must be like {DEFAULT_VERSION}, at least {MIN_VERSION} (sObject Collections upsert), "
                       f"got {version!r}")
        for name, what in (("object", "the sObject API name, e.g. Contact or Customer__c"),
                           ("external_id_field", "the External ID field records are matched on, e.g. Corral_Id__c")):
            value = sync.settings.get(name)
            if not isinstance(value, str) or not API_NAME.fullmatch(value):
                raise fail(f"settings.{name} must be {what}, got {value!r}")
        external = sync.settings["external_id_field"]
        if external not in sync.mapping.values():
            raise fail(f"map a column to the external id field {external!r}: records are matched on it")
        if "Id" in sync.mapping.values() or external == "Id":
            raise fail("do not map a column to the field 'Id': records are matched on the external id field, Salesforce sets Id")
        api = sync.settings.get("api", "auto")
        if api not in APIS:
            raise fail(f"settings.api must be one of {', '.join(APIS)}, got {api!r}")
        batch_size = whole("bulk_batch_size", BULK_BATCH_SIZE, 1, MAX_BULK_BATCH_SIZE)
        threshold = whole("bulk_threshold", BULK_THRESHOLD, 0, MAX_BULK_BATCH_SIZE)
        if api == "auto" and threshold >= batch_size:
            raise fail(f"settings.bulk_threshold ({threshold:,}) must be below bulk_batch_size ({batch_size:,}), "
                       "or api auto never uses the Bulk API")
        if self.client is None:
            raise fail("the salesforce destination needs an HTTP client")
        rate, poll = number("SALESFORCE_REQUESTS_PER_SECOND", DEFAULT_RATE, 1.0), number("SALESFORCE_BULK_POLL_SECONDS", DEFAULT_POLL, 0.0)
        return Config(sync.settings["object"], external, api, threshold, batch_size, url, self.env["SALESFORCE_ACCESS_TOKEN"], version,
                      rate, poll)

    def check(self, sync: SyncSpec) -> None:
        super().check(sync)
        config = self._config(sync)
        rate, burst = pacing(config.rate)
        self.capabilities = replace(  # type: ignore[misc]
            self.capabilities, batch_size=COLLECTION_SIZE if config.api == "collections" else config.bulk_batch_size,
            requests_per_second=rate, burst=burst)

    def open(self, sync: SyncSpec, schema: pa.Schema) -> None:
        self.config = self._config(sync)
        self.base_url = f"{self.config.instance_url}/services/data/v{self.config.version}"
        self.headers = {"authorization": f"Bearer {self.config.token}", "accept": "application/json"}
        assert self.capabilities.requests_per_second is not None
        self.bucket = TokenBucket(self.capabilities.requests_per_second, self.capabilities.burst)
        self.deadline = time.monotonic() + sync.deadline_seconds
        self.lock = threading.Lock()
        self.denied: str | None = None
        self.exhausted: tuple[float, str] | None = None  # (until, message) once the daily allocation is used up
        self.jobs: list[dict[str, Any]] = []
        self.usage: str | None = None

    def close(self, success: bool) -> dict[str, Any]:
        return {"api_usage": self.usage, "bulk_jobs": self.jobs} if hasattr(self, "jobs") else {}

    def send(self, batch: pa.RecordBatch, key_column: str, operation: str) -> list[RecordResult]:
        if self.denied:
            raise AuthorizationFailed(self.denied)
        if self.exhausted and time.monotonic() < self.exhausted[0]:
            raise RetryableError(self.exhausted[1], self.exhausted[0] - time.monotonic())
        rows = batch.to_pylist()
        keys = [str(row[key_column]) for row in rows]
        bulk = self.config.api == "bulk" or (self.config.api == "auto" and len(rows) > self.config.bulk_threshold)
        if operation == "upsert":
            return self._upsert(rows, keys, bulk)
        if operation == "delete":
            return self._delete(rows, keys, bulk)
        raise BatchRejected(f"salesforce: operation {operation!r} is not supported (upsert, delete)")

    # -- requests ------------------------------------------------------------------------------

    def _request(self, method: str, path: str, what: str, payload: Any = None, csv_text: str | None = None,
                 expect: int = 200) -> httpx.Response:
        """One paced request; the response if its status is `expect`, else the right error."""
        assert self.client is not None
        headers = dict(self.headers)
        body = None
        if csv_text is not None:
            body, headers["content-type"] = csv_text.encode(), "text/csv"
        elif payload is not None:
            body, headers["content-type"] = json.dumps(payload, separators=(",", ":")).encode(), "application/json"
        self.bucket.acquire()
        response = send_request(self.client, method, self.base_url + path, content=body, headers=headers, what=f"salesforce {what}")
        if usage := response.headers.get("Sforce-Limit-Info"):
            self.usage = usage
        status = response.status_code
        if status == expect:
            return response
        message = f"salesforce {what}: HTTP {status}: {describe(response)}"
        if status == 403 and "REQUEST_LIMIT_EXCEEDED" in response.text:
            if "concurrent" not in response.text.lower():
                message += " (the org's 24-hour API request allocation is used up: the records stay pending for a later run)"
                self.exhausted = (time.monotonic() + DAILY_LIMIT_PAUSE, message)
                raise RetryableError(message, DAILY_LIMIT_PAUSE)
            self.bucket.pause(CONCURRENCY_PAUSE)
            raise RetryableError(message + " (too many concurrent long-running requests)", CONCURRENCY_PAUSE)
        if status in (401, 403):
            self.denied = f"{message} (check SALESFORCE_ACCESS_TOKEN and the user's API permissions)"
            raise AuthorizationFailed(self.denied)
        if status == 429 or status >= 500:
            asked = retry_after_seconds(response)
            wait = asked if asked is not None or status != 429 else THROTTLED_PAUSE
            if wait:
                self.bucket.pause(wait)
            raise RetryableError(message, wait)
        raise BatchRejected(message)

    def _json(self, method: str, path: str, what: str, payload: Any = None) -> Any:
        response = self._request(method, path, what, payload)
        try:
            return response.json()
        except ValueError:
            raise BatchRejected(f"salesforce {what}: HTTP {response.status_code} with a body that is not JSON: "
                                f"{response.text[:200]!r}") from None

    def _patiently(self, call: Callable[[], T]) -> T:
        """Retry transient failures here: used once a job's data is uploaded, so that a flaky
        poll does not make the engine send the whole job again."""
        for attempt in range(PATIENT_ATTEMPTS):
            try:
                return call()
            except RetryableError as error:
                if attempt + 1 == PATIENT_ATTEMPTS or (self.exhausted and time.monotonic() < self.exhausted[0]):
                    raise
                time.sleep(min(MAX_POLL, max(error.retry_after or 0.0, self.config.poll_seconds * 2**attempt)))
        raise AssertionError("unreachable")

    # -- operations ----------------------------------------------------------------------------

    def _upsert(self, rows: list[dict[str, Any]], keys: list[str], bulk: bool) -> list[RecordResult]:
        external = self.config.external_id_field
        answers: dict[int, RecordResult] = {}
        sent: dict[str, int] = {}  # external id text -> row index
        for i, row in enumerate(rows):
            value = None if row.get(external) is None else text_value(row[external])
            if value is None or value == NULL_CSV or not value.strip():
                answers[i] = RecordResult(keys[i], ok=False,
                                          error=f"no value for the external id field {external}: records are matched on it")
            elif value.lower() in sent:  # external ids match case-insensitively unless the field is case-sensitive
                answers[i] = RecordResult(keys[i], ok=False, error=f"{external} {value!r} is also on record {keys[sent[value.lower()]]} "
                                          "of this batch; Salesforce fails every record of a request sharing an external id")
            else:
                sent[value.lower()] = i
        fields = [f for f in (rows[0] if rows else {}) if f not in ("destination_id", external)]
        indexes = list(sent.values())
        if bulk and indexes:
            lines = [[text_value(rows[i][external]), *(text_value(rows[i][f]) for f in fields)] for i in indexes]
            answers.update(self._bulk("upsert", [external, *fields], lines, indexes, keys, removal=False))
        for chunk in [] if bulk else chunks(indexes):
            records = [{"attributes": {"type": self.config.object}, external: text_value(rows[i][external]),
                        **{f: json_value(rows[i][f]) for f in fields}} for i in chunk]
            path = f"/composite/sobjects/{self.config.object}/{external}"
            answers.update(self._collection(chunk, keys, "PATCH", path, {"allOrNone": False, "records": records},
                                            f"{self.config.object} collections upsert", removal=False))
        return [answers[i] for i in range(len(rows))]

    def _delete(self, rows: list[dict[str, Any]], keys: list[str], bulk: bool) -> list[RecordResult]:
        answers: dict[int, RecordResult] = {}
        ids: dict[str, int] = {}
        for i, row in enumerate(rows):
            record_id = row.get("destination_id")
            if not record_id:
                answers[i] = RecordResult(keys[i], ok=False, error="no Salesforce record id is kept for this record (was it ever "
                                          "upserted?), so it cannot be deleted: Salesforce deletes by record id")
            elif record_id in ids:
                answers[i] = RecordResult(keys[i], ok=False, error=f"record id {record_id} is also kept for record {keys[ids[record_id]]}")
            else:
                ids[str(record_id)] = i
        indexes = list(ids.values())
        if bulk and indexes:
            answers.update(self._bulk("delete", ["Id"], [[str(rows[i]["destination_id"])] for i in indexes], indexes, keys, removal=True))
        for chunk in [] if bulk else chunks(indexes):
            path = "/composite/sobjects?allOrNone=false&ids=" + ",".join(str(rows[i]["destination_id"]) for i in chunk)
            answers.update(self._collection(chunk, keys, "DELETE", path, None, f"{self.config.object} collections delete", removal=True,
                                            ids=[str(rows[i]["destination_id"]) for i in chunk]))
        return [answers[i] for i in range(len(rows))]

    def _collection(self, chunk: list[int], keys: list[str], method: str, path: str, payload: Any, what: str, removal: bool,
                    ids: list[str] | None = None) -> dict[int, RecordResult]:
        """One sObject Collections request; its results are in the order of the records sent.
        A refused request fails its records (401/403 and transient errors propagate)."""
        try:
            results = self._json(method, path, what, payload)
        except AuthorizationFailed:
            raise
        except BatchRejected as exc:
            return {i: RecordResult(keys[i], ok=False, error=str(exc)) for i in chunk}
        if not isinstance(results, list) or len(results) != len(chunk):
            got = len(results) if isinstance(results, list) else type(results).__name__
            problem = f"salesforce {what}: answered {got} results for {len(chunk)} records"
            return {i: RecordResult(keys[i], ok=False, error=problem) for i in chunk}
        answers = {}
        for n, (i, result) in enumerate(zip(chunk, results, strict=True)):
            result = result if isinstance(result, dict) else {}
            errors = result.get("errors") or []
            gone = removal and bool(errors) and all(isinstance(e, dict) and e.get("statusCode") == "ENTITY_IS_DELETED" for e in errors)
            if result.get("success") is True or gone:
                record_id = result.get("id") or (ids[n] if ids else None)
                answers[i] = RecordResult(keys[i], ok=True, destination_id=None if record_id is None else str(record_id))
            else:
                answers[i] = RecordResult(keys[i], ok=False, error=record_errors(errors))
        return answers

    # -- Bulk API 2.0 --------------------------------------------------------------------------

    def _bulk(self, operation: str, header: list[str], lines: list[list[str]], indexes: list[int], keys: list[str],
              removal: bool) -> dict[int, RecordResult]:
        """One ingest job for these rows (`lines[n]` is row `indexes[n]`), its per-record outcome."""
        out = io.StringIO()
        writer = csv.writer(out, lineterminator="\n")
        writer.writerow(header)
        writer.writerows(lines)
        data = out.getvalue()
        if len(data.encode()) > MAX_UPLOAD_BYTES:
            raise BatchRejected(f"salesforce bulk {operation}: {len(data.encode()):,} bytes of CSV is over the Bulk API's 100 MB "
                                "per upload; lower settings.bulk_batch_size")
        spec = {"object": self.config.object, "operation": operation, "contentType": "CSV", "columnDelimiter": "COMMA", "lineEnding": "LF"}
        if operation == "upsert":
            spec["externalIdFieldName"] = self.config.external_id_field
        job = self._json("POST", "/jobs/ingest", f"create Bulk API {operation} job", spec)
        job_id = str(job.get("id") or "") if isinstance(job, dict) else ""
        if not re.fullmatch(r"[A-Za-z0-9]{15,18}", job_id):
            raise BatchRejected(f"salesforce create Bulk API {operation} job: unexpected answer {json.dumps(job)[:200]}")
        path = f"/jobs/ingest/{job_id}"
        try:
            self._request("PUT", path + "/batches", f"upload job {job_id}", csv_text=data, expect=201)
            self._json("PATCH", path, f"close job {job_id}", {"state": "UploadComplete"})
        except Exception:
            self._abort(job_id)
            raise
        try:
            info = self._wait(job_id)
            successful = self._patiently(lambda: self._request("GET", path + "/successfulResults", f"job {job_id} successful results").text)
            failed = self._patiently(lambda: self._request("GET", path + "/failedResults", f"job {job_id} failed results").text)
        except RetryableError:
            self._abort(job_id)  # the engine sends the batch again: not two jobs on the same records at once
            raise
        with self.lock:
            self.jobs.append({"id": job_id, "operation": operation, "state": info.get("state"), "records": len(lines),
                              "failed": info.get("numberRecordsFailed")})
        match = header[0]
        by_text = {line[0]: i for line, i in zip(lines, indexes, strict=True)}
        by_lower = {text.lower(): i for text, i in by_text.items()}
        answers: dict[int, RecordResult] = {}
        for row in csv.DictReader(io.StringIO(successful)):
            i = by_text.get(row.get(match) or "", by_lower.get((row.get(match) or "").lower()))
            if i is not None:
                answers[i] = RecordResult(keys[i], ok=True, destination_id=row.get("sf__Id") or (row.get("Id") if removal else None))
        for row in csv.DictReader(io.StringIO(failed)):
            i = by_text.get(row.get(match) or "", by_lower.get((row.get(match) or "").lower()))
            error = (row.get("sf__Error") or "Salesforce gave no error text").strip()
            if i is not None and removal and error.startswith("ENTITY_IS_DELETED"):
                answers[i] = RecordResult(keys[i], ok=True, destination_id=row.get("Id"))
            elif i is not None:
                answers[i] = RecordResult(keys[i], ok=False, error=f"Bulk API job {job_id}: {error}")
        state = info.get("state")
        why = (f"Bulk API job {job_id} gave no result for this record" if state == "JobComplete" else
               f"Bulk API job {job_id} {state}: {info.get('errorMessage') or 'no error message'}; this record was not processed")
        return {i: answers.get(i) or RecordResult(keys[i], ok=False, error=why) for i in indexes}

    def _wait(self, job_id: str) -> dict[str, Any]:
        """Poll the job until it ends; abort it if the sync's deadline comes first."""
        interval, aborted = self.config.poll_seconds, 0
        while True:
            time.sleep(interval)
            info = self._patiently(lambda: self._json("GET", f"/jobs/ingest/{job_id}", f"job {job_id} status"))
            state = info.get("state") if isinstance(info, dict) else None
            if state in TERMINAL:
                return info
            if state not in ("Open", "UploadComplete", "InProgress"):
                raise BatchRejected(f"salesforce job {job_id} status: unexpected answer {json.dumps(info)[:200]}")
            if aborted >= 3:
                return {**info, "state": "Aborted", "errorMessage": "aborted at the sync's deadline; Salesforce had not stopped it yet"}
            if aborted or time.monotonic() + interval * 2.5 >= self.deadline:
                aborted += 1
                self._abort(job_id)
                interval = self.config.poll_seconds
            else:
                interval = min(MAX_POLL, interval * 1.5)

    def _abort(self, job_id: str) -> None:
        try:
            self._request("PATCH", f"/jobs/ingest/{job_id}", f"abort job {job_id}", {"state": "Aborted"})
        except (RetryableError, BatchRejected):
            pass  # best effort: an open job that is never closed is not processed
