"""The collector's landing segments (written outside Dagster) → the `raw` tables, in one load:
`raw.events`, and what tracking plans set aside (`raw.violations`, `raw.rejected_events`,
`raw.replayed_events`)."""


from collections.abc import Iterator
from contextlib import closing

from dagster import AssetExecutionContext, AssetKey, AssetSpec, MaterializeResult, MetadataValue, multi_asset

from dagster_defs.resources import WAREHOUSE_POOL, CorralResource
from loaders.load import describe, load_landing
from loaders.warehouse import connect

LANDING = AssetKey(["landing", "segments"])
RAW_EVENTS = AssetKey(["raw", "events"])
PROTOCOL_TABLES = {
    "violations": "Each tracking-plan violation: message id, source, event, property path, rule, received type.",
    "rejected_events": "Messages a tracking plan in block mode kept out of raw.events, with the reasons; replayable.",
    "replayed_events": "Rejected messages replayed (`corral replay-rejected`) after the plan was fixed, each once.",
}

landing_segments = AssetSpec(
    key=LANDING,
    group_name="ingestion",
    kinds={"file"},
    description="Sealed NDJSON segments under $CORRAL_HOME/landing/<source>/, written durably by `corral collect` (the "
    "Segment/RudderStack-compatible tracking API) and the file and webhook importers. Not built by Dagster: the "
    "`landing_sensor` watches it and loads what is new.",
)


@multi_asset(
    specs=[
        AssetSpec(RAW_EVENTS, deps=[LANDING], group_name="ingestion", kinds={"duckdb", "python"},
                  description="Sealed landing segments bulk-loaded into raw.events, each file exactly once."),
        *(AssetSpec(AssetKey(["raw", name]), deps=[LANDING], group_name="ingestion", kinds={"duckdb"}, description=text)
          for name, text in PROTOCOL_TABLES.items()),
    ],
    name="raw_events",
    pool=WAREHOUSE_POOL,
)
def raw_events(context: AssetExecutionContext, corral: CorralResource) -> Iterator[MaterializeResult]:
    with corral.writing(context.log.info) as home, closing(connect(home)) as con:
        result = load_landing(con, home.landing, skip_invalid=True)
        totals = {name: con.execute(f"select count(*) from raw.{name}").fetchone()[0] for name in ("events", *PROTOCOL_TABLES)}
    for line in describe(result):
        context.log.info(line)
    new_files = [f for f in result.files if not f.already_loaded_as]
    yield MaterializeResult(
        asset_key=RAW_EVENTS,
        metadata={
            "files_loaded": len(new_files),
            "rows_loaded": result.rows_loaded,
            "rows_rejected": len(result.errors),
            "total_rows": totals["events"],
            "files": MetadataValue.md("\n".join(f"- `{f.path.name}`: {f.rows_loaded:,} rows" for f in new_files) or "none"),
        },
    )
    for name in PROTOCOL_TABLES:
        yield MaterializeResult(asset_key=AssetKey(["raw", name]), metadata={"total_rows": totals[name]})
