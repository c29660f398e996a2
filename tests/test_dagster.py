"""The Dagster code location: loads and validates; the asset graph has the whole flow with its
groups; every schedule and the landing sensor evaluate; every asset materializes in process
with syncs pointed at local fakes; runs that write the warehouse at once queue."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from contextlib import closing
from datetime import datetime
from pathlib import Path

import pytest
from dagster import AssetKey, AssetSpec, DagsterEventType, DagsterInstance, build_schedule_context, build_sensor_context, materialize
from fakes import mixpanel
from fakes.hubspot import TOKEN as HUBSPOT_TOKEN
from fakes.hubspot import FakeHubSpot, serve

from dagster_defs.definitions import build_definitions
from dagster_defs.project import REPO_ROOT, corral_dbt_project, manifest_is_stale
from dagster_defs.resources import CorralResource
from dagster_defs.syncing import declared_syncs
from loaders.home import CorralHome
from loaders.synthetic import DemoSpec, write_ndjson
from loaders.warehouse import connect


def test_definitions_hold_the_whole_flow() -> None:
    defs = build_definitions()
    graph = defs.resolve_asset_graph()
    keys = {key.to_user_string() for key in graph.get_all_asset_keys()}
    # dbt models are keyed by warehouse schema and name, as they are queried.
    assert {
        "landing/segments", "raw/events", "staging/stg_corral__events", "marts/profiles", "marts/sessions",
        "audiences/repeat_buyers", "syncs/repeat_buyers_to_file", "syncs/high_value_customers_to_hubspot",
    } <= keys

    def parents(*key: str) -> set[AssetKey]:
        return graph.get(AssetKey(list(key))).parent_keys

    # the flow, edge by edge: collector (landing) -> raw -> staging -> identity -> traits -> audiences -> syncs
    assert parents("raw", "events") == {AssetKey(["landing", "segments"])}
    assert AssetKey(["raw", "events"]) in parents("staging", "stg_corral__events")
    assert AssetKey(["staging", "stg_corral__events"]) in parents("intermediate", "int_identifiers_extracted")
    assert AssetKey(["intermediate", "int_identity_resolved"]) in parents("marts", "profiles")
    assert AssetKey(["marts", "profile_events"]) in parents("marts", "profile_traits")
    assert AssetKey(["marts", "profile_traits"]) in parents("audiences", "high_value_customers")
    assert parents("syncs", "high_value_customers_to_hubspot") == {AssetKey(["audiences", "high_value_customers"])}
    assert parents("syncs", "repeat_buyers_to_file") == {AssetKey(["audiences", "repeat_buyers"])}
    audiences = {"cart_abandoners", "engaged_visitors", "high_value_customers", "recently_inactive_customers", "repeat_buyers"}
    assert {AssetKey(["audiences", name]) for name in audiences} <= parents("intermediate", "int_audience_members")

    groups = {
        "ingestion": [["landing", "segments"], ["raw", "events"]],
        "staging": [["staging", "stg_corral__events"]],
        "identity": [["intermediate", "int_identity_resolved"], ["marts", "profiles"]],
        "sessions": [["marts", "sessions"], ["marts", "page_views"]],
        "traits_and_audiences": [["marts", "profile_traits"], ["audiences", "repeat_buyers"], ["marts", "audience_events"]],
        "syncs": [["syncs", "repeat_buyers_to_file"], ["syncs", "high_value_customers_to_hubspot"]],
    }
    for group, members in groups.items():
        for key in members:
            assert graph.get(AssetKey(key)).group_name == group, key
    assert {graph.get(key).group_name for key in graph.get_all_asset_keys()} == {*groups, "protocols"}, "no asset left in 'default'"
    # dbt descriptions and owners, and the syncs' owners, reach the UI
    audience = graph.get(AssetKey(["audiences", "high_value_customers"]))
    assert audience.owners and audience.description
    assert graph.get(AssetKey(["syncs", "high_value_customers_to_hubspot"])).owners == ["sales-ops@example.com"]
    assert graph.get(AssetKey(["landing", "segments"])).is_executable is False
    for table in ("violations", "rejected_events", "replayed_events"):  # tracking plans' tables come from the same load
        assert graph.get(AssetKey(["raw", table])).is_materializable and parents("raw", table) == {AssetKey(["landing", "segments"])}


def test_each_declared_schedule_runs_its_sync_and_what_it_needs() -> None:
    defs = build_definitions()
    syncs = declared_syncs(corral_dbt_project().manifest_path)
    scheduled = {s.name: s for s in syncs if s.schedule}
    assert scheduled, "the demo project declares scheduled syncs"
    schedules = {s.name: s for s in defs.schedules or []}
    assert set(schedules) == {"daily_build_schedule", *(f"sync_{name}_schedule" for name in scheduled)}
    for name, sync in scheduled.items():
        schedule = schedules[f"sync_{name}_schedule"]
        assert schedule.cron_schedule == sync.schedule
        selected = defs.resolve_job_def(schedule.job_name).asset_layer.selected_asset_keys
        assert {AssetKey(["syncs", name]), AssetKey(["raw", "events"]), AssetKey(["audiences", sync.model]),
                AssetKey(["marts", "profiles"])} <= selected
        assert not any(k.path[0] == "syncs" and k.path[1] != name for k in selected), "only its own sync"
        tick = schedule.evaluate_tick(build_schedule_context(scheduled_execution_time=datetime(2026, 11, 30, 12)))
        assert len(tick.run_requests or []) == 1
    daily = defs.resolve_job_def("daily_build").asset_layer.selected_asset_keys
    assert AssetKey(["marts", "profile_traits"]) in daily and not any(k.path[0] == "syncs" for k in daily)
    tick = schedules["daily_build_schedule"].evaluate_tick(build_schedule_context(scheduled_execution_time=datetime(2026, 11, 30, 3)))
    assert len(tick.run_requests or []) == 1


def test_the_landing_sensor_starts_one_load_per_new_sealed_segment(home: CorralHome) -> None:
    defs = build_definitions()
    sensor = defs.resolve_sensor_def("landing_sensor")
    resources = {"corral": CorralResource(home_dir=str(home.root))}
    home.ensure()
    first = sensor.evaluate_tick(build_sensor_context(resources=resources))
    assert not first.run_requests and "no landing segment sealed" in (first.skip_message or "")
    write_ndjson(DemoSpec(users=5, days=2, seed=3), home.landing / "demo")
    second = sensor.evaluate_tick(build_sensor_context(resources=resources, cursor=first.cursor))
    assert len(second.run_requests or []) == 1 and second.cursor
    third = sensor.evaluate_tick(build_sensor_context(resources=resources, cursor=second.cursor))
    assert not third.run_requests, "segments already seen start nothing"
    (home.landing / "demo" / "late.ndjson.open").write_text("{}\n")  # still being written: not sealed
    assert not sensor.evaluate_tick(build_sensor_context(resources=resources, cursor=second.cursor)).run_requests
    time.sleep(0.01)
    os.rename(home.landing / "demo" / "late.ndjson.open", home.landing / "demo" / "late.ndjson")  # sealed now
    assert len(sensor.evaluate_tick(build_sensor_context(resources=resources, cursor=second.cursor)).run_requests or []) == 1
    assert sensor.job_name == "load_and_build"


@pytest.mark.slow
def test_dagster_validates_the_code_location(tmp_path: Path) -> None:
    done = subprocess.run(
        [str(Path(sys.executable).with_name("dagster")), "definitions", "validate", "-m", "dagster_defs.definitions"],
        check=False, cwd=tmp_path, capture_output=True, text=True, timeout=300,
    )
    assert done.returncode == 0, done.stdout + done.stderr
    assert "All code locations passed validation" in done.stdout + done.stderr


@pytest.mark.slow
def test_materializes_every_asset_in_process(home: CorralHome) -> None:
    write_ndjson(DemoSpec(users=60, days=14, seed=11), home.landing / "demo")
    with serve(FakeHubSpot()) as hubspot, mixpanel.serve(mixpanel.FakeMixpanel()) as forwarded:
        defs = build_definitions({"HUBSPOT_ACCESS_TOKEN": HUBSPOT_TOKEN, "HUBSPOT_BASE_URL": hubspot.url, "MIXPANEL_BASE_URL": forwarded.url,
                                  "MIXPANEL_SERVICE_ACCOUNT_USER": mixpanel.USER, "MIXPANEL_SERVICE_ACCOUNT_SECRET": mixpanel.SECRET,
                                  "MIXPANEL_PROJECT_ID": mixpanel.PROJECT})
        assets = [a for a in defs.assets or [] if not isinstance(a, AssetSpec)]
        result = materialize(assets, resources=defs.resources)
        assert result.success
        [loaded] = [m.materialization.metadata for m in result.get_asset_materialization_events()
                    if m.asset_key == AssetKey(["raw", "events"])]
        assert loaded["rows_loaded"].value > 0 and loaded["files_loaded"].value >= 1
        with closing(connect(home, read_only=True)) as con:
            sizes = {name: con.execute(f"select count(*) from audiences.{name}").fetchone()[0]
                     for name in ("repeat_buyers", "high_value_customers", "cart_abandoners")}
        assert sizes["high_value_customers"] > 0
        for name, size in sizes.items():  # audience assets record their size
            [audience] = [m for m in result.get_asset_materialization_events() if m.asset_key == AssetKey(["audiences", name])]
            assert audience.materialization.metadata["audience_size"].value == size
        synced = result.asset_materializations_for_node("syncs__repeat_buyers_to_file")[0].metadata
        assert synced["failed"].value == 0 and synced["succeeded"].value == sizes["repeat_buyers"]
        assert (home.exports / "repeat_buyers.csv").read_text().startswith('"profile_id"')
        to_hubspot = result.asset_materializations_for_node("syncs__high_value_customers_to_hubspot")[0].metadata
        assert (to_hubspot["succeeded"].value, to_hubspot["failed"].value) == (sizes["high_value_customers"], 0)
        assert isinstance(to_hubspot["duration_seconds"].value, float) and len(hubspot.contacts) == sizes["high_value_customers"]
        checks = result.get_asset_check_evaluations()
        assert checks and all(c.passed for c in checks)
        [events] = [m.materialization.metadata for m in result.get_asset_materialization_events()
                    if m.asset_key == AssetKey(["forwarding", "commerce_events_to_mixpanel"])]
        with closing(connect(home, read_only=True)) as con:
            funnel = con.execute("select count(*) from marts.profile_events where event_name in "
                                 "('Product Viewed', 'Product Added', 'Checkout Started', 'Order Completed')").fetchone()[0]
        assert funnel > 0 and events["succeeded"].value == funnel == len(forwarded.received)  # the event sync ran after the build

        # a failing sync fails its run with the destination's first errors
        with closing(connect(home)) as con:
            con.execute("delete from corral_sync.records where sync_name = 'high_value_customers_to_hubspot'")  # all to send again
        hubspot.deny_status = 401
        sync_asset = [a for a in assets if AssetKey(["syncs", "high_value_customers_to_hubspot"]) in a.keys]
        failed = materialize(sync_asset, resources=defs.resources, raise_on_error=False)
        assert not failed.success
        [failure] = [e for e in failed.all_events if e.is_step_failure]
        message = failure.step_failure_data.user_failure_data.description
        assert "sync high_value_customers_to_hubspot to hubspot" in message and "HTTP 401: INVALID_AUTHENTICATION" in message


WRITER = """
import sys, time
from pathlib import Path
from dagster import DagsterInstance, materialize
from dagster_defs.assets.ingestion import raw_events
from dagster_defs.resources import CorralResource
go = Path(sys.argv[1])
while not go.exists():
    time.sleep(0.01)
result = materialize([raw_events], instance=DagsterInstance.get(), resources={"corral": CorralResource()}, raise_on_error=False)
print(result.run_id, result.success)
"""


@pytest.mark.slow
@pytest.mark.parametrize("pool_limit", [1, 2])
def test_runs_that_write_the_warehouse_together_queue_instead_of_failing(home: CorralHome, tmp_path: Path, pool_limit: int) -> None:
    """Two runs loading the same warehouse at the same moment, in two processes, under the
    instance config `make dev` uses: the second waits instead of failing on DuckDB's lock, and
    their warehouse writes never overlap. With the pool's limit (1), the second step waits for the
    pool, or, when both claimed its one slot at the same instant (Dagster's SQLite storage does not
    lock the slot row; seen once in a full run), for the warehouse's writer lock. With a limit of 2
    both steps start, and the lock alone keeps the writes apart (before it, this failed)."""
    write_ndjson(DemoSpec(users=1500, days=30, seed=5), home.landing / "demo")
    dagster_home = tmp_path / "dagster"
    dagster_home.mkdir()
    config = (REPO_ROOT / "dagster_defs" / "dagster.yaml").read_text()
    assert "default_limit: 1" in config
    (dagster_home / "dagster.yaml").write_text(config.replace("default_limit: 1", f"default_limit: {pool_limit}"))
    instance = DagsterInstance.from_config(str(dagster_home))  # its storage made once, before two processes open it
    go = tmp_path / "go"
    env = {**os.environ, "DAGSTER_HOME": str(dagster_home), "CORRAL_HOME": str(home.root)}
    writers = [subprocess.Popen([sys.executable, "-c", WRITER, str(go)], env=env, cwd=REPO_ROOT, stdout=subprocess.PIPE, text=True)
               for _ in range(2)]
    time.sleep(8)  # both imported and waiting
    go.touch()
    outcomes = [w.communicate(timeout=300)[0].strip().splitlines()[-1].split() for w in writers]
    assert all(success == "True" for _, success in outcomes), outcomes
    starts, ends, waits = [], [], []
    for run_id, _ in outcomes:
        records = instance.all_logs(run_id)
        starts += [r.timestamp for r in records if r.dagster_event_type == DagsterEventType.STEP_START]
        ends += [r.timestamp for r in records if r.dagster_event_type == DagsterEventType.STEP_SUCCESS]
        waits.append(any("waiting for the warehouse" in (r.user_message or "") for r in records))
    overlapped = max(starts) < min(ends)  # both steps were running at once
    if pool_limit == 1:
        assert not overlapped or waits.count(True) == 1, "the second step neither waited for the pool nor for the lock"
    else:
        assert overlapped and waits.count(True) == 1, "both steps held the pool's two slots, so exactly one waited for the lock"
    with closing(connect(home, read_only=True)) as con:
        assert con.execute("select count(*) from raw.loaded_files").fetchone()[0] == len(list((home.landing / "demo").iterdir()))


@pytest.mark.slow
def test_dev_mode_reparses_without_dbt_on_path(monkeypatch: pytest.MonkeyPatch) -> None:
    """`dagster dev` re-parses the dbt project on load; it must find the venv's dbt even when
    PATH does not (as when the UI is started as .venv/bin/dagster)."""
    monkeypatch.setenv("PATH", "/usr/bin:/bin")
    monkeypatch.setenv("DAGSTER_IS_DEV_CLI", "1")
    manifest = REPO_ROOT / "dbt_project" / "target" / "manifest.json"
    before = manifest.stat().st_mtime_ns if manifest.exists() else 0
    defs = build_definitions()
    assert manifest.stat().st_mtime_ns > before
    assert AssetKey(["syncs", "repeat_buyers_to_file"]) in defs.resolve_asset_graph().get_all_asset_keys()


def test_a_manifest_older_than_the_project_is_stale(tmp_path: Path) -> None:
    project = tmp_path / "dbt_project"
    (project / "models" / "marts").mkdir(parents=True)
    model = project / "models" / "marts" / "m.sql"
    model.write_text("select 1 as id")
    manifest = project / "target" / "manifest.json"
    assert manifest_is_stale(manifest, project)  # missing
    manifest.parent.mkdir()
    manifest.write_text("{}")
    os.utime(model, (1_000_000_000, 1_000_000_000))
    assert not manifest_is_stale(manifest, project)
    (project / "models" / "marts" / "_marts__models.yml").write_text("version: 2\n")  # a new test, say
    os.utime(manifest, (1_000_000_001, 1_000_000_001))
    assert manifest_is_stale(manifest, project)
