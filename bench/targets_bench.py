"""The same data, loaded and built on DuckDB (the embedded default), on PostgreSQL and on Apache
Spark, on this machine, in the same run: `corral load` and a full `corral build` (every model and
test) per target.

    .venv/bin/python bench/targets_bench.py [--users 3000] [--days 90] [--repeat 1]

The default data set is the one `corral demo` makes. PostgreSQL is a local server this script
starts (tests/conftest.py's postgres_server: initdb in a temp dir, a loopback port, default
settings with fsync on) and stops. Prints seconds per step and the Postgres / DuckDB ratios, and
rewrites its section of bench/README.md. dbt runs 2 threads on both targets (profiles.yml).
"""

from __future__ import annotations

import argparse
import contextlib
import io
import os
import platform
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from datetime import date
from pathlib import Path

import pyspark
from readme_section import write_section  # bench/, the script's own folder

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))
from conftest import create_postgres_database, postgres_server  # noqa: E402 - the tests' server helper

from dagster_defs.cli import main as corral  # noqa: E402
from loaders.home import CorralHome  # noqa: E402
from loaders.synthetic import DemoSpec, write_ndjson  # noqa: E402

BEGIN, END = "<!-- targets_bench:begin -->", "<!-- targets_bench:end -->"
TARGET_VARS = ("CORRAL_TARGET", "CORRAL_PG_HOST", "CORRAL_PG_PORT", "CORRAL_PG_USER", "CORRAL_PG_PASSWORD", "CORRAL_PG_DBNAME")


def run(args: list[str], env: dict[str, str], log: io.StringIO) -> float:
    """`corral ARGS` with these target env vars; seconds. Fails loudly with dbt's output."""
    saved = {name: os.environ.get(name) for name in TARGET_VARS}
    for name in TARGET_VARS:
        os.environ.pop(name, None)
    os.environ.update(env)
    try:
        start = time.perf_counter()
        with contextlib.redirect_stdout(log):
            status = corral(args)
        elapsed = time.perf_counter() - start
    finally:
        for name, value in saved.items():
            if value is None:
                os.environ.pop(name, None)
            else:
                os.environ[name] = value
    if status != 0:
        print(log.getvalue()[-5000:])
        raise SystemExit(f"corral {' '.join(args)} failed on {env.get('CORRAL_TARGET', 'duckdb')}")
    return elapsed


def measure(home: CorralHome, env: dict[str, str], as_of: str, fresh) -> dict[str, float]:
    log = io.StringIO()
    fresh()
    load = run(["load"], env, log)
    build = run(["build", "--as-of", as_of], env, log)
    incremental = run(["build", "--as-of", as_of], env, log)  # nothing new: the cost of a no-op scheduled build
    return {"load": load, "build": build, "incremental": incremental}


def main() -> None:
    args = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    args.add_argument("--users", type=int, default=3000)
    args.add_argument("--days", type=int, default=90)
    args.add_argument("--repeat", type=int, default=1)
    opts = args.parse_args()
    spec = DemoSpec(users=opts.users, days=opts.days)
    as_of = spec.end.isoformat()
    pg_version = ""
    results: dict[str, list[dict[str, float]]] = {"duckdb": [], "postgres": [], "spark": []}
    with tempfile.TemporaryDirectory() as tmp, postgres_server(durable=True) as server:
        home = CorralHome(Path(tmp) / "home")
        os.environ["CORRAL_HOME"] = str(home.root)
        files = write_ndjson(spec, home.landing / "demo")
        rows = sum(1 for path in files for _ in path.open())
        from conftest import postgres_bin_dir

        pg_version = subprocess.run([str(postgres_bin_dir() / "postgres"), "--version"], capture_output=True, text=True).stdout.strip()
        for i in range(opts.repeat):
            for name in ("duckdb", "postgres", "spark"):  # alternate, so all see the same machine load
                if name == "duckdb":
                    env = {"CORRAL_TARGET": "duckdb"}

                    def fresh() -> None:
                        home.warehouse.unlink(missing_ok=True)
                        shutil.rmtree(home.root / "dbt", ignore_errors=True)
                elif name == "spark":
                    env = {"CORRAL_TARGET": "spark"}

                    def fresh() -> None:
                        shutil.rmtree(home.root / "spark", ignore_errors=True)  # metastore and warehouse
                        shutil.rmtree(home.root / "dbt", ignore_errors=True)
                else:
                    env = {"CORRAL_TARGET": "postgres", **create_postgres_database(server, f"bench_{i}")}

                    def fresh() -> None:
                        shutil.rmtree(home.root / "dbt", ignore_errors=True)
                results[name].append(measure(home, env, as_of, fresh))
                print(name, results[name][-1], flush=True)
    median = {name: {step: statistics.median(r[step] for r in runs) for step in runs[0]} for name, runs in results.items()}
    d, p, k = median["duckdb"], median["postgres"], median["spark"]
    report = (
        f"{BEGIN}\n## The same data on DuckDB, PostgreSQL and Spark\n\n"
        f"`.venv/bin/python bench/targets_bench.py --users {opts.users} --days {opts.days} --repeat {opts.repeat}` "
        f"({date.today()}, {platform.machine()}, {os.cpu_count()} cores shared with other work, median of {opts.repeat}; "
        f"{rows:,} landed messages, the `corral demo` data set at these sizes; {pg_version}, a local server with default "
        f"settings (fsync on), over loopback; Spark {pyspark.__version__} in local mode (local[2], driver 4g, 4 shuffle "
        "partitions, parquet tables, Derby metastore); dbt 2 threads on DuckDB and Postgres, 1 on Spark):\n\n"
        "| step | DuckDB (embedded) s | PostgreSQL s | Spark (local) s | Postgres / DuckDB | Spark / DuckDB |\n"
        "| --- | ---: | ---: | ---: | ---: | ---: |\n"
        + "".join(
            f"| {label} | {d[step]:.1f} | {p[step]:.1f} | {k[step]:.1f} | {p[step] / d[step]:.1f}× | {k[step] / d[step]:.1f}× |\n"
            for step, label in (
                ("load", "`corral load` (validate in DuckDB; then COPY on Postgres, a DataFrame write on Spark)"),
                ("build", "`corral build` (full: every model and test)"),
                ("incremental", "`corral build` again, nothing new (incremental)"),
            )
        )
        + "\nAll three builds give the same marts row for row (tests/test_postgres_parity.py, tests/test_spark_parity.py). "
        "On one machine the embedded engine is the faster one; a server earns its place with many writers and readers, "
        "data beyond one machine's disk, and operations a team already runs, and Spark with data spread over a cluster; "
        "in local mode Spark pays a JVM start per command and a job per statement, not its data size.\n"
        f"{END}"
    )
    print(report)
    write_section(report, BEGIN, END)


if __name__ == "__main__":
    main()
