"""The Dagster code location: only merges what the other modules build."""

from __future__ import annotations

from dagster import Definitions

from dagster_defs.assets.dbt import build_dbt_assets
from dagster_defs.assets.ingestion import raw_events
from dagster_defs.assets.syncs import build_sync_assets
from dagster_defs.project import corral_dbt_project
from dagster_defs.resources import build_resources
from dagster_defs.traits import check_project_traits


def build_definitions() -> Definitions:
    project = corral_dbt_project()
    check_project_traits(project.project_dir)  # a bad computed trait stops the code location loading, named
    dbt_assets = build_dbt_assets(project)
    return Definitions(
        assets=[raw_events, dbt_assets, *build_sync_assets(project.manifest_path, dbt_assets)],
        resources=build_resources(project),
    )


defs = build_definitions()
