"""Event forwarding in Dagster, derived from the event syncs declared in the dbt manifest
(exposures with `meta.corral_sync.mode: events`):

- one asset per event sync (key `forwarding/<sync>`, group `syncs` so the load-and-build jobs
  leave it alone, downstream of the model it reads), all materialized by one op that runs the
  syncs side by side, each on its own warehouse cursor and HTTP client: a destination that is
  down holds up only its own sync, and that for at most its deadline (50 s by default);
- the job `forward_events` and the sensor `event_forwarding_sensor`, which starts the job every
  minute unless a run of it is still queued or going, so routing is near real time. It selects
  the syncs whose destination is configured (credentials set); the others wait, and the tick
  says why, rather than failing a run every minute.

A sync that fails (destination down, refused credentials, refused events) fails the run after
the others are recorded; its events wait in the warehouse for the next tick.
"""

import time
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING, NamedTuple

from dagster import (
    AssetExecutionContext,
    AssetKey,
    AssetsDefinition,
    AssetSelection,
    AssetSpec,
    DagsterRunStatus,
    DefaultSensorStatus,
    Failure,
    MaterializeResult,
    RunRequest,
    RunsFilter,
    SensorDefinition,
    SensorEvaluationContext,
    SkipReason,
    define_asset_job,
    multi_asset,
    sensor,
)

from dagster_defs.assets.syncs import SYNCS_GROUP
from dagster_defs.resources import WAREHOUSE_POOL, CorralResource, DestinationsResource
from dagster_defs.syncing import declared_event_syncs, not_configured, run_syncs
from reverse_etl.syncs import EventSyncSpec

if TYPE_CHECKING:
    from dagster._core.definitions.unresolved_asset_job_definition import UnresolvedAssetJobDefinition

JOB_NAME = "forward_events"
SENSOR_NAME = "event_forwarding_sensor"
ACTIVE = [DagsterRunStatus.QUEUED, DagsterRunStatus.NOT_STARTED, DagsterRunStatus.STARTING, DagsterRunStatus.STARTED]


class Forwarding(NamedTuple):
    """What build_forwarding returns, to be merged into the code location's Definitions."""

    assets: list[AssetsDefinition]
    jobs: list["UnresolvedAssetJobDefinition"]
    sensors: list[SensorDefinition]


def event_sync_key(sync: EventSyncSpec) -> AssetKey:
    return AssetKey(["forwarding", sync.name])


def build_forwarding(manifest: Path, dbt_assets: AssetsDefinition | None = None) -> Forwarding:
    """The assets, job and sensor of the declared event syncs (empty when there are none).
    `dbt_assets` places each asset downstream of its model (without it: AssetKey([model]))."""
    syncs = declared_event_syncs(manifest)
    if not syncs:
        return Forwarding([], [], [])

    def model_key(model: str) -> AssetKey:
        if dbt_assets is None:
            return AssetKey([model])
        from dagster_dbt import get_asset_key_for_model

        return get_asset_key_for_model([dbt_assets], model)

    specs = [
        AssetSpec(
            key=event_sync_key(sync), deps=[model_key(sync.model)], group_name=SYNCS_GROUP, kinds={sync.destination}, skippable=True,
            owners=[sync.owner] if sync.owner and "@" in sync.owner else None,
            description=sync.description or f"new {sync.model} rows forwarded to {sync.destination} (event sync)",
            metadata={"destination": sync.destination, "mode": "events", "model": sync.model, "start": sync.start,
                      "filters": repr(sync.filters.drop + sync.filters.keep) if sync.filters.drop or sync.filters.keep else ""},
        )
        for sync in syncs
    ]

    @multi_asset(name="event_forwarding", specs=specs, can_subset=True, pool=WAREHOUSE_POOL)
    def event_forwarding(context: AssetExecutionContext, corral: CorralResource, destinations: DestinationsResource) -> Iterator[MaterializeResult]:
        selected = [sync for sync in syncs if event_sync_key(sync) in context.selected_asset_keys]
        failures = []
        with corral.writing(context.log.info) as home:
            for sync, outcome in run_syncs(home, selected, echo=context.log.info, env=destinations.env(home), parallel=8):
                if isinstance(outcome, Exception):
                    failures.append(f"{sync.name}: {type(outcome).__name__}: {outcome}")
                    continue
                counts = {"planned": outcome.planned, "sent": outcome.sent, "succeeded": outcome.succeeded, "failed": outcome.failed,
                          "rejected": outcome.rejected, "requests_retried": outcome.requests_retried,
                          "duration_seconds": round(outcome.duration_seconds, 3), "run_id": outcome.run_id,
                          **{k: str(v) for k, v in outcome.metadata.items()}}
                if outcome.status != "success":
                    failures.append(f"{sync.name} to {sync.destination}: " + "; ".join(outcome.errors[:3]))
                    continue
                yield MaterializeResult(asset_key=event_sync_key(sync), metadata=counts)
        if failures:
            raise Failure(description="event syncs failed (their events wait in the warehouse for the next run):\n" + "\n".join(failures))

    job = define_asset_job(JOB_NAME, selection=AssetSelection.assets(*[event_sync_key(s) for s in syncs]),
                           description="Forward new events to their destinations (every event sync, side by side)")

    @sensor(name=SENSOR_NAME, job=job, minimum_interval_seconds=60, default_status=DefaultSensorStatus.RUNNING,
            description="Every minute: forward new events, for the event syncs whose destination is configured "
                        "(skipped while a forwarding run is still queued or going)")
    def event_forwarding_sensor(context: SensorEvaluationContext, corral: CorralResource,
                                destinations: DestinationsResource) -> Iterator[RunRequest | SkipReason]:
        going = context.instance.get_runs(filters=RunsFilter(job_name=JOB_NAME, statuses=ACTIVE), limit=1)
        if going:
            yield SkipReason(f"forwarding run {going[0].run_id} is still {going[0].status.value.lower()}")
            return
        env = destinations.env(corral.home())
        reasons = {sync.name: not_configured(sync, env) for sync in syncs}
        ready = [sync for sync in syncs if reasons[sync.name] is None]
        if not ready:  # a destination without credentials waits, said so in the tick, instead of failing a run a minute
            yield SkipReason("no event sync has its destination configured: " + "; ".join(str(r) for r in reasons.values()))
            return
        if len(ready) < len(syncs):
            context.log.info("not configured, left out: " + "; ".join(str(r) for r in reasons.values() if r))
        yield RunRequest(run_key=f"forward-{int(time.time() // 60)}", tags={"corral/trigger": "forwarding"},
                         asset_selection=[event_sync_key(sync) for sync in ready])

    return Forwarding([event_forwarding], [job], [event_forwarding_sensor])
