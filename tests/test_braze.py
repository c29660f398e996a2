"""The Braze destination through the engine, against a strict fake Braze on a real port: users
tracked by external id with typed attributes, unchanged re-syncs send nothing, per-object errors
inside a 2xx attributed to the right records and retried, never more than 75 objects a request,
mirror deletes by 50, membership as a boolean or array attribute and as a subscription group
(removals by the kept identifier), the X-RateLimit headers honoured (a 0 remaining waits for the
reset without asking, a 429 waits for the reset), 5xx and timeouts retried, a refused key stops
the sync, and configuration errors before anything is sent."""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import duckdb
import httpx
import pyarrow as pa
import pytest
from fakes.braze import API_KEY, DELETE, SUBSCRIBE, TRACK, FakeBraze, serve
from fakes.server import Scripted

from sync_testing import FAST

from reverse_etl.destinations import make_destination
from reverse_etl.destinations.base import AuthorizationFailed, RetryableError
from reverse_etl.destinations.braze import BrazeDestination
from reverse_etl.engine import EngineOptions, SyncRunResult, run_sync
from reverse_etl.pacing import RetryPolicy
from reverse_etl.syncs import SyncConfigError, SyncSpec

GROUP = "sg-newsletter"
MAPPING = {"id": "external_id", "email": "email", "first_name": "first_name", "spend": "total_spend", "vip": "is_vip",
           "signed_up": "signup_date", "last_seen": "last_seen_at"}
AUDIENCE = {"membership": "attribute", "attribute": "in_audience"}


def spec(mode: str = "upsert", **overrides: Any) -> SyncSpec:
    values: dict[str, Any] = {
        "name": "buyers_braze", "model": "buyers", "relation": "main.buyers", "destination": "braze", "mode": mode,
        "primary_key": "id", "mapping": MAPPING, "settings": AUDIENCE if mode == "add_remove" else {},
    }
    return SyncSpec(**{**values, **overrides})


@pytest.fixture
def con(tmp_path: Path) -> Iterator[duckdb.DuckDBPyConnection]:
    con = duckdb.connect(str(tmp_path / "warehouse.duckdb"))
    con.execute(
        "create table buyers as select i as id, 'user' || i || '@example.com' as email,"
        " case when i % 10 = 0 then null else 'Name ' || i end as first_name, i * 1.5 as spend, i % 2 = 0 as vip,"
        " date '2026-01-01' + i::int as signed_up, timestamp '2026-10-01 12:00:00' + to_seconds(i) as last_seen"
        " from range(1, 301) t(i)"
    )
    yield con
    con.close()


@pytest.fixture
def braze() -> Iterator[FakeBraze]:
    with serve(FakeBraze(groups={GROUP: set()})) as fake:
        yield fake


def env(fake: FakeBraze, **extra: str) -> dict[str, str]:
    return {"BRAZE_API_KEY": API_KEY, "BRAZE_REST_ENDPOINT": fake.url, **extra}


def sync(con: duckdb.DuckDBPyConnection, fake: FakeBraze, client: httpx.Client, sync_spec: SyncSpec | None = None,
         environment: dict[str, str] | None = None, **kwargs: Any) -> SyncRunResult:
    destination = make_destination("braze", environment or env(fake), client)
    return run_sync(con, sync_spec or spec(), destination, options=kwargs.pop("options", FAST), **kwargs)


def expected(con: duckdb.DuckDBPyConnection) -> dict[str, dict[str, Any]]:
    """The mart as Braze should hold it: typed values, times ISO 8601 UTC, nulls unset."""
    rows = con.execute("select id, email, first_name, spend, vip, signed_up, last_seen from buyers").fetchall()
    return {str(r[0]): {k: v for k, v in {
        "braze_id": ..., "external_id": str(r[0]), "email": r[1], "first_name": r[2], "total_spend": float(r[3]), "is_vip": r[4],
        "signup_date": f"{r[5].isoformat()}T00:00:00.000Z", "last_seen_at": r[6].isoformat(timespec="milliseconds") + "Z"}.items()
        if v is not None} for r in rows}


def held(fake: FakeBraze, without: tuple[str, ...] = ()) -> dict[str, dict[str, Any]]:
    return {k: {**{f: v for f, v in user.items() if f not in without}, "braze_id": ...} for k, user in fake.records().items()}


def failed_records(con: duckdb.DuckDBPyConnection) -> dict[str, str]:
    return dict(con.execute("select record_key, last_error from corral_sync.records where status <> 'synced'").fetchall())


def test_first_sync_tracks_every_user_typed_and_an_unchanged_resync_sends_nothing(con: duckdb.DuckDBPyConnection, braze: FakeBraze,
                                                                                   client: httpx.Client) -> None:
    first = sync(con, braze, client)
    assert (first.status, first.changes, first.succeeded, first.failed) == ("success", {"added": 300}, 300, 0)
    assert held(braze) == expected(con)
    assert braze.records()["7"] | {"braze_id": ...} == {
        "braze_id": ..., "external_id": "7", "email": "user7@example.com", "first_name": "Name 7", "total_spend": 10.5,
        "is_vip": False, "signup_date": "2026-01-08T00:00:00.000Z", "last_seen_at": "2026-10-01T12:00:07.000Z"}
    assert (braze.requests, braze.statuses, braze.largest_batch) == (4, {201: 4}, 75)
    assert dict(con.execute("select record_key, destination_id from corral_sync.records").fetchall()) == {str(i): str(i) for i in range(1, 301)}
    second = sync(con, braze, client)
    assert (second.status, second.changes, second.planned, second.sent) == ("success", {"unchanged": 300}, 0, 0)
    assert braze.requests == 4


def test_changes_reach_braze_and_a_null_unsets_the_attribute(con: duckdb.DuckDBPyConnection, braze: FakeBraze, client: httpx.Client) -> None:
    sync(con, braze, client)
    con.execute("update buyers set first_name = 'Changed' where id in (3, 4)")
    con.execute("update buyers set first_name = null where id = 5")
    con.execute("delete from buyers where id = 10")  # upsert forgets it; Braze keeps the user
    result = sync(con, braze, client)
    assert result.changes == {"changed": 3, "removed": 1, "unchanged": 296}
    assert sorted(braze.bodies[-1][1]["attributes"], key=lambda a: a["external_id"]) == [
        {**{k: v for k, v in expected(con)[str(i)].items() if k != "braze_id"}, "first_name": None if i == 5 else "Changed"}
        for i in (3, 4, 5)]
    assert "first_name" not in braze.records()["5"] and braze.records()["3"]["first_name"] == "Changed"
    assert "10" in braze.records()


def test_errors_inside_a_2xx_fail_exactly_the_refused_users(con: duckdb.DuckDBPyConnection, braze: FakeBraze, client: httpx.Client) -> None:
    con.execute("update buyers set email = 'broken-' || id where id % 100 = 7")  # the fake refuses emails without @
    braze.refuse["150"] = "provided external_id is blacklisted and disallowed"
    first = sync(con, braze, client)
    assert (first.status, first.succeeded, first.failed) == ("failed", 296, 4)
    assert set(braze.statuses) == {201}  # every request was a success, three of them with errors inside
    failed = failed_records(con)
    assert failed == {"7": "Braze refused this user: 'email' is not a valid email address: 'broken-7'",
                      "107": "Braze refused this user: 'email' is not a valid email address: 'broken-107'",
                      "207": "Braze refused this user: 'email' is not a valid email address: 'broken-207'",
                      "150": "Braze refused this user: provided external_id is blacklisted and disallowed"}
    assert not set(failed) & set(braze.records())
    again = sync(con, braze, client)
    assert (again.planned, again.failed) == (4, 4)  # only the failed ones are sent again
    braze.refuse.clear()
    con.execute("update buyers set email = 'fixed' || id || '@example.com' where id % 100 = 7")
    fixed = sync(con, braze, client)
    assert (fixed.status, fixed.planned, fixed.succeeded) == ("success", 4, 4)
    assert held(braze) == expected(con)


def test_errors_that_name_no_user_confirm_none_of_the_request(con: duckdb.DuckDBPyConnection, braze: FakeBraze, client: httpx.Client) -> None:
    con.execute("delete from buyers where id > 75")
    braze.script.append(Scripted(201, {"content-type": "application/json"}, '{"message":"success","errors":["something went wrong"]}'))
    result = sync(con, braze, client)
    assert (result.status, result.failed) == ("failed", 75)
    assert set(failed_records(con).values()) == {"Braze answered errors that name no user, so this one is not confirmed: something went wrong"}


def test_the_fake_refuses_what_braze_refuses(braze: FakeBraze, client: httpx.Client) -> None:
    def post(path: str, payload: Any, key: str = API_KEY) -> httpx.Response:
        return client.post(braze.url + path, json=payload, headers={"authorization": f"Bearer {key}"})

    over = post(TRACK, {"attributes": [{"external_id": str(i)} for i in range(76)]})
    assert (over.status_code, over.json()["message"]) == (400, "Max Input Length Exceeded")
    assert post(DELETE, {"external_ids": [str(i) for i in range(51)]}).status_code == 400
    assert post(DELETE, {"external_ids": ["1"], "braze_ids": ["2"]}).status_code == 400  # one kind of id a request
    assert post(SUBSCRIBE, {"subscription_groups": [{"subscription_group_id": "nope", "subscription_state": "subscribed",
                                                     "external_ids": ["1"]}]}).status_code == 400
    assert post(TRACK, {"attributes": [{"external_id": "1"}]}, key="wrong").status_code == 401
    ok = post(TRACK, {"attributes": [{"external_id": "1", "a": 1}, {"a": 2}, {"external_id": 3}]})
    assert ok.status_code == 201 and ok.headers["X-RateLimit-Limit"] == "3000" and ok.headers["X-RateLimit-Remaining"] == "2998"
    assert ok.json() == {"message": "success", "attributes_processed": 1, "errors": [
        {"type": "'external_id', 'braze_id', 'user_alias', 'email' or 'phone' is required", "input_array": "attributes", "index": 1},
        {"type": "'external_id' must be a string", "input_array": "attributes", "index": 2}]}
    assert braze.violations == ["/users/track: 76 attribute objects, over 75", "/users/delete: 51 ids, over 50"]


def test_mirror_deletes_removed_users_fifty_ids_a_request(con: duckdb.DuckDBPyConnection, braze: FakeBraze, client: httpx.Client) -> None:
    sync(con, braze, client, spec("mirror"))
    con.execute("delete from buyers where id between 101 and 180")  # 80 removals: a batch of 75 and one of 5
    con.execute("update buyers set spend = 0 where id = 1")
    result = sync(con, braze, client, spec("mirror"))
    assert (result.status, result.operations) == ("success", {"upsert": 1, "delete": 80})
    deletes = [body["external_ids"] for path, body in braze.bodies if path == DELETE]
    assert sorted(map(len, deletes)) == [5, 25, 50] and sorted(i for ids in deletes for i in ids) == sorted(str(i) for i in range(101, 181))
    assert held(braze) == expected(con)
    assert not braze.violations


def test_add_remove_as_a_boolean_attribute(con: duckdb.DuckDBPyConnection, braze: FakeBraze, client: httpx.Client) -> None:
    first = sync(con, braze, client, spec("add_remove"))
    assert (first.status, first.succeeded) == ("success", 300)
    assert braze.members(AUDIENCE) == set(expected(con))
    assert held(braze, ("in_audience",)) == expected(con)  # an add sends the user's fields too
    con.execute("delete from buyers where id in (10, 11, 12)")
    con.execute("update buyers set first_name = 'Changed' where id = 3")  # still a member: nothing to send
    result = sync(con, braze, client, spec("add_remove"))
    assert (result.status, result.operations) == ("success", {"remove": 3, "baseline": 1})
    assert braze.bodies[-1][0] == TRACK and sorted(braze.bodies[-1][1]["attributes"], key=lambda a: a["external_id"]) == [
        {"external_id": str(i), "in_audience": False, "_update_existing_only": True} for i in (10, 11, 12)]
    assert braze.members(AUDIENCE) == set(expected(con)) and braze.records()["3"]["first_name"] == "Name 3"
    assert {"10", "11", "12"} <= set(braze.records())  # leaving the audience does not delete the user


def test_add_remove_as_an_array_attribute_and_a_gone_user_is_not_created_again(con: duckdb.DuckDBPyConnection, braze: FakeBraze,
                                                                                client: httpx.Client) -> None:
    audience = {"membership": "attribute", "attribute": "audiences", "value": "vip_buyers"}
    con.execute("delete from buyers where id > 20")
    sync(con, braze, client, spec("add_remove", settings=audience))
    assert braze.records()["4"]["audiences"] == ["vip_buyers"] and braze.members(audience) == set(expected(con))
    with braze.lock:
        braze.users = {b: u for b, u in braze.users.items() if u["external_id"] != "5"}  # deleted in Braze meanwhile
    con.execute("delete from buyers where id in (4, 5)")
    result = sync(con, braze, client, spec("add_remove", settings=audience))
    assert (result.status, result.succeeded) == ("success", 2)
    assert {"external_id": "4", "audiences": {"remove": ["vip_buyers"]}, "_update_existing_only": True} in braze.bodies[-1][1]["attributes"]
    assert braze.records()["4"]["audiences"] == [] and "5" not in braze.records()


def test_add_remove_as_a_subscription_group_by_email(con: duckdb.DuckDBPyConnection, braze: FakeBraze, client: httpx.Client) -> None:
    audience = {"membership": "subscription_group", "subscription_group_id": GROUP, "identifier": "email"}
    mapping = {"id": "corral_id", "email": "email", "first_name": "first_name"}
    first = sync(con, braze, client, spec("add_remove", settings=audience, mapping=mapping))
    assert (first.status, first.succeeded) == ("success", 300)
    assert braze.members(audience, "email") == {f"user{i}@example.com" for i in range(1, 301)}
    assert max(len(body["subscription_groups"][0]["emails"]) for path, body in braze.bodies if path == SUBSCRIBE) == 50
    assert sorted(path for path, _ in braze.bodies) == [TRACK] * 6 + [SUBSCRIBE] * 6  # each batch tracked, then subscribed
    con.execute("delete from buyers where id in (10, 11)")  # the removed rows keep only their id: the kept email is used
    result = sync(con, braze, client, spec("add_remove", settings=audience, mapping=mapping))
    assert (result.status, result.succeeded) == ("success", 2)
    path, body = braze.bodies[-1]
    group = body["subscription_groups"][0]
    assert (path, len(body["subscription_groups"]), group["subscription_group_id"], group["subscription_state"]) == (
        SUBSCRIBE, 1, GROUP, "unsubscribed")
    assert sorted(group.pop("emails")) == ["user10@example.com", "user11@example.com"] and set(group) == {"subscription_group_id", "subscription_state"}
    assert braze.members(audience, "email") == {f"user{i}@example.com" for i in range(1, 301)} - {"user10@example.com", "user11@example.com"}


def test_zero_remaining_waits_for_the_reset_without_asking(braze: FakeBraze, client: httpx.Client) -> None:
    braze.track_limit = 2
    destination = BrazeDestination(env(braze), client)
    destination.check(spec())
    destination.open(spec(), pa.schema([]))
    batch = pa.RecordBatch.from_pylist([{"external_id": "1", "email": "a@example.com"}])
    assert destination.send(batch, "external_id", "upsert")[0].ok
    assert destination.send(batch, "external_id", "upsert")[0].ok  # X-RateLimit-Remaining: 0
    with pytest.raises(RetryableError, match="X-RateLimit-Remaining was 0") as raised:
        destination.send(batch, "external_id", "upsert")
    assert braze.requests == 2 and not braze.violations  # nothing asked while the window is full
    assert 0 < raised.value.retry_after <= 4.0  # X-RateLimit-Reset: the epoch second the 3 s window frees


@pytest.mark.parametrize(("headers", "wait"), [({"X-RateLimit-Reset": "+2"}, 2.0), ({"Retry-After": "7", "X-RateLimit-Reset": "+2"}, 7.0),
                                               ({}, 1.0)], ids=["reset", "retry-after", "nothing"])
def test_a_429_waits_for_what_braze_says(headers: dict[str, str], wait: float, braze: FakeBraze, client: httpx.Client) -> None:
    if "X-RateLimit-Reset" in headers:
        headers = headers | {"X-RateLimit-Reset": str(int(time.time()) + 2), "X-RateLimit-Remaining": "0"}
    braze.script.append(Scripted(429, headers, '{"message":"Rate Limited"}'))
    destination = BrazeDestination(env(braze), client)
    destination.check(spec())
    destination.open(spec(), pa.schema([]))
    with pytest.raises(RetryableError, match="HTTP 429: Rate Limited") as raised:
        destination.send(pa.RecordBatch.from_pylist([{"external_id": "1"}]), "external_id", "upsert")
    assert raised.value.retry_after == pytest.approx(wait, abs=1.0)


def test_a_lower_real_limit_ends_with_everything_delivered(con: duckdb.DuckDBPyConnection, braze: FakeBraze, client: httpx.Client) -> None:
    braze.track_limit = 2  # per 3 s, while the sync is told 3,000
    patient = EngineOptions(retry=RetryPolicy(attempts=20, base_seconds=0.05, cap_seconds=1.0), seed=1)
    con.execute("delete from buyers where id > 225")
    result = sync(con, braze, client, options=patient)
    assert (result.status, result.succeeded) == ("success", 225)
    assert braze.statuses[201] == 3 and result.requests_retried >= braze.throttled
    assert held(braze) == expected(con)


def test_5xx_and_timeouts_are_retried(con: duckdb.DuckDBPyConnection, braze: FakeBraze, client: httpx.Client) -> None:
    braze.script.extend([Scripted(503, body="upstream"), Scripted(500), Scripted(201, stall_seconds=2.5)])  # past the 2 s timeout
    result = sync(con, braze, client)
    assert (result.status, result.succeeded, result.requests_retried) == ("success", 300, 3)
    assert held(braze) == expected(con)


def test_a_refused_key_stops_the_sync_and_later_sends_ask_nothing(con: duckdb.DuckDBPyConnection, braze: FakeBraze,
                                                                   client: httpx.Client) -> None:
    result = sync(con, braze, client, environment=env(braze, BRAZE_API_KEY="revoked"))
    assert (result.status, result.succeeded, result.requests_retried) == ("failed", 0, 0) and result.failed >= 75
    assert result.errors[0] == "stopped: braze users/track: HTTP 401: Invalid API key" and braze.requests <= 4
    destination = BrazeDestination(env(braze, BRAZE_API_KEY="revoked"), client)
    destination.check(spec())
    destination.open(spec(), pa.schema([]))
    before = braze.requests
    for _ in range(2):
        with pytest.raises(AuthorizationFailed, match="HTTP 401"):
            destination.send(pa.RecordBatch.from_pylist([{"external_id": "1"}]), "external_id", "upsert")
    assert braze.requests == before + 1  # the second send did not ask


@pytest.fixture(scope="module")
def idle_braze() -> Iterator[FakeBraze]:
    """One fake for the configuration cases, which must never reach it."""
    with serve(FakeBraze()) as fake:
        yield fake


@pytest.mark.parametrize(
    ("sync_spec", "environment", "message"),
    [
        (spec(), {}, "set the environment variable BRAZE_API_KEY"),
        (spec(mapping={"id": "corral_id", "email": "email"}), None, "map a column to the Braze field 'external_id'"),
        (spec(settings={"identifier": "email"}), None, "the mapping sends 'external_id', which Braze would match users on instead of 'email'"),
        (spec(settings={"identifier": "phone"}), None, "settings.identifier must be one of external_id, email, braze_id"),
        (spec("add_remove", settings={}), None, "needs settings.attribute"),
        (spec("add_remove", settings={"membership": "attribute", "attribute": "email"}), None, "settings.attribute 'email' is also a mapped field"),
        (spec("add_remove", settings={"membership": "subscription_group"}), None, "needs settings.subscription_group_id"),
        (spec("add_remove", settings={"membership": "segment"}), None, "settings.membership must be"),
        (spec("insert"), None, "destination 'braze' does not support mode 'insert'"),
        (spec(), {"BRAZE_REQUESTS_PER_3S": "lots"}, "BRAZE_REQUESTS_PER_3S must be a whole number at least 3"),
        (spec(), {"BRAZE_BATCH_SIZE": "100"}, "BRAZE_BATCH_SIZE must be a whole number from 1 to 75"),
        (spec(), {"BRAZE_REST_ENDPOINT": "rest.fra-01.braze.eu"}, "BRAZE_REST_ENDPOINT must be the instance's REST URL"),
    ],
    ids=["no-key", "no-identifier", "shadowed", "bad-identifier", "no-attribute", "attribute-mapped", "no-group", "membership", "mode",
         "limit", "batch", "endpoint"],
)
def test_configuration_errors_fail_before_sending(sync_spec: SyncSpec, environment: dict[str, str] | None, message: str,
                                                  con: duckdb.DuckDBPyConnection, idle_braze: FakeBraze, client: httpx.Client) -> None:
    variables = {} if environment == {} else env(idle_braze, **(environment or {}))
    with pytest.raises(SyncConfigError, match=f"^sync 'buyers_braze': .*{message}"):
        run_sync(con, sync_spec, make_destination("braze", variables, client), options=FAST)
    assert idle_braze.requests == 0  # nothing was asked, by this or any earlier case


@pytest.mark.parametrize("limit", [3, 12, 300, 3000, 30000])
@pytest.mark.parametrize("mode", ["upsert", "mirror", "add_remove", "subscription"])
def test_pacing_keeps_every_window_under_its_limit(limit: int, mode: str) -> None:
    settings = {"membership": "subscription_group", "subscription_group_id": GROUP} if mode == "subscription" else AUDIENCE
    with httpx.Client() as client:
        destination = BrazeDestination({"BRAZE_API_KEY": API_KEY, "BRAZE_REQUESTS_PER_3S": str(limit)}, client)
        destination.check(spec("add_remove" if mode == "subscription" else mode, settings=settings))
    caps = destination.capabilities
    assert caps.batch_size == (50 if mode == "subscription" else 75) and caps.requests_per_second and caps.burst
    assert caps.burst + 3 * caps.requests_per_second <= 0.95 * limit or caps.burst == 1  # /users/track, one a send
    assert caps.burst + 3 * caps.requests_per_second <= limit
    if mode == "mirror":  # a delete send is two requests of at most 50 ids
        assert 2 * (caps.burst + 60 * caps.requests_per_second) <= 20_000
    if mode == "subscription":
        assert caps.burst + 60 * caps.requests_per_second <= 5_000
    if limit == 3000 and mode == "upsert":
        assert caps.requests_per_second == pytest.approx(2850 / 3.3) and caps.burst == 5.0
    assert BrazeDestination.capabilities.batch_size == 75  # the class default is untouched
