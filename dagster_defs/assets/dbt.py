"""Every dbt model, seed and test: `dbt build`, streamed, tests as asset checks. Audience
models record their size (numeric metadata, plotted over time in the UI)."""


import os
from collections.abc import Iterator
from contextlib import closing
from typing import Any

from dagster import AssetExecutionContext, AssetKey, AssetsDefinition, Output
from dagster_dbt import DagsterDbtTranslator, DagsterDbtTranslatorSettings, DbtCliResource, DbtProject, dbt_assets

from dagster_defs.dbt_runner import INDIRECT_SELECTION
from dagster_defs.resources import WAREHOUSE_POOL, CorralResource
from loaders.warehouse import connect


def audience_relations(manifest: dict[str, Any]) -> dict[AssetKey, str]:
    """Models declaring `meta.audience`: their asset key (schema, name) and relation."""
    found = {}
    for node in manifest["nodes"].values():
        meta = node.get("meta") or node.get("config", {}).get("meta") or {}
        if node["resource_type"] == "model" and "audience" in meta:
            found[AssetKey([node["schema"], node["alias"] or node["name"]])] = f'{node["schema"]}.{node["alias"] or node["name"]}'
    return found


def build_dbt_assets(project: DbtProject) -> AssetsDefinition:
    import json

    translator = DagsterDbtTranslator(settings=DagsterDbtTranslatorSettings(enable_asset_checks=True))
    audiences = audience_relations(json.loads(project.manifest_path.read_text()))

    @dbt_assets(manifest=project.manifest_path, project=project, dagster_dbt_translator=translator, pool=WAREHOUSE_POOL)
    def corral_dbt_models(context: AssetExecutionContext, dbt: DbtCliResource, corral: CorralResource) -> Iterator[Any]:
        # from the first audience on, events wait (in order) until dbt has let go of the
        # warehouse, so that each audience's output can carry the size counted then
        # a sync's job builds only what the sync reads: its tests run when all they read is built
        # (dagster-dbt sets the variable itself when a run deselects checks)
        os.environ.setdefault("DBT_INDIRECT_SELECTION", INDIRECT_SELECTION)
        held: list[Any] = []
        with corral.writing(context.log.info):
            for event in dbt.cli(["build"], context=context).stream():
                if held or (isinstance(event, Output) and context.asset_key_for_output(event.output_name) in audiences):
                    held.append(event)
                else:
                    yield event
            yield from with_sizes(held, context, audiences, corral)

    return corral_dbt_models


def with_sizes(held: list[Any], context: AssetExecutionContext, audiences: dict[AssetKey, str], corral: CorralResource) -> Iterator[Any]:
    if not held:
        return
    if (os.environ.get("CORRAL_TARGET") or "duckdb") != "duckdb":  # sizes are read from the embedded warehouse only
        yield from held
        return
    with closing(connect(corral.home(), read_only=True)) as con:
        for event in held:
            relation = audiences.get(context.asset_key_for_output(event.output_name)) if isinstance(event, Output) else None
            if relation is None:
                yield event
                continue
            size = con.execute(f"select count(*) from {relation}").fetchone()[0]
            yield event.with_metadata({**event.metadata, "audience_size": size})
