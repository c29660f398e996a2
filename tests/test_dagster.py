"""The Dagster code location: loads, validates, and materializes every asset in process."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
from dagster import AssetKey, materialize

from dagster_defs.definitions import build_definitions
from dagster_defs.project import REPO_ROOT, manifest_is_stale
from loaders.home import CorralHome
from loaders.synthetic import DemoSpec, write_ndjson


def test_definitions_hold_the_whole_flow() -> None:
    defs = build_definitions()
    graph = defs.resolve_asset_graph()
    keys = {key.to_user_string() for key in graph.get_all_asset_keys()}
    # dbt models are keyed by warehouse schema and name, as they are queried.
    assert {
        "raw/events", "staging/stg_corral__events", "marts/profiles", "marts/sessions",
        "audiences/repeat_buyers", "syncs/repeat_buyers_to_file",
    } <= keys
    assert AssetKey(["raw", "events"]) in graph.get(AssetKey(["staging", "stg_corral__events"])).parent_keys
    assert graph.get(AssetKey(["syncs", "repeat_buyers_to_file"])).parent_keys == {AssetKey(["audiences", "repeat_buyers"])}
    assert graph.get(AssetKey(["audiences", "repeat_buyers"])).group_name == "audiences"
    assert graph.get(AssetKey(["syncs", "repeat_buyers_to_file"])).group_name == "syncs"
    assert graph.get(AssetKey(["raw", "events"])).group_name == "ingestion"
    # traits and audiences: traits from profile_events, audiences from traits, history from every audience
    assert AssetKey(["marts", "profile_events"]) in graph.get(AssetKey(["marts", "profile_traits"])).parent_keys
    assert AssetKey(["marts", "profile_traits"]) in graph.get(AssetKey(["audiences", "high_value_customers"])).parent_keys
    audiences = {"cart_abandoners", "engaged_visitors", "high_value_customers", "recently_inactive_customers", "repeat_buyers"}
    assert {AssetKey(["audiences", name]) for name in audiences} <= graph.get(AssetKey(["intermediate", "int_audience_members"])).parent_keys
    for key in (["marts", "profile_traits"], ["marts", "audience_events"], ["marts", "audience_sizes"]):
        assert graph.get(AssetKey(key)).group_name == "audiences"


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
    defs = build_definitions()
    assets = list(defs.assets or [])
    result = materialize(assets, resources=defs.resources)
    assert result.success
    loaded = result.asset_materializations_for_node("raw__events")[0].metadata
    assert loaded["rows_loaded"].value > 0 and loaded["files_loaded"].value >= 1
    synced = result.asset_materializations_for_node("syncs__repeat_buyers_to_file")[0].metadata
    assert synced["failed"].value == 0
    assert (home.exports / "repeat_buyers.csv").read_text().startswith('"profile_id"')
    checks = result.get_asset_check_evaluations()
    assert checks and all(c.passed for c in checks)


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
