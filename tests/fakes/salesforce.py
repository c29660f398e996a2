"""Salesforce REST on a real local HTTP port, as strict as the contract
(../shared/reference/destination-contracts.md §7): Bearer token (401 INVALID_SESSION_ID
otherwise); objects with known fields, External ID fields and required fields (unknown fields:
400 INVALID_FIELD for a whole request; a missing required field fails the record);
sObject Collections upsert by external id (at most 200 records, one type, no Id, results in
order with success / id / created / errors[{statusCode, message, fields}], every record sharing
an external id value failing DUPLICATE_VALUE, `allOrNone` honoured) and delete by ids (200 at
most, deleted ids ENTITY_IS_DELETED, unknown ones INVALID_CROSS_REFERENCE_KEY); Bulk API 2.0
ingest jobs (create, one CSV upload of at most 150 MB base64-encoded, UploadComplete, polls that
show InProgress before JobComplete, successfulResults / failedResults / unprocessedrecords CSVs
in a shuffled order, abort; a header naming an unknown field fails the job, as can
`fail_next_job`; records and batches counted against the daily Bulk API allocation); the org's
24-hour request allocation (403 REQUEST_LIMIT_EXCEEDED, `Sforce-Limit-Info` on every answer);
scripted answers (5xx, 429, REQUEST_LIMIT_EXCEEDED, stalls) ahead of everything, for any request
(`script`) or for one kind of call (`script_on`, e.g. job polls).

Salesforce has no per-second limit: the fake answers every request but counts the requests over
`requests_per_second` in a rolling second, and every over-limit request, in `violations`.
Uncertain, so kept simple: the answer to results read before a job ends (400 INVALIDJOBSTATE here,
counted as a violation) and to a second upload (409), a missing external id value in a record
(MISSING_ARGUMENT) and the 400 for more than 200 records (EXCEEDED_ID_LIMIT)."""

from __future__ import annotations

import csv
import io
import json
import random
import re
import threading
import time
from collections import Counter, deque
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import parse_qs, urlsplit

from fakes.server import Answer, Scripted, serve_http

TOKEN = "00Dxx0000001gPF!AQ4AQFakeCorralTestToken"
CONTACT_FIELDS = {"Id", "Email", "FirstName", "LastName", "Phone", "Title", "Corral_Id__c", "Plan__c", "LTV__c", "VIP__c",
                  "Signed_Up__c", "Spend__c", "Last_Seen__c"}
PREFIXES = {"Contact": "003", "Lead": "00Q", "Account": "001"}
UNAUTHORIZED = [{"message": "Session expired or invalid", "errorCode": "INVALID_SESSION_ID"}]
FORBIDDEN = [{"errorCode": "API_DISABLED_FOR_ORG", "message": "API is not enabled for this Organization or Partner"}]
DAILY_LIMIT = [{"message": "TotalRequests Limit exceeded.", "errorCode": "REQUEST_LIMIT_EXCEEDED"}]
ROLLED_BACK = "Record rolled back because not all records were valid and the request was using AllOrNone header"


def concurrent_limit_exceeded() -> Scripted:
    return Scripted(403, {"content-type": "application/json"},
                    json.dumps([{"message": "ConcurrentPerOrgLongTxn Limit exceeded.", "errorCode": "REQUEST_LIMIT_EXCEEDED"}]))


def error(status: int, code: str, message: str) -> tuple[int, Any]:
    return status, [{"errorCode": code, "message": message}]


def record_error(code: str, message: str, fields: list[str] | None = None) -> dict[str, Any]:
    return {"statusCode": code, "message": message, "fields": fields or []}


def duplicate(value: Any) -> dict[str, Any]:
    return record_error("DUPLICATE_VALUE", f"Duplicate external id specified: {value}")


@dataclass
class Job:
    id: str
    object: str
    operation: str
    external_id_field: str | None
    state: str = "Open"
    header: list[str] = field(default_factory=list)
    rows: list[list[str]] = field(default_factory=list)
    uploaded: bool = False
    polls: int = 0
    fail_message: str | None = None
    error_message: str | None = None
    successful: list[list[str]] = field(default_factory=list)
    failed: list[list[str]] = field(default_factory=list)
    unprocessed: list[list[str]] = field(default_factory=list)


@dataclass
class FakeSalesforce:
    token: str = TOKEN
    objects: dict[str, set[str]] = field(default_factory=lambda: {"Contact": set(CONTACT_FIELDS)})
    external_ids: dict[str, set[str]] = field(default_factory=lambda: {"Contact": {"Corral_Id__c", "Email"}})
    required: dict[str, set[str]] = field(default_factory=lambda: {"Contact": {"LastName"}})
    requests_per_second: float = 5.0  # what the org's integration agreed to; Salesforce itself does not refuse
    window_seconds: float = 1.0
    daily_limit: int = 100_000  # API requests per rolling 24 h (Enterprise Edition base allocation)
    max_collection: int = 200
    max_upload_bytes: int = 150_000_000  # after base64 encoding (about 100 MB of CSV)
    daily_bulk_records: int = 150_000_000
    daily_batches: int = 15_000  # shared with Bulk API 1.0
    internal_batch_records: int = 10_000
    polls_to_complete: int = 2  # job polls answered InProgress before the job ends
    fail_next_job: str | None = None  # errorMessage of the next job created, which fails after `fail_after_rows` rows
    fail_after_rows: int = 0
    seed: int = 0  # results files come in a shuffled order, as Salesforce does not keep the upload's
    refused: dict[str, str] = field(default_factory=dict)  # external id value (lower case) -> message it is refused with
    denied: int = 0
    script: deque[Scripted] = field(default_factory=deque)
    script_on: dict[str, deque[Scripted]] = field(default_factory=dict)  # by call label (see `label`), e.g. "GET jobs" (a job poll)
    records: dict[str, dict[str, Any]] = field(default_factory=dict)  # record id -> {"type": object, field: value}
    deleted: set[str] = field(default_factory=set)
    jobs: dict[str, Job] = field(default_factory=dict)
    requests: int = 0
    statuses: Counter[int] = field(default_factory=Counter)
    calls: Counter[str] = field(default_factory=Counter)  # requests by `label`
    violations: list[str] = field(default_factory=list)
    upserted: list[str] = field(default_factory=list)  # external id values applied, in order
    largest_collection: int = 0
    lock: threading.Lock = field(default_factory=threading.Lock)
    url: str = ""

    def __post_init__(self) -> None:
        self.window: deque[float] = deque()
        self.index: dict[tuple[str, str, str], str] = {}  # (object, external id field, value lower case) -> record id
        self.rng = random.Random(self.seed)
        self.next_id = 1
        self.bulk_records = self.batches = 0

    # -- requests ------------------------------------------------------------------------------

    def handle(self, method: str, path: str, headers: Any, body: bytes) -> Answer:
        with self.lock:
            self.requests += 1
            self._pace()
            label = self.label(method, path)
            self.calls[label] += 1
            if self.script or self.script_on.get(label):
                s = self.script.popleft() if self.script else self.script_on[label].popleft()
                self.statuses[s.status] += 1
                return s.status, s.headers, s.body, s.stall_seconds
            if self.denied or headers.get("authorization") != f"Bearer {self.token}":
                return self._answer(*((403, FORBIDDEN) if self.denied == 403 else (401, UNAUTHORIZED)))
            if self.requests > self.daily_limit:
                return self._answer(403, DAILY_LIMIT)
            status, answer = self._route(method, path, headers, body)
            return self._answer(status, answer)

    @staticmethod
    def label(method: str, path: str) -> str:
        """What a request is, for counting and scripting: "PATCH collections" (upsert), "DELETE
        collections", "POST jobs" (create), "PUT jobs/batches", "PATCH jobs" (close, abort),
        "GET jobs" (poll), "GET jobs/successfulResults", ..."""
        rest = urlsplit(path).path.strip("/").split("/")[3:]
        route = "collections" if rest[:2] == ["composite", "sobjects"] else "jobs" if rest[:2] == ["jobs", "ingest"] else "other"
        return f"{method} {route}{'/' + rest[3] if route == 'jobs' and len(rest) > 3 else ''}"

    def _pace(self) -> None:
        now = time.monotonic()
        while self.window and self.window[0] <= now - self.window_seconds:
            self.window.popleft()
        self.window.append(now)
        if len(self.window) > self.requests_per_second * self.window_seconds:
            self.violations.append(f"{len(self.window)} requests in {self.window_seconds:g} s, over {self.requests_per_second:g} a second")

    def _answer(self, status: int, answer: Any) -> Answer:
        self.statuses[status] += 1
        headers = {"Sforce-Limit-Info": f"api-usage={min(self.requests, self.daily_limit)}/{self.daily_limit}"}
        if isinstance(answer, str):  # CSV results
            return status, {**headers, "content-type": "text/csv"}, answer, 0.0
        if answer is None:
            return status, headers, "", 0.0
        return status, {**headers, "content-type": "application/json;charset=UTF-8"}, json.dumps(answer), 0.0

    def _route(self, method: str, path: str, headers: Any, body: bytes) -> tuple[int, Any]:
        url = urlsplit(path)
        match = re.fullmatch(r"/services/data/v(\d+)\.0/(.+?)/?", url.path)
        if not match:
            return error(404, "NOT_FOUND", "The requested resource does not exist")
        version, rest = int(match.group(1)), match.group(2).split("/")
        query = {k: v[-1] for k, v in parse_qs(url.query).items()}
        route = ("collections" if rest[:2] == ["composite", "sobjects"] else "jobs" if rest[:2] == ["jobs", "ingest"] else "?")
        if route == "collections" and version >= 46 and len(rest) in (2, 4):
            allowed = "DELETE" if len(rest) == 2 else "PATCH"
            if method != allowed:
                return error(405, "METHOD_NOT_ALLOWED", f"HTTP Method '{method}' not allowed. Allowed are {allowed}")
            return self._delete(query) if len(rest) == 2 else self._upsert(rest[2], rest[3], body)
        if route == "jobs" and version >= 41 and len(rest) <= 4:
            return self._jobs(method, rest[2:], headers, body)
        return error(404, "NOT_FOUND", "The requested resource does not exist")

    # -- sObject Collections -------------------------------------------------------------------

    def _upsert(self, sobject: str, external: str, body: bytes) -> tuple[int, Any]:
        if sobject not in self.objects:
            return error(404, "NOT_FOUND", f"The requested resource does not exist: sObject type '{sobject}' is not supported.")
        if external not in self.external_ids.get(sobject, set()):
            return error(400, "INVALID_FIELD", f"Field name provided, {external} is not an External ID or indexed field for {sobject}")
        try:
            payload = json.loads(body)
        except ValueError:
            return error(400, "JSON_PARSER_ERROR", "Unexpected character: was expecting a JSON value")
        if not isinstance(payload, dict) or not isinstance(payload.get("records"), list) or not payload["records"]:
            return error(400, "INVALID_FIELD", "records: a non-empty list of sObjects is required")
        records = payload["records"]
        self.largest_collection = max(self.largest_collection, len(records))
        if len(records) > self.max_collection:
            self.violations.append(f"collections upsert of {len(records)} records, over {self.max_collection}")
            return self._too_many()
        for record in records:
            if not isinstance(record, dict) or (record.get("attributes") or {}).get("type") != sobject:
                return error(400, "INVALID_TYPE", f"Each record needs attributes with type {sobject}")
            if "Id" in record or "id" in record:
                return error(400, "INVALID_FIELD", "Don't set the id field: records are upserted by their external id")
            for name, value in record.items():
                if name != "attributes" and name not in self.objects[sobject]:
                    return error(400, "INVALID_FIELD", f"No such column '{name}' on sobject of type {sobject}")
                if name != "attributes" and not (value is None or isinstance(value, (str, int, float, bool))):
                    return error(400, "JSON_PARSER_ERROR", f"Cannot deserialize the value of field {name}")
        values = [str(r.get(external) or "").lower() for r in records]
        seen = Counter(values)
        results = []
        for record, value in zip(records, values, strict=True):
            fields = {k: v for k, v in record.items() if k != "attributes"}
            problem = (record_error("MISSING_ARGUMENT", f"{external} not specified", [external]) if not value
                       else duplicate(record[external]) if seen[value] > 1 else None)
            results.append({"success": False, "errors": [problem]} if problem else self._apply(sobject, external, fields))
        if payload.get("allOrNone") and not all(r["success"] for r in results):
            rolled_back = {"success": False, "errors": [record_error("ALL_OR_NONE_OPERATION_ROLLED_BACK", ROLLED_BACK)]}
            return 200, [rolled_back if r["success"] else r for r in results]  # (the fake does not undo the applied ones)
        return 200, results

    def _too_many(self) -> tuple[int, Any]:
        return error(400, "EXCEEDED_ID_LIMIT", f"record limit reached. cannot submit more than {self.max_collection} records "
                     "into this call")

    def _apply(self, sobject: str, external: str, fields: dict[str, Any]) -> dict[str, Any]:
        """Upsert one record by its external id; its result, or a per-record failure."""
        value = str(fields[external]).lower()
        if value in self.refused:
            return {"success": False, "errors": [record_error("FIELD_CUSTOM_VALIDATION_EXCEPTION", self.refused[value])]}
        existing = self.index.get((sobject, external, value))
        if existing is None and (missing := sorted(f for f in self.required.get(sobject, set()) if fields.get(f) in (None, ""))):
            return {"success": False,
                    "errors": [record_error("REQUIRED_FIELD_MISSING", f"Required fields are missing: [{', '.join(missing)}]", missing)]}
        record_id = existing or f"{PREFIXES.get(sobject, 'a00')}{self.next_id:012d}AAA"
        if existing is None:
            self.next_id += 1
            self.records[record_id] = {"type": sobject}
        record = self.records[record_id]
        self._index(record_id, add=False)
        record.update(fields)
        self._index(record_id, add=True)
        self.upserted.append(value)
        return {"id": record_id, "success": True, "errors": [], "created": existing is None}

    def _index(self, record_id: str, add: bool) -> None:
        record = self.records[record_id]
        for name in self.external_ids.get(record["type"], set()):
            if record.get(name) not in (None, ""):
                key = (record["type"], name, str(record[name]).lower())
                if add:
                    self.index[key] = record_id
                elif self.index.get(key) == record_id:
                    del self.index[key]

    def _delete(self, query: dict[str, str]) -> tuple[int, Any]:
        ids = [i for i in query.get("ids", "").split(",") if i]
        if not ids:
            return error(400, "MISSING_ARGUMENT", "ids: at least one record id is required")
        if len(ids) > self.max_collection:
            self.violations.append(f"collections delete of {len(ids)} ids, over {self.max_collection}")
            return self._too_many()
        return 200, [self._remove(i) for i in ids]

    def _remove(self, record_id: str) -> dict[str, Any]:
        if not re.fullmatch(r"[A-Za-z0-9]{15}([A-Za-z0-9]{3})?", record_id):
            return {"success": False, "errors": [record_error("MALFORMED_ID", f"malformed id {record_id}")]}
        if record_id in self.deleted:
            return {"success": False, "errors": [record_error("ENTITY_IS_DELETED", "entity is deleted")]}
        if record_id not in self.records:
            return {"success": False, "errors": [record_error("INVALID_CROSS_REFERENCE_KEY", "invalid cross reference id")]}
        record = self.records[record_id]
        values = (str(record.get(f) or "").lower() for f in self.external_ids.get(record["type"], set()))
        refused = next((self.refused[v] for v in values if v in self.refused), None)
        if refused:
            return {"success": False, "errors": [record_error("DELETE_FAILED", refused)]}
        self._index(record_id, add=False)
        self.deleted.add(record_id)
        del self.records[record_id]
        return {"id": record_id, "success": True, "errors": []}

    # -- Bulk API 2.0 --------------------------------------------------------------------------

    def _jobs(self, method: str, rest: list[str], headers: Any, body: bytes) -> tuple[int, Any]:
        if not rest:
            return self._create_job(body) if method == "POST" else error(405, "METHOD_NOT_ALLOWED", f"HTTP Method '{method}' not allowed")
        job = self.jobs.get(rest[0])
        if job is None:
            return error(404, "NOT_FOUND", f"Job {rest[0]} does not exist")
        if len(rest) == 1 and method == "GET":
            return 200, self._info(job, poll=True)
        if len(rest) == 1 and method == "PATCH":
            return self._set_state(job, body)
        if len(rest) == 1 and method == "DELETE":
            del self.jobs[job.id]
            return 204, None
        if rest[1] == "batches" and method == "PUT":
            return self._upload(job, headers, body)
        if rest[1] in ("successfulResults", "failedResults", "unprocessedrecords") and method == "GET":
            if job.state not in ("JobComplete", "Failed", "Aborted"):
                self.violations.append(f"results of job {job.id} read while it is {job.state}")
                return error(400, "INVALIDJOBSTATE", f"Job {job.id} is not complete: {job.state}")
            prefix, rows = {"successfulResults": (["sf__Id", "sf__Created"], job.successful),
                            "failedResults": (["sf__Id", "sf__Error"], job.failed), "unprocessedrecords": ([], job.unprocessed)}[rest[1]]
            out = io.StringIO()
            writer = csv.writer(out, lineterminator="\n", quoting=csv.QUOTE_ALL)
            writer.writerow(prefix + job.header)
            writer.writerows(rows)
            return 200, out.getvalue()
        return error(405, "METHOD_NOT_ALLOWED", f"HTTP Method '{method}' not allowed")

    def _create_job(self, body: bytes) -> tuple[int, Any]:
        try:
            spec = json.loads(body)
        except ValueError:
            return error(400, "JSON_PARSER_ERROR", "Unexpected character: was expecting a JSON value")
        if not isinstance(spec, dict) or spec.get("object") not in self.objects:
            return error(400, "INVALIDJOB", f"InvalidJob : Unable to find object: {spec.get('object') if isinstance(spec, dict) else spec}")
        if spec.get("operation") not in ("insert", "upsert", "update", "delete", "hardDelete"):
            return error(400, "INVALIDJOB", f"InvalidJob : Invalid operation: {spec.get('operation')}")
        if (spec.get("contentType", "CSV"), spec.get("columnDelimiter", "COMMA"), spec.get("lineEnding", "LF")) != ("CSV", "COMMA", "LF"):
            return error(400, "INVALIDJOB", "InvalidJob : the fake takes CSV, COMMA, LF only")
        external = spec.get("externalIdFieldName")
        if spec["operation"] == "upsert" and external not in self.external_ids.get(spec["object"], set()):
            return error(400, "INVALIDJOB",
                         f"InvalidJob : Field name provided, {external} is not an External ID or indexed field for {spec['object']}")
        job = Job(f"750{self.next_id:012d}AAA", spec["object"], spec["operation"], external, fail_message=self.fail_next_job)
        self.next_id += 1
        self.fail_next_job = None
        self.jobs[job.id] = job
        return 200, self._info(job)

    def _upload(self, job: Job, headers: Any, body: bytes) -> tuple[int, Any]:
        if not str(headers.get("content-type", "")).startswith("text/csv"):
            return error(400, "INVALIDJOB", "InvalidJob : Content-Type must be text/csv")
        if job.state != "Open" or job.uploaded:
            return error(409, "INVALIDJOBSTATE", f"Job {job.id} is not open for uploads (state {job.state})")
        encoded = (len(body) + 2) // 3 * 4
        if encoded > self.max_upload_bytes:
            self.violations.append(f"job {job.id}: upload of {encoded:,} bytes base64-encoded, over {self.max_upload_bytes:,}")
            return error(400, "INVALIDJOB", f"InvalidJob : Upload of {encoded} bytes exceeds the limit of {self.max_upload_bytes} bytes")
        try:
            rows = list(csv.reader(io.StringIO(body.decode("utf-8"), newline="")))
        except (UnicodeDecodeError, csv.Error) as exc:
            return error(400, "INVALIDJOB", f"InvalidJob : the CSV cannot be read: {exc}")
        if not rows or any(len(r) != len(rows[0]) for r in rows):
            return error(400, "INVALIDJOB", "InvalidJob : every row needs as many fields as the header")
        job.header, job.rows, job.uploaded = rows[0], rows[1:], True
        return 201, None

    def _set_state(self, job: Job, body: bytes) -> tuple[int, Any]:
        state = (json.loads(body) if body else {}).get("state")
        if state == "UploadComplete" and job.state == "Open":
            job.state = "UploadComplete" if job.uploaded else "Failed"
            job.error_message = None if job.uploaded else "InvalidBatch : No data uploaded"
        elif state == "Aborted" and job.state not in ("JobComplete", "Failed", "Aborted"):
            job.state = "Aborted"
            job.error_message = "Job aborted"
            job.unprocessed = list(job.rows)
        else:
            return error(400, "INVALIDJOBSTATE", f"Cannot set job {job.id} from {job.state} to {state}")
        return 200, self._info(job)

    def _info(self, job: Job, poll: bool = False) -> dict[str, Any]:
        if poll and job.state in ("UploadComplete", "InProgress"):
            job.polls += 1
            job.state = "InProgress"
            if job.polls > self.polls_to_complete:
                self._process(job)
        info = {"id": job.id, "operation": job.operation, "object": job.object, "createdById": "005xx000001X8UzAAK", "state": job.state,
                "concurrencyMode": "Parallel", "contentType": "CSV", "apiVersion": 62.0, "jobType": "V2Ingest", "lineEnding": "LF",
                "columnDelimiter": "COMMA", "contentUrl": f"services/data/v62.0/jobs/ingest/{job.id}/batches",
                "numberRecordsProcessed": len(job.successful) + len(job.failed), "numberRecordsFailed": len(job.failed), "retries": 0}
        if job.external_id_field:
            info["externalIdFieldName"] = job.external_id_field
        if job.error_message:
            info["errorMessage"] = job.error_message
        return info

    def _process(self, job: Job) -> None:
        fields = self.objects[job.object]
        unknown = [h for h in job.header if h not in fields]
        if job.operation == "delete" and job.header != ["Id"]:
            unknown = unknown or [h for h in job.header if h != "Id"]
        if unknown or (job.operation == "upsert" and job.external_id_field not in job.header):
            job.state, job.unprocessed = "Failed", list(job.rows)
            job.error_message = (f"InvalidBatch : Field name not found : {unknown[0]}" if unknown
                                 else f"InvalidBatch : The external id field {job.external_id_field} is missing from the header")
            return
        self.bulk_records += len(job.rows)
        self.batches += max(1, -(-len(job.rows) // self.internal_batch_records))
        if self.bulk_records > self.daily_bulk_records or self.batches > self.daily_batches:
            self.violations.append(f"job {job.id}: over the daily Bulk API allocation "
                                   f"({self.bulk_records:,} records, {self.batches:,} batches)")
        rows = job.rows if job.fail_message is None else job.rows[:self.fail_after_rows]
        if job.operation == "upsert":
            column = job.header.index(job.external_id_field or "")
            seen = Counter(r[column].lower() for r in rows)
            for row in rows:
                if seen[row[column].lower()] > 1:
                    result = {"success": False, "errors": [duplicate(row[column])]}
                else:
                    values = {h: None if v == "#N/A" else v for h, v in zip(job.header, row, strict=True) if v != ""}  # empty: unchanged
                    result = self._apply(job.object, job.external_id_field or "", values) if row[column] else \
                        {"success": False, "errors": [record_error("MISSING_ARGUMENT", f"{job.external_id_field} not specified")]}
                self._outcome(job, row, result)
        else:
            for row in rows:
                self._outcome(job, row, self._remove(row[0]))
        self.rng.shuffle(job.successful)
        self.rng.shuffle(job.failed)
        if job.fail_message is not None:
            job.state, job.error_message, job.unprocessed = "Failed", job.fail_message, job.rows[len(rows):]
        else:
            job.state = "JobComplete"

    @staticmethod
    def _outcome(job: Job, row: list[str], result: dict[str, Any]) -> None:
        if result["success"]:
            job.successful.append([result["id"], "true" if result.get("created") else "false", *row])
        else:
            e = result["errors"][0]
            job.failed.append(["", f"{e['statusCode']}:{e['message']}:{','.join(e['fields'])} --", *row])

    # -- views for assertions ------------------------------------------------------------------

    def by_external_id(self, sobject: str = "Contact", external: str = "Corral_Id__c") -> dict[str, dict[str, Any]]:
        """Records of `sobject` by their external id value (lower case), fields as stored."""
        with self.lock:
            return {str(r.get(external) or "").lower(): {k: v for k, v in r.items() if k != "type"}
                    for r in self.records.values() if r["type"] == sobject}

    def ids_by_external_id(self, sobject: str = "Contact", external: str = "Corral_Id__c") -> dict[str, str]:
        with self.lock:
            return {str(r.get(external) or "").lower(): i for i, r in self.records.items() if r["type"] == sobject}


@contextmanager
def serve(fake: FakeSalesforce) -> Iterator[FakeSalesforce]:
    """Run the fake on a free local port (fake.url is the instance URL) until the block ends."""
    with serve_http(fake.handle) as url:
        fake.url = url
        yield fake
