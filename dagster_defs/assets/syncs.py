"""One asset per declared sync, downstream of the mart it sends (read from the dbt manifest)."""


from pathlib import Path

from dagster import AssetExecutionContext, AssetsDefinition, Failure, MaterializeResult, asset
from dagster_dbt import get_asset_key_for_model

from dagster_defs.resources import CorralResource
from dagster_defs.syncing import declared_syncs, run_one
from reverse_etl.syncs import SyncSpec


def build_sync_assets(manifest: Path, dbt_assets: AssetsDefinition) -> list[AssetsDefinition]:
    return [_sync_asset(sync, dbt_assets) for sync in declared_syncs(manifest)]


def _sync_asset(sync: SyncSpec, dbt_assets: AssetsDefinition) -> AssetsDefinition:
    @asset(
        name=sync.name,
        key_prefix=["syncs"],
        group_name="syncs",
        deps=[get_asset_key_for_model([dbt_assets], sync.model)],
        kinds={sync.destination},
        owners=[sync.owner] if sync.owner and "@" in sync.owner else None,
        description=sync.description or f"{sync.model} → {sync.destination} ({sync.mode})",
        metadata={"destination": sync.destination, "mode": sync.mode, "model": sync.model, "schedule": sync.schedule or ""},
    )
    def _sync(context: AssetExecutionContext, corral: CorralResource) -> MaterializeResult:
        result = run_one(corral.home(), sync)
        if result.status != "success":
            raise Failure(
                description=f"sync {sync.name}: {result.failed + result.rejected} of {result.planned} records failed; first errors:\n"
                + "\n".join(result.errors[:5]),
            )
        return MaterializeResult(
            metadata={
                "planned": result.planned,
                "added": result.changes.get("added", 0),
                "changed": result.changes.get("changed", 0),
                "removed": result.changes.get("removed", 0),
                "unchanged": result.changes.get("unchanged", 0),
                "sent": result.sent,
                "succeeded": result.succeeded,
                "failed": result.failed,
                "rejected": result.rejected,
                "skipped": result.skipped,
                "duration_seconds": round(result.duration_seconds, 3),
                **{k: str(v) for k, v in result.metadata.items()},
            }
        )

    return _sync
