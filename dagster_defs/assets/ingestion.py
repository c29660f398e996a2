"""Landing segments → `raw.events`."""


from contextlib import closing

from dagster import AssetExecutionContext, AssetKey, MaterializeResult, MetadataValue, asset

from dagster_defs.resources import CorralResource
from loaders.load import describe, load_landing
from loaders.warehouse import connect


@asset(
    key=AssetKey(["raw", "events"]),
    group_name="ingestion",
    kinds={"duckdb", "python"},
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
