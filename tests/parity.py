"""Comparing the same project's results on two engines, row for row (tests/test_postgres_parity.py,
tests/test_spark_parity.py). What is compared and how is described in test_postgres_parity.py.

A table is (columns, JSON columns, rows): `tables` maps (schema, table) to one, read from a
DuckDB warehouse by `duckdb_tables`, and `assert_same_tables` compares two such maps.
"""

from __future__ import annotations

import json
import math
from collections.abc import Callable
from contextlib import closing
from datetime import date, datetime
from decimal import Decimal
from pathlib import Path
from typing import Any

import duckdb
import pytest

from dagster_defs.cli import main
from loaders.home import CorralHome
from loaders.synthetic import DemoSpec, write_ndjson

Table = tuple[list[str], set[str], list[tuple[Any, ...]]]
SCHEMAS = ("marts", "audiences")
RAW_TABLES = ("events", "loaded_files", "load_errors", "violations", "rejected_events")
BUILD_TIME_COLUMNS = {"loaded_at", "profiled_at", "updated_at", "computed_at", "merged_at"}
BUILD_STAMPED = {
    "audience_events": {"occurred_at", "audience_event_id"},
    "audience_sizes": {"audience_size_id"},
    "audience_memberships": {"entered_at"},
}
FLOAT_TOLERANCE = 1e-9
# the demo has no tracking plan, no invalid lines and (one build) no merges: those stay empty on both
MUST_FILL = {"marts.profiles", "marts.profile_events", "marts.profile_identifiers", "marts.profile_traits", "marts.sessions",
             "marts.page_views", "marts.audiences", "marts.audience_memberships", "marts.audience_events", "marts.audience_sizes",
             "audiences.cart_abandoners", "audiences.engaged_visitors", "audiences.high_value_customers",
             "audiences.recently_inactive_customers", "audiences.repeat_buyers", "raw.events", "raw.loaded_files"}


def build_on_both(home: CorralHome, target: str, use_target: Callable[[str], None], first: DemoSpec, second: DemoSpec) -> None:
    """`first` loaded and built through the `corral` command on DuckDB and on `target`, then
    `second` (other customers, some ids shared) loaded and built incrementally on each.
    `use_target(name)` points the environment at a target."""
    for spec, folder in ((first, "demo"), (second, "demo2")):
        write_ndjson(spec, home.landing / folder)
        for name in ("duckdb", target):
            use_target(name)
            assert main(["load"]) == 0
            assert main(["build", "--as-of", first.end.isoformat()]) == 0


def duckdb_tables(warehouse: Path) -> dict[tuple[str, str], Table]:
    """(schema, table) -> (columns, JSON columns, rows) of the compared tables of a DuckDB warehouse."""
    tables = {}
    with closing(duckdb.connect(str(warehouse), read_only=True)) as con:
        names = con.execute(
            "select table_schema, table_name from information_schema.tables where table_schema in ('marts', 'audiences')"
            " or (table_schema = 'raw' and table_name in ?)", [list(RAW_TABLES)]
        ).fetchall()
        for schema, table in names:
            described = con.execute(f'describe "{schema}"."{table}"').fetchall()
            columns = [row[0] for row in described]
            json_columns = {row[0] for row in described if row[1] == "JSON"}
            tables[(schema, table)] = (columns, json_columns, con.execute(f'select * from "{schema}"."{table}"').fetchall())
    return tables


def canonical(value: Any, is_json: bool) -> Any:
    """A value as compared: JSON parsed and re-serialized with sorted keys, numerics as int or
    float, everything else as the driver gave it."""
    if value is None:
        return None
    if is_json:
        return json.dumps(json.loads(value) if isinstance(value, (str, bytes)) else value, sort_keys=True)
    if isinstance(value, Decimal):
        return int(value) if value == value.to_integral_value() else float(value)
    if isinstance(value, bool) or not isinstance(value, (int, float, str, datetime, date)):
        return value
    return value


def sort_key(row: tuple[Any, ...]) -> tuple[Any, ...]:
    return tuple(
        (0, "") if v is None else (1, round(v, 6)) if isinstance(v, (int, float)) and not isinstance(v, bool) else (2, str(v))
        for v in row
    )


def same_value(a: Any, b: Any) -> bool:
    if isinstance(a, float) or isinstance(b, float):
        return a is not None and b is not None and math.isclose(a, b, rel_tol=FLOAT_TOLERANCE, abs_tol=FLOAT_TOLERANCE)
    return a == b


def compared_rows(table: str, columns: list[str], json_columns: set[str], rows: list[tuple[Any, ...]]) -> tuple[list[str], list[tuple[Any, ...]]]:
    skipped = BUILD_TIME_COLUMNS | BUILD_STAMPED.get(table, set())
    keep = [i for i, c in enumerate(columns) if c not in skipped]
    kept = [tuple(canonical(row[i], columns[i] in json_columns) for i in keep) for row in rows]
    return [columns[i] for i in keep], sorted(kept, key=sort_key)


def assert_same_tables(on_duckdb: dict[tuple[str, str], Table], other: dict[tuple[str, str], Table], engine: str) -> None:
    """Every compared table of DuckDB is on the other engine with the same columns and the same
    rows, and the demo filled the tables it must fill."""
    assert sorted(other) == sorted(on_duckdb)
    assert len([t for t in on_duckdb if t[0] in SCHEMAS]) >= 20, "every mart and audience model"
    filled = set()
    for (schema, table), (columns, json_columns, rows) in sorted(on_duckdb.items()):
        other_columns, other_json_columns, other_rows = other[(schema, table)]
        assert other_columns == columns, f"{schema}.{table}: columns differ"
        json_any = json_columns | other_json_columns
        names, expected = compared_rows(table, columns, json_any, rows)
        _, got = compared_rows(table, other_columns, json_any, other_rows)
        assert len(got) == len(expected), f"{schema}.{table}: {len(got)} rows on {engine}, {len(expected)} on DuckDB"
        for want, have in zip(expected, got):
            if not all(same_value(a, b) for a, b in zip(want, have)):
                diffs = {n: (a, b) for n, a, b in zip(names, want, have) if not same_value(a, b)}
                pytest.fail(f"{schema}.{table}: first differing row (DuckDB, {engine}) per column: {diffs}")
        if rows:
            filled.add(f"{schema}.{table}")
    assert MUST_FILL <= filled, f"the demo data must fill these: {sorted(MUST_FILL - filled)}"


def identity_rounds(log: str, targets: tuple[str, ...]) -> dict[str, list[list[str]]]:
    """Per target, per dbt run in dbt.log: the identity resolution round counts it logged."""
    rounds: dict[str, list[list[str]]] = {"duckdb": [], **{t: [] for t in targets}}
    for run in log.split("Running with dbt=")[1:]:
        target = next((t for t in targets if f"target='{t}'" in run), "duckdb")
        found = [line.split("identity resolution: ", 1)[1].strip() for line in run.splitlines()
                 if "identity resolution: " in line and "round" in line]
        if found:
            rounds[target].append(found)
    return rounds


def spark_tables(home_root: Path, work: Path, environ: dict[str, str]) -> dict[tuple[str, str], Table]:
    """The compared tables of the `spark` target of a home, written to parquet by a child process
    (tests/spark_tables.py) and read back with DuckDB."""
    import subprocess
    import sys

    out = work / "spark-tables"
    subprocess.run([sys.executable, str(Path(__file__).with_name("spark_tables.py")), str(out)],
                   env={**environ, "CORRAL_HOME": str(home_root)}, check=True)
    tables = {}
    with closing(duckdb.connect(":memory:")) as con:
        for folder in sorted(p for p in out.glob("*/*") if p.is_dir()):
            relation = con.sql(f"select * from read_parquet('{folder}/*.parquet')")
            tables[(folder.parent.name, folder.name)] = (list(relation.columns), set(), relation.fetchall())
    return tables
