"""The reverse-ETL engine against a fake webhook receiver on a real port: diffs planned in the
warehouse, every mode, partial failures retried then rejected, 429 storms, 5xx, timeouts, the
per-sync deadline, dry runs, full resends, and a SIGKILL mid-sync then resume."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import duckdb
import httpx
import pytest
from fakes.server import Scripted
from fakes.webhook import SECRET, FakeWebhook, serve

from sync_testing import FAST

from reverse_etl.destinations import make_destination
from reverse_etl.engine import SyncRunResult, run_sync
from reverse_etl.syncs import SyncConfigError, SyncSpec


def spec(mode: str = "mirror", **overrides: Any) -> SyncSpec:
    values: dict[str, Any] = {
        "name": "buyers_hook", "model": "buyers", "relation": "main.buyers", "destination": "webhook", "mode": mode,
        "primary_key": "id", "mapping": {"id": "id", "email": "email", "spend": "spend"}, "settings": {"batch_size": 100},
    }
    return SyncSpec(**{**values, **overrides})


@pytest.fixture
def con(tmp_path: Path) -> Iterator[duckdb.DuckDBPyConnection]:
    con = duckdb.connect(str(tmp_path / "warehouse.duckdb"))
    con.execute("create table buyers as select i as id, 'user' || i || '@example.com' as email, i * 1.5 as spend from range(1, 1001) t(i)")
    yield con  # spend is a decimal: it travels as a JSON number
    con.close()


@pytest.fixture
def hook() -> Iterator[FakeWebhook]:
    with serve(FakeWebhook(key_field="id", max_records=100)) as fake:
        yield fake


def sync(con: duckdb.DuckDBPyConnection, hook: FakeWebhook, client: httpx.Client, sync_spec: SyncSpec | None = None,
         **kwargs: Any) -> SyncRunResult:
    destination = make_destination("webhook", {"WEBHOOK_URL": hook.url, "WEBHOOK_SECRET": SECRET}, client)
    return run_sync(con, sync_spec or spec(), destination, options=kwargs.pop("options", FAST), **kwargs)


def mart(con: duckdb.DuckDBPyConnection) -> dict[str, dict[str, Any]]:
    rows = con.execute("select id, email, spend from buyers").fetchall()
    return {str(i): {"id": i, "email": e, "spend": float(s)} for i, e, s in rows}


def test_first_sync_lands_everything_and_an_unchanged_resync_sends_nothing(con: duckdb.DuckDBPyConnection, hook: FakeWebhook, client: httpx.Client) -> None:
    first = sync(con, hook, client)
    assert (first.status, first.changes, first.planned, first.succeeded) == ("success", {"added": 1000}, 1000, 1000)
    assert hook.records == mart(con) and hook.requests == 10
    second = sync(con, hook, client)
    assert (second.status, second.changes, second.planned, second.sent) == ("success", {"unchanged": 1000}, 0, 0)
    assert hook.requests == 10  # not one request
    runs = con.execute("select added, unchanged, sent, succeeded, status from corral_sync.runs order by started_at").fetchall()
    assert runs == [(1000, 0, 1000, 1000, "success"), (0, 1000, 0, 0, "success")]


def test_changes_and_removals_reach_the_destination_and_nothing_else(con: duckdb.DuckDBPyConnection, hook: FakeWebhook, client: httpx.Client) -> None:
    sync(con, hook, client)
    hook.deliveries.clear()
    con.execute("update buyers set spend = spend + 1 where id in (3, 4, 5)")
    con.execute("delete from buyers where id in (10, 11)")
    con.execute("insert into buyers values (5000, 'new@example.com', 1.0)")
    result = sync(con, hook, client)
    assert result.changes == {"added": 1, "changed": 3, "removed": 2, "unchanged": 995}
    assert sorted((operation, sorted(keys)) for operation, keys in hook.deliveries) == [("delete", ["10", "11"]),
                                                                                         ("upsert", ["3", "4", "5", "5000"])]
    assert hook.records == mart(con)
    log = con.execute("select operation, record_key, status from corral_sync.row_log where run_id = ? order by 1, 2", [result.run_id]).fetchall()
    assert log == [("delete", "10", "succeeded"), ("delete", "11", "succeeded"), *[("upsert", k, "succeeded") for k in ("3", "4", "5", "5000")]]


@pytest.mark.parametrize(
    ("mode", "expected"),
    [
        ("upsert", [("upsert", ["3", "5000"])]),
        ("insert", [("insert", ["5000"])]),
        ("update", [("update", ["3"])]),
        ("mirror", [("delete", ["10"]), ("upsert", ["3", "5000"])]),
        ("add_remove", [("add", ["5000"]), ("remove", ["10"])]),
    ],
)
def test_each_mode_sends_what_it_should(mode: str, expected: list[tuple[str, list[str]]], con: duckdb.DuckDBPyConnection,
                                        hook: FakeWebhook, client: httpx.Client) -> None:
    first = sync(con, hook, client, spec(mode))
    assert first.sent == (0 if mode == "update" else 1000)  # an update sync starts from what is there
    hook.deliveries.clear()
    con.execute("update buyers set spend = 0 where id = 3")
    con.execute("delete from buyers where id = 10")
    con.execute("insert into buyers values (5000, 'new@example.com', 1.0)")
    sync(con, hook, client, spec(mode))
    assert sorted(hook.deliveries) == expected
    hook.deliveries.clear()
    again = sync(con, hook, client, spec(mode))
    assert (again.sent, hook.deliveries) == (0, [])


def test_partial_failures_are_retried_on_later_runs_then_rejected(con: duckdb.DuckDBPyConnection, hook: FakeWebhook, client: httpx.Client) -> None:
    hook.refuse = lambda record: "invalid email" if record["id"] % 100 == 7 else None
    capped = spec(max_attempts=3)
    first = sync(con, hook, client, capped)
    assert (first.status, first.succeeded, first.failed, first.rejected) == ("failed", 990, 10, 0)
    assert sorted(first.errors)[:2] == ["upsert 107: invalid email", "upsert 207: invalid email"]  # batches answer in any order
    for run in (2, 3):
        hook.deliveries.clear()
        result = sync(con, hook, client, capped)
        assert result.planned == 10, "only the failed records are sent again"
        assert (result.failed, result.rejected) == ((10, 0) if run == 2 else (0, 10))
    hook.deliveries.clear()
    fourth = sync(con, hook, client, capped)
    assert (fourth.planned, fourth.skipped, hook.deliveries) == (0, 10, [])  # rejected: not sent again
    statuses = con.execute("select status, attempts, last_error from corral_sync.records where record_key = '7'").fetchall()
    assert statuses == [("rejected", 3, "invalid email")]
    hook.refuse = lambda record: None
    con.execute("update buyers set email = 'fixed' || id || '@example.com' where id % 100 = 7")
    fixed = sync(con, hook, client, capped)
    assert (fixed.status, fixed.succeeded) == ("success", 10)  # a changed row is tried again
    assert hook.records == mart(con)


@pytest.mark.parametrize(
    "storm",
    [
        [Scripted(429, {"Retry-After": "0"}, '{"status":"error","message":"You have reached your ten_secondly_rolling limit."}')] * 4,
        [Scripted(429)] * 4,
        [Scripted(503), Scripted(502), Scripted(500)],
        [Scripted(200, stall_seconds=2.5), Scripted(200, stall_seconds=2.5)],  # past the client's 2 s timeout
    ],
    ids=["429-retry-after", "429-bare", "5xx", "timeouts"],
)
def test_throttling_errors_and_timeouts_are_retried_until_delivered(storm: list[Scripted], con: duckdb.DuckDBPyConnection,
                                                                    hook: FakeWebhook, client: httpx.Client) -> None:
    hook.script.extend(storm)
    result = sync(con, hook, client)
    assert (result.status, result.succeeded, result.failed) == ("success", 1000, 0)
    assert result.requests_retried == len(storm)
    assert hook.records == mart(con)


def test_retry_after_is_honoured(con: duckdb.DuckDBPyConnection, hook: FakeWebhook, client: httpx.Client) -> None:
    con.execute("delete from buyers where id > 100")
    hook.script.append(Scripted(429, {"Retry-After": "1"}))
    started = time.monotonic()
    result = sync(con, hook, client)
    assert result.status == "success" and time.monotonic() - started >= 1.0


def test_a_destination_that_stays_down_fails_the_batch_and_keeps_it_pending(con: duckdb.DuckDBPyConnection, hook: FakeWebhook, client: httpx.Client) -> None:
    con.execute("delete from buyers where id > 100")
    hook.script.extend([Scripted(503)] * 6)
    down = sync(con, hook, client)
    assert (down.status, down.failed, down.succeeded) == ("failed", 100, 0)
    assert "HTTP 503" in down.errors[0]
    back = sync(con, hook, client)
    assert (back.status, back.succeeded) == ("success", 100) and hook.records == mart(con)


def test_the_deadline_stops_the_sync_and_the_rest_waits_for_the_next_run(con: duckdb.DuckDBPyConnection, hook: FakeWebhook, client: httpx.Client) -> None:
    hook.script.extend([Scripted(429, {"Retry-After": "5"})] * 3)
    result = sync(con, hook, client, spec(deadline_seconds=1))
    assert result.succeeded < 1000 and result.failed == 0
    assert result.status == "failed" and result.stopped, "records left pending make the run a failure"
    assert any("deadline" in e for e in result.errors)
    resumed = sync(con, hook, client)
    assert resumed.status == "success" and hook.records == mart(con)


def test_a_request_over_the_limit_is_refused_like_the_real_receiver(con: duckdb.DuckDBPyConnection, hook: FakeWebhook, client: httpx.Client) -> None:
    result = sync(con, hook, client, spec(settings={"batch_size": 250}))
    assert (result.status, result.succeeded, result.failed) == ("failed", 0, 1000)
    assert "HTTP 413" in result.errors[0] and hook.records == {}


def test_a_wrong_signing_secret_is_refused_and_reported(con: duckdb.DuckDBPyConnection, hook: FakeWebhook, client: httpx.Client) -> None:
    hook.secret = "whsec_" + "b3RoZXI="
    result = sync(con, hook, client)
    assert result.status == "failed" and "HTTP 401" in result.errors[0] and "no valid v1 signature" in result.errors[0]


def test_a_shared_secret_adds_a_segment_style_signature(con: duckdb.DuckDBPyConnection, hook: FakeWebhook, client: httpx.Client) -> None:
    hook.shared_secret = "segment-shared-secret"
    env = {"WEBHOOK_URL": hook.url, "WEBHOOK_SECRET": SECRET}
    unsigned = run_sync(con, spec(), make_destination("webhook", env, client), options=FAST)
    assert unsigned.status == "failed" and "no valid X-Signature" in unsigned.errors[0]
    signed = run_sync(con, spec(), make_destination("webhook", {**env, "WEBHOOK_SHARED_SECRET": "segment-shared-secret"}, client), options=FAST)
    assert signed.status == "success" and hook.records == mart(con)


def test_dry_run_shows_the_plan_and_sends_nothing(con: duckdb.DuckDBPyConnection, hook: FakeWebhook, client: httpx.Client) -> None:
    sync(con, hook, client)
    con.execute("update buyers set spend = 0 where id = 1")
    con.execute("delete from buyers where id = 2")
    requests = hook.requests
    plan = sync(con, hook, client, dry_run=True)
    assert (plan.planned, plan.sent, plan.operations) == (2, 0, {"upsert": 1, "delete": 1})
    assert plan.samples["upsert"] == [{"record_key": "1", "id": 1, "email": "user1@example.com", "spend": 0}]
    assert hook.requests == requests
    assert sync(con, hook, client).planned == 2  # the dry run changed no state


def test_full_resends_everything(con: duckdb.DuckDBPyConnection, hook: FakeWebhook, client: httpx.Client) -> None:
    sync(con, hook, client)
    result = sync(con, hook, client, full=True)
    assert (result.planned, result.succeeded) == (1000, 1000)


def test_bad_keys_and_missing_credentials_fail_before_sending(con: duckdb.DuckDBPyConnection, hook: FakeWebhook, client: httpx.Client) -> None:
    con.execute("insert into buyers values (1, 'dup@example.com', 0)")
    with pytest.raises(SyncConfigError, match="primary key 'id' of model 'buyers' must be unique and not null; found '1' \\(2 rows\\)"):
        sync(con, hook, client)
    with pytest.raises(SyncConfigError, match="set the environment variable CRM_URL"):
        run_sync(con, spec(settings={"env_prefix": "CRM"}), make_destination("webhook", {}, client))
    assert hook.requests == 0


CRASHING_SYNC = """
import sys, duckdb, httpx
from reverse_etl.destinations import make_destination
from reverse_etl.engine import run_sync
from reverse_etl.syncs import SyncSpec
spec = SyncSpec(name="buyers_hook", model="buyers", relation="main.buyers", destination="webhook", mode="mirror",
                primary_key="id", mapping={"id": "id", "email": "email", "spend": "spend"}, settings={"batch_size": 100})
con = duckdb.connect(sys.argv[1])
run_sync(con, spec, make_destination("webhook", {"WEBHOOK_URL": sys.argv[2], "WEBHOOK_SECRET": sys.argv[3]}, httpx.Client(timeout=60)))
"""


@pytest.mark.slow
def test_a_sync_killed_mid_run_resumes_without_resending_confirmed_records(tmp_path: Path, hook: FakeWebhook) -> None:
    path = tmp_path / "warehouse.duckdb"
    with duckdb.connect(str(path)) as setup:
        setup.execute("create table buyers as select i as id, 'user' || i || '@example.com' as email, i * 1.5 as spend from range(1, 2001) t(i)")
    original = hook.handle
    answered = []

    def slow_after_five(headers: Any, body: bytes) -> tuple[int, dict[str, str], str, float]:
        outcome = original(headers, body)
        answered.append(outcome[0])
        return (*outcome[:3], 30.0 if len(answered) > 5 else 0.0)  # batches 6+ hang: the kill lands mid-sync

    hook.handle = slow_after_five  # type: ignore[method-assign]
    process = subprocess.Popen([sys.executable, "-c", CRASHING_SYNC, str(path), hook.url, SECRET],
                               env={**os.environ, "PYTHONPATH": str(Path(__file__).resolve().parents[1])})
    deadline = time.monotonic() + 60
    while len(answered) < 8 and time.monotonic() < deadline:
        time.sleep(0.05)
    time.sleep(2.0)  # answers are committed at least every second: let those in commit
    process.send_signal(signal.SIGKILL)
    process.wait()
    hook.handle = original  # type: ignore[method-assign]
    with duckdb.connect(str(path)) as con:
        # the killed run never folded its answers into `records`: what it committed is in the row log
        assert con.execute("select count(*) from corral_sync.records").fetchone() == (0,)
        confirmed = {k for (k,) in con.execute("select record_key from corral_sync.row_log where status = 'succeeded'").fetchall()}
        assert 0 < len(confirmed) < 2000, "the kill must land mid-sync"
        hook.deliveries.clear()
        with httpx.Client(timeout=5) as client:
            resumed = sync(con, hook, client)
        assert resumed.status == "success"
        resent = set(hook.sent_keys())
        assert not resent & confirmed, "a confirmed record was sent again"
        assert resent | confirmed == {str(i) for i in range(1, 2001)}
        assert hook.records == mart(con)
        synced = con.execute("select count(*), count(distinct record_key) from corral_sync.records where status = 'synced'").fetchone()
        assert synced == (2000, 2000), "both runs' answers are folded into one state row per record"


def test_a_slow_destination_holds_up_only_its_own_sync(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from dagster_defs.syncing import run_syncs
    from loaders.home import CorralHome
    from loaders.warehouse import connect

    home = CorralHome(tmp_path / "home")
    with connect(home) as con:
        con.execute("create table main.buyers as select i as id, 'user' || i || '@example.com' as email, i * 1.5 as spend from range(1, 1001) t(i)")
    slow_spec = spec(name="slow_hook", settings={"batch_size": 100, "env_prefix": "SLOW"})
    fast_spec = spec(name="fast_hook", settings={"batch_size": 100, "env_prefix": "FAST"})
    slow_fake = FakeWebhook(key_field="id", max_records=100)
    slow_fake.script.extend([Scripted(503, stall_seconds=1.0)] * 8)  # two rounds of four stalled requests, then fine
    with serve(slow_fake) as slow, serve(FakeWebhook(key_field="id", max_records=100)) as fast:
        for prefix, fake in (("SLOW", slow), ("FAST", fast)):
            monkeypatch.setenv(f"{prefix}_URL", fake.url)
            monkeypatch.setenv(f"{prefix}_SECRET", SECRET)
        finished = [(s.name, r) for s, r in run_syncs(home, [slow_spec, fast_spec])]
    assert [name for name, _ in finished] == ["fast_hook", "slow_hook"]
    results = dict(finished)
    assert all(isinstance(r, SyncRunResult) and r.status == "success" for r in results.values())
    assert results["fast_hook"].duration_seconds < 1.0 <= results["slow_hook"].duration_seconds
    assert len(slow.records) == len(fast.records) == 1000


OLD_STATE_DDL = """
create schema corral_sync;
create table corral_sync.records (sync_name varchar not null, record_key varchar not null, confirmed_hash varchar,
    attempted_hash varchar, destination_id varchar, status varchar not null, attempts integer not null, last_error varchar,
    synced_at timestamp, updated_at timestamp not null, primary key (sync_name, record_key));
create table corral_sync.runs (run_id varchar primary key, sync_name varchar not null, started_at timestamp not null,
    finished_at timestamp, status varchar not null, dry_run boolean not null, full_resync boolean not null, planned bigint not null,
    added bigint not null, changed bigint not null, removed bigint not null, unchanged bigint not null, sent bigint not null,
    succeeded bigint not null, failed bigint not null, rejected bigint not null, skipped bigint not null, duration_seconds double,
    error varchar);
create table corral_sync.row_log (run_id varchar not null, sync_name varchar not null, record_key varchar not null,
    operation varchar not null, status varchar not null, error varchar, destination_id varchar, payload json, logged_at timestamp not null);
"""


def test_state_written_by_the_previous_engine_keeps_working(con: duckdb.DuckDBPyConnection, hook: FakeWebhook, client: httpx.Client) -> None:
    """Warehouses synced before the row log became the journal (state keyed by a primary key,
    no row_hash / attempts / state_folded columns) carry on: what they confirmed is not resent."""
    con.execute(OLD_STATE_DDL)
    con.execute("insert into corral_sync.runs values ('old', 'buyers_hook', now()::timestamp, now()::timestamp, 'success', false, false,"
                " 1, 1, 0, 0, 0, 1, 1, 0, 0, 0, 0.1, null)")
    con.execute("insert into corral_sync.records select 'buyers_hook', '1', md5(cast(to_json(struct_pack(id := id, email := email,"
                " spend := spend)) as varchar)), null, 'hook-1', 'synced', 0, null, now()::timestamp, now()::timestamp from buyers where id = 1")
    first = sync(con, hook, client, spec("upsert"))
    assert (first.status, first.changes.get("unchanged"), first.succeeded) == ("success", 1, 999)
    con.execute("update buyers set spend = spend + 1 where id in (1, 2)")
    second = sync(con, hook, client, spec("upsert"))
    assert (second.status, second.planned, second.succeeded) == ("success", 2, 2)
    assert con.execute("select count(*), count(distinct record_key) from corral_sync.records").fetchone() == (1000, 1000)
    assert hook.records == mart(con)
