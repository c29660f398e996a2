"""The HubSpot destination through the engine, against a strict fake HubSpot on a real port:
contacts upserted by email with their record ids kept, unchanged re-syncs send nothing, 207
partial failures attributed to the right records and retried, never more than 100 inputs a
request, list membership following the audience by the kept record ids, a 429 storm from a
limit lower than configured, and configuration errors before anything is sent."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import duckdb
import httpx
import pyarrow as pa
import pytest
from fakes.hubspot import TOKEN, UPSERT, FakeHubSpot, serve
from fakes.server import Scripted

from sync_testing import FAST

from reverse_etl.destinations import make_destination
from reverse_etl.destinations.base import RetryableError
from reverse_etl.destinations.hubspot import HubSpotDestination
from reverse_etl.engine import EngineOptions, SyncRunResult, run_sync
from reverse_etl.pacing import RetryPolicy
from reverse_etl.syncs import SyncConfigError, SyncSpec

LIST = "501"
MAPPING = {"id": "corral_id", "email": "email", "first_name": "firstname", "spend": "total_spend", "vip": "is_vip",
           "signed_up": "signup_date", "last_seen": "last_seen_at"}


def spec(mode: str = "upsert", **overrides: Any) -> SyncSpec:
    values: dict[str, Any] = {
        "name": "buyers_hubspot", "model": "buyers", "relation": "main.buyers", "destination": "hubspot", "mode": mode,
        "primary_key": "id", "mapping": MAPPING, "settings": {"list_id": LIST} if mode == "add_remove" else {},
    }
    return SyncSpec(**{**values, **overrides})


@pytest.fixture
def con(tmp_path: Path) -> Iterator[duckdb.DuckDBPyConnection]:
    con = duckdb.connect(str(tmp_path / "warehouse.duckdb"))
    con.execute(
        "create table buyers as select i as id, 'user' || i || '@example.com' as email,"
        " case when i % 10 = 0 then null else 'Name ' || i end as first_name, i * 1.5 as spend, i % 2 = 0 as vip,"
        " date '2026-01-01' + i::int as signed_up, timestamp '2026-10-01 12:00:00' + to_seconds(i) as last_seen"
        " from range(1, 1001) t(i)"
    )
    yield con
    con.close()


@pytest.fixture
def hubspot() -> Iterator[FakeHubSpot]:
    with serve(FakeHubSpot(lists={LIST: set()})) as fake:
        yield fake


def env(fake: FakeHubSpot, **extra: str) -> dict[str, str]:
    return {"HUBSPOT_ACCESS_TOKEN": TOKEN, "HUBSPOT_BASE_URL": fake.url, **extra}


def sync(con: duckdb.DuckDBPyConnection, fake: FakeHubSpot, client: httpx.Client, sync_spec: SyncSpec | None = None,
         environment: dict[str, str] | None = None, **kwargs: Any) -> SyncRunResult:
    destination = make_destination("hubspot", environment or env(fake), client)
    return run_sync(con, sync_spec or spec(), destination, options=kwargs.pop("options", FAST), **kwargs)


def expected(con: duckdb.DuckDBPyConnection) -> dict[str, dict[str, str]]:
    """The mart as HubSpot should hold it: every property text, null as ""."""
    rows = con.execute(
        "select lower(email), cast(id as varchar), email, coalesce(first_name, ''), cast(spend as varchar), cast(vip as varchar),"
        " cast(signed_up as varchar), strftime(last_seen, '%Y-%m-%dT%H:%M:%SZ') from buyers"
    ).fetchall()
    return {row[0]: dict(zip(MAPPING.values(), row[1:], strict=True)) for row in rows}


def kept_ids(con: duckdb.DuckDBPyConnection) -> dict[str, str]:
    return dict(con.execute("select record_key, destination_id from corral_sync.records").fetchall())


def test_first_upsert_lands_every_contact_and_an_unchanged_resync_sends_nothing(con: duckdb.DuckDBPyConnection, hubspot: FakeHubSpot,
                                                                                  client: httpx.Client) -> None:
    first = sync(con, hubspot, client)
    assert (first.status, first.changes, first.succeeded, first.failed) == ("success", {"added": 1000}, 1000, 0)
    assert hubspot.contacts == expected(con)
    assert hubspot.contacts["user7@example.com"] == {"corral_id": "7", "email": "user7@example.com", "firstname": "Name 7",
                                                     "total_spend": "10.5", "is_vip": "false", "signup_date": "2026-01-08",
                                                     "last_seen_at": "2026-10-01T12:00:07Z"}
    assert (hubspot.requests, hubspot.statuses, hubspot.largest_batch) == (10, {200: 10}, 100)
    assert kept_ids(con) == {str(i): hubspot.record_ids[f"user{i}@example.com"] for i in range(1, 1001)}  # matched by email
    second = sync(con, hubspot, client)
    assert (second.status, second.changes, second.planned, second.sent) == ("success", {"unchanged": 1000}, 0, 0)
    assert hubspot.requests == 10  # not one request


def test_changes_reach_hubspot_and_nothing_else(con: duckdb.DuckDBPyConnection, hubspot: FakeHubSpot, client: httpx.Client) -> None:
    sync(con, hubspot, client)
    ids = dict(hubspot.record_ids)
    hubspot.upserted.clear()
    con.execute("update buyers set first_name = 'Changed' where id in (3, 4)")
    con.execute("update buyers set first_name = null where id = 5")  # clears the property
    con.execute("delete from buyers where id = 10")  # upsert mode forgets it; HubSpot keeps the contact
    con.execute("insert into buyers values (5000, 'new@example.com', 'New', 1.0, true, date '2026-05-01', timestamp '2026-10-02 00:00:00')")
    result = sync(con, hubspot, client)
    assert result.changes == {"added": 1, "changed": 3, "removed": 1, "unchanged": 996}
    assert sorted(hubspot.upserted) == ["new@example.com", "user3@example.com", "user4@example.com", "user5@example.com"]
    assert hubspot.contacts["user5@example.com"]["firstname"] == ""
    assert {email: hubspot.contacts[email] for email in expected(con)} == expected(con)
    assert "user10@example.com" in hubspot.contacts
    assert {e: hubspot.record_ids[e] for e in ids} == ids  # same contacts, same record ids


def test_a_207_fails_exactly_the_invalid_contacts_and_they_are_retried_next_run(con: duckdb.DuckDBPyConnection, hubspot: FakeHubSpot,
                                                                                client: httpx.Client) -> None:
    con.execute("update buyers set email = 'broken-' || id where id % 100 = 7")
    broken = {str(i) for i in range(7, 1001, 100)}
    first = sync(con, hubspot, client)
    assert (first.status, first.succeeded, first.failed) == ("failed", 990, 10)
    assert set(hubspot.statuses) <= {200, 207} and hubspot.statuses.total() == 10  # a 207 for each request with an invalid contact
    assert 1 <= hubspot.statuses[207] <= 10
    failed = dict(con.execute("select record_key, last_error from corral_sync.records where status = 'failed'").fetchall())
    assert set(failed) == broken
    assert failed["107"].startswith("VALIDATION_ERROR: Property values were not valid") and "Email address broken-107 is invalid" in failed["107"]
    assert hubspot.contacts == {email: props for email, props in expected(con).items() if "@" in email}
    again = sync(con, hubspot, client)
    assert (again.planned, again.failed, again.succeeded) == (10, 10, 0)  # only the failed ones are sent again
    con.execute("update buyers set email = 'fixed' || id || '@example.com' where id % 100 = 7")
    fixed = sync(con, hubspot, client)
    assert (fixed.status, fixed.planned, fixed.succeeded) == ("success", 10, 10)
    assert hubspot.contacts == {email: props for email, props in expected(con).items()}


def test_when_hubspot_refuses_the_whole_batch_every_record_of_it_fails(con: duckdb.DuckDBPyConnection, hubspot: FakeHubSpot,
                                                                        client: httpx.Client) -> None:
    hubspot.invalid_as_400 = True  # the contract is unsure whether upsert answers 207 or 400
    con.execute("update buyers set email = 'broken-7' where id = 7")
    result = sync(con, hubspot, client)
    assert (result.status, result.succeeded, result.failed) == ("failed", 900, 100)
    assert "HTTP 400: VALIDATION_ERROR: Property values were not valid" in result.errors[0]
    failed = {k for (k,) in con.execute("select record_key from corral_sync.records where status = 'failed'").fetchall()}
    assert "7" in failed and not {email for email in hubspot.contacts if hubspot.contacts[email]["corral_id"] in failed}


def test_one_input_per_contact_and_no_email_fail_per_record(con: duckdb.DuckDBPyConnection, hubspot: FakeHubSpot, client: httpx.Client) -> None:
    con.execute("delete from buyers where id > 20")
    con.execute("update buyers set email = 'USER1@example.com' where id = 2")  # the same contact as record 1
    con.execute("update buyers set email = null where id = 3")
    result = sync(con, hubspot, client)
    assert (result.succeeded, result.failed, hubspot.statuses) == (18, 2, {200: 1})
    errors = dict(con.execute("select record_key, last_error from corral_sync.records where status = 'failed'").fetchall())
    assert errors == {"2": "email 'USER1@example.com' is also on record 1 of this batch; HubSpot takes one input per contact",
                      "3": "no email: HubSpot contacts are upserted by email"}


def test_the_fake_refuses_what_hubspot_refuses(hubspot: FakeHubSpot, client: httpx.Client) -> None:
    def post(inputs: list[dict[str, Any]], token: str = TOKEN) -> httpx.Response:
        return client.post(hubspot.url + UPSERT, json={"inputs": inputs}, headers={"authorization": f"Bearer {token}"})

    contact = {"id": "a@example.com", "idProperty": "email", "properties": {"email": "a@example.com"}}
    over = post([{**contact, "id": f"u{i}@example.com"} for i in range(101)])
    assert over.status_code == 400 and over.json()["category"] == "VALIDATION_ERROR" and "the limit is 100" in over.json()["message"]
    assert post([{**contact, "properties": {"spend": 1.5}}]).status_code == 400  # property values are strings
    assert post([{**contact, "idProperty": "hs_object_id"}]).status_code == 400
    assert post([contact, {**contact, "id": "A@example.com"}]).status_code == 400  # one input per contact
    assert post([contact], token="wrong").status_code == 401
    ok = post([contact])
    assert ok.status_code == 200 and ok.headers["X-HubSpot-RateLimit-Max"] == "190"
    assert ok.headers["X-HubSpot-RateLimit-Interval-Milliseconds"] == "10000"
    assert hubspot.contacts == {"a@example.com": {"email": "a@example.com"}}


def test_add_remove_keeps_the_list_equal_to_the_audience(con: duckdb.DuckDBPyConnection, hubspot: FakeHubSpot, client: httpx.Client) -> None:
    first = sync(con, hubspot, client, spec("add_remove"))
    assert (first.status, first.succeeded) == ("success", 1000)
    assert hubspot.members(LIST) == set(expected(con))
    assert hubspot.statuses == {200: 20}  # an upsert, then a membership add, per batch
    kept = kept_ids(con)
    assert kept == {str(i): hubspot.record_ids[f"user{i}@example.com"] for i in range(1, 1001)}
    hubspot.memberships.clear()
    con.execute("delete from buyers where id in (10, 11, 12)")  # they leave the audience
    con.execute("update buyers set first_name = 'Changed' where id = 3")  # still a member: nothing to send
    con.execute("insert into buyers values (5000, 'new@example.com', 'New', 1.0, true, date '2026-05-01', timestamp '2026-10-02 00:00:00')")
    result = sync(con, hubspot, client, spec("add_remove"))
    assert (result.status, result.changes["removed"], result.operations) == ("success", 3, {"add": 1, "remove": 3, "baseline": 1})
    assert sorted((list_id, action, sorted(ids)) for list_id, action, ids in hubspot.memberships) == [
        (LIST, "add", [hubspot.record_ids["new@example.com"]]), (LIST, "remove", sorted([kept["10"], kept["11"], kept["12"]]))
    ]  # the ids the state kept
    assert hubspot.members(LIST) == set(expected(con))
    assert "user10@example.com" in hubspot.contacts and hubspot.contacts["user3@example.com"]["firstname"] == "Name 3"
    assert not {"10", "11", "12"} & set(kept_ids(con))
    assert sync(con, hubspot, client, spec("add_remove")).sent == 0


def test_a_remove_without_a_kept_record_id_fails_clearly(con: duckdb.DuckDBPyConnection, hubspot: FakeHubSpot, client: httpx.Client) -> None:
    con.execute("delete from buyers where id > 100")
    sync(con, hubspot, client, spec("add_remove"))
    con.execute("update corral_sync.records set destination_id = null where record_key = '7'")
    con.execute("delete from buyers where id in (7, 8)")
    result = sync(con, hubspot, client, spec("add_remove"))
    assert (result.status, result.succeeded, result.failed) == ("failed", 1, 1)
    assert result.errors == [f"remove 7: no HubSpot record id is kept for this record (was it ever added?), so it cannot be removed from list {LIST}"]
    assert "user7@example.com" in hubspot.members(LIST) and "user8@example.com" not in hubspot.members(LIST)


def test_a_missing_list_is_reported(con: duckdb.DuckDBPyConnection, hubspot: FakeHubSpot, client: httpx.Client) -> None:
    con.execute("delete from buyers where id > 100")
    result = sync(con, hubspot, client, spec("add_remove", settings={"list_id": "999"}))
    assert (result.status, result.failed) == ("failed", 100)
    assert "list 999 add: HTTP 404: OBJECT_NOT_FOUND: List 999 does not exist" in result.errors[0]


def test_a_429_storm_from_a_lower_real_limit_ends_with_everything_delivered(con: duckdb.DuckDBPyConnection, hubspot: FakeHubSpot,
                                                                              client: httpx.Client) -> None:
    con.execute("insert into buyers select i, 'user' || i || '@example.com', null, 0, false, date '2026-01-01', timestamp '2026-10-01'"
                " from range(1001, 2501) t(i)")
    hubspot.limit = 20  # per 10 s, while the sync is told 190: 25 requests cannot all pass in one window
    patient = EngineOptions(retry=RetryPolicy(attempts=20, base_seconds=0.05, cap_seconds=1.0), seed=1)
    result = sync(con, hubspot, client, options=patient)
    assert (result.status, result.succeeded, result.failed) == ("success", 2500, 0)
    assert hubspot.throttled > 0 and result.requests_retried == hubspot.throttled
    assert hubspot.statuses[200] == 25 and hubspot.statuses[400] == 0 and hubspot.largest_batch == 100
    assert hubspot.contacts == expected(con)


def test_throttling_errors_and_timeouts_are_retried(con: duckdb.DuckDBPyConnection, hubspot: FakeHubSpot, client: httpx.Client) -> None:
    hubspot.script.extend([Scripted(503, body="upstream"), Scripted(502), Scripted(200, stall_seconds=2.5)])  # past the 2 s timeout
    result = sync(con, hubspot, client)
    assert (result.status, result.succeeded, result.requests_retried) == ("success", 1000, 3)
    assert hubspot.contacts == expected(con)


@pytest.mark.parametrize(("retry_after", "wait"), [(None, 1.0), ("3", 3.0)])
def test_a_429_asks_every_worker_to_pause(retry_after: str | None, wait: float, hubspot: FakeHubSpot, client: httpx.Client) -> None:
    hubspot.limit, hubspot.retry_after = 1, retry_after
    destination = HubSpotDestination(env(hubspot), client)
    destination.check(spec())
    destination.open(spec(), pa.schema([]))
    batch = pa.RecordBatch.from_pylist([{"corral_id": 1, "email": "a@example.com"}])
    assert destination.send(batch, "corral_id", "upsert")[0].ok
    with pytest.raises(RetryableError, match="HTTP 429: TEN_SECONDLY_ROLLING: You have reached your ten_secondly_rolling limit") as raised:
        destination.send(batch, "corral_id", "upsert")
    assert raised.value.retry_after == wait


def test_a_wrong_token_stops_the_sync_with_hubspots_message(con: duckdb.DuckDBPyConnection, hubspot: FakeHubSpot, client: httpx.Client) -> None:
    result = sync(con, hubspot, client, environment=env(hubspot, HUBSPOT_ACCESS_TOKEN="pat-na1-revoked"))
    assert result.status == "failed" and result.succeeded == 0
    assert hubspot.requests <= HubSpotDestination.capabilities.max_concurrency, "no request after the first refusal is answered"
    assert result.failed == 100 * hubspot.requests and result.sent == result.failed, "batches never sent stay pending"
    assert "stopped: hubspot contacts batch upsert: HTTP 401: INVALID_AUTHENTICATION: Authentication credentials not found" in result.errors[0]
    assert hubspot.contacts == {}


@pytest.mark.parametrize(
    ("sync_spec", "environment", "message"),
    [
        (spec(), {}, "set the environment variable HUBSPOT_ACCESS_TOKEN"),
        (spec("add_remove", settings={}), None, "mode add_remove needs settings.list_id"),
        (spec(mapping={"id": "corral_id", "email": "work_email"}), None, "map a column to the HubSpot field 'email'"),
        (spec("mirror"), None, "destination 'hubspot' does not support mode 'mirror'"),
        (spec(), {"HUBSPOT_REQUESTS_PER_10S": "lots"}, "HUBSPOT_REQUESTS_PER_10S must be a whole number"),
    ],
    ids=["no-token", "no-list-id", "no-email", "mode", "limit"],
)
def test_configuration_errors_fail_before_sending(sync_spec: SyncSpec, environment: dict[str, str] | None, message: str,
                                                  con: duckdb.DuckDBPyConnection, hubspot: FakeHubSpot, client: httpx.Client) -> None:
    variables = {} if environment == {} else env(hubspot, **(environment or {}))
    with pytest.raises(SyncConfigError, match=f"^sync 'buyers_hubspot': .*{message}"):
        run_sync(con, sync_spec, make_destination("hubspot", variables, client), options=FAST)
    assert hubspot.requests == 0


@pytest.mark.parametrize("limit", [10, 20, 100, 190, 2000])
@pytest.mark.parametrize(("mode", "per_send"), [("upsert", 1), ("add_remove", 2)])
def test_pacing_keeps_every_rolling_window_under_the_limit(limit: int, mode: str, per_send: int) -> None:
    with httpx.Client() as client:
        destination = HubSpotDestination({"HUBSPOT_ACCESS_TOKEN": TOKEN, "HUBSPOT_REQUESTS_PER_10S": str(limit)}, client)
        destination.check(spec(mode))
    caps = destination.capabilities
    assert caps.requests_per_second and caps.burst and (caps.batch_size, caps.max_concurrency) == (100, 4)
    assert per_send * (caps.burst + 10 * caps.requests_per_second) <= limit  # the most a token bucket lets through in 10 s
    assert caps.requests_per_second * per_send >= 0.8 * limit / 10  # and not much slower than the limit
    if (limit, mode) == (190, "upsert"):
        assert (caps.requests_per_second, caps.burst) == (pytest.approx(18.05), 5.0)
    assert HubSpotDestination.capabilities.requests_per_second == pytest.approx(18.05)  # the class default is untouched
