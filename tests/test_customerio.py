"""The Customer.io destination through the engine, against a strict fake Track API on a real
port: people identified by id (or email) with their attributes, unchanged re-syncs send
nothing, 207 partial failures attributed by batch_index and retried, deletions (mirror),
manual segment membership at most 1,000 ids a call, requests packed under 500 KB, every second
under the rate limit, 429s and 5xx retried, 401 stops the sync, configuration errors before
anything is sent."""

from __future__ import annotations

import base64
import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import duckdb
import httpx
import pyarrow as pa
import pytest
from fakes.customerio import API_KEY, SITE_ID, FakeCustomerIo
from fakes.server import Scripted, serve_http

from sync_testing import FAST

from reverse_etl.destinations import make_destination
from reverse_etl.destinations.base import RetryableError
from reverse_etl.destinations.customerio import CustomerIoDestination
from reverse_etl.engine import EngineOptions, SyncRunResult, run_sync
from reverse_etl.pacing import RetryPolicy
from reverse_etl.syncs import SyncConfigError, SyncSpec

SEGMENT = "42"
MAPPING = {"id": "id", "email": "email", "first_name": "first_name", "spend": "spend", "vip": "vip", "signed_up": "signed_up",
           "last_seen": "last_seen_at"}


def spec(mode: str = "upsert", **overrides: Any) -> SyncSpec:
    values: dict[str, Any] = {
        "name": "people_customerio", "model": "people", "relation": "main.people", "destination": "customerio", "mode": mode,
        "primary_key": "id", "mapping": MAPPING, "settings": {"segment_id": SEGMENT} if mode == "add_remove" else {},
    }
    return SyncSpec(**{**values, **overrides})


@pytest.fixture
def con(tmp_path: Path) -> Iterator[duckdb.DuckDBPyConnection]:
    con = duckdb.connect(str(tmp_path / "warehouse.duckdb"))
    con.execute(
        "create table people as select i as id, 'user' || i || '@example.com' as email,"
        " case when i % 10 = 0 then null else 'Name ' || i end as first_name, i * 1.5 as spend, i % 2 = 0 as vip,"
        " date '2026-01-01' + i::int as signed_up, timestamp '2026-10-01 12:00:00' + to_seconds(i) as last_seen"
        " from range(1, 1001) t(i)"
    )
    yield con
    con.close()


@pytest.fixture(scope="module")
def port() -> Iterator[tuple[str, list[FakeCustomerIo]]]:
    """One local server for the module (stopping one takes half a second), answering as the
    current test's fake."""
    fakes: list[FakeCustomerIo] = []
    with serve_http(lambda *request: fakes[-1].handle(*request)) as url:
        yield url, fakes


@pytest.fixture
def cio(port: tuple[str, list[FakeCustomerIo]]) -> FakeCustomerIo:
    fake = FakeCustomerIo(segments={SEGMENT: set()}, url=port[0])
    port[1].append(fake)
    return fake


def env(fake: FakeCustomerIo, **extra: str) -> dict[str, str]:
    return {"CUSTOMERIO_SITE_ID": SITE_ID, "CUSTOMERIO_API_KEY": API_KEY, "CUSTOMERIO_TRACK_URL": fake.url,
            "CUSTOMERIO_REQUESTS_PER_SECOND": "1000", **extra}


def sync(con: duckdb.DuckDBPyConnection, fake: FakeCustomerIo, client: httpx.Client, sync_spec: SyncSpec | None = None,
         environment: dict[str, str] | None = None, **kwargs: Any) -> SyncRunResult:
    destination = make_destination("customerio", environment or env(fake), client)
    return run_sync(con, sync_spec or spec(), destination, options=kwargs.pop("options", FAST), **kwargs)


def held(fake: FakeCustomerIo) -> dict[str, dict[str, Any]]:
    """People by id: their attributes (email included)."""
    return {p["id"]: dict(p["attributes"]) for p in fake.people.values()}


def expected(con: duckdb.DuckDBPyConnection) -> dict[str, dict[str, Any]]:
    """The mart as Customer.io should hold it: null attributes absent, dates ISO, `*_at` Unix seconds."""
    rows = con.execute("select cast(id as varchar), email, first_name, spend, vip, cast(signed_up as varchar),"
                       " epoch(last_seen)::bigint from people").fetchall()
    names = ["email", "first_name", "spend", "vip", "signed_up", "last_seen_at"]
    return {row[0]: {k: v for k, v in zip(names, row[1:], strict=True) if v is not None} for row in rows}


def states(con: duckdb.DuckDBPyConnection) -> dict[str, tuple[str, str | None, str | None]]:
    return {k: (s, d, e) for k, s, d, e in con.execute("select record_key, status, destination_id, last_error from corral_sync.records").fetchall()}


def test_first_sync_identifies_everyone_and_an_unchanged_resync_sends_nothing(con: duckdb.DuckDBPyConnection, cio: FakeCustomerIo,
                                                                                client: httpx.Client) -> None:
    first = sync(con, cio, client)
    assert (first.status, first.changes, first.succeeded, first.failed) == ("success", {"added": 1000}, 1000, 0)
    assert held(cio) == expected(con)
    assert held(cio)["7"] == {"email": "user7@example.com", "first_name": "Name 7", "spend": 10.5, "vip": False,
                              "signed_up": "2026-01-08", "last_seen_at": 1790856007}
    assert "first_name" not in held(cio)["10"]  # null: not set
    assert (cio.requests, cio.statuses, cio.batches) == (5, {200: 5}, [200] * 5)
    assert {k: d for k, (_, d, _) in states(con).items()} == {str(i): str(i) for i in range(1, 1001)}  # the id, kept
    second = sync(con, cio, client)
    assert (second.status, second.changes, second.planned, second.sent) == ("success", {"unchanged": 1000}, 0, 0)
    assert cio.requests == 5 and not cio.over_limit


def test_changes_reach_customerio_and_a_null_removes_the_attribute(con: duckdb.DuckDBPyConnection, cio: FakeCustomerIo,
                                                                    client: httpx.Client) -> None:
    sync(con, cio, client)
    con.execute("update people set first_name = 'Changed' where id in (3, 4)")
    con.execute("update people set first_name = null where id = 5")
    con.execute("delete from people where id = 9")  # upsert forgets it; Customer.io keeps the person
    con.execute("insert into people values (5000, 'new@example.com', 'New', 1.0, true, date '2026-05-01', timestamp '2026-10-02 00:00:00')")
    result = sync(con, cio, client)
    assert (result.status, result.changes) == ("success", {"added": 1, "changed": 3, "removed": 1, "unchanged": 996})
    assert cio.batches[-1] == 4
    assert "first_name" not in held(cio)["5"] and held(cio)["3"]["first_name"] == "Changed"
    assert {k: v for k, v in held(cio).items() if k != "9"} == expected(con) and "9" in held(cio)


def test_a_207_fails_exactly_the_refused_people_and_they_are_retried_next_run(con: duckdb.DuckDBPyConnection, cio: FakeCustomerIo,
                                                                              client: httpx.Client) -> None:
    con.execute("update people set first_name = repeat('x', 1200) where id % 100 = 7")  # over Customer.io's 1,000-byte value limit
    broken = {str(i) for i in range(7, 1001, 100)}
    first = sync(con, cio, client)
    assert (first.status, first.succeeded, first.failed) == ("failed", 990, 10)
    assert cio.statuses == {207: 5}
    records = states(con)
    assert {k for k, (s, _, _) in records.items() if s == "failed"} == broken
    assert records["107"][2] == "invalid: attributes.first_name: attribute values are at most 1000 bytes"
    assert set(held(cio)) == {str(i) for i in range(1, 1001)} - broken
    again = sync(con, cio, client)
    assert (again.planned, again.failed, again.succeeded, cio.batches[-1]) == (10, 10, 0, 10)  # only those are sent again
    con.execute("update people set first_name = 'Fixed' where id % 100 = 7")
    fixed = sync(con, cio, client)
    assert (fixed.status, fixed.succeeded) == ("success", 10)
    assert held(cio) == expected(con)


def test_mirror_deletes_the_people_who_left(con: duckdb.DuckDBPyConnection, cio: FakeCustomerIo, client: httpx.Client) -> None:
    sync(con, cio, client, spec("mirror"))
    con.execute("delete from people where id in (10, 11, 12)")
    con.execute("update people set first_name = 'Changed' where id = 3")
    result = sync(con, cio, client, spec("mirror"))
    assert (result.status, result.operations) == ("success", {"upsert": 1, "delete": 3})
    assert held(cio) == expected(con)
    assert not {"10", "11", "12"} & set(states(con))


def test_mirror_by_email_deletes_by_the_email_kept_from_before(con: duckdb.DuckDBPyConnection, cio: FakeCustomerIo,
                                                               client: httpx.Client) -> None:
    by_email = spec("mirror", mapping={k: v for k, v in MAPPING.items() if k != "id"} | {"id": "corral_id"},
                    settings={"identifier": "email"})
    con.execute("delete from people where id > 50")
    con.execute("update people set email = upper(email) where id = 2")
    first = sync(con, cio, client, by_email)
    assert first.status == "success" and len(cio.people) == 50
    assert cio.person("email", "user2@example.com")["email"] == "USER2@EXAMPLE.COM"  # type: ignore[index]
    assert states(con)["7"][1] == "user7@example.com"
    con.execute("delete from people where id in (2, 7)")  # the removal carries only the primary key; the email comes from the state
    result = sync(con, cio, client, by_email)
    assert (result.status, result.operations) == ("success", {"delete": 2})
    assert cio.find("email", "user7@example.com") is None and cio.find("email", "user2@example.com") is None and len(cio.people) == 48


def test_one_entry_per_person_and_no_identifier_fail_per_record(con: duckdb.DuckDBPyConnection, cio: FakeCustomerIo,
                                                                client: httpx.Client) -> None:
    by_email = spec(mapping={k: v for k, v in MAPPING.items() if k != "id"} | {"id": "corral_id"}, settings={"identifier": "email"})
    con.execute("delete from people where id > 20")
    con.execute("update people set email = 'USER1@example.com' where id = 2")
    con.execute("update people set email = null where id = 3")
    result = sync(con, cio, client, by_email)
    assert (result.succeeded, result.failed, cio.statuses) == (18, 2, {200: 1})
    errors = {k: e for k, (s, _, e) in states(con).items() if s == "failed"}
    first, second = ("1", "2") if "2" in errors else ("2", "1")  # whichever of the two comes later in the batch fails
    shown = {"1": "user1@example.com", "2": "USER1@example.com"}
    assert errors == {second: f"email '{shown[second]}' is also on record {first} of this batch; one entry per person",
                      "3": "no email: Customer.io people are identified by it"}


def test_large_records_are_packed_under_500kb_and_one_over_32kb_fails_alone(con: duckdb.DuckDBPyConnection, cio: FakeCustomerIo,
                                                                           client: httpx.Client) -> None:
    con.execute("delete from people where id > 200")
    wide = {"id": "id", "a": "a", "b": "b", "c": "c", "d": "d", "e": "e"}
    con.execute("create or replace table wide as select id, repeat('a', 900) as a, repeat('b', 900) as b, repeat('c', 900) as c,"
                " repeat('d', 900) as d, repeat('e', 900) as e from people")
    con.execute("update wide set a = repeat('z', 40000) where id = 5")  # one entry over 32 KB
    result = sync(con, cio, client, spec(relation="main.wide", model="wide", mapping=wide))
    assert (result.succeeded, result.failed) == (199, 1)
    assert states(con)["5"][2] == "the Customer.io entry for this record is 43,712 bytes; the limit is 32,000"
    assert cio.batches == [108, 91] and not cio.over_limit  # 199 entries of ~4.6 KB: two requests under 500 KB
    assert cio.find("id", "5") is None and len(cio.people) == 199


def test_the_fake_refuses_what_customerio_refuses(cio: FakeCustomerIo, client: httpx.Client) -> None:
    auth = {"authorization": "Basic " + base64.b64encode(f"{SITE_ID}:{API_KEY}".encode()).decode()}

    def post(path: str, body: Any, headers: dict[str, str] = auth) -> httpx.Response:
        return client.post(cio.url + path, content=json.dumps(body), headers=headers)

    person = {"type": "person", "identifiers": {"id": "1"}, "action": "identify", "attributes": {"email": "a@example.com"}}
    big = post("/api/v2/batch", {"batch": [person] * 6000})
    assert big.status_code == 400 and big.json()["errors"][0]["reason"] == "too_large"
    mixed = post("/api/v2/batch", {"batch": [person, {**person, "identifiers": {"id": "2", "email": "b@example.com"}},
                                             {**person, "identifiers": {"id": 3}}, {**person, "attributes": {"k": "x" * 40000}}]})
    assert mixed.status_code == 207
    assert [(e["batch_index"], e["reason"], e["field"]) for e in mixed.json()["errors"]] == \
        [(1, "invalid", "identifiers"), (2, "invalid", "identifiers.id"), (3, "too_large", "")]
    assert post("/api/v1/segments/42/add_customers", {"ids": [str(i) for i in range(1001)]}).status_code == 400
    assert post("/api/v1/segments/42/add_customers", {"ids": ["1"] * 1000}).status_code == 200
    assert post("/api/v1/segments/43/add_customers", {"ids": ["1"]}).status_code == 404
    assert post("/api/v1/segments/42/add_customers", {"ids": ["1"]}, headers={"authorization": "Basic d3Jvbmc6d3Jvbmc="}).status_code == 401
    assert cio.members(SEGMENT) == {"1"}
    assert cio.over_limit == ["a batch request of 672,011 bytes (at most 500,000)", "a batch entry of 40,084 bytes (at most 32,000)",
                              "a segment add of 1001 ids (at most 1000)"]


def test_add_remove_keeps_the_segment_equal_to_the_audience_1000_ids_a_call(con: duckdb.DuckDBPyConnection, cio: FakeCustomerIo,
                                                                            client: httpx.Client) -> None:
    con.execute("insert into people select i, 'user' || i || '@example.com', null, 0, false, date '2026-01-01', timestamp '2026-10-01'"
                " from range(1001, 2501) t(i)")
    first = sync(con, cio, client, spec("add_remove"))
    assert (first.status, first.succeeded) == ("success", 2500)
    assert cio.members(SEGMENT) == {str(i) for i in range(1, 2501)}
    assert sorted(len(ids) for _, _, _, ids in cio.segment_calls) == [500, 1000, 1000]  # identify, then add, per batch of 1,000
    assert sorted(cio.batches) == [500, 1000, 1000] and {t for _, _, t, _ in cio.segment_calls} == {"id"}
    cio.segment_calls.clear()
    con.execute("delete from people where id in (10, 11, 12)")
    con.execute("update people set first_name = 'Changed' where id = 3")  # still a member: nothing to send
    result = sync(con, cio, client, spec("add_remove"))
    assert (result.status, result.operations) == ("success", {"remove": 3, "baseline": 1})
    assert [(s, a, t, sorted(ids)) for s, a, t, ids in cio.segment_calls] == [(SEGMENT, "remove", "id", ["10", "11", "12"])]
    assert cio.members(SEGMENT) == {str(i) for i in range(1, 2501)} - {"10", "11", "12"}
    assert cio.find("id", "10") is not None and not cio.over_limit  # left the segment, still a person


def test_a_missing_segment_is_reported(con: duckdb.DuckDBPyConnection, cio: FakeCustomerIo, client: httpx.Client) -> None:
    con.execute("delete from people where id > 100")
    result = sync(con, cio, client, spec("add_remove", settings={"segment_id": "999"}))
    assert (result.status, result.failed) == ("failed", 100)
    assert "segment 999 add: HTTP 404: segment 999 not found" in result.errors[0]


def test_pacing_keeps_every_second_under_the_limit(con: duckdb.DuckDBPyConnection, cio: FakeCustomerIo, client: httpx.Client) -> None:
    con.execute("insert into people select i, 'user' || i || '@example.com', null, 0, false, date '2026-01-01', timestamp '2026-10-01'"
                " from range(1001, 5001) t(i)")
    cio.limit = 8  # per rolling second, as the sync is told: 25 requests
    result = sync(con, cio, client, environment=env(cio, CUSTOMERIO_REQUESTS_PER_SECOND="8"))
    assert (result.status, result.succeeded, cio.throttled, cio.over_limit) == ("success", 5000, 0, [])
    assert 2.5 < result.duration_seconds < 10  # 1 burst, then 6.65 a second: about 3.6 s


def test_a_429_storm_from_a_lower_real_limit_ends_with_everything_delivered(con: duckdb.DuckDBPyConnection, cio: FakeCustomerIo,
                                                                              client: httpx.Client) -> None:
    cio.limit = 2  # per second, while the sync is told 1,000
    patient = EngineOptions(retry=RetryPolicy(attempts=20, base_seconds=0.05, cap_seconds=0.5), seed=1)
    result = sync(con, cio, client, options=patient)
    assert (result.status, result.succeeded, result.failed) == ("success", 1000, 0)
    assert cio.throttled > 0 and result.requests_retried == cio.throttled and cio.statuses[200] == 5
    assert held(cio) == expected(con)


def test_server_errors_and_timeouts_are_retried(con: duckdb.DuckDBPyConnection, cio: FakeCustomerIo, client: httpx.Client) -> None:
    cio.script.extend([Scripted(503, body="upstream"), Scripted(502), Scripted(200, body="{}", stall_seconds=2.5)])  # past the 2 s timeout
    result = sync(con, cio, client)
    assert (result.status, result.succeeded, result.requests_retried) == ("success", 1000, 3)
    assert held(cio) == expected(con)


@pytest.mark.parametrize(("retry_after", "wait"), [(None, 1.0), ("3", 3.0)])
def test_a_429_asks_every_worker_to_pause(retry_after: str | None, wait: float, cio: FakeCustomerIo, client: httpx.Client) -> None:
    cio.limit, cio.retry_after = 1, retry_after
    destination = CustomerIoDestination(env(cio), client)
    destination.check(spec())
    destination.open(spec(), pa.schema([]))
    batch = pa.RecordBatch.from_pylist([{"id": 1, "email": "a@example.com"}])
    assert destination.send(batch, "id", "upsert")[0].ok
    with pytest.raises(RetryableError, match="customerio identify batch: HTTP 429: Too many requests") as raised:
        destination.send(batch, "id", "upsert")
    assert raised.value.retry_after == wait
    assert destination.bucket.tokens < -0.9 * wait * destination.bucket.rate  # the shared bucket waits before the next request


@pytest.mark.parametrize("status", [401, 403])
def test_refused_credentials_stop_the_sync(status: int, con: duckdb.DuckDBPyConnection, cio: FakeCustomerIo, client: httpx.Client) -> None:
    cio.deny_status = status
    result = sync(con, cio, client)
    assert result.status == "failed" and result.succeeded == 0 and result.requests_retried == 0
    assert cio.requests <= 8  # one per worker at most, then the engine stops
    assert result.errors[0].startswith(f"stopped: customerio identify batch: HTTP {status}: ")
    assert cio.people == {}


@pytest.mark.parametrize(
    ("sync_spec", "environment", "message"),
    [
        (spec(), {}, "set the environment variable CUSTOMERIO_SITE_ID"),
        (spec(), {"CUSTOMERIO_API_KEY": ""}, "set the environment variable CUSTOMERIO_API_KEY"),
        (spec("add_remove", settings={}), None, "mode add_remove needs settings.segment_id"),
        (spec("add_remove", settings={"segment_id": "42", "identifier": "email"}), None, "mode add_remove needs settings.identifier 'id'"),
        (spec(settings={"identifier": "phone"}), None, "settings.identifier must be 'id' or 'email'"),
        (spec(mapping={"id": "customer_id", "email": "email"}), None, "map a column to the Customer.io field 'id'"),
        (spec("insert"), None, "destination 'customerio' does not support mode 'insert'"),
        (spec(), {"CUSTOMERIO_REQUESTS_PER_SECOND": "fast"}, "CUSTOMERIO_REQUESTS_PER_SECOND must be a number"),
        (spec(), {"CUSTOMERIO_REQUESTS_PER_SECOND": "1"}, "CUSTOMERIO_REQUESTS_PER_SECOND must be a number of requests, at least 2"),
    ],
    ids=["no-site", "no-key", "no-segment", "segment-by-email", "identifier", "no-id-field", "mode", "limit", "limit-low"],
)
def test_configuration_errors_fail_before_sending(sync_spec: SyncSpec, environment: dict[str, str] | None, message: str,
                                                  con: duckdb.DuckDBPyConnection, cio: FakeCustomerIo, client: httpx.Client) -> None:
    variables = {} if environment == {} else env(cio, **(environment or {}))
    with pytest.raises(SyncConfigError, match=f"^sync 'people_customerio': .*{message}"):
        run_sync(con, sync_spec, make_destination("customerio", variables, client), options=FAST)
    assert cio.requests == 0


@pytest.mark.parametrize("limit", [2, 5, 10, 100, 1000])
def test_the_pace_stays_under_the_limit_in_any_second(limit: int) -> None:
    with httpx.Client() as client:
        destination = CustomerIoDestination({"CUSTOMERIO_SITE_ID": SITE_ID, "CUSTOMERIO_API_KEY": API_KEY,
                                             "CUSTOMERIO_REQUESTS_PER_SECOND": str(limit)}, client)
        destination.check(spec())
    assert destination.burst + destination.rate < limit  # the most a token bucket lets through in one second, with slack
    assert destination.rate >= (0.75 * limit if limit >= 10 else 0.45 * limit)  # and not much slower than the limit
    assert (CustomerIoDestination.capabilities.batch_size, destination.capabilities.requests_per_second) == (200, None)
