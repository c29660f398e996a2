"""Event forwarding in Dagster (dagster_defs/forwarding.py): the assets, job and sensor built
from a manifest's event syncs load as Definitions; materializing forwards through the engine
and a failing destination fails only its own sync; the sensor asks for a run each minute and
skips while one is going."""

from __future__ import annotations

import json
from datetime import datetime
from pathlib import Path

import pytest
from dagster import AssetKey, DagsterInstance, DagsterRunStatus, Definitions, RunRequest, SkipReason, build_sensor_context, materialize
from dagster._core.test_utils import create_run_for_test
from fakes.segment import WRITE_KEY, FakeSegment
from fakes.segment import serve as serve_segment
from test_event_forwarding import PROFILE_EVENTS_DDL, land

from dagster_defs.forwarding import JOB_NAME, build_forwarding
from dagster_defs.resources import CorralResource, DestinationsResource
from loaders.home import CorralHome
from loaders.warehouse import connect


def manifest(tmp_path: Path) -> Path:
    def exposure(name: str, prefix: str) -> dict[str, object]:
        return {"name": name, "depends_on": {"nodes": ["model.corral.profile_events"]},
                "meta": {"corral_sync": {"mode": "events", "destination": "segment", "start": "beginning", "deadline_seconds": 2,
                                         "settings": {"env_prefix": prefix}, "filters": [{"drop": "event = 'Debug'"}]}}}

    path = tmp_path / "manifest.json"
    path.write_text(json.dumps({
        "nodes": {"model.corral.profile_events": {"name": "profile_events", "relation_name": "main.profile_events"}},
        "exposures": {"exposure.corral.up": exposure("to_up", "UP"), "exposure.corral.down": exposure("to_down", "DOWN")},
    }))
    return path


def test_forwarding_definitions_materialize_and_a_down_destination_fails_only_its_sync(home: CorralHome, tmp_path: Path) -> None:
    forwarding = build_forwarding(manifest(tmp_path))
    assert [job.name for job in forwarding.jobs] == [JOB_NAME] and len(forwarding.sensors) == 1
    with connect(home) as con:
        con.execute(PROFILE_EVENTS_DDL)
        land(con, 1, 9, datetime(2026, 11, 1, 12))
    Definitions(assets=forwarding.assets, jobs=forwarding.jobs, sensors=forwarding.sensors,
                resources={"corral": CorralResource(), "destinations": DestinationsResource()}).get_repository_def()
    with serve_segment(FakeSegment()) as up, serve_segment(FakeSegment(down=True)) as down:
        overrides = {"UP_BASE_URL": up.url, "UP_WRITE_KEY": WRITE_KEY, "DOWN_BASE_URL": down.url, "DOWN_WRITE_KEY": WRITE_KEY}
        result = materialize(forwarding.assets, resources={"corral": CorralResource(home_dir=str(home.root)),
                                                           "destinations": DestinationsResource(overrides=overrides)},
                             raise_on_error=False)
        assert not result.success
        materialized = {event.asset_key for event in result.get_asset_materialization_events()}
        assert materialized == {AssetKey(["forwarding", "to_up"])}  # the one that was down is not
        assert len(up.events()) == 6 and down.events() == {}  # Debug events dropped by the filter
        down.down = False
        assert materialize(forwarding.assets, resources={"corral": CorralResource(home_dir=str(home.root)),
                                                         "destinations": DestinationsResource(overrides=overrides)}).success
        assert len(down.events()) == 6 and up.requests == 1  # nothing resent to the destination that was up


def test_the_sensor_asks_for_a_run_each_minute_and_skips_while_one_is_going(tmp_path: Path) -> None:
    (sensor,) = build_forwarding(manifest(tmp_path)).sensors
    configured = {"UP_BASE_URL": "http://127.0.0.1:9", "UP_WRITE_KEY": WRITE_KEY, "DOWN_BASE_URL": "http://127.0.0.1:9", "DOWN_WRITE_KEY": WRITE_KEY}
    resources = {"corral": CorralResource(home_dir=str(tmp_path / "home")), "destinations": DestinationsResource(overrides=configured)}
    with DagsterInstance.ephemeral() as instance:
        requests = list(sensor(build_sensor_context(instance=instance, resources=resources)))
        assert len(requests) == 1 and requests[0].run_key.startswith("forward-")
        assert set(requests[0].asset_selection) == {AssetKey(["forwarding", "to_up"]), AssetKey(["forwarding", "to_down"])}
        create_run_for_test(instance, job_name=JOB_NAME, status=DagsterRunStatus.STARTED)
        (skip,) = list(sensor(build_sensor_context(instance=instance, resources=resources)))
        assert isinstance(skip, SkipReason) and "still started" in str(skip.skip_message)


def test_the_sensor_leaves_out_syncs_whose_destination_is_not_configured(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    for name in ("UP_WRITE_KEY", "DOWN_WRITE_KEY", "UP_BASE_URL", "DOWN_BASE_URL"):
        monkeypatch.delenv(name, raising=False)
    (sensor,) = build_forwarding(manifest(tmp_path)).sensors
    home = {"corral": CorralResource(home_dir=str(tmp_path / "home"))}
    with DagsterInstance.ephemeral() as instance:
        only_up = {**home, "destinations": DestinationsResource(overrides={"UP_WRITE_KEY": WRITE_KEY})}
        (request,) = list(sensor(build_sensor_context(instance=instance, resources=only_up)))
        assert isinstance(request, RunRequest) and request.asset_selection == [AssetKey(["forwarding", "to_up"])]
        (skip,) = list(sensor(build_sensor_context(instance=instance, resources={**home, "destinations": DestinationsResource()})))
        assert isinstance(skip, SkipReason)
        assert "no event sync has its destination configured" in str(skip.skip_message) and "DOWN_WRITE_KEY" in str(skip.skip_message)


def test_no_event_syncs_no_definitions(tmp_path: Path) -> None:
    path = tmp_path / "manifest.json"
    path.write_text(json.dumps({"nodes": {}, "exposures": {}}))
    assert build_forwarding(path) == ([], [], [])


def test_event_syncs_side_by_side_each_keep_their_own_cursor(home: CorralHome) -> None:
    from test_event_forwarding import spec

    from dagster_defs.syncing import run_syncs

    with connect(home) as con:
        con.execute(PROFILE_EVENTS_DDL)
        ids = land(con, 1, 400, datetime(2026, 11, 1, 12))
    with serve_segment(FakeSegment()) as a, serve_segment(FakeSegment()) as b:
        env = {"A_BASE_URL": a.url, "A_WRITE_KEY": WRITE_KEY, "B_BASE_URL": b.url, "B_WRITE_KEY": WRITE_KEY}
        syncs = [spec(name=f"to_{p.lower()}", settings={"env_prefix": p, "batch_size": 7}) for p in ("A", "B")]
        outcomes = [result for _, result in run_syncs(home, syncs, env=env)]
        assert [getattr(r, "succeeded", r) for r in outcomes] == [400, 400]
        assert a.message_ids() == b.message_ids() == ids
