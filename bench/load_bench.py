"""Loader throughput: `corral load` (one DuckDB bulk read per file) against a row-by-row
baseline (json.loads per line + executemany), on the same synthetic files, in the same run.

    .venv/bin/python bench/load_bench.py [--users 500] [--repeat 2]

Prints rows/s for both and the ratio, and rewrites its section of bench/README.md. Absolute
times depend on the (shared, noisy) machine; the ratio is the result.
"""

from __future__ import annotations

import argparse
import json
import platform
import statistics
import tempfile
import time
from contextlib import closing
from datetime import date
from pathlib import Path

from readme_section import write_section  # bench/, the script's own folder

from loaders.home import CorralHome
from loaders.load import load_files
from loaders.synthetic import DemoSpec, write_ndjson
from loaders.warehouse import MESSAGE_FIELDS, connect

BEGIN, END = "<!-- load_bench:begin -->", "<!-- load_bench:end -->"


def bulk(home: CorralHome, files: list[Path]) -> int:
    with closing(connect(home)) as con:
        return load_files(con, files).rows_loaded


def row_by_row(home: CorralHome, files: list[Path]) -> int:
    """The naive loader: parse each line in Python, insert rows with executemany."""
    columns = [f.column for f in MESSAGE_FIELDS]
    rows = 0
    with closing(connect(home)) as con:
        con.execute("begin transaction")
        sql = (
            f"insert into raw.events ({', '.join(columns)}, source_id, loaded_at, landing_file, landing_line) "
            f"values ({', '.join('?' for _ in columns)}, 'bench', now()::timestamp, ?, ?)"
        )
        for path in files:
            batch = []
            for number, line in enumerate(path.read_text().splitlines(), start=1):
                message = json.loads(line)
                values = [message.get(f.key) for f in MESSAGE_FIELDS]
                values = [json.dumps(v) if isinstance(v, dict) else v for v in values]
                batch.append([*values, str(path), number])
            con.executemany(sql, batch)
            rows += len(batch)
        con.execute("commit")
    return rows


def measure(fn, files: list[Path], work: Path, repeat: int) -> tuple[float, int]:
    times, rows = [], 0
    for i in range(repeat):
        home = CorralHome(work / f"{fn.__name__}-{i}")
        start = time.perf_counter()
        rows = fn(home, files)
        times.append(time.perf_counter() - start)
    return statistics.median(times), rows


def main() -> None:
    args = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    args.add_argument("--users", type=int, default=500)
    args.add_argument("--repeat", type=int, default=2)
    opts = args.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        files = write_ndjson(DemoSpec(users=opts.users, days=90), work / "files")
        bulk_s, rows = measure(bulk, files, work, opts.repeat)
        naive_s, naive_rows = measure(row_by_row, files, work, opts.repeat)
    assert rows == naive_rows, (rows, naive_rows)
    ratio = naive_s / bulk_s
    report = (
        f"{BEGIN}\n## Loader: bulk vs row by row\n\n"
        f"`.venv/bin/python bench/load_bench.py --users {opts.users} --repeat {opts.repeat}` "
        f"({date.today()}, {platform.machine()}, median of {opts.repeat}):\n\n"
        "| loader | rows | seconds | rows/s |\n| --- | ---: | ---: | ---: |\n"
        f"| `corral load` (bulk, validated) | {rows:,} | {bulk_s:.2f} | {rows / bulk_s:,.0f} |\n"
        f"| baseline: json.loads + executemany | {rows:,} | {naive_s:.2f} | {rows / naive_s:,.0f} |\n\n"
        f"**Bulk load is {ratio:.1f}× the row-by-row baseline** (and also validates every line).\n{END}"
    )
    print(report)
    write_section(report, BEGIN, END)


if __name__ == "__main__":
    main()
