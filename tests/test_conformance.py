"""One suite every destination passes against its fake (contract: tests/conformance/__init__.py):
first sync lands every record, an unchanged re-sync sends nothing, changes / removals /
additions reach the fake as the mode says, partial failures are attributed to the right
records and retried, 401/403 stop the sync at once, and no documented limit is broken."""

from __future__ import annotations

import importlib
import pkgutil
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import conformance
import duckdb
import httpx
import pytest
from conformance import PEOPLE_SQL, Case, Harness, normalize

from sync_testing import FAST

from reverse_etl.destinations import destinations, make_destination
from reverse_etl.engine import SyncRunResult, run_sync
from reverse_etl.syncs import SyncSpec


def cases() -> dict[str, Case]:
    found = {}
    for module in pkgutil.iter_modules(conformance.__path__):
        case = importlib.import_module(f"conformance.{module.name}").CASE
        found[case.destination] = case
    return found


CASES = cases()
MODE_PARAMS = [pytest.param(case, mode, id=f"{name}-{mode}") for name, case in sorted(CASES.items()) for mode in case.modes]


def test_every_destination_has_a_conformance_case() -> None:
    assert sorted(CASES) == sorted(destinations())


@pytest.fixture
def con(tmp_path: Path) -> Iterator[duckdb.DuckDBPyConnection]:
    con = duckdb.connect(str(tmp_path / "warehouse.duckdb"))
    con.execute(PEOPLE_SQL)
    yield con
    con.close()


@pytest.fixture
def client() -> Iterator[httpx.Client]:
    with httpx.Client(timeout=httpx.Timeout(5.0)) as c:
        yield c


def spec(case: Case, mode: str) -> SyncSpec:
    return SyncSpec(name=f"people_{case.destination}_{mode}", model="people", relation="main.people", destination=case.destination,
                    mode=mode, primary_key="id", mapping=dict(case.mapping), settings=dict(case.modes[mode]))


def sync(con: duckdb.DuckDBPyConnection, case: Case, mode: str, harness: Harness, client: httpx.Client) -> SyncRunResult:
    return run_sync(con, spec(case, mode), make_destination(case.destination, harness.env, client), options=FAST)


def match_column(case: Case) -> str:
    return next(column for column, target in case.mapping.items() if target == case.match_field)


def people(con: duckdb.DuckDBPyConnection) -> list[dict[str, Any]]:
    return con.sql("select * from people order by id").to_arrow_table().to_pylist()


def key(value: Any) -> str:
    return str(value).strip().lower()


def assert_fake_matches(con: duckdb.DuckDBPyConnection, case: Case, mode: str, harness: Harness,
                        removed: list[dict[str, Any]] = ()) -> None:  # type: ignore[assignment]
    rows = people(con)
    column = match_column(case)
    if mode == "add_remove":
        assert harness.members(case.modes[mode]) == {key(row[column]) for row in rows}
        return
    held = harness.records()
    expected = {key(row[column]): {target: normalize(row[source]) for source, target in case.mapping.items()} for row in rows}
    got = {k: {target: normalize(held[k].get(target)) for target in case.mapping.values()} for k in expected if k in held}
    assert got == expected
    gone = {key(row[column]) for row in removed}
    if mode == "mirror":
        assert set(held) == set(expected), "a mirror holds exactly the current rows"
    else:
        assert gone <= set(held), "an upsert sync leaves removed rows where they are"


def edit(con: duckdb.DuckDBPyConnection) -> list[dict[str, Any]]:
    """Change 5 rows, remove 3, add 2; returns the removed rows."""
    removed = con.sql("select * from people where id in (7, 70, 333) order by id").to_arrow_table().to_pylist()
    con.execute("update people set first_name = 'Changed' || id, ltv = ltv + 1000, plan = 'enterprise' where id in (1, 2, 100, 250, 449)")
    con.execute("delete from people where id in (7, 70, 333)")
    con.execute("""
        insert into people values
            (1001, 'new1001@example.com', 'New', 'Person', 'pro', 10.5, true, date '2026-11-01'),
            (1002, 'new1002@example.com', null, 'Person', 'free', 0.0, false, date '2026-11-02')
    """)
    return removed


def statuses(con: duckdb.DuckDBPyConnection, sync_spec: SyncSpec) -> dict[str, tuple[str, str | None]]:
    rows = con.execute("select record_key, status, last_error from corral_sync.records where sync_name = ?", [sync_spec.name]).fetchall()
    return {k: (s, e) for k, s, e in rows}


@pytest.mark.parametrize(("case", "mode"), MODE_PARAMS)
def test_first_sync_resync_and_changes(con: duckdb.DuckDBPyConnection, client: httpx.Client, tmp_path: Path, case: Case, mode: str) -> None:
    with case.start(tmp_path) as harness:
        first = sync(con, case, mode, harness, client)
        assert (first.status, first.failed, first.rejected) == ("success", 0, 0), first.errors
        assert first.succeeded == 450
        assert_fake_matches(con, case, mode, harness)

        before = harness.requests()
        again = sync(con, case, mode, harness, client)
        assert (again.status, again.planned, again.sent) == ("success", 0, 0)
        assert harness.requests() == before, "an unchanged re-sync sends no request"

        removed = edit(con)
        changed = sync(con, case, mode, harness, client)
        assert changed.status == "success", changed.errors
        assert changed.changes["added"] == 2 and changed.changes["removed"] == 3
        assert changed.changes["changed"] == 5
        assert_fake_matches(con, case, mode, harness, removed)
        assert harness.violations() == []


PARTIAL_PARAMS = [p for p in MODE_PARAMS if p.values[0].partial_failures and p.values[1] != "mirror"]


@pytest.mark.parametrize(("case", "mode"), PARTIAL_PARAMS)
def test_partial_failures_are_attributed_and_retried(con: duckdb.DuckDBPyConnection, client: httpx.Client, tmp_path: Path,
                                                     case: Case, mode: str) -> None:
    refused = {5: None, 200: None, 401: None}
    rows = {row["id"]: row for row in people(con)}
    refused_keys = {key(rows[i][match_column(case)]) for i in refused}
    with case.start(tmp_path) as harness:
        harness.fail(refused_keys, "conformance says no")
        first = sync(con, case, mode, harness, client)
        assert first.status == "failed"
        assert (first.succeeded, first.failed) == (447, 3)
        state = statuses(con, spec(case, mode))
        failed = {k for k, (status, _) in state.items() if status != "synced"}
        assert failed == {str(i) for i in refused}, "exactly the refused records failed"
        assert all("conformance says no" in (state[str(i)][1] or "") for i in refused), state
        assert any("conformance says no" in e for e in first.errors)
        if mode != "add_remove":
            assert not refused_keys & set(harness.records())

        harness.accept_all()
        before = harness.requests()
        retried = sync(con, case, mode, harness, client)
        assert (retried.status, retried.planned, retried.succeeded) == ("success", 3, 3), retried.errors
        assert harness.requests() > before
        assert_fake_matches(con, case, mode, harness)
        assert harness.violations() == []


AUTH_PARAMS = [pytest.param(case, status, id=f"{name}-{status}") for name, case in sorted(CASES.items()) if case.authenticates
               for status in (401, 403)]


@pytest.mark.parametrize(("case", "status"), AUTH_PARAMS)
def test_refused_credentials_stop_the_sync_at_once(con: duckdb.DuckDBPyConnection, client: httpx.Client, tmp_path: Path,
                                                   case: Case, status: int) -> None:
    mode = next(iter(case.modes))
    with case.start(tmp_path) as harness:
        harness.deny(status)
        destination = make_destination(case.destination, harness.env, client)
        result = run_sync(con, spec(case, mode), destination, options=FAST)
        assert result.status == "failed" and result.succeeded == 0
        assert str(status) in result.errors[0] and "stopped" in result.errors[0], result.errors[:2]
        assert result.requests_retried == 0, "refused credentials are not retried"
        assert harness.requests() <= destination.capabilities.max_concurrency + 1, "the sync stops at the first refusal"
        state = statuses(con, spec(case, mode))
        assert all(s != "synced" for s, _ in state.values())

        harness.deny(0)
        recovered = sync(con, case, mode, harness, client)
        assert recovered.status == "success" and recovered.succeeded == 450, recovered.errors
        assert_fake_matches(con, case, mode, harness)
