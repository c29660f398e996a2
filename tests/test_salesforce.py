"""The Salesforce destination through the engine, against a strict fake Salesforce on a real port:
Contacts upserted by an external id over sObject Collections (200 a request, per-record results
in order) and over Bulk API 2.0 jobs (polled, results files read in any order and attributed by
external id, a job failing as a whole or aborted at the deadline), api auto choosing by batch
size, mirror deleting by the kept record ids both ways, retries inside a job without a second
job, the org's request allocation (403 REQUEST_LIMIT_EXCEEDED) kept apart from refused
credentials, pacing under the per-second limit, and configuration errors before any request."""

from __future__ import annotations

import math
import re
from collections import deque
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import duckdb
import httpx
import pyarrow as pa
import pytest
from fakes.salesforce import TOKEN, FakeSalesforce, concurrent_limit_exceeded, serve
from fakes.server import Scripted

from sync_testing import FAST

from reverse_etl.destinations import make_destination
from reverse_etl.destinations.base import RetryableError
from reverse_etl.destinations.salesforce import SalesforceDestination, pacing
from reverse_etl.engine import SyncRunResult, run_sync
from reverse_etl.syncs import SyncConfigError, SyncSpec

MAPPING = {"id": "Corral_Id__c", "email": "Email", "first_name": "FirstName", "last_name": "LastName", "spend": "Spend__c",
           "vip": "VIP__c", "signed_up": "Signed_Up__c", "last_seen": "Last_Seen__c"}
CONTACT = {"object": "Contact", "external_id_field": "Corral_Id__c"}
BULK = {**CONTACT, "api": "bulk", "bulk_batch_size": 400}
JOB_CALLS = ("POST jobs", "PUT jobs/batches", "PATCH jobs", "GET jobs/successfulResults", "GET jobs/failedResults")


def spec(mode: str = "upsert", settings: dict[str, Any] | None = None, **overrides: Any) -> SyncSpec:
    values: dict[str, Any] = {"name": "buyers_salesforce", "model": "buyers", "relation": "main.buyers", "destination": "salesforce",
                              "mode": mode, "primary_key": "id", "mapping": MAPPING, "settings": CONTACT if settings is None else settings}
    return SyncSpec(**{**values, **overrides})


@pytest.fixture
def con(tmp_path: Path) -> Iterator[duckdb.DuckDBPyConnection]:
    con = duckdb.connect(str(tmp_path / "warehouse.duckdb"))
    con.execute(
        "create table buyers as select i as id, 'user' || i || '@example.com' as email,"
        " case when i % 10 = 0 then null else 'Name ' || i end as first_name, 'Last ' || i as last_name, (i * 1.5)::double as spend,"
        " i % 2 = 0 as vip, date '2026-01-01' + i::int as signed_up, timestamp '2026-10-01 12:00:00' + to_seconds(i) as last_seen"
        " from range(1, 1001) t(i)"
    )
    yield con
    con.close()


@pytest.fixture
def fake() -> Iterator[FakeSalesforce]:
    with serve(FakeSalesforce(requests_per_second=200)) as fake:
        yield fake


def env(fake: FakeSalesforce, **extra: str) -> dict[str, str]:
    return {"SALESFORCE_INSTANCE_URL": fake.url, "SALESFORCE_ACCESS_TOKEN": TOKEN, "SALESFORCE_REQUESTS_PER_SECOND": "200",
            "SALESFORCE_BULK_POLL_SECONDS": "0.01", **extra}


def sync(con: duckdb.DuckDBPyConnection, fake: FakeSalesforce, client: httpx.Client, sync_spec: SyncSpec | None = None,
         environment: dict[str, str] | None = None, **kwargs: Any) -> SyncRunResult:
    destination = make_destination("salesforce", environment or env(fake), client)
    return run_sync(con, sync_spec or spec(), destination, options=kwargs.pop("options", FAST), **kwargs)


def expected(con: duckdb.DuckDBPyConnection, csv: bool = False) -> dict[str, dict[str, Any]]:
    """The mart as Salesforce should hold it: JSON values from Collections, text from Bulk API
    CSV (#N/A, a cleared field, held as null)."""
    held = {}
    for row in con.sql("select * from buyers order by id").to_arrow_table().to_pylist():
        values = {"Corral_Id__c": str(row["id"]), "Email": row["email"], "FirstName": row["first_name"], "LastName": row["last_name"],
                  "Spend__c": row["spend"], "VIP__c": row["vip"], "Signed_Up__c": row["signed_up"].isoformat(),
                  "Last_Seen__c": row["last_seen"].isoformat() + "Z"}
        if csv:
            values = {k: None if v is None else str(v).lower() if isinstance(v, bool) else str(v) for k, v in values.items()}
        held[str(row["id"])] = values
    return held


def kept_ids(con: duckdb.DuckDBPyConnection) -> dict[str, str]:
    return dict(con.execute("select record_key, destination_id from corral_sync.records").fetchall())


def failures(con: duckdb.DuckDBPyConnection) -> dict[str, str]:
    return dict(con.execute("select record_key, last_error from corral_sync.records where status <> 'synced'").fetchall())


# -- sObject Collections ---------------------------------------------------------------------------


def test_a_small_sync_goes_through_collections_and_an_unchanged_resync_sends_nothing(con: duckdb.DuckDBPyConnection, fake: FakeSalesforce,
                                                                                     client: httpx.Client) -> None:
    first = sync(con, fake, client)
    assert (first.status, first.changes, first.succeeded, first.failed) == ("success", {"added": 1000}, 1000, 0)
    assert fake.by_external_id() == expected(con)
    assert fake.by_external_id()["7"] == {"Corral_Id__c": "7", "Email": "user7@example.com", "FirstName": "Name 7", "LastName": "Last 7",
                                          "Spend__c": 10.5, "VIP__c": False, "Signed_Up__c": "2026-01-08",
                                          "Last_Seen__c": "2026-10-01T12:00:07Z"}
    assert fake.calls == {"PATCH collections": 5} and fake.largest_collection == 200  # auto: 1,000 is under the bulk threshold
    assert kept_ids(con) == fake.ids_by_external_id()
    second = sync(con, fake, client)
    assert (second.status, second.changes, second.planned, second.sent) == ("success", {"unchanged": 1000}, 0, 0)
    assert fake.requests == 5 and fake.violations == []


def test_changes_reach_salesforce_and_null_clears_a_field(con: duckdb.DuckDBPyConnection, fake: FakeSalesforce,
                                                          client: httpx.Client) -> None:
    sync(con, fake, client)
    ids = fake.ids_by_external_id()
    fake.upserted.clear()
    con.execute("update buyers set first_name = 'Changed' where id in (3, 4)")
    con.execute("update buyers set first_name = null where id = 5")
    con.execute("delete from buyers where id = 10")  # upsert mode forgets it; Salesforce keeps the record
    con.execute("insert into buyers values (5000, 'new@example.com', 'New', 'Buyer', 1.0, true, date '2026-05-01', timestamp '2026-10-02')")
    result = sync(con, fake, client)
    assert result.changes == {"added": 1, "changed": 3, "removed": 1, "unchanged": 996}
    assert sorted(fake.upserted) == ["3", "4", "5", "5000"]
    assert fake.by_external_id()["5"]["FirstName"] is None
    assert {k: v for k, v in fake.by_external_id().items() if k != "10"} == expected(con) and "10" in fake.by_external_id()
    assert {k: fake.ids_by_external_id()[k] for k in ids} == ids  # the same records


def test_per_record_errors_fail_exactly_those_records_and_are_retried(con: duckdb.DuckDBPyConnection, fake: FakeSalesforce,
                                                                      client: httpx.Client) -> None:
    fake.refused["107"] = "Spend must be positive"
    con.execute("update buyers set last_name = null where id = 207")  # LastName is required to create a Contact
    first = sync(con, fake, client)
    assert (first.status, first.succeeded, first.failed) == ("failed", 998, 2)
    assert failures(con) == {"107": "FIELD_CUSTOM_VALIDATION_EXCEPTION: Spend must be positive",
                             "207": "REQUIRED_FIELD_MISSING: Required fields are missing: [LastName] (fields: LastName)"}
    assert set(fake.by_external_id()) == {str(i) for i in range(1, 1001)} - {"107", "207"}
    again = sync(con, fake, client)
    assert (again.planned, again.failed, fake.requests) == (2, 2, 6)  # only the failed ones, in one request
    fake.refused.clear()
    con.execute("update buyers set last_name = 'Fixed' where id = 207")
    fixed = sync(con, fake, client)
    assert (fixed.status, fixed.planned, fixed.succeeded) == ("success", 2, 2)
    assert fake.by_external_id() == expected(con)


def test_missing_and_shared_external_ids_fail_without_being_sent(con: duckdb.DuckDBPyConnection, fake: FakeSalesforce,
                                                                 client: httpx.Client) -> None:
    con.execute("delete from buyers where id > 20")
    con.execute("update buyers set email = 'USER1@example.com' where id = 2")  # external ids match case-insensitively
    con.execute("update buyers set email = null where id = 3")
    result = sync(con, fake, client, spec(settings={"object": "Contact", "external_id_field": "Email"}))
    assert (result.succeeded, result.failed, fake.calls, fake.largest_collection) == (18, 2, {"PATCH collections": 1}, 18)
    assert failures(con) == {"2": "Email 'USER1@example.com' is also on record 1 of this batch; Salesforce fails every record of a request "
                                  "sharing an external id",
                             "3": "no value for the external id field Email: records are matched on it"}


def test_mirror_deletes_the_kept_record_ids(con: duckdb.DuckDBPyConnection, fake: FakeSalesforce, client: httpx.Client) -> None:
    first = sync(con, fake, client, spec("mirror"))
    assert (first.status, first.succeeded) == ("success", 1000)
    kept = kept_ids(con)
    with fake.lock:
        assert fake._remove(kept["11"])["success"]  # someone deleted it in Salesforce already: ENTITY_IS_DELETED
    con.execute("update corral_sync.records set destination_id = null where record_key = '12'")
    con.execute("delete from buyers where id in (10, 11, 12)")
    result = sync(con, fake, client, spec("mirror"))
    assert (result.status, result.operations, result.succeeded, result.failed) == ("failed", {"delete": 3}, 2, 1)
    assert failures(con) == {"12": "no Salesforce record id is kept for this record (was it ever upserted?), so it cannot be deleted: "
                                   "Salesforce deletes by record id"}
    assert fake.calls["DELETE collections"] == 1 and kept["10"] in fake.deleted
    assert set(fake.by_external_id()) == {str(i) for i in range(1, 1001)} - {"10", "11"}
    assert not {"10", "11"} & set(kept_ids(con))


# -- Bulk API 2.0 ----------------------------------------------------------------------------------


def test_bulk_upsert_polls_each_job_and_attributes_the_shuffled_results(con: duckdb.DuckDBPyConnection, fake: FakeSalesforce,
                                                                        client: httpx.Client) -> None:
    fake.refused.update({"7": "no Contacts from this domain", "777": "no Contacts from this domain"})
    first = sync(con, fake, client, spec(settings=BULK))
    assert (first.status, first.succeeded, first.failed) == ("failed", 998, 2)
    errors = failures(con)
    assert set(errors) == {"7", "777"} and all(e.startswith("Bulk API job 750") and
                                               e.endswith(": FIELD_CUSTOM_VALIDATION_EXCEPTION:no Contacts from this domain: --")
                                               for e in errors.values())
    assert fake.calls == {**dict.fromkeys(JOB_CALLS, 3), "GET jobs": 9}  # 400 + 400 + 200 records; each job polled 3 times
    assert {job.state for job in fake.jobs.values()} == {"JobComplete"} and fake.violations == []
    assert fake.by_external_id() == {k: v for k, v in expected(con, csv=True).items() if k not in ("7", "777")}
    assert fake.by_external_id()["10"]["FirstName"] is None  # #N/A cleared it
    assert {k: v for k, v in kept_ids(con).items() if v} == fake.ids_by_external_id()  # attributed by external id, not by order
    assert [job["state"] for job in first.metadata["bulk_jobs"]] == ["JobComplete"] * 3
    fake.refused.clear()
    again = sync(con, fake, client, spec(settings=BULK))
    assert (again.status, again.planned, again.succeeded, fake.calls["POST jobs"]) == ("success", 2, 2, 4)


@pytest.mark.parametrize("processed", [0, 150])
def test_a_bulk_job_that_fails_as_a_whole_fails_the_records_it_did_not_process(processed: int, con: duckdb.DuckDBPyConnection,
                                                                               fake: FakeSalesforce, client: httpx.Client) -> None:
    con.execute("delete from buyers where id > 400")  # one job
    fake.fail_next_job, fake.fail_after_rows = "InvalidBatch : Failed to process the batch: too many retries", processed
    first = sync(con, fake, client, spec(settings=BULK))
    assert (first.status, first.succeeded, first.failed) == ("failed", processed, 400 - processed)
    job = next(iter(fake.jobs))
    assert set(failures(con).values()) == {
        f"Bulk API job {job} Failed: InvalidBatch : Failed to process the batch: too many retries; this record was not processed"}
    assert len(fake.by_external_id()) == processed == sum(1 for v in kept_ids(con).values() if v)
    again = sync(con, fake, client, spec(settings=BULK))
    assert (again.status, again.planned, again.succeeded) == ("success", 400 - processed, 400 - processed)
    assert fake.by_external_id() == expected(con, csv=True) if processed == 0 else len(fake.by_external_id()) == 400


@pytest.mark.parametrize(("api", "message"), [
    ("collections", "HTTP 400: INVALID_FIELD: No such column 'Nope__c' on sobject of type Contact"),
    ("bulk", "Failed: InvalidBatch : Field name not found : Nope__c; this record was not processed"),
])
def test_a_field_the_object_lacks_fails_every_record_with_salesforces_message(api: str, message: str, con: duckdb.DuckDBPyConnection,
                                                                               fake: FakeSalesforce, client: httpx.Client) -> None:
    con.execute("delete from buyers where id > 300")
    result = sync(con, fake, client, spec(settings={**BULK, "api": api}, mapping={**MAPPING, "spend": "Nope__c"}))
    assert (result.status, result.succeeded, result.failed) == ("failed", 0, 300)
    assert all(message in error for error in failures(con).values()) and fake.records == {}


def test_auto_sends_large_batches_as_jobs_and_the_rest_through_collections(con: duckdb.DuckDBPyConnection, fake: FakeSalesforce,
                                                                            client: httpx.Client) -> None:
    settings = {**CONTACT, "bulk_threshold": 300, "bulk_batch_size": 400}  # batches of 400, 400, 200
    result = sync(con, fake, client, spec(settings=settings))
    assert (result.status, result.succeeded) == ("success", 1000)
    assert (fake.calls["POST jobs"], fake.calls["PATCH collections"]) == (2, 1)
    assert kept_ids(con) == fake.ids_by_external_id() and set(fake.by_external_id()) == set(expected(con))


def test_bulk_mirror_deletes_by_kept_id_and_a_deleted_record_counts_as_deleted(con: duckdb.DuckDBPyConnection, fake: FakeSalesforce,
                                                                               client: httpx.Client) -> None:
    sync(con, fake, client, spec("mirror", settings=BULK))
    kept = kept_ids(con)
    with fake.lock:
        fake._remove(kept["999"])  # already gone: ENTITY_IS_DELETED in failedResults
    fake.refused["600"] = "This Contact has open cases"
    con.execute("delete from buyers where id > 550")
    result = sync(con, fake, client, spec("mirror", settings=BULK))
    assert (result.operations, result.succeeded, result.failed) == ({"delete": 450}, 449, 1)
    assert failures(con)["600"] in {f"Bulk API job {job}: DELETE_FAILED:This Contact has open cases: --" for job in list(fake.jobs)[3:]}
    assert set(failures(con)) == {"600"}
    assert set(fake.by_external_id()) == {str(i) for i in range(1, 551)} | {"600"}
    assert fake.calls["POST jobs"] == 3 + 2 and len(kept_ids(con)) == 551


def test_transient_errors_inside_a_job_are_retried_without_a_second_job(con: duckdb.DuckDBPyConnection, fake: FakeSalesforce,
                                                                        client: httpx.Client) -> None:
    fake.script_on["GET jobs"] = deque([Scripted(503, body="Service Unavailable"), Scripted(502)])
    fake.script_on["GET jobs/failedResults"] = deque([Scripted(500, {"Retry-After": "0"})])
    result = sync(con, fake, client, spec(settings=BULK))
    assert (result.status, result.succeeded, result.requests_retried) == ("success", 1000, 0)
    assert fake.calls["POST jobs"] == 3 and fake.by_external_id() == expected(con, csv=True)


@pytest.mark.parametrize(("call", "failures"), [("PUT jobs/batches", 1), ("GET jobs", 6)], ids=["upload", "every-poll"])
def test_a_job_that_cannot_go_on_is_aborted_and_the_batch_goes_again(call: str, failures: int, con: duckdb.DuckDBPyConnection,
                                                                     fake: FakeSalesforce, client: httpx.Client) -> None:
    con.execute("delete from buyers where id > 400")
    fake.script_on[call] = deque([Scripted(503)] * failures)
    result = sync(con, fake, client, spec(settings=BULK))
    assert (result.status, result.succeeded, result.requests_retried) == ("success", 400, 1)
    assert [job.state for job in fake.jobs.values()] == ["Aborted", "JobComplete"] and fake.by_external_id() == expected(con, csv=True)


def test_a_job_still_running_at_the_deadline_is_aborted_and_its_records_fail(con: duckdb.DuckDBPyConnection, fake: FakeSalesforce,
                                                                              client: httpx.Client) -> None:
    con.execute("delete from buyers where id > 100")
    fake.polls_to_complete = 10**6
    result = sync(con, fake, client, spec(settings=BULK, deadline_seconds=1.5))
    assert (result.status, result.failed) == ("failed", 100)
    job = next(iter(fake.jobs.values()))
    assert job.state == "Aborted" and fake.records == {}
    assert set(failures(con).values()) == {f"Bulk API job {job.id} Aborted: Job aborted; this record was not processed"}


# -- errors, limits, pacing ------------------------------------------------------------------------


def test_throttling_errors_and_timeouts_are_retried(con: duckdb.DuckDBPyConnection, fake: FakeSalesforce, client: httpx.Client) -> None:
    fake.script.extend([Scripted(429, {"Retry-After": "0"}), Scripted(503, body="upstream"), Scripted(502),
                        Scripted(200, stall_seconds=2.5)])  # past the client's 2 s timeout
    result = sync(con, fake, client, spec(settings={**CONTACT, "api": "collections"}))
    assert (result.status, result.succeeded, result.requests_retried) == ("success", 1000, 4)
    assert fake.by_external_id() == expected(con)


@pytest.mark.parametrize(("answer", "wait", "text"), [
    (Scripted(429), 1.0, "HTTP 429"),
    (Scripted(429, {"Retry-After": "3"}), 3.0, "HTTP 429"),
    (concurrent_limit_exceeded(), 10.0, "REQUEST_LIMIT_EXCEEDED: ConcurrentPerOrgLongTxn Limit exceeded. (too many concurrent"),
], ids=["429", "429-retry-after", "concurrent-requests"])
def test_throttling_asks_every_request_to_pause(answer: Scripted, wait: float, text: str, fake: FakeSalesforce,
                                                client: httpx.Client) -> None:
    destination = SalesforceDestination(env(fake), client)
    destination.check(spec())
    destination.open(spec(), pa.schema([]))
    fake.script.append(answer)
    batch = pa.RecordBatch.from_pylist([{"destination_id": None, "Corral_Id__c": 1, "LastName": "One"}])
    with pytest.raises(RetryableError, match=re.escape(text)) as raised:
        destination.send(batch, "Corral_Id__c", "upsert")
    assert raised.value.retry_after == wait and destination.denied is None


def test_the_orgs_daily_allocation_running_out_stops_the_sync_with_records_pending(con: duckdb.DuckDBPyConnection, fake: FakeSalesforce,
                                                                                   client: httpx.Client) -> None:
    fake.daily_limit = 3
    collections = spec(settings={**CONTACT, "api": "collections"})
    result = sync(con, fake, client, collections)
    assert (result.succeeded, result.failed, result.requests_retried) == (600, 0, 0)
    assert "HTTP 403: REQUEST_LIMIT_EXCEEDED: TotalRequests Limit exceeded. (the org's 24-hour API request allocation is used up" \
           in result.errors[0] and result.errors[0].startswith("deadline:")
    assert failures(con) == {} and len(kept_ids(con)) == 600 and fake.requests <= 5  # no retry, nothing marked failed
    fake.daily_limit = 10**6  # the rolling 24 hours moved on
    later = sync(con, fake, client, collections)
    assert (later.status, later.planned, later.succeeded) == ("success", 400, 400)
    assert fake.by_external_id() == expected(con)


@pytest.mark.parametrize("status", [401, 403])
def test_refused_credentials_stop_the_sync_with_salesforces_message(status: int, con: duckdb.DuckDBPyConnection, fake: FakeSalesforce,
                                                                    client: httpx.Client) -> None:
    environment = env(fake, SALESFORCE_ACCESS_TOKEN="00Dxx0000001gPF!expired") if status == 401 else env(fake)
    fake.denied = 0 if status == 401 else 403
    result = sync(con, fake, client, spec(settings={**CONTACT, "api": "collections"}), environment)
    assert (result.status, result.succeeded, result.requests_retried) == ("failed", 0, 0)
    text = "INVALID_SESSION_ID: Session expired or invalid" if status == 401 else "API_DISABLED_FOR_ORG: API is not enabled"
    assert result.errors[0].startswith(f"stopped: salesforce Contact collections upsert: HTTP {status}: {text}")
    assert fake.requests <= SalesforceDestination.capabilities.max_concurrency and fake.records == {}


@pytest.mark.parametrize(
    ("sync_spec", "environment", "message"),
    [
        (spec(), {"SALESFORCE_ACCESS_TOKEN": ""}, "set the environment variable SALESFORCE_ACCESS_TOKEN"),
        (spec(), {"SALESFORCE_INSTANCE_URL": ""}, "set the environment variable SALESFORCE_INSTANCE_URL"),
        (spec(), {"SALESFORCE_INSTANCE_URL": "https://acme.my.salesforce.com/services/data"},
         "SALESFORCE_INSTANCE_URL must be the org's base URL"),
        (spec(), {"SALESFORCE_API_VERSION": "v45"}, "SALESFORCE_API_VERSION must be like 62.0, at least 46.0"),
        (spec(), {"SALESFORCE_REQUESTS_PER_SECOND": "0.5"}, "SALESFORCE_REQUESTS_PER_SECOND must be a positive number, at least 1"),
        (spec(), {"SALESFORCE_BULK_POLL_SECONDS": "0"}, "SALESFORCE_BULK_POLL_SECONDS must be a positive number"),
        (spec(settings={"external_id_field": "Corral_Id__c"}), None, "settings.object must be the sObject API name"),
        (spec(settings={"object": "Contact", "external_id_field": "Corral Id"}), None,
         "settings.external_id_field must be the External ID"),
        (spec(settings={"object": "Contact", "external_id_field": "Ext__c"}), None, "map a column to the external id field 'Ext__c'"),
        (spec(mapping={**MAPPING, "email": "Id"}), None, "do not map a column to the field 'Id'"),
        (spec(settings={**CONTACT, "api": "soap"}), None, "settings.api must be one of auto, collections, bulk"),
        (spec(settings={**CONTACT, "bulk_batch_size": 500_000}), None, "settings.bulk_batch_size must be a whole number from 1 to 100,000"),
        (spec(settings={**CONTACT, "bulk_threshold": 20_000}), None, "bulk_threshold \\(20,000\\) must be below bulk_batch_size"),
        (spec("update"), None, "destination 'salesforce' does not support mode 'update'"),
    ],
    ids=["no-token", "no-url", "url-path", "version", "rate", "poll", "no-object", "bad-field", "unmapped-field", "id-mapped", "api",
         "bulk-size", "threshold", "mode"],
)
def test_configuration_errors_fail_before_sending(sync_spec: SyncSpec, environment: dict[str, str] | None, message: str,
                                                  con: duckdb.DuckDBPyConnection, fake: FakeSalesforce, client: httpx.Client) -> None:
    with pytest.raises(SyncConfigError, match=f"^sync 'buyers_salesforce': .*{message}"):
        run_sync(con, sync_spec, make_destination("salesforce", env(fake, **(environment or {})), client), options=FAST)
    assert fake.requests == 0


@pytest.mark.parametrize("rate", [1, 1.5, 2, 5, 10, 50, 200])
def test_pacing_keeps_every_second_under_the_limit(rate: float) -> None:
    per_second, burst = pacing(rate)
    assert math.floor(burst + per_second) <= rate  # the most whole requests a token bucket lets through in a second
    assert burst + per_second <= 0.95 * rate or rate < 5  # with some slack for the network's jitter
    assert per_second >= (0.75 if rate >= 5 else 0.5) * rate  # and not much slower than the limit
    with httpx.Client() as client:
        destination = SalesforceDestination({"SALESFORCE_INSTANCE_URL": "https://acme.my.salesforce.com", "SALESFORCE_ACCESS_TOKEN": TOKEN,
                                             "SALESFORCE_REQUESTS_PER_SECOND": str(rate)}, client)
        destination.check(spec(settings=BULK))
    assert (destination.capabilities.requests_per_second, destination.capabilities.burst) == (per_second, burst)
    assert destination.capabilities.batch_size == 400 and SalesforceDestination.capabilities.batch_size == 10_000  # the class is untouched


def test_bulk_jobs_in_parallel_stay_under_the_per_second_limit(con: duckdb.DuckDBPyConnection, client: httpx.Client) -> None:
    con.execute("delete from buyers where id > 600")
    with serve(FakeSalesforce(requests_per_second=20)) as fake:
        result = sync(con, fake, client, spec(settings={**BULK, "bulk_batch_size": 100}), env(fake, SALESFORCE_REQUESTS_PER_SECOND="20"))
        assert (result.status, result.succeeded, fake.calls["POST jobs"], fake.requests) == ("success", 600, 6, 48)
        assert fake.violations == []


def test_the_fake_refuses_what_salesforce_refuses(fake: FakeSalesforce, client: httpx.Client) -> None:
    base = fake.url + "/services/data/v62.0"
    auth = {"authorization": f"Bearer {TOKEN}"}

    def upsert(records: list[dict[str, Any]], field: str = "Corral_Id__c", **headers: str) -> httpx.Response:
        return client.patch(f"{base}/composite/sobjects/Contact/{field}", json={"allOrNone": False, "records": records},
                            headers={**auth, **headers})

    contact = {"attributes": {"type": "Contact"}, "Corral_Id__c": "1", "LastName": "One"}
    over = upsert([{**contact, "Corral_Id__c": str(i)} for i in range(201)])
    assert over.status_code == 400 and over.json()[0]["errorCode"] == "EXCEEDED_ID_LIMIT"
    assert upsert([{**contact, "Id": "003000000000001AAA"}]).status_code == 400
    assert upsert([{**contact, "Nickname__c": "x"}]).json()[0]["errorCode"] == "INVALID_FIELD"
    assert upsert([contact], field="LastName").json()[0]["message"].endswith("is not an External ID or indexed field for Contact")
    assert upsert([contact], authorization="Bearer nope").json() == [{"message": "Session expired or invalid",
                                                                      "errorCode": "INVALID_SESSION_ID"}]
    twice = upsert([contact, {**contact, "LastName": "Again"}]).json()
    assert [r["errors"][0]["statusCode"] for r in twice] == ["DUPLICATE_VALUE"] * 2
    ok = upsert([contact])
    assert ok.json()[0]["success"] and ok.json()[0]["created"] and ok.headers["Sforce-Limit-Info"].startswith("api-usage=")
    assert upsert([contact]).json()[0]["created"] is False
    job = client.post(f"{base}/jobs/ingest", json={"object": "Contact", "operation": "upsert", "externalIdFieldName": "Corral_Id__c",
                                                   "contentType": "CSV", "lineEnding": "LF"}, headers=auth).json()
    assert job["state"] == "Open"
    assert client.put(f"{base}/jobs/ingest/{job['id']}/batches", content=b"a,b\n1,2\n", headers=auth).status_code == 400  # not text/csv
    assert client.put(f"{base}/jobs/ingest/{job['id']}/batches", content=b"Corral_Id__c\n1\n",
                      headers={**auth, "content-type": "text/csv"}).status_code == 201
    early = client.get(f"{base}/jobs/ingest/{job['id']}/successfulResults", headers=auth)
    assert early.status_code == 400 and fake.violations == ["collections upsert of 201 records, over 200",
                                                            f"results of job {job['id']} read while it is Open"]
