"""The Mailchimp destination through the engine, against a strict fake Marketing API on a real
port: members subscribed or updated 500 a request with their merge fields and subscriber
hashes kept, unchanged re-syncs send nothing, errors inside a 200 attributed by email and
retried, `status_if_new` never resubscribing anyone, archives (mirror), static segment
membership (by email in bulk or by hash one by one), never more than 10 connections at once,
429s and 5xx retried, 401/403 stop the sync, configuration errors before anything is sent."""

from __future__ import annotations

import base64
import hashlib
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import duckdb
import httpx
import pyarrow as pa
import pytest
from fakes.mailchimp import API_KEY, LIST, FakeMailchimp
from fakes.server import Scripted, serve_http

from sync_testing import FAST

from reverse_etl.destinations import make_destination
from reverse_etl.destinations.base import RetryableError
from reverse_etl.destinations.mailchimp import MailchimpDestination
from reverse_etl.engine import EngineOptions, SyncRunResult, run_sync
from reverse_etl.pacing import RetryPolicy
from reverse_etl.syncs import SyncConfigError, SyncSpec

SEGMENT = "3301"
MAPPING = {"id": "CORRAL_ID", "email": "email_address", "first_name": "FNAME", "spend": "SPEND", "vip": "vip", "signed_up": "SIGNUP",
           "last_seen": "LASTSEEN"}


def spec(mode: str = "upsert", **overrides: Any) -> SyncSpec:
    settings: dict[str, Any] = {"list_id": LIST, "status_if_new": "subscribed", **({"segment_id": SEGMENT} if mode == "add_remove" else {})}
    values: dict[str, Any] = {
        "name": "people_mailchimp", "model": "people", "relation": "main.people", "destination": "mailchimp", "mode": mode,
        "primary_key": "id", "mapping": MAPPING, "settings": settings,
    }
    return SyncSpec(**{**values, **overrides})


def md5(email: str) -> str:
    return hashlib.md5(email.lower().encode()).hexdigest()


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
def port() -> Iterator[tuple[str, list[FakeMailchimp]]]:
    """One local server for the module (stopping one takes half a second), answering as the
    current test's fake."""
    fakes: list[FakeMailchimp] = []
    with serve_http(lambda *request: fakes[-1].handle(*request)) as url:
        yield url, fakes


@pytest.fixture
def mailchimp(port: tuple[str, list[FakeMailchimp]]) -> FakeMailchimp:
    fake = FakeMailchimp(members={LIST: {}}, segments={LIST: {SEGMENT: set()}}, url=port[0])
    port[1].append(fake)
    return fake


def env(fake: FakeMailchimp, **extra: str) -> dict[str, str]:
    return {"MAILCHIMP_API_KEY": API_KEY, "MAILCHIMP_BASE_URL": fake.url, **extra}


def sync(con: duckdb.DuckDBPyConnection, fake: FakeMailchimp, client: httpx.Client, sync_spec: SyncSpec | None = None,
         environment: dict[str, str] | None = None, **kwargs: Any) -> SyncRunResult:
    destination = make_destination("mailchimp", environment or env(fake), client)
    return run_sync(con, sync_spec or spec(), destination, options=kwargs.pop("options", FAST), **kwargs)


def expected(con: duckdb.DuckDBPyConnection, status: str = "subscribed") -> dict[str, dict[str, Any]]:
    """The mart as Mailchimp should hold it: merge fields text or numbers, null as ""."""
    rows = con.execute("select lower(email), id, email, coalesce(first_name, ''), spend, vip, cast(signed_up as varchar),"
                       " strftime(last_seen, '%Y-%m-%dT%H:%M:%SZ') from people").fetchall()
    return {row[0]: {"CORRAL_ID": row[1], "email_address": row[2], "FNAME": row[3], "SPEND": float(row[4]), "vip": row[5],
                     "SIGNUP": row[6], "LASTSEEN": row[7], "status": status} for row in rows}


def states(con: duckdb.DuckDBPyConnection, name: str = "people_mailchimp") -> dict[str, tuple[str, str | None, str | None]]:
    rows = con.execute("select record_key, status, destination_id, last_error from corral_sync.records where sync_name = ?", [name])
    return {k: (s, d, e) for k, s, d, e in rows.fetchall()}


def test_first_sync_subscribes_everyone_and_an_unchanged_resync_sends_nothing(con: duckdb.DuckDBPyConnection, mailchimp: FakeMailchimp,
                                                                               client: httpx.Client) -> None:
    first = sync(con, mailchimp, client)
    assert (first.status, first.changes, first.succeeded, first.failed) == ("success", {"added": 1000}, 1000, 0)
    assert mailchimp.records() == expected(con)
    assert mailchimp.records()["user7@example.com"] == {"CORRAL_ID": 7, "email_address": "user7@example.com", "FNAME": "Name 7",
                                                        "SPEND": 10.5, "vip": False, "SIGNUP": "2026-01-08",
                                                        "LASTSEEN": "2026-10-01T12:00:07Z", "status": "subscribed"}
    assert (mailchimp.requests, mailchimp.statuses, mailchimp.batches) == (2, {200: 2}, [500, 500])
    assert {k: d for k, (_, d, _) in states(con).items()} == {str(i): md5(f"user{i}@example.com") for i in range(1, 1001)}
    second = sync(con, mailchimp, client)
    assert (second.status, second.changes, second.planned, second.sent) == ("success", {"unchanged": 1000}, 0, 0)
    assert mailchimp.requests == 2 and not mailchimp.over_limit


def test_changes_update_members_but_never_their_subscription(con: duckdb.DuckDBPyConnection, mailchimp: FakeMailchimp,
                                                             client: httpx.Client) -> None:
    sync(con, mailchimp, client)
    mailchimp.members[LIST][md5("user3@example.com")]["status"] = "unsubscribed"  # they opted out in Mailchimp
    con.execute("update people set first_name = 'Changed' where id in (3, 4)")
    con.execute("update people set first_name = null where id = 5")  # clears the merge field
    con.execute("delete from people where id = 9")  # upsert forgets it; Mailchimp keeps the member
    con.execute("insert into people values (5000, 'New@Example.com', 'New', 1.0, true, date '2026-05-01', timestamp '2026-10-02 00:00:00')")
    result = sync(con, mailchimp, client, spec(settings={"list_id": LIST, "status_if_new": "pending"}))
    assert (result.status, result.changes) == ("success", {"added": 1, "changed": 3, "removed": 1, "unchanged": 996})
    assert mailchimp.batches[-1] == 4
    held = mailchimp.records()
    assert (held["user3@example.com"]["status"], held["user3@example.com"]["FNAME"]) == ("unsubscribed", "Changed")
    assert (held["new@example.com"]["status"], held["user5@example.com"]["FNAME"]) == ("pending", "")
    assert states(con)["5000"][1] == md5("new@example.com")
    assert {e: {k: v for k, v in m.items() if k != "status"} for e, m in held.items() if e != "user9@example.com"} == \
        {e: {k: v for k, v in m.items() if k != "status"} for e, m in expected(con).items()}


def test_errors_inside_a_200_fail_exactly_those_members_and_they_are_retried(con: duckdb.DuckDBPyConnection, mailchimp: FakeMailchimp,
                                                                             client: httpx.Client) -> None:
    con.execute("update people set email = 'broken-' || id where id % 100 = 7")
    broken = {str(i) for i in range(7, 1001, 100)}
    first = sync(con, mailchimp, client)
    assert (first.status, first.succeeded, first.failed) == ("failed", 990, 10)
    assert mailchimp.statuses == {200: 2}  # Mailchimp answers 200 all the same
    records = states(con)
    assert {k for k, (s, _, _) in records.items() if s == "failed"} == broken
    assert records["107"][2] == ("ERROR_GENERIC: broken-107 looks fake or invalid, please enter a real email address. "
                                 "(email_address: Please provide a valid email address.)")
    assert set(mailchimp.records()) == {e for e in expected(con) if "@" in e}
    again = sync(con, mailchimp, client)
    assert (again.planned, again.failed, again.succeeded, mailchimp.batches[-1]) == (10, 10, 0, 10)  # only those are sent again
    con.execute("update people set email = 'fixed' || id || '@example.com' where id % 100 = 7")
    fixed = sync(con, mailchimp, client)
    assert (fixed.status, fixed.succeeded) == ("success", 10)
    assert mailchimp.records() == expected(con)


def test_one_entry_per_member_no_email_and_unknown_merge_tags_fail_per_record(con: duckdb.DuckDBPyConnection, mailchimp: FakeMailchimp,
                                                                              client: httpx.Client) -> None:
    con.execute("delete from people where id > 20")
    con.execute("update people set email = 'USER1@example.com' where id = 2")  # the same member as record 1
    con.execute("update people set email = null where id = 3")
    result = sync(con, mailchimp, client)
    assert (result.succeeded, result.failed, mailchimp.statuses) == (18, 2, {200: 1})
    errors = {k: e for k, (s, _, e) in states(con).items() if s == "failed"}
    first, second = ("1", "2") if "2" in errors else ("2", "1")  # whichever of the two comes later in the batch fails
    shown = {"1": "user1@example.com", "2": "USER1@example.com"}
    assert errors == {second: f"email_address '{shown[second]}' is also on record {first} of this batch; one entry per member",
                      "3": "no email_address: Mailchimp members are keyed by it"}
    con.execute("alter table people add column state varchar")
    con.execute("update people set state = case id when 5 then 'unsubscribed' when 6 then 'gone' end")
    statuses = sync(con, mailchimp, client, spec(name="people_mailchimp_status", mapping={**MAPPING, "state": "status"}))
    assert (statuses.succeeded, statuses.failed, mailchimp.statuses) == (17, 3, {200: 2})  # a bad status fails alone, not the request
    assert states(con, "people_mailchimp_status")["6"][2] == "status 'gone' is not one of subscribed, unsubscribed, pending, transactional"
    assert mailchimp.records()["user5@example.com"]["status"] == "unsubscribed"  # `status` applies to existing members too
    mailchimp.merge_tags = {"FNAME", "SPEND", "SIGNUP", "LASTSEEN"}  # the audience has no CORRAL_ID merge field
    con.execute("update people set first_name = 'Again' where id = 4")
    unknown = sync(con, mailchimp, client)
    assert (unknown.failed, states(con)["4"][2]) == (3, ("ERROR_GENERIC: Your merge fields were invalid. (merge_fields: unknown merge "
                                                         "field(s) CORRAL_ID)"))


def test_consent_per_member_when_the_sync_sets_no_status_if_new(con: duckdb.DuckDBPyConnection, mailchimp: FakeMailchimp,
                                                                client: httpx.Client) -> None:
    con.execute("delete from people where id > 6")
    con.execute("alter table people add column consent varchar")
    con.execute("update people set consent = case when id <= 2 then 'subscribed' when id <= 4 then 'pending' end")  # 5, 6: unknown
    per_member = spec(name="people_consent", settings={"list_id": LIST}, mapping={**MAPPING, "consent": "status_if_new"})
    result = sync(con, mailchimp, client, per_member)
    assert (result.succeeded, result.failed) == (4, 2)
    held = {email: member["status"] for email, member in mailchimp.records().items()}
    assert held == {"user1@example.com": "subscribed", "user2@example.com": "subscribed", "user3@example.com": "pending",
                    "user4@example.com": "pending"}  # nobody whose consent is unknown was subscribed
    assert {k: e for k, (s, _, e) in states(con, "people_consent").items() if s == "failed"} == dict.fromkeys(
        ("5", "6"), "no status_if_new or status for this member, and no settings.status_if_new: its consent is not known")


def test_mirror_archives_the_members_who_left_by_their_kept_hash(con: duckdb.DuckDBPyConnection, mailchimp: FakeMailchimp,
                                                                 client: httpx.Client) -> None:
    sync(con, mailchimp, client, spec("mirror"))
    mailchimp.members[LIST][md5("user12@example.com")]["status"] = "archived"  # archived in Mailchimp already: a 404, done
    con.execute("delete from people where id in (10, 11, 12)")
    con.execute("update people set first_name = 'Changed' where id = 3")
    result = sync(con, mailchimp, client, spec("mirror"))
    assert (result.status, result.operations) == ("success", {"upsert": 1, "delete": 3})
    assert sorted(mailchimp.deletes) == sorted([("member", md5("user10@example.com")), ("member", md5("user11@example.com"))])
    assert mailchimp.statuses[404] == 1 and mailchimp.records() == expected(con)
    assert not {"10", "11", "12"} & set(states(con))
    con.execute("insert into people values (10, 'user10@example.com', 'Back', 15.0, true, date '2026-01-11', timestamp '2026-10-01 12:00:10')")
    back = sync(con, mailchimp, client, spec("mirror"))  # an archived member comes back
    assert back.status == "success" and mailchimp.records() == expected(con)


def test_add_remove_by_hash_one_by_one_when_the_key_is_not_the_email(con: duckdb.DuckDBPyConnection, mailchimp: FakeMailchimp,
                                                                     client: httpx.Client) -> None:
    first = sync(con, mailchimp, client, spec("add_remove"))
    assert (first.status, first.succeeded) == ("success", 1000)
    assert mailchimp.segment_emails(SEGMENT) == set(expected(con))
    assert sorted(len(e) for _, _, e in mailchimp.segment_calls) == [500, 500] and mailchimp.statuses == {200: 4}
    con.execute("delete from people where id in (10, 11, 12)")
    con.execute("update people set first_name = 'Changed' where id = 3")  # still a member: nothing to send
    mailchimp.segments[LIST][SEGMENT].discard(md5("user12@example.com"))  # already out of the segment
    result = sync(con, mailchimp, client, spec("add_remove"))
    assert (result.status, result.operations) == ("success", {"remove": 3, "baseline": 1})
    assert sorted(mailchimp.deletes) == sorted(("segment", md5(f"user{i}@example.com")) for i in (10, 11, 12))
    assert mailchimp.segment_emails(SEGMENT) == set(expected(con))
    assert "user10@example.com" in mailchimp.records() and not mailchimp.over_limit  # out of the segment, still subscribed


def test_add_remove_by_email_in_bulk_when_the_key_is_the_email(con: duckdb.DuckDBPyConnection, mailchimp: FakeMailchimp,
                                                               client: httpx.Client) -> None:
    by_email = spec("add_remove", primary_key="email")
    mailchimp.refuse_segment = lambda email: "Static segment is full" if email == "user5@example.com" else None
    first = sync(con, mailchimp, client, by_email)
    assert (first.status, first.succeeded, first.failed) == ("failed", 999, 1)
    assert states(con)["user5@example.com"][2] == "Mailchimp did not add user5@example.com to segment 3301: Static segment is full"
    mailchimp.refuse_segment = lambda email: None
    con.execute("delete from people where id in (10, 11, 12)")
    result = sync(con, mailchimp, client, by_email)
    assert (result.status, result.operations) == ("success", {"add": 1, "remove": 3})
    removals = [sorted(emails) for _, action, emails in mailchimp.segment_calls if action == "remove"]
    assert removals == [["user10@example.com", "user11@example.com", "user12@example.com"]]  # one request
    assert mailchimp.segment_emails(SEGMENT) == set(expected(con)) and mailchimp.deletes == []


def test_a_missing_segment_is_reported(con: duckdb.DuckDBPyConnection, mailchimp: FakeMailchimp, client: httpx.Client) -> None:
    con.execute("delete from people where id > 100")
    result = sync(con, mailchimp, client, spec("add_remove", settings={"list_id": LIST, "status_if_new": "subscribed", "segment_id": "999"}))
    assert (result.status, result.failed) == ("failed", 100)
    assert "segment 999 add: HTTP 404: Resource Not Found: The requested resource could not be found." in result.errors[0]


def test_never_more_than_the_allowed_connections(con: duckdb.DuckDBPyConnection, mailchimp: FakeMailchimp, client: httpx.Client,
                                                 port: tuple[str, list[FakeMailchimp]]) -> None:
    con.execute("insert into people select i, 'user' || i || '@example.com', null, 0, false, date '2026-01-01', timestamp '2026-10-01'"
                " from range(1001, 7001) t(i)")
    mailchimp.latency_seconds = 0.4  # so that the 14 batches overlap
    result = sync(con, mailchimp, client)
    assert (result.status, result.succeeded) == ("success", 7000)
    assert (mailchimp.throttled, mailchimp.over_limit) == (0, [])
    assert 8 <= mailchimp.peak_connections <= 10  # the workers overlap (10 unless the machine is busy), never more
    assert sorted(mailchimp.batches) == [500] * 14
    fresh = FakeMailchimp(members={LIST: {}}, latency_seconds=0.1, url=port[0])  # a fresh audience, a sync told 4
    port[1].append(fresh)
    result = sync(con, fresh, client, spec(name="people_mailchimp_4"), environment=env(fresh, MAILCHIMP_MAX_CONNECTIONS="4"))
    assert (result.status, fresh.over_limit, len(fresh.records())) == ("success", [], 7000) and 3 <= fresh.peak_connections <= 4


def test_more_connections_than_the_account_allows_are_refused_and_retried(con: duckdb.DuckDBPyConnection, mailchimp: FakeMailchimp,
                                                                          client: httpx.Client) -> None:
    con.execute("insert into people select i, 'user' || i || '@example.com', null, 0, false, date '2026-01-01', timestamp '2026-10-01'"
                " from range(1001, 5001) t(i)")
    mailchimp.max_connections, mailchimp.latency_seconds = 3, 0.1  # while the sync is told 10
    patient = EngineOptions(retry=RetryPolicy(attempts=20, base_seconds=0.05, cap_seconds=0.5), seed=1)
    result = sync(con, mailchimp, client, options=patient)
    assert (result.status, result.succeeded, result.failed) == ("success", 5000, 0)
    assert mailchimp.throttled > 0 and result.requests_retried == mailchimp.throttled == mailchimp.statuses[429]
    assert mailchimp.over_limit[0].endswith("4 simultaneous connections (at most 3)")  # the fake counts them
    assert mailchimp.records() == expected(con)


def test_the_fake_refuses_what_mailchimp_refuses(mailchimp: FakeMailchimp, client: httpx.Client) -> None:
    auth = {"authorization": "Basic " + base64.b64encode(f"anystring:{API_KEY}".encode()).decode()}

    def post(path: str, body: Any, headers: dict[str, str] = auth) -> httpx.Response:
        return client.post(mailchimp.url + path, json=body, headers=headers)

    member = {"email_address": "a@example.com", "status_if_new": "subscribed"}
    over = post(f"/3.0/lists/{LIST}", {"members": [{**member, "email_address": f"u{i}@example.com"} for i in range(501)]})
    assert over.status_code == 400 and over.json()["title"] == "Invalid Resource"
    assert post(f"/3.0/lists/{LIST}", {"members": [{**member, "status": "archived"}]}).status_code == 400
    assert post(f"/3.0/lists/{LIST}", {"members": [{**member, "merge_fields": []}]}).status_code == 400
    assert post("/3.0/lists/nope", {"members": [member]}).status_code == 404
    assert post(f"/3.0/lists/{LIST}", {"members": [member]}, headers={"authorization": "Basic " + base64.b64encode(b"u:wrong").decode()}
                ).json()["title"] == "API Key Invalid"
    new = post(f"/3.0/lists/{LIST}", {"members": [member, {"email_address": "b@example.com"}]}).json()
    assert [m["id"] for m in new["new_members"]] == [md5("a@example.com")] and new["errors"][0]["field"] == "status"
    exists = post(f"/3.0/lists/{LIST}", {"members": [member]}).json()
    assert exists["errors"][0]["error_code"] == "ERROR_CONTACT_EXISTS"
    assert post(f"/3.0/lists/{LIST}/segments/{SEGMENT}", {"members_to_remove": ["a@example.com"] * 501}).status_code == 400
    added = post(f"/3.0/lists/{LIST}/segments/{SEGMENT}", {"members_to_add": ["a@example.com", "nobody@example.com"]}).json()
    assert (added["total_added"], added["errors"]) == (1, [{"email_addresses": ["nobody@example.com"], "error": "Email address is not on the list"}])
    assert client.delete(f"{mailchimp.url}/3.0/lists/{LIST}/members/{md5('a@example.com')}", headers=auth).status_code == 204
    assert client.delete(f"{mailchimp.url}/3.0/lists/{LIST}/members/{md5('a@example.com')}", headers=auth).status_code == 404
    assert mailchimp.over_limit == ["a batch subscribe of 501 members (at most 500)", "a segment members_to_remove of 501 emails (at most 500)"]


def test_server_errors_and_timeouts_are_retried(con: duckdb.DuckDBPyConnection, mailchimp: FakeMailchimp, client: httpx.Client) -> None:
    mailchimp.script.extend([Scripted(503, body="upstream"), Scripted(502), Scripted(200, body="{}", stall_seconds=2.5)])  # past the 2 s timeout
    result = sync(con, mailchimp, client)
    assert (result.status, result.succeeded, result.requests_retried) == ("success", 1000, 3)
    assert mailchimp.records() == expected(con)


@pytest.mark.parametrize(("retry_after", "wait"), [(None, 1.0), ("3", 3.0)])
def test_a_429_waits_a_second_or_what_mailchimp_asks(retry_after: str | None, wait: float, mailchimp: FakeMailchimp,
                                                      client: httpx.Client) -> None:
    mailchimp.script.append(Scripted(429, {"Retry-After": retry_after} if retry_after else {},
                                     '{"title":"Too Many Requests","status":429,"detail":"You have exceeded the limit of 10 simultaneous connections."}'))
    destination = MailchimpDestination(env(mailchimp), client)
    destination.check(spec())
    destination.open(spec(), pa.schema([]))
    batch = pa.RecordBatch.from_pylist([{"CORRAL_ID": 1, "email_address": "a@example.com"}])
    with pytest.raises(RetryableError, match="HTTP 429: Too Many Requests: You have exceeded the limit of 10 simultaneous") as raised:
        destination.send(batch, "CORRAL_ID", "upsert")
    assert raised.value.retry_after == wait
    assert destination.send(batch, "CORRAL_ID", "upsert")[0].ok


@pytest.mark.parametrize("status", [401, 403])
def test_refused_credentials_stop_the_sync(status: int, con: duckdb.DuckDBPyConnection, mailchimp: FakeMailchimp,
                                           client: httpx.Client) -> None:
    mailchimp.deny_status = status
    result = sync(con, mailchimp, client)
    assert result.status == "failed" and result.succeeded == 0 and result.requests_retried == 0
    assert mailchimp.requests <= 10
    assert result.errors[0].startswith(f"stopped: mailchimp list {LIST} batch subscribe: HTTP {status}: ")
    assert mailchimp.records() == {}


def test_the_data_center_comes_from_the_key() -> None:
    with httpx.Client() as client:
        destination = MailchimpDestination({"MAILCHIMP_API_KEY": API_KEY}, client)
        destination.check(spec())
        destination.open(spec(), pa.schema([]))
    assert destination.base_url == "https://us21.api.mailchimp.com"
    assert destination.headers["authorization"] == "Basic " + base64.b64encode(f"corral:{API_KEY}".encode()).decode()
    assert (destination.capabilities.max_concurrency, destination.capabilities.requests_per_second) == (10, None)


@pytest.mark.parametrize(
    ("sync_spec", "environment", "message"),
    [
        (spec(), {}, "set the environment variable MAILCHIMP_API_KEY"),
        (spec(), {"MAILCHIMP_API_KEY": "0123456789abcdef", "MAILCHIMP_BASE_URL": ""}, "MAILCHIMP_API_KEY does not end with its data center"),
        (spec(settings={}), None, "set settings.list_id"),
        (spec(mapping={"id": "CORRAL_ID", "email": "EMAIL"}), None, "map a column to the Mailchimp field 'email_address'"),
        (spec(mapping={**MAPPING, "first_name": "first_name"}), None, "field\\(s\\) 'first_name' are neither member fields"),
        (spec(mapping={**MAPPING, "first_name": "FIRST_NAME_X"}), None, "field\\(s\\) 'FIRST_NAME_X' are neither"),
        (spec(settings={"list_id": LIST, "status_if_new": "archived"}), None, "settings.status_if_new must be one of"),
        (spec(settings={"list_id": LIST}), None, "set settings.status_if_new, .* 'subscribed' only if they consented"),
        (spec("add_remove", settings={"list_id": LIST, "segment_id": SEGMENT}), None, "set settings.status_if_new"),
        (spec("add_remove", settings={"list_id": LIST, "status_if_new": "pending"}), None, "mode add_remove needs settings.segment_id"),
        (spec("update"), None, "destination 'mailchimp' does not support mode 'update'"),
        (spec(), {"MAILCHIMP_MAX_CONNECTIONS": "0"}, "MAILCHIMP_MAX_CONNECTIONS must be a whole number of connections"),
    ],
    ids=["no-key", "no-data-center", "no-list", "no-email", "merge-tag-case", "merge-tag-length", "status", "no-consent-status",
         "no-consent-status-segment", "no-segment", "mode",
         "connections"],
)
def test_configuration_errors_fail_before_sending(sync_spec: SyncSpec, environment: dict[str, str] | None, message: str,
                                                  con: duckdb.DuckDBPyConnection, mailchimp: FakeMailchimp, client: httpx.Client) -> None:
    variables = {} if environment == {} else env(mailchimp, **(environment or {}))
    with pytest.raises(SyncConfigError, match=f"^sync 'people_mailchimp': .*{message}"):
        run_sync(con, sync_spec, make_destination("mailchimp", variables, client), options=FAST)
    assert mailchimp.requests == 0
