"""Jobs, schedules and the landing sensor, all derived from what is declared elsewhere:

- each sync with a `schedule` (cron, from its dbt exposure) gets a job running the sync and
  everything upstream of it (load, then the dbt models it reads: incremental, so what is not
  stale costs little) and a schedule;
- `landing_sensor` starts a load + build of everything downstream (not the syncs, which keep
  their own schedules) when new sealed landing segments appear;
- `daily_build` rebuilds every model and runs every test once a day.

Every asset that writes the warehouse is in the WAREHOUSE_POOL pool (limit 1 in the instance's
dagster.yaml), so runs that fire together queue instead of failing on DuckDB's lock."""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from typing import TYPE_CHECKING

from dagster import (
    AssetSelection,
    DefaultScheduleStatus,
    DefaultSensorStatus,
    RunRequest,
    ScheduleDefinition,
    SensorDefinition,
    SensorEvaluationContext,
    SkipReason,
    define_asset_job,
    sensor,
)

from dagster_defs.assets.ingestion import LANDING
from dagster_defs.assets.syncs import SYNCS_GROUP, sync_key
from dagster_defs.resources import CorralResource
from loaders.load import sealed_segments
from reverse_etl.syncs import SyncSpec

if TYPE_CHECKING:
    from dagster._core.definitions.unresolved_asset_job_definition import UnresolvedAssetJobDefinition

BUILDABLE = AssetSelection.all() - AssetSelection.assets(LANDING)  # the landing files are written by the collector
PIPELINE = BUILDABLE - AssetSelection.groups(SYNCS_GROUP)
DAILY_CRON = "0 3 * * *"


def job_name(sync: SyncSpec) -> str:
    return "sync_" + re.sub(r"\W", "_", sync.name)


def sync_jobs(syncs: list[SyncSpec]) -> list[UnresolvedAssetJobDefinition]:
    return [
        define_asset_job(job_name(sync), selection=(AssetSelection.assets(sync_key(sync)).upstream() - AssetSelection.assets(LANDING))
                         .required_multi_asset_neighbors(),  # the load fills every raw table at once
                         description=f"{sync.name}: load, build what {sync.model} needs, then sync it to {sync.destination}")
        for sync in syncs
    ]


def sync_schedules(syncs: list[SyncSpec], jobs: list[UnresolvedAssetJobDefinition]) -> list[ScheduleDefinition]:
    by_name = {job.name: job for job in jobs}
    return [
        ScheduleDefinition(name=f"{job_name(sync)}_schedule", job=by_name[job_name(sync)], cron_schedule=sync.schedule,
                           default_status=DefaultScheduleStatus.RUNNING, execution_timezone="UTC",
                           description=f"{sync.name} on its declared schedule ({sync.schedule})")
        for sync in syncs if sync.schedule
    ]


load_and_build = define_asset_job("load_and_build", selection=PIPELINE,
                                  description="Load new landing segments into raw.events and build every model downstream")
daily_build = define_asset_job("daily_build", selection=PIPELINE, description="Every model and every dbt test, once a day")
daily_build_schedule = ScheduleDefinition(name="daily_build_schedule", job=daily_build, cron_schedule=DAILY_CRON,
                                          default_status=DefaultScheduleStatus.RUNNING, execution_timezone="UTC")


def newest_sealed(corral: CorralResource) -> tuple[int, int]:
    """(newest sealing time in ns, how many sealed segments): a segment is renamed when sealed,
    which sets its ctime, so a segment sealed late is seen even if it was written early."""
    segments = sealed_segments(corral.home().landing)
    return max((p.stat().st_ctime_ns for p in segments), default=0), len(segments)


def build_landing_sensor() -> SensorDefinition:
    @sensor(name="landing_sensor", job=load_and_build, minimum_interval_seconds=30, default_status=DefaultSensorStatus.RUNNING,
            description="New sealed landing segments → load them and build everything downstream (syncs keep their schedules)")
    def landing_sensor(context: SensorEvaluationContext, corral: CorralResource) -> Iterator[RunRequest | SkipReason]:
        seen = json.loads(context.cursor) if context.cursor else {"sealed_ns": 0}
        newest, count = newest_sealed(corral)
        if newest <= seen["sealed_ns"]:
            yield SkipReason(f"no landing segment sealed since the last run ({count:,} sealed in all)")
            return
        context.update_cursor(json.dumps({"sealed_ns": newest}))
        yield RunRequest(run_key=f"landing-{newest}", tags={"corral/trigger": "landing"})

    return landing_sensor
