"""The Dagster code location: only merges what the other modules build."""

from __future__ import annotations

from dagster import Definitions

from dagster_defs.assets.dbt import build_dbt_assets
from dagster_defs.assets.ingestion import landing_segments, raw_events
from dagster_defs.assets.syncs import build_sync_assets
from dagster_defs.automation import build_landing_sensor, daily_build, daily_build_schedule, load_and_build, sync_jobs, sync_schedules
from dagster_defs.forwarding import build_forwarding
from dagster_defs.project import corral_dbt_project
from dagster_defs.resources import build_resources
from dagster_defs.syncing import declared_syncs
from dagster_defs.traits import check_project_traits


def build_definitions(destination_overrides: dict[str, str] | None = None) -> Definitions:
    project = corral_dbt_project()
    check_project_traits(project.project_dir)  # a bad computed trait stops the code location loading, named
    dbt_assets = build_dbt_assets(project)
    syncs = declared_syncs(project.manifest_path)
    jobs = sync_jobs(syncs)
    forwarding = build_forwarding(project.manifest_path, dbt_assets)  # event syncs: a sensor every minute
    return Definitions(
        assets=[landing_segments, raw_events, dbt_assets, *build_sync_assets(project.manifest_path, dbt_assets), *forwarding.assets],
        jobs=[load_and_build, daily_build, *jobs, *forwarding.jobs],
        schedules=[daily_build_schedule, *sync_schedules(syncs, jobs)],
        sensors=[build_landing_sensor(), *forwarding.sensors],
        resources=build_resources(project, destination_overrides),
    )


defs = build_definitions()
