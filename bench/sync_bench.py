"""Reverse ETL to HubSpot: a 1M-row audience upserted to a fake HubSpot, measured against the
most its rate limit allows, then an unchanged re-sync.

    .venv/bin/python bench/sync_bench.py [--rows 1000000] [--limit-per-10s 190] [--baseline-rows 100000]

Builds the audience in a fresh DuckDB file with one `create table ... as select ... from
range()` (id, email, first and last name, lifetime value, a boolean, a date), starts the strict
fake HubSpot of the tests (tests/fakes/hubspot.py) in its own process with the rolling 10-second
limit of --limit-per-10s (HubSpot's real 190 by default: 1M rows take about 9 minutes; raise it
to stress the engine's own costs), and runs the sync (`run_sync`, mode upsert, the hubspot
destination told the same limit, the engine's default retry policy) in a child process, twice:
first everything, then with nothing changed. The ceiling is the limit: limit / 10 requests a
second of 100 contacts each. Checks that no contact is lost or altered (the fake's contacts,
dumped, against the mart: every property), that every record is `synced` with the record id
the fake gave it, and counts the 429s. Peak RSS is measured per process (the syncing child and
the fake apart). Prints a table and rewrites its section of bench/README.md.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import resource
import subprocess
import sys
import tempfile
import time
from collections import deque
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from datetime import date
from pathlib import Path
from typing import Any

import duckdb
import httpx

sys.path.insert(0, str(Path(__file__).resolve().parent))

from readme_section import write_section

ROOT = Path(__file__).resolve().parents[1]
TESTS = ROOT / "tests"  # the fake runs as `python -m fakes.hubspot` from here
BEGIN, END = "<!-- sync_bench:begin -->", "<!-- sync_bench:end -->"
TOKEN = "pat-na1-bench-token"
MAPPING = {"id": "corral_id", "email": "email", "first_name": "firstname", "last_name": "lastname", "ltv": "lifetime_value",
           "vip": "is_vip", "signed_up": "signup_date"}
TARGET_SHARE, RESYNC_TARGET_S, RSS_TARGET_MB = 0.90, 10.0, 300.0


def audience_sql(rows: int) -> str:
    return f"""
    create table audience as
    select i as id, 'user' || i || '@example.com' as email,
        'First' || (hash(i, 1) % 5000) as first_name, 'Last' || (hash(i, 2) % 20000) as last_name,
        round((hash(i, 3) % 1000000) / 100.0, 2)::decimal(12, 2) as ltv, hash(i, 4) % 10 = 0 as vip,
        date '2020-01-01' + (hash(i, 5) % 2000)::int as signed_up
    from range(1, {rows + 1}) t(i)
    """


# --------------------------------------------------------------------------- the syncing child


def spec_and_env(url: str, limit: int) -> tuple[Any, dict[str, str]]:
    from reverse_etl.syncs import SyncSpec

    spec = SyncSpec(name="audience_hubspot", model="audience", relation="main.audience", destination="hubspot", mode="upsert",
                    primary_key="id", mapping=MAPPING)
    return spec, {"HUBSPOT_ACCESS_TOKEN": TOKEN, "HUBSPOT_BASE_URL": url, "HUBSPOT_REQUESTS_PER_10S": str(limit)}


def child_sync(db: str, url: str, limit: int) -> None:
    """One `run_sync` in this process; prints its outcome, the time its commits took and this
    process's peak RSS as JSON."""
    from reverse_etl import state
    from reverse_etl.destinations import make_destination
    from reverse_etl.engine import prepare_connection, run_sync

    commits = {"seconds": 0.0, "count": 0}
    commit_batch = state.commit_answers

    def timed_commit(*args: Any, **kwargs: Any) -> dict[str, int]:  # measured, not changed
        start = time.perf_counter()
        try:
            return commit_batch(*args, **kwargs)
        finally:
            commits["seconds"] += time.perf_counter() - start
            commits["count"] += 1

    state.commit_answers = timed_commit  # type: ignore[assignment]
    spec, env = spec_and_env(url, limit)
    con = duckdb.connect(db)
    prepare_connection(con)  # as `corral sync` and Dagster do
    with httpx.Client(timeout=httpx.Timeout(30.0)) as client:
        start = time.perf_counter()
        result = run_sync(con, spec, make_destination("hubspot", env, client), echo=lambda line: print(line, file=sys.stderr, flush=True))
        seconds = time.perf_counter() - start
    con.close()
    print(json.dumps({"seconds": seconds, "status": result.status, "changes": result.changes, "planned": result.planned,
                      "sent": result.sent, "succeeded": result.succeeded, "failed": result.failed, "retried": result.requests_retried,
                      "errors": result.errors[:3], "commit_seconds": commits["seconds"], "commits": commits["count"],
                      "maxrss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024}))


def child_baseline(db: str, url: str, limit: int, rows: int) -> None:
    """The destination alone: the first `rows` of the mart read in batches of 100 and sent by 4 threads paced by the
    same token bucket, with no plan, no state and no commits (and no retries)."""
    import pyarrow as pa

    from reverse_etl.destinations import make_destination
    from reverse_etl.pacing import TokenBucket

    spec, env = spec_and_env(url, limit)
    con = duckdb.connect(db, read_only=True)
    columns = ", ".join(f"{column} as {target}" for column, target in MAPPING.items())
    reader = con.sql(f"select null::varchar as destination_id, {columns} from audience order by id limit {rows}").to_arrow_reader(100)
    ok = failed = 0
    with httpx.Client(timeout=httpx.Timeout(30.0)) as client:
        destination = make_destination("hubspot", env, client)
        destination.check(spec)
        destination.open(spec, pa.schema([]))
        caps = destination.capabilities
        assert caps.requests_per_second is not None
        bucket = TokenBucket(caps.requests_per_second, caps.burst)

        def send(batch: pa.RecordBatch) -> int:
            bucket.acquire()
            try:
                return sum(answer.ok for answer in destination.send(batch, "corral_id", "upsert"))
            except Exception:
                return 0

        start = time.perf_counter()
        with ThreadPoolExecutor(max_workers=caps.max_concurrency) as pool:
            pending: deque[tuple[int, Future[int]]] = deque()
            for batch in reader:
                if len(pending) >= caps.max_concurrency * 2:
                    n, future = pending.popleft()
                    done = future.result()
                    ok, failed = ok + done, failed + n - done
                pending.append((batch.num_rows, pool.submit(send, batch)))
            for n, future in pending:
                done = future.result()
                ok, failed = ok + done, failed + n - done
        seconds = time.perf_counter() - start
    print(json.dumps({"seconds": seconds, "status": "success" if not failed else "failed", "planned": ok + failed, "succeeded": ok,
                      "failed": failed, "retried": 0, "errors": [], "commit_seconds": 0.0, "commits": 0,
                      "maxrss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024}))


# --------------------------------------------------------------------------- the parent


@dataclass
class Run:
    seconds: float
    status: str
    planned: int
    succeeded: int
    failed: int
    retried: int
    maxrss_mb: float
    requests: int  # what the fake received during the run
    throttled: int
    send_seconds: float  # the fake's first request to its last
    commit_seconds: float  # in state.commit_answers, on the engine's main thread
    commits: int


@dataclass
class Result:
    rows: int
    limit: int
    generate_s: float
    first: Run
    resync: Run
    baseline: Run
    contacts: int
    matching: int  # mart rows whose contact has every property right
    synced: int  # records with status synced and the fake's record id
    largest_batch: int
    fake_maxrss_mb: float


def fake_get(client: httpx.Client, url: str, path: str, payload: Any = None) -> Any:
    response = client.post(url + path, json=payload, timeout=600) if payload is not None else client.get(url + path, timeout=60)
    response.raise_for_status()
    return response.json()


def run_child(role: str, db: Path, url: str, limit: int, client: httpx.Client, rows: int = 0) -> Run:
    before = fake_get(client, url, "/__fake__/stats")
    done = subprocess.run([sys.executable, __file__, role, str(db), url, str(limit), str(rows)], stdout=subprocess.PIPE, text=True,
                          cwd=ROOT, check=True)
    outcome = json.loads(done.stdout.strip().splitlines()[-1])
    after = fake_get(client, url, "/__fake__/stats")
    requests = after["requests"] - before["requests"]
    send_seconds = after["last_at"] - max(after["first_at"], before["last_at"]) if requests else 0.0
    print(f"  {outcome['status']}: {outcome['succeeded']:,} of {outcome['planned']:,} in {outcome['seconds']:.1f}s, {requests:,} requests, "
          f"{after['throttled'] - before['throttled']} throttled, peak RSS {outcome['maxrss_mb']:.0f} MB"
          + (f"; errors {outcome['errors']}" if outcome["errors"] else ""), flush=True)
    return Run(outcome["seconds"], outcome["status"], outcome["planned"], outcome["succeeded"], outcome["failed"], outcome["retried"],
               outcome["maxrss_mb"], requests, after["throttled"] - before["throttled"], send_seconds, outcome["commit_seconds"],
               outcome["commits"])


def check(db: Path, dump: Path) -> tuple[int, int, int]:
    """(contacts the fake holds, mart rows whose contact matches on every property, records synced with the fake's id)."""
    properties = " and ".join(f"cast(a.{column} as varchar) = c.properties->>'{field}'" for column, field in MAPPING.items())
    with duckdb.connect(str(db)) as con:
        con.execute(f"create temp table contacts as select * from read_json('{dump}', columns = "
                    "{email: 'varchar', id: 'varchar', properties: 'json'})")
        contacts = con.execute("select count(*) from contacts").fetchone()[0]
        matching = con.execute(f"select count(*) from audience a join contacts c on c.email = a.email where {properties}").fetchone()[0]
        synced = con.execute("select count(*) from corral_sync.records r join audience a on r.record_key = cast(a.id as varchar)"
                             " join contacts c on c.email = a.email where r.status = 'synced' and r.destination_id = c.id").fetchone()[0]
    return contacts, matching, synced


def bench(opts: argparse.Namespace, work: Path) -> Result:
    db = work / "warehouse.duckdb"
    start = time.perf_counter()
    with duckdb.connect(str(db)) as con:
        con.execute(audience_sql(opts.rows))
    generate_s = time.perf_counter() - start
    print(f"audience of {opts.rows:,} rows built in {generate_s:.1f}s", flush=True)
    fake = subprocess.Popen([sys.executable, "-m", "fakes.hubspot", "--limit-per-10s", str(opts.limit_per_10s), "--token", TOKEN],
                            stdout=subprocess.PIPE, text=True, cwd=TESTS)
    try:
        assert fake.stdout is not None
        url = fake.stdout.readline().strip()
        with httpx.Client() as client:
            print("first sync ...", flush=True)
            first = run_child("--child-sync", db, url, opts.limit_per_10s, client)
            print("unchanged re-sync ...", flush=True)
            resync = run_child("--child-sync", db, url, opts.limit_per_10s, client)
            fake_get(client, url, "/__fake__/dump", {"path": str(work / "contacts.jsonl")})  # before the baseline sends it all again
            print("baseline: the destination alone, same pacing, no engine ...", flush=True)
            baseline = run_child("--child-baseline", db, url, opts.limit_per_10s, client, min(opts.rows, opts.baseline_rows))
            stats = fake_get(client, url, "/__fake__/stats")
    finally:
        fake.terminate()
        fake.wait()
    contacts, matching, synced = check(db, work / "contacts.jsonl")
    print(f"fake holds {contacts:,} contacts; {matching:,} match the mart on every property; {synced:,} records synced with their id", flush=True)
    return Result(opts.rows, opts.limit_per_10s, generate_s, first, resync, baseline, contacts, matching, synced, stats["largest_batch"],
                  stats["maxrss_mb"])


# --------------------------------------------------------------------------- report


def verdict(ok: bool) -> str:
    return "yes" if ok else "**no**"


def report(r: Result, command: str) -> str:
    ceiling = r.limit / 10 * 100  # contacts a second: limit / 10 s requests of 100
    rate, send_rate, base_rate = r.rows / r.first.seconds, r.rows / r.first.send_seconds, r.baseline.succeeded / r.baseline.seconds
    lost = r.rows - r.matching
    rss = max(r.first.maxrss_mb, r.resync.maxrss_mb)
    per_commit_ms = 1000 * r.first.commit_seconds / max(1, r.first.commits)
    rows = [
        ("first sync, whole `run_sync` (plan, send, commit)", f"{r.first.seconds:.1f} s", ""),
        ("**records/s, whole sync**", f"{rate:,.0f} ({rate / ceiling:.1%} of {ceiling:,.0f})",
         f"≥ {TARGET_SHARE:.0%}: {verdict(rate >= TARGET_SHARE * ceiling)}"),
        ("records/s while sending (fake's first to last request)", f"{send_rate:,.0f} ({send_rate / ceiling:.1%})", ""),
        ("time in `state.commit_answers` (engine main thread)", f"{r.first.commit_seconds:.1f} s, {per_commit_ms:.1f} ms × {r.first.commits:,} commits", ""),
        ("requests / 429s / engine retries", f"{r.first.requests:,} / {r.first.throttled} / {r.first.retried}", ""),
        ("contacts lost or wrong (every property checked)", f"{lost:,}", f"0: {verdict(lost == 0 and r.contacts == r.rows)}"),
        ("records `synced` with the fake's record id", f"{r.synced:,} of {r.rows:,}", f"all: {verdict(r.synced == r.rows)}"),
        ("**unchanged re-sync: requests**", f"{r.resync.requests}", f"0: {verdict(r.resync.requests == 0)}"),
        ("**unchanged re-sync: seconds**", f"{r.resync.seconds:.1f}", f"< {RESYNC_TARGET_S:.0f}: {verdict(r.resync.seconds < RESYNC_TARGET_S)}"),
        ("**peak RSS of the syncing process** (first / re-sync)", f"{r.first.maxrss_mb:,.0f} / {r.resync.maxrss_mb:,.0f} MB",
         f"< {RSS_TARGET_MB:.0f} MB: {verdict(rss < RSS_TARGET_MB)}"),
        ("peak RSS of the fake HubSpot (its own process)", f"{r.fake_maxrss_mb:,.0f} MB", ""),
        ("baseline: the destination alone, same pacing, no engine: records/s", f"{base_rate:,.0f} ({base_rate / ceiling:.1%}), "
         f"{r.baseline.succeeded:,} rows in {r.baseline.seconds:.1f} s, {r.baseline.throttled} 429s", ""),
    ]
    table = "\n".join(["| measure | value | target |", "| --- | ---: | --- |", *(f"| {a} | {b} | {c} |" for a, b, c in rows)])
    overhead = r.first.seconds - r.first.send_seconds
    details = (
        f"What: {r.rows:,} audience rows (built in {r.generate_s:.1f} s with one `create table ... as select ... from range()`) "
        f"upserted by email to the fake HubSpot of the tests (`tests/fakes/hubspot.py`, in its own process, as strict as in the "
        f"tests: token, at most 100 inputs, string values, a rolling 10-second limit of {r.limit:,} requests answered with 429s) with the "
        f"hubspot destination told the same limit (`HUBSPOT_REQUESTS_PER_10S={r.limit}`: it paces at 95% of it, burst 5). The ceiling "
        f"is the limit itself: {r.limit / 10:,.0f} requests/s × 100 contacts = {ceiling:,.0f} records/s. The sync runs in a child "
        f"process (`run_sync`, default retry policy) so its peak RSS is its own, DuckDB included; the largest request the fake saw "
        f"held {r.largest_batch} inputs. Outside its sending window ({r.first.send_seconds:.1f} s) the first sync spent {overhead:.1f} s "
        f"(key check, plan, last commits). The time in `state.commit_answers` is measured by wrapping it in the child, unchanged. "
        f"Checked: the fake's contacts, dumped before the baseline ran, joined to the mart on email with every mapped property "
        f"compared as text; every record `synced` with the record id the fake gave its email. The baseline sends the first "
        f"{r.baseline.planned:,} rows of the mart through `HubSpotDestination.send` from 4 threads and the same token bucket, with no plan, state or commit."
    )
    bound = r.first.commit_seconds / r.first.seconds
    if rate >= TARGET_SHARE * ceiling:
        why = f"the sync runs at {rate / ceiling:.0%} of what the limit allows end to end, against 95% by design (5% headroom)"
    else:
        why = (f"the sync reaches {rate / ceiling:.0%} of what the limit allows, the destination alone {base_rate / ceiling:.0%}: the "
               f"engine's main thread spends {bound:.0%} of the sync in `state.commit_answers` ({per_commit_ms:.0f} ms per commit of "
               f"the answers gathered since the last one, about a second's worth), and on 2 shared cores the engine's own work "
               f"(reading the plan, building payloads, committing) competes with the fake and the HTTP threads for CPU")
    if base_rate < TARGET_SHARE * ceiling:
        why += (f". The destination alone stays under 95% ({base_rate / ceiling:.0%}) because here it and the fake, both Python, "
                f"share 2 cores")
    memory = "" if rss < RSS_TARGET_MB else (
        f" Peak RSS is DuckDB's working set more than Python's: the unchanged re-sync, which only diffs {r.rows:,} rows against "
        f"their state, peaks at {r.resync.maxrss_mb:,.0f} MB and the destination alone, reading the mart, at "
        f"{r.baseline.maxrss_mb:,.0f} MB, with DuckDB's `memory_limit` at 64 MB (`prepare_connection`)."
    )
    reading = (
        f"Reading: {why}. {r.first.throttled} 429s: the 95% pace keeps every rolling window under the limit. An unchanged re-sync "
        f"of {r.rows:,} rows is a diff in the warehouse: {r.resync.seconds:.1f} s and no request.{memory}"
    )
    smaller = "" if r.rows >= 1_000_000 else "\n\nThe issue's size is 1,000,000 rows; this run is smaller, so fixed costs weigh more."
    return (
        f"{BEGIN}\n## Reverse ETL: 1M contacts to (fake) HubSpot vs its rate limit\n\n"
        f"`{command}` ({date.today()}, {platform.machine()}, {os.cpu_count()} CPUs, Python {platform.python_version()}, "
        f"DuckDB {duckdb.__version__}), {r.rows:,} rows, limit {r.limit:,} requests / 10 s:\n\n{table}\n\n{details}\n\n{reading}{smaller}"
        f"\n\nThe machine is shared (2 cores; the fake takes much of one): absolute rates move between runs.\n{END}"
    )


def main() -> None:
    if len(sys.argv) == 6 and sys.argv[1] == "--child-sync":
        child_sync(sys.argv[2], sys.argv[3], int(sys.argv[4]))
        return
    if len(sys.argv) == 6 and sys.argv[1] == "--child-baseline":
        child_baseline(sys.argv[2], sys.argv[3], int(sys.argv[4]), int(sys.argv[5]))
        return
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=1_000_000)
    parser.add_argument("--limit-per-10s", type=int, default=190, help="HubSpot's rolling 10-second request limit (fake and sync)")
    parser.add_argument("--baseline-rows", type=int, default=100_000, help="rows the destination-alone baseline sends")
    parser.add_argument("--no-readme", action="store_true", help="print the section, do not write bench/README.md")
    opts = parser.parse_args()
    if opts.rows < 1 or opts.limit_per_10s < 10:
        parser.error("need --rows >= 1 and --limit-per-10s >= 10")
    command = (".venv/bin/python bench/sync_bench.py " + " ".join(sys.argv[1:])).strip()
    with tempfile.TemporaryDirectory(prefix="sync-bench-") as tmp:
        result = bench(opts, Path(tmp))
    section = report(result, command)
    print("\n" + section)
    if not opts.no_readme:
        write_section(section, BEGIN, END)


if __name__ == "__main__":
    main()
