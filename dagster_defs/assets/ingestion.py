"""The collector's landing segments (written outside Dagster) → `raw.events`."""


from contextlib import closing

from dagster import AssetExecutionContext, AssetKey, AssetSpec, MaterializeResult, MetadataValue, asset

from dagster_defs.resources import WAREHOUSE_POOL, CorralResource
from loaders.load import describe, load_landing
from loaders.warehouse import connect

LANDING = AssetKey(["landing", "segments"])

landing_segments = AssetSpec(
    key=LANDING,
    group_name="ingestion",
    kinds={"file"},
    description="Sealed NDJSON segments under $CORRAL_HOME/landing/<source>/, written durably by `corral collect` (the "
    "Segment/RudderStack-compatible tracking API) and the file and webhook importers. Not built by Dagster: the "
    "`landing_sensor` watches it and loads what is new.",
)


@asset(
    key=AssetKey(["raw", "events"]),
    deps=[LANDING],
    group_name="ingestion",
    kinds={"duckdb", "python"},
    pool=WAREHOUSE_POOL,
    description="Sealed landing segments bulk-loaded into raw.events, each file exactly once.",
)
def raw_events(context: AssetExecutionContext, corral: CorralResource) -> MaterializeResult:
    home = corral.home()
    with closing(connect(home)) as con:
        result = load_landing(con, home.landing, skip_invalid=True)
        total = con.execute("select count(*) from raw.events").fetchone()[0]
    for line in describe(result):
        context.log.info(line)
    new_files = [f for f in result.files if not f.already_loaded_as]
    return MaterializeResult(
        metadata={
            "files_loaded": len(new_files),
            "rows_loaded": result.rows_loaded,
            "rows_rejected": len(result.errors),
            "total_rows": total,
            "files": MetadataValue.md("\n".join(f"- `{f.path.name}`: {f.rows_loaded:,} rows" for f in new_files) or "none"),
        }
    )
