"""The `spark` target (profiles.yml, dbt-spark `method: session`): its SparkSession settings, its
`raw` schema, and `corral load` onto it.

dbt-spark's session method runs SQL on `SparkSession.builder.enableHiveSupport().getOrCreate()`
in the dbt process, configured by the target's `server_side_parameters`. The loader builds its
session from the very same parameters (read from profiles.yml, `env_var()` rendered), so both see
one Hive metastore (embedded Derby) and one warehouse directory under CORRAL_HOME/spark. Embedded
Derby admits one JVM at a time, so the Spark side of a load runs in a child process
(`python -m loaders.spark WORKDIR`) that exits before `corral build` starts dbt; while it runs,
another load or build waits for nothing: it fails to open the metastore, which is what a second
writer should do.

The load itself is the Postgres one (loaders/load.py `load_on_server`): DuckDB in memory reads,
validates, dedupes and shapes the files, seeded with what the rules need from Spark (its ledgers,
the message ids and violation keys already loaded); then each raw table's new rows go to Spark as
one parquet file, read as a DataFrame and appended with `insertInto` (bulk, never row by row).
The ledger tables are written last: a crash part-way leaves messages whose ids the next load
already sees, so it does not load them twice.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
import tempfile
from collections.abc import Callable, Mapping
from contextlib import closing
from pathlib import Path
from typing import Any, TextIO, TypeVar

import duckdb
import yaml

from loaders.load import LEDGERS, MIRROR_QUERIES, new_rows, seed_mirror
from loaders.warehouse import RAW_DDL, RAW_TABLES

T = TypeVar("T")
PROFILES = Path(__file__).resolve().parents[1] / "profiles.yml"
# the ledgers go last (see the module docstring)
WRITE_ORDER = tuple(t for t in RAW_TABLES if t not in LEDGERS) + LEDGERS


def spark_parameters(environ: Mapping[str, str] | None = None, profiles: Path = PROFILES) -> dict[str, str]:
    """The `spark` target's server_side_parameters from profiles.yml, `env_var()` rendered as dbt
    does, so the loader's session is configured exactly like dbt's."""
    import jinja2

    env = os.environ if environ is None else environ

    def env_var(name: str, default: str | None = None) -> str:
        if name in env:
            return env[name]
        if default is None:
            raise KeyError(f"profiles.yml: env var {name} is not set")
        return default

    raw = yaml.safe_load(profiles.read_text())["corral"]["outputs"]["spark"]["server_side_parameters"]
    return {key: jinja2.Template(str(value)).render(env_var=env_var) for key, value in raw.items()}


def spark_session(environ: Mapping[str, str] | None = None) -> Any:  # -> pyspark.sql.SparkSession
    """The session dbt-spark would get in this process (same builder, same parameters)."""
    from pyspark.sql import SparkSession

    builder = SparkSession.builder.enableHiveSupport()
    for key, value in spark_parameters(environ).items():
        builder = builder.config(key, value)
    # files handed between DuckDB and Spark: plain microsecond timestamps, not Spark's INT96
    return builder.config("spark.sql.parquet.outputTimestampType", "TIMESTAMP_MICROS").getOrCreate()


def spark_raw_ddl() -> list[str]:
    """RAW_DDL (portable SQL) as Spark statements: parquet tables, `string` for varchar and json,
    no key or not-null constraints (Spark's file tables enforce none)."""
    text = re.sub(r"--[^\n]*", "", RAW_DDL)
    statements = []
    for statement in (s.strip() for s in text.split(";")):
        if not statement:
            continue
        statement = re.sub(r"\b(varchar|json)\b", "string", statement)
        statement = re.sub(r"\s+(not null|primary key)\b", "", statement)
        if statement.startswith("create table"):
            statement += " using parquet"
        statements.append(statement)
    return statements


def load_on_spark(run: Callable[[duckdb.DuckDBPyConnection], T], environ: Mapping[str, str] | None = None) -> T:
    """`run` (load_files / load_landing) on an in-memory DuckDB seeded from Spark, then its new
    rows appended to Spark's raw tables, by a child process holding the metastore throughout."""
    env = dict(os.environ if environ is None else environ)
    with tempfile.TemporaryDirectory(prefix="corral-spark-load-") as tmp, closing(duckdb.connect(":memory:")) as mem:
        work = Path(tmp)
        child = subprocess.Popen([sys.executable, "-m", "loaders.spark", str(work)], env=env, stdin=subprocess.PIPE,
                                 stdout=subprocess.PIPE, text=True, cwd=Path(__file__).resolve().parents[1])
        assert child.stdin is not None and child.stdout is not None
        try:
            if child.stdout.readline().strip() != "ready":
                raise RuntimeError(f"corral load: the Spark session did not start (exit {child.wait()}); see its output above")
            pulled = work / "pulled"
            seed_mirror(mem, {name: f"read_parquet('{pulled / name}/*.parquet')" for name in MIRROR_QUERIES})
            result = run(mem)
            (work / "new").mkdir()
            for table in RAW_TABLES:
                condition = new_rows(table)
                if mem.execute(f"select count(*) from raw.{table} where {condition}").fetchone()[0]:
                    described = mem.execute(f"describe raw.{table}").fetchall()
                    columns = ", ".join(f"cast({name} as varchar) as {name}" if kind == "JSON" else name for name, kind, *_ in described)
                    mem.execute(f"copy (select {columns} from raw.{table} where {condition}) to '{work / 'new' / table}.parquet' (format parquet)")
            child.stdin.write("commit\n")
            child.stdin.flush()
            if child.stdout.readline().strip() != "done" or child.wait() != 0:
                raise RuntimeError(f"corral load: writing to Spark failed (exit {child.wait()}); see its output above")
        finally:
            if child.poll() is None:
                child.stdin.close()  # no "commit": the child writes nothing and exits
                child.wait()
    return result


def serve_load(work: Path, parent: TextIO) -> None:
    """The child of load_on_spark: create raw.* if missing, hand over the ledgers and dedupe keys
    as parquet (work/pulled), then, on "commit" from the parent, append work/new/<table>.parquet to
    each raw table."""
    from pyspark.sql import functions as F

    spark = spark_session()
    spark.sparkContext.setLogLevel("ERROR")
    for statement in spark_raw_ddl():
        spark.sql(statement)
    pulled = work / "pulled"
    for name, query in MIRROR_QUERIES.items():  # the same queries as on Postgres
        spark.sql(query).coalesce(1).write.parquet(str(pulled / name))
    print("ready", file=parent, flush=True)
    if sys.stdin.readline().strip() != "commit":
        return
    for table in WRITE_ORDER:
        path = work / "new" / f"{table}.parquet"
        if not path.exists():
            continue
        schema = spark.table(f"raw.{table}").schema
        rows = spark.read.parquet(str(path))
        rows.select([F.col(f.name).cast(f.dataType).alias(f.name) for f in schema.fields]).write.insertInto(f"raw.{table}")
    print("done", file=parent, flush=True)
    spark.stop()


if __name__ == "__main__":
    # the handshake gets its own copy of stdout; fd 1 itself (which the JVM inherits) becomes stderr
    handshake = os.fdopen(os.dup(1), "w")
    os.dup2(2, 1)
    serve_load(Path(sys.argv[1]), handshake)
