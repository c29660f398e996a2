"""One asset per declared sync, downstream of the mart it sends (read from the dbt manifest's
exposures, never listed again here). A materialization records the run's counts as numbers
(the UI plots them over time); a run with failures fails with the destination's first errors."""


from pathlib import Path

from dagster import AssetExecutionContext, AssetKey, AssetsDefinition, Failure, MaterializeResult, MetadataValue, asset
from dagster_dbt import get_asset_key_for_model

from dagster_defs.resources import WAREHOUSE_POOL, CorralResource, DestinationsResource
from dagster_defs.syncing import declared_syncs, run_one
from reverse_etl.syncs import SyncSpec

SYNCS_GROUP = "syncs"


def sync_key(sync: SyncSpec) -> AssetKey:
    return AssetKey(["syncs", sync.name])


def build_sync_assets(manifest: Path, dbt_assets: AssetsDefinition) -> list[AssetsDefinition]:
    return [_sync_asset(sync, dbt_assets) for sync in declared_syncs(manifest)]


def _sync_asset(sync: SyncSpec, dbt_assets: AssetsDefinition) -> AssetsDefinition:
    @asset(
        key=sync_key(sync),
        group_name=SYNCS_GROUP,
        deps=[get_asset_key_for_model([dbt_assets], sync.model)],
        kinds={sync.destination},
        owners=[sync.owner] if sync.owner and "@" in sync.owner else None,
        pool=WAREHOUSE_POOL,  # the sync's state lives in the warehouse
        description=sync.description or f"{sync.model} → {sync.destination} ({sync.mode})",
        metadata={"destination": sync.destination, "mode": sync.mode, "model": sync.model, "schedule": sync.schedule or "",
                  "primary_key": sync.primary_key, "mapping": MetadataValue.json(sync.mapping)},
    )
    def _sync(context: AssetExecutionContext, corral: CorralResource, destinations: DestinationsResource) -> MaterializeResult:
        with corral.writing(context.log.info) as home:
            result = run_one(home, sync, echo=context.log.info, env=destinations.env(home))
        counts = {
            "planned": result.planned, "sent": result.sent, "succeeded": result.succeeded, "failed": result.failed,
            "rejected": result.rejected, "skipped": result.skipped, "added": result.changes.get("added", 0),
            "changed": result.changes.get("changed", 0), "removed": result.changes.get("removed", 0),
            "unchanged": result.changes.get("unchanged", 0), "requests_retried": result.requests_retried,
            "duration_seconds": round(result.duration_seconds, 3),
        }
        if result.status != "success":
            raise Failure(
                description=f"sync {sync.name} to {sync.destination}: {result.failed:,} failed, {result.rejected:,} rejected of "
                f"{result.planned:,} planned{' (stopped early)' if result.stopped else ''}; first errors:\n" + "\n".join(result.errors[:5]),
                metadata={**counts, "run_id": result.run_id},
            )
        return MaterializeResult(metadata={**counts, "run_id": result.run_id, **{k: str(v) for k, v in result.metadata.items()}})

    return _sync
