"""The Klaviyo destination through the engine, against a strict fake Klaviyo on a real port:
profiles imported by bulk jobs that are polled to the end before anything is confirmed, the
revision header on every request, import errors read after polling and attributed by pointer or
by payload, a job that ends cancelled or never ends confirming nothing, list membership by the
profile ids the job reports (kept, and used for removals), big batches split under 5 MB, 429s
while creating or polling a job, 5xx and timeouts, refused keys, configuration errors, and
per-endpoint pacing that keeps the fake's windows unbroken."""

from __future__ import annotations

from collections import deque
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import duckdb
import httpx
import pyarrow as pa
import pytest
from fakes.klaviyo import API_KEY, JOBS, FakeKlaviyo, serve
from fakes.server import Scripted

from sync_testing import FAST

from reverse_etl.destinations import make_destination
from reverse_etl.destinations.base import AuthorizationFailed, RetryableError
from reverse_etl.destinations.klaviyo import REVISION, KlaviyoDestination
from reverse_etl.engine import EngineOptions, SyncRunResult, run_sync
from reverse_etl.pacing import RetryPolicy
from reverse_etl.syncs import SyncConfigError, SyncSpec

LIST = "Y6nRLr"
MAPPING = {"id": "external_id", "email": "email", "first_name": "first_name", "spend": "total_spend", "vip": "is_vip",
           "signed_up": "signup_date", "last_seen": "last_seen_at", "city": "location.city"}
JOB, ERRORS, PROFILES, MEMBERS = (f"GET {JOBS}/{{id}}", f"GET {JOBS}/{{id}}/import-errors", f"GET {JOBS}/{{id}}/profiles",
                                  "/api/lists/{id}/relationships/profiles")


def spec(mode: str = "upsert", **overrides: Any) -> SyncSpec:
    values: dict[str, Any] = {
        "name": "buyers_klaviyo", "model": "buyers", "relation": "main.buyers", "destination": "klaviyo", "mode": mode,
        "primary_key": "id", "mapping": MAPPING, "settings": {"list_id": LIST} if mode == "add_remove" else {},
    }
    return SyncSpec(**{**values, **overrides})


@pytest.fixture
def con(tmp_path: Path) -> Iterator[duckdb.DuckDBPyConnection]:
    con = duckdb.connect(str(tmp_path / "warehouse.duckdb"))
    con.execute(
        "create table buyers as select i as id, 'User' || i || '@Example.com' as email,"
        " case when i % 10 = 0 then null else 'Name ' || i end as first_name, i * 1.5 as spend, i % 2 = 0 as vip,"
        " date '2026-01-01' + i::int as signed_up, timestamp '2026-10-01 12:00:00' + to_seconds(i) as last_seen, 'Lyon' as city"
        " from range(1, 301) t(i)"
    )
    yield con
    con.close()


@pytest.fixture
def klaviyo() -> Iterator[FakeKlaviyo]:
    with serve(FakeKlaviyo(burst=20, steady=600, lists={LIST: set()})) as fake:
        yield fake


def env(fake: FakeKlaviyo, **extra: str) -> dict[str, str]:
    return {"KLAVIYO_API_KEY": API_KEY, "KLAVIYO_BASE_URL": fake.url, "KLAVIYO_POLL_SECONDS": "0.01",
            "KLAVIYO_BURST_PER_SECOND": str(fake.burst), "KLAVIYO_STEADY_PER_MINUTE": str(fake.steady), **extra}


def sync(con: duckdb.DuckDBPyConnection, fake: FakeKlaviyo, client: httpx.Client, sync_spec: SyncSpec | None = None,
         environment: dict[str, str] | None = None, **kwargs: Any) -> SyncRunResult:
    destination = make_destination("klaviyo", environment or env(fake), client)
    return run_sync(con, sync_spec or spec(), destination, options=kwargs.pop("options", FAST), **kwargs)


def expected(con: duckdb.DuckDBPyConnection) -> dict[str, dict[str, Any]]:
    """The mart as Klaviyo should hold it: attributes and properties side by side, nulls absent."""
    rows = con.execute("select id, email, first_name, spend, vip, signed_up, last_seen, city from buyers").fetchall()
    return {r[1].lower(): {"external_id": str(r[0]), "email": r[1], "first_name": r[2], "total_spend": float(r[3]), "is_vip": r[4],
                           "signup_date": r[5].isoformat(), "last_seen_at": r[6].isoformat() + "Z", "location.city": r[7]} for r in rows}


def failed_records(con: duckdb.DuckDBPyConnection) -> dict[str, str]:
    return dict(con.execute("select record_key, last_error from corral_sync.records where status <> 'synced'").fetchall())


def test_a_job_is_polled_to_the_end_before_anything_is_confirmed(con: duckdb.DuckDBPyConnection, klaviyo: FakeKlaviyo,
                                                                   client: httpx.Client) -> None:
    klaviyo.polls_to_complete = 3
    first = sync(con, klaviyo, client)
    assert (first.status, first.changes, first.succeeded, first.failed) == ("success", {"added": 300}, 300, 0)
    assert klaviyo.records() == expected(con)
    assert klaviyo.records()["user7@example.com"] == {
        "external_id": "7", "email": "User7@Example.com", "first_name": "Name 7", "total_spend": 10.5, "is_vip": False,
        "signup_date": "2026-01-08", "last_seen_at": "2026-10-01T12:00:07Z", "location.city": "Lyon"}
    assert klaviyo.calls == {f"POST {JOBS}": 1, JOB: 3, ERRORS: 1}  # one job, polled until complete, its errors read
    job = next(iter(klaviyo.jobs.values()))
    assert (job["status"], len(job["profiles"]), job["profiles"][0]) == ("complete", 300, {"type": "profile", "attributes": {
        "external_id": "1", "email": "User1@Example.com", "first_name": "Name 1", "location": {"city": "Lyon"},
        "properties": {"total_spend": 1.5, "is_vip": False, "signup_date": "2026-01-02", "last_seen_at": "2026-10-01T12:00:01Z"}}})
    assert set(klaviyo.revisions_seen) == {REVISION}  # on every request
    again = sync(con, klaviyo, client)
    assert (again.status, again.planned, again.sent, klaviyo.requests) == ("success", 0, 0, 5)


def test_changes_reach_klaviyo_and_a_null_property_is_unset(con: duckdb.DuckDBPyConnection, klaviyo: FakeKlaviyo, client: httpx.Client) -> None:
    sync(con, klaviyo, client)
    con.execute("update buyers set first_name = 'Changed', spend = null where id in (3, 4)")
    con.execute("delete from buyers where id = 5")  # upsert forgets it; Klaviyo keeps the profile
    result = sync(con, klaviyo, client)
    assert (result.status, result.changes) == ("success", {"changed": 2, "removed": 1, "unchanged": 297})
    sent = list(klaviyo.jobs.values())[-1]["profiles"]
    assert [p["meta"] for p in sent] == [{"patch_properties": {"unset": ["total_spend"]}}] * 2
    assert klaviyo.records()["user3@example.com"]["first_name"] == "Changed" and "total_spend" not in klaviyo.records()["user3@example.com"]
    assert "user5@example.com" in klaviyo.records()


def test_the_revision_header_is_required_and_configurable(con: duckdb.DuckDBPyConnection, klaviyo: FakeKlaviyo, client: httpx.Client) -> None:
    headers = {"authorization": f"Klaviyo-API-Key {API_KEY}", "content-type": "application/vnd.api+json"}
    missing = client.post(klaviyo.url + JOBS, json={}, headers=headers)
    unknown = client.post(klaviyo.url + JOBS, json={}, headers=headers | {"revision": "2099-01-01"})
    assert (missing.status_code, missing.json()["errors"][0]["detail"]) == (400, "Missing `revision` header.")
    assert (unknown.status_code, unknown.json()["errors"][0]["detail"]) == (400, "Invalid revision `2099-01-01`.")
    con.execute("delete from buyers where id > 10")
    refused = sync(con, klaviyo, client, environment=env(klaviyo, KLAVIYO_REVISION="2099-01-01"))
    assert (refused.status, refused.failed) == ("failed", 10) and "HTTP 400: Invalid input. Invalid revision `2099-01-01`." in refused.errors[0]
    older = sync(con, klaviyo, client, environment=env(klaviyo, KLAVIYO_REVISION="2025-01-15"))
    assert (older.status, older.succeeded) == ("success", 10)
    assert klaviyo.revisions_seen["2025-01-15"] == klaviyo.requests - 3  # every request of that run


@pytest.mark.parametrize("attribution", ["pointer", "payload"])
def test_import_errors_read_after_polling_fail_exactly_those_records(attribution: str, con: duckdb.DuckDBPyConnection,
                                                                     klaviyo: FakeKlaviyo, client: httpx.Client) -> None:
    klaviyo.attribution = attribution
    con.execute("update buyers set email = 'broken-' || id where id % 100 = 7")  # the fake refuses emails without @
    klaviyo.refuse["user150@example.com"] = "Profile is suppressed."
    first = sync(con, klaviyo, client)
    assert (first.status, first.succeeded, first.failed) == ("failed", 296, 4)
    failed = failed_records(con)
    assert failed == {"7": "Klaviyo did not import this profile: Invalid input. Invalid email address: 'broken-7'. (invalid)",
                      "107": "Klaviyo did not import this profile: Invalid input. Invalid email address: 'broken-107'. (invalid)",
                      "207": "Klaviyo did not import this profile: Invalid input. Invalid email address: 'broken-207'. (invalid)",
                      "150": "Klaviyo did not import this profile: Invalid input. Profile is suppressed. (invalid)"}
    assert "user150@example.com" not in klaviyo.records()
    again = sync(con, klaviyo, client)
    assert (again.planned, again.failed) == (4, 4)  # only the failed ones are sent again
    klaviyo.refuse.clear()
    con.execute("update buyers set email = 'fixed' || id || '@example.com' where id % 100 = 7")
    fixed = sync(con, klaviyo, client)
    assert (fixed.status, fixed.planned, fixed.succeeded) == ("success", 4, 4)
    assert klaviyo.records() == expected(con)


@pytest.mark.parametrize(("end_status", "ended"), [("cancelled", "ended cancelled"), ("failed", "ended failed")])
def test_a_job_that_fails_confirms_nothing(end_status: str, ended: str, con: duckdb.DuckDBPyConnection, klaviyo: FakeKlaviyo,
                                           client: httpx.Client) -> None:
    klaviyo.end_status = end_status
    result = sync(con, klaviyo, client)
    assert (result.status, result.succeeded, result.failed) == ("failed", 0, 300)
    job = next(iter(klaviyo.jobs))
    assert set(failed_records(con).values()) == {f"Klaviyo import job {job} {ended} (0 of 300 done, 0 failed); none of its profiles is confirmed"}
    klaviyo.end_status = "complete"
    retried = sync(con, klaviyo, client)
    assert (retried.status, retried.planned, retried.succeeded) == ("success", 300, 300)
    assert klaviyo.records() == expected(con)


def test_a_job_that_never_ends_confirms_nothing(con: duckdb.DuckDBPyConnection, klaviyo: FakeKlaviyo, client: httpx.Client) -> None:
    klaviyo.polls_to_complete = 10**6
    con.execute("delete from buyers where id > 5")
    result = sync(con, klaviyo, client, environment=env(klaviyo, KLAVIYO_JOB_TIMEOUT_SECONDS="0.3"))
    assert (result.status, result.failed) == ("failed", 5)
    assert "was still processing after 0.3 s (0 of 5 done, 0 failed); none of its profiles is confirmed" in result.errors[0]
    assert klaviyo.records() == {}


def test_add_remove_keeps_the_list_equal_to_the_audience_by_profile_id(con: duckdb.DuckDBPyConnection, klaviyo: FakeKlaviyo,
                                                                         client: httpx.Client) -> None:
    first = sync(con, klaviyo, client, spec("add_remove"))
    assert (first.status, first.succeeded) == ("success", 300)
    assert klaviyo.members(LIST) == set(expected(con))
    assert next(iter(klaviyo.jobs.values()))["lists"] == [LIST]  # imported and added by one job
    assert klaviyo.calls[PROFILES] == 3  # 100 a page
    ids = {p["email"].lower(): i for i, p in klaviyo.profiles.items()}
    kept = dict(con.execute("select record_key, destination_id from corral_sync.records").fetchall())
    assert kept == {str(n): ids[f"user{n}@example.com"] for n in range(1, 301)}
    con.execute("delete from buyers where id in (10, 11, 12)")
    con.execute("update buyers set first_name = 'Changed' where id = 3")  # still a member: nothing to send
    con.execute("insert into buyers values (5000, 'new@example.com', 'New', 1.0, true, date '2026-05-01', timestamp '2026-10-02', 'Nice')")
    result = sync(con, klaviyo, client, spec("add_remove"))
    assert (result.status, result.operations) == ("success", {"add": 1, "remove": 3, "baseline": 1})
    assert [(method, list_id, sorted(ids)) for method, list_id, ids in klaviyo.list_calls] == [
        ("DELETE", LIST, sorted([kept["10"], kept["11"], kept["12"]]))]  # the ids the state kept
    assert klaviyo.members(LIST) == set(expected(con))
    assert "user10@example.com" in klaviyo.records() and klaviyo.records()["user3@example.com"]["first_name"] == "Name 3"
    assert sync(con, klaviyo, client, spec("add_remove")).sent == 0
    assert not klaviyo.violations


def test_a_remove_without_a_kept_profile_id_fails_clearly(con: duckdb.DuckDBPyConnection, klaviyo: FakeKlaviyo, client: httpx.Client) -> None:
    con.execute("delete from buyers where id > 20")
    sync(con, klaviyo, client, spec("add_remove"))
    con.execute("update corral_sync.records set destination_id = null where record_key = '7'")
    con.execute("delete from buyers where id in (7, 8)")
    result = sync(con, klaviyo, client, spec("add_remove"))
    assert (result.status, result.succeeded, result.failed) == ("failed", 1, 1)
    assert result.errors == [f"remove 7: no Klaviyo profile id is kept for this record (was it ever added?), so it cannot be removed from list {LIST}"]
    assert "user7@example.com" in klaviyo.members(LIST) and "user8@example.com" not in klaviyo.members(LIST)


def test_a_missing_list_is_reported(con: duckdb.DuckDBPyConnection, klaviyo: FakeKlaviyo, client: httpx.Client) -> None:
    con.execute("delete from buyers where id > 10")
    result = sync(con, klaviyo, client, spec("add_remove", settings={"list_id": "nope"}))
    assert (result.status, result.failed) == ("failed", 10)
    assert "bulk profile import: HTTP 404: Not found. List nope does not exist. (not_found at /data/relationships/lists/data/0/id)" in result.errors[0]


def test_a_batch_over_5_mb_is_split_into_jobs(con: duckdb.DuckDBPyConnection, klaviyo: FakeKlaviyo, client: httpx.Client) -> None:
    con.execute("create or replace table buyers as select i as id, 'user' || i || '@example.com' as email, repeat('x', 700) as note"
                " from range(1, 9001) t(i)")
    result = sync(con, klaviyo, client, spec(mapping={"id": "external_id", "email": "email", "note": "note"}))
    assert (result.status, result.succeeded) == ("success", 9000)
    sizes = sorted(len(job["profiles"]) for job in klaviyo.jobs.values())
    assert len(sizes) == 2 and sum(sizes) == 9000 and not klaviyo.violations  # each job under 5 MB
    assert len(klaviyo.records()) == 9000


def test_429_while_creating_a_job_is_retried_with_retry_after(con: duckdb.DuckDBPyConnection, klaviyo: FakeKlaviyo,
                                                               client: httpx.Client) -> None:
    klaviyo.script.append(Scripted(429, {"Retry-After": "1"}, '{"errors":[{"code":"throttled","title":"Request was throttled."}]}'))
    waits: list[float] = []
    options = EngineOptions(retry=RetryPolicy(attempts=3, base_seconds=0.01, cap_seconds=0.05), seed=1, sleep=waits.append)
    result = sync(con, klaviyo, client, options=options)
    assert (result.status, result.succeeded, result.requests_retried) == ("success", 300, 1)
    assert waits == [1.0] and len(klaviyo.jobs) == 1


def test_a_429_without_retry_after_waits_a_second(klaviyo: FakeKlaviyo, client: httpx.Client) -> None:
    klaviyo.script.append(Scripted(429, {}, '{"errors":[{"code":"throttled","title":"Request was throttled.","detail":"Slow down."}]}'))
    destination = KlaviyoDestination(env(klaviyo), client)
    destination.check(spec())
    destination.open(spec(), pa.schema([]))
    with pytest.raises(RetryableError, match="HTTP 429: Request was throttled. Slow down. \\(throttled\\)") as raised:
        destination.send(pa.RecordBatch.from_pylist([{"external_id": "1", "email": "a@example.com"}]), "external_id", "upsert")
    assert raised.value.retry_after == 1.0


def test_trouble_while_polling_is_retried_without_a_new_job(con: duckdb.DuckDBPyConnection, klaviyo: FakeKlaviyo,
                                                            client: httpx.Client) -> None:
    con.execute("delete from buyers where id > 50")
    klaviyo.polls_to_complete = 1
    klaviyo.script_on[JOB.split(" ")[1]] = deque([Scripted(429, {"Retry-After": "0"}), Scripted(503), Scripted(200, stall_seconds=2.5)])
    destination = make_destination("klaviyo", env(klaviyo), client)
    destination.check(spec())
    destination.open(spec(), pa.schema([]))
    rows = con.sql("select id::varchar as external_id, email from buyers").to_arrow_table().to_batches()[0]
    answers = destination.send(rows, "external_id", "upsert")
    assert all(a.ok for a in answers) and len(answers) == 50
    assert len(klaviyo.jobs) == 1 and klaviyo.statuses[429] == 1 and klaviyo.statuses[503] == 1


def test_5xx_and_timeouts_creating_a_job_are_retried(con: duckdb.DuckDBPyConnection, klaviyo: FakeKlaviyo, client: httpx.Client) -> None:
    klaviyo.script.extend([Scripted(503, body="upstream"), Scripted(502), Scripted(202, stall_seconds=2.5)])  # past the 2 s timeout
    result = sync(con, klaviyo, client)
    assert (result.status, result.succeeded, result.requests_retried) == ("success", 300, 3)
    assert klaviyo.records() == expected(con)


def test_a_refused_key_stops_the_sync_and_later_sends_ask_nothing(con: duckdb.DuckDBPyConnection, klaviyo: FakeKlaviyo,
                                                                   client: httpx.Client) -> None:
    result = sync(con, klaviyo, client, environment=env(klaviyo, KLAVIYO_API_KEY="pk_revoked"))
    assert (result.status, result.succeeded, result.requests_retried) == ("failed", 0, 0)
    assert result.errors[0].startswith("stopped: klaviyo bulk profile import: HTTP 401: Authentication credentials were not provided.")
    destination = KlaviyoDestination(env(klaviyo, KLAVIYO_API_KEY="pk_revoked"), client)
    destination.check(spec())
    destination.open(spec(), pa.schema([]))
    before = klaviyo.requests
    for _ in range(2):
        with pytest.raises(AuthorizationFailed, match="HTTP 401"):
            destination.send(pa.RecordBatch.from_pylist([{"external_id": "1", "email": "a@example.com"}]), "external_id", "upsert")
    assert klaviyo.requests == before + 1  # the second send did not ask


def test_the_fake_refuses_what_klaviyo_refuses(klaviyo: FakeKlaviyo, client: httpx.Client) -> None:
    headers = {"authorization": f"Klaviyo-API-Key {API_KEY}", "revision": REVISION, "content-type": "application/vnd.api+json"}

    def job(profiles: list[dict[str, Any]], **extra: Any) -> httpx.Response:
        body = {"data": {"type": "profile-bulk-import-job", "attributes": {"profiles": {"data": profiles}}, **extra}}
        return client.post(klaviyo.url + JOBS, json=body, headers=headers)

    one = {"type": "profile", "attributes": {"email": "a@example.com"}}
    assert job([one] * 10_001).status_code == 400
    unknown = job([{"type": "profile", "attributes": {"email": "a@example.com", "plan": "pro"}}])  # custom fields go in properties
    assert (unknown.status_code, unknown.json()["errors"][0]["source"]["pointer"]) == (400, "/data/attributes/profiles/data/0/attributes/plan")
    assert job([one], relationships={"lists": {"data": [{"type": "list", "id": "nope"}]}}).status_code == 404
    assert client.post(klaviyo.url + JOBS, content=b"{}", headers=headers | {"content-type": "text/plain"}).status_code == 415
    assert client.post(klaviyo.url + JOBS, json={}, headers=headers | {"authorization": "Klaviyo-API-Key pk_wrong"}).status_code == 401
    created = job([one])
    assert created.status_code == 202 and created.json()["data"]["attributes"]["status"] == "queued"
    job_id = created.json()["data"]["id"]
    assert client.get(f"{klaviyo.url}{JOBS}/{job_id}/import-errors", params={"page[size]": 101}, headers=headers).status_code == 400
    members = {"data": [{"type": "profile", "id": str(i)} for i in range(1001)]}
    assert client.post(f"{klaviyo.url}/api/lists/{LIST}/relationships/profiles", json=members, headers=headers).status_code == 400
    assert klaviyo.violations == [f"{JOBS}: 10,001 profiles, over 10,000", f"{JOBS}/{job_id}/import-errors: page[size]=101, over 100",
                                  f"/api/lists/{LIST}/relationships/profiles: 1001 profiles, over 1000"]


def test_pacing_spaces_each_endpoint_under_its_limits(con: duckdb.DuckDBPyConnection, client: httpx.Client) -> None:
    with serve(FakeKlaviyo(burst=3, steady=120, lists={LIST: set()}, polls_to_complete=4)) as fake:
        result = sync(con, fake, client, spec("add_remove"))
        assert (result.status, result.succeeded) == ("success", 300)
        assert fake.calls[JOB] == 4 and fake.calls[PROFILES] == 3  # more than the burst of 3 at once allows without spacing
        assert fake.violations == [] and fake.throttled == 0


@pytest.mark.parametrize(("burst", "steady", "gap"), [(10, 150, 0.4 / 0.9), (3, 60, 1 / 0.9), (75, 700, 60 / 700 / 0.9), (1, 600, 1 / 0.9)])
def test_the_gap_between_requests_to_an_endpoint_keeps_both_windows(burst: int, steady: int, gap: float) -> None:
    with httpx.Client() as client:
        destination = KlaviyoDestination({"KLAVIYO_API_KEY": API_KEY, "KLAVIYO_BURST_PER_SECOND": str(burst),
                                          "KLAVIYO_STEADY_PER_MINUTE": str(steady)}, client)
        destination.check(spec())
    assert destination.gap == pytest.approx(gap)
    assert 1 + 1 / destination.gap <= burst or burst == 1  # requests in any second, spaced by the gap
    assert 1 + 60 / destination.gap <= steady
    assert destination.capabilities.requests_per_second == pytest.approx(1 / gap)


@pytest.fixture(scope="module")
def idle_klaviyo() -> Iterator[FakeKlaviyo]:
    """One fake for the configuration cases, which must never reach it."""
    with serve(FakeKlaviyo()) as fake:
        yield fake


@pytest.mark.parametrize(
    ("sync_spec", "environment", "message"),
    [
        (spec(), {}, "set the environment variable KLAVIYO_API_KEY"),
        (spec(mapping={"id": "external_id", "mail": "work_email"}), None, "map a column to the Klaviyo field 'email'"),
        (spec(settings={"identifier": "phone_number"}), None, "settings.identifier must be 'email' or 'external_id'"),
        (spec("add_remove", settings={}), None, "mode add_remove needs settings.list_id"),
        (spec("mirror"), None, "destination 'klaviyo' does not support mode 'mirror'"),
        (spec(), {"KLAVIYO_REVISION": "latest"}, "KLAVIYO_REVISION must be a revision date like"),
        (spec(), {"KLAVIYO_STEADY_PER_MINUTE": "0"}, "KLAVIYO_STEADY_PER_MINUTE must be a positive whole number"),
        (spec(), {"KLAVIYO_BURST_PER_SECOND": "fast"}, "KLAVIYO_BURST_PER_SECOND must be a positive whole number"),
        (spec(), {"KLAVIYO_POLL_SECONDS": "-1"}, "KLAVIYO_POLL_SECONDS must be a positive number of seconds"),
    ],
    ids=["no-key", "no-email", "identifier", "no-list", "mode", "revision", "steady", "burst", "poll"],
)
def test_configuration_errors_fail_before_sending(sync_spec: SyncSpec, environment: dict[str, str] | None, message: str,
                                                  con: duckdb.DuckDBPyConnection, idle_klaviyo: FakeKlaviyo, client: httpx.Client) -> None:
    variables = {} if environment == {} else env(idle_klaviyo, **(environment or {}))
    with pytest.raises(SyncConfigError, match=f"^sync 'buyers_klaviyo': .*{message}"):
        run_sync(con, sync_spec, make_destination("klaviyo", variables, client), options=FAST)
    assert idle_klaviyo.requests == 0  # nothing was asked, by this or any earlier case
