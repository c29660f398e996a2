"""`python tests/spark_tables.py OUT`: every table of the schemas marts and audiences, and the raw
tables the loader writes, from the `spark` target of CORRAL_HOME, as parquet under OUT/<schema>/<table>/
(timestamps as plain UTC timestamps), for DuckDB to read them back in tests/parity.py. A child
process, because the Spark metastore (embedded Derby) admits one JVM at a time."""

from __future__ import annotations

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from loaders.spark import spark_session  # noqa: E402
from parity import RAW_TABLES, SCHEMAS  # noqa: E402


def main(out: Path) -> None:
    from pyspark.sql import functions as F
    from pyspark.sql.types import TimestampType

    spark = spark_session()
    spark.sparkContext.setLogLevel("ERROR")
    names = [(schema, t.name) for schema in SCHEMAS if spark.catalog.databaseExists(schema) for t in spark.catalog.listTables(schema)
             if not t.isTemporary]
    names += [("raw", t) for t in RAW_TABLES if spark.catalog.tableExists(f"raw.{t}")]
    for schema, table in names:
        frame = spark.table(f"{schema}.{table}")
        frame = frame.select([F.col(f.name).cast("timestamp_ntz").alias(f.name) if isinstance(f.dataType, TimestampType) else F.col(f.name)
                              for f in frame.schema.fields])
        frame.coalesce(1).write.parquet(str(out / schema / table))
    spark.stop()


if __name__ == "__main__":
    main(Path(sys.argv[1]))
