"""`corral`: the command line. Every command works on one CORRAL_HOME (default `.corral/`)."""

from __future__ import annotations

import argparse
import os
import shutil
import sys
import time
from collections.abc import Sequence
from contextlib import closing
from pathlib import Path

import duckdb

from dagster_defs.dbt_runner import DbtFailed, ensure_manifest, run_dbt
from dagster_defs.summary import render, summarize
from dagster_defs.syncing import declared_event_syncs, declared_syncs, destination_env, not_configured, run_syncs
from loaders.home import CorralHome
from loaders.load import LoadError, LoadResult, describe, load_files, load_landing, load_on_server
from loaders.warehouse import connect, target
from reverse_etl.engine import SyncRunResult
from reverse_etl.syncs import EventSyncSpec, SyncConfigError, SyncSpec, find_sync


def say(message: str) -> None:
    print(message, flush=True)


def embedded_only(command: str) -> None:
    """Commands that read or write the embedded warehouse file (syncs keep their state there) stop
    on a server target rather than use a warehouse `corral build` does not."""
    if target() != "duckdb":
        raise ValueError(f"{command} works on the embedded DuckDB warehouse only, not yet on target {target()!r} "
                         "(CORRAL_TARGET); on a server target use `corral load` and `corral build`")


def cmd_load(args: argparse.Namespace, home: CorralHome) -> int:
    def run(con: duckdb.DuckDBPyConnection) -> LoadResult:
        if args.files:
            return load_files(con, [Path(f) for f in args.files], source_id=args.source, skip_invalid=args.skip_invalid)
        return load_landing(con, home.landing, skip_invalid=args.skip_invalid)

    if target() == "duckdb":
        with closing(connect(home)) as con:
            result = run(con)
    else:  # a server (CORRAL_TARGET, profiles.yml): the same load, written there with COPY
        result = load_on_server(run)
    for line in describe(result):
        say(line)
    if not result.files and not result.side_files:
        say(f"nothing to load (no new sealed segments in {home.landing})")
    say(f"{result.rows_loaded:,} rows loaded")
    return 0


def cmd_collect(args: argparse.Namespace, home: CorralHome) -> int:
    from loaders.collector import CollectorConfig
    from loaders.collector_server import run

    config = CollectorConfig.from_env()  # refuse to start on bad keys or webhook mappings
    sources = sorted(set(config.write_keys.values()))
    say(f"collector on http://{args.host}:{args.port} ({args.workers} worker(s)) for source(s) {', '.join(sources)}; landing in {home.landing}")
    run(args.host, args.port, args.workers)
    return 0


def cmd_build(args: argparse.Namespace, home: CorralHome) -> int:
    dbt_vars = {"corral_as_of": args.as_of} if args.as_of else None
    selection = ["--select", *args.select] if args.select else []
    run_dbt(home, ["build", *selection, *(["--full-refresh"] if args.full_refresh else [])], dbt_vars=dbt_vars, echo=say)
    return 0


def cmd_sync(args: argparse.Namespace, home: CorralHome) -> int:
    embedded_only("sync")
    manifest = ensure_manifest(home, echo=say)
    syncs: list[SyncSpec | EventSyncSpec] = [*declared_syncs(manifest), *declared_event_syncs(manifest)]
    chosen = [find_sync(syncs, args.name)] if args.name else syncs
    if args.full and args.name and isinstance(chosen[0], EventSyncSpec):
        raise ValueError(f"--full does not apply to event sync {args.name!r}: it sends each event once, from its cursor on")
    if getattr(args, "configured_only", False):  # the demo: syncs to tools this machine has no credentials for are skipped, said so
        for sync in list(chosen):
            if (reason := not_configured(sync, destination_env(home))) is not None:
                say(f"{sync.name}: skipped: {reason}")
                chosen.remove(sync)
    failed = 0
    for sync, result in run_syncs(home, chosen, dry_run=args.dry_run, full=args.full, echo=say):
        if isinstance(result, Exception):
            say(f"{sync.name}: not run: {result}")
            failed += 1
            continue
        for line in describe_run(sync, result):
            say(line)
        failed += not args.dry_run and result.status != "success"
    return 1 if failed else 0


def describe_run(sync: SyncSpec | EventSyncSpec, result: SyncRunResult) -> list[str]:
    """What one sync run did, for people: counts, where it went, the first errors."""
    events = isinstance(sync, EventSyncSpec)
    if result.dry_run:
        what = "events" if events else "records"
        lines = [f"{sync.name}: would send {result.planned:,} {what} from {sync.model} to {sync.destination} ({sync.mode}"
                 + ("" if events else ": " + _changes(result)) + ")"]
        for operation, rows in result.samples.items():
            lines.append(f"  {operation} {result.operations.get(operation, result.planned):,}, e.g.:")
            lines.extend(f"    {row}" for row in rows)
        return lines
    rejected = f", {result.rejected:,} rejected after {sync.max_attempts} attempts" if result.rejected else ""
    if events:
        retried = result.changes.get("changed", 0)
        again = f" ({retried:,} retried from earlier runs)" if retried else ""
        lines = [(f"{sync.name}: {result.status}: {result.succeeded:,} of {result.planned:,} new events forwarded to {sync.destination}"
                  f"{again}, {result.failed:,} failed{rejected}; cursor at {result.metadata.get('cursor_loaded_at', '-')} "
                  f"in {result.duration_seconds:.2f}s")]
    else:
        where = f" → {result.metadata['path']}" if "path" in result.metadata else ""
        lines = [(f"{sync.name}: {result.status}: {_changes(result)}; {result.succeeded:,} of {result.planned:,} records delivered, "
                  f"{result.failed:,} failed{rejected}{where} in {result.duration_seconds:.2f}s")]
    return lines + [f"  {error}" for error in result.errors[:5]]


def _changes(result: SyncRunResult) -> str:
    return ", ".join(f"{result.changes.get(c, 0):,} {c}" for c in ("added", "changed", "removed", "unchanged"))


def cmd_replay_rejected(args: argparse.Namespace, home: CorralHome) -> int:
    from loaders.protocols import load_plans, plans_directory
    from loaders.replay import replay_rejected

    embedded_only("replay-rejected")
    plans = load_plans(plans_directory())  # a broken plan stops here, naming file and line
    with closing(connect(home)) as con:
        result = replay_rejected(con, home, plans, source=args.source, dry_run=args.dry_run)
    for line in result.describe():
        say(line)
    return 0


def cmd_status(args: argparse.Namespace, home: CorralHome) -> int:
    embedded_only("status")
    if not home.warehouse.exists():
        say(f"no warehouse yet at {home.warehouse}; run `corral demo` or `corral load FILES`")
        return 0
    with closing(connect(home, read_only=True)) as con:
        say(f"Corral home {home.root}\n{render(summarize(con))}")
    return 0


def cmd_demo(args: argparse.Namespace, home: CorralHome) -> int:
    embedded_only("demo")
    from loaders.synthetic import DemoSpec, write_ndjson

    started = time.monotonic()
    if home.root.exists():
        say(f"starting from an empty home: removing {home.root}")
        shutil.rmtree(home.root)
    home.ensure()
    spec = DemoSpec(users=args.users, days=args.days, seed=args.seed)
    say(f"[1/4] generating {spec.users:,} synthetic customers over {spec.days} days (seed {spec.seed}) ...")
    files = write_ndjson(spec, home.landing / "demo")
    say(f"      wrote {len(files)} landing segment(s) to {home.landing / 'demo'}")
    say("[2/4] loading sealed landing segments into raw.events ...")
    with closing(connect(home)) as con:
        result = load_landing(con, home.landing)
    say(f"      {result.rows_loaded:,} rows loaded ({sum(1 for f in result.files if f.already_loaded_as)} file(s) already loaded)")
    say("[3/4] dbt build (staging → identity → marts → audiences, with tests) ...")
    run_dbt(home, ["build"], dbt_vars={"corral_as_of": spec.end.isoformat(sep=" ")}, echo=say)
    say("[4/4] syncing audiences and forwarding events ...")
    sync_args = argparse.Namespace(name=None, dry_run=False, full=False, configured_only=True)
    status = cmd_sync(sync_args, home)
    with closing(connect(home, read_only=True)) as con:
        say(f"\nDone in {time.monotonic() - started:.0f}s. Corral home {home.root}\n{render(summarize(con))}")
    say(f"\nExports: {home.exports}\nNext: `make dev` opens the Dagster UI on the same project.")
    return status


def parser() -> argparse.ArgumentParser:
    root = argparse.ArgumentParser(
        prog="corral",
        description="Corral: a warehouse-native customer data platform. Every command works on the "
        "home in $CORRAL_HOME (default .corral/): its warehouse, landing/ and exports/.",
    )
    commands = root.add_subparsers(dest="command", required=True, metavar="COMMAND")

    demo = commands.add_parser("demo", help="generate a synthetic data set and run the whole pipeline on it, in an emptied home",
        description="Empties $CORRAL_HOME, generates realistic synthetic customers, lands and loads them, "
        "runs dbt build and every declared sync, and prints a summary.")
    demo.add_argument("--users", type=int, default=3000, help="synthetic customers (default 3000)")
    demo.add_argument("--days", type=int, default=90, help="days of history (default 90)")
    demo.add_argument("--seed", type=int, default=7, help="random seed; same seed, same data (default 7)")
    demo.set_defaults(run=cmd_demo)

    load = commands.add_parser(
        "load",
        help="bulk-load files of Segment-spec messages into raw.events (each file once)",
        description="Load NDJSON (.ndjson/.jsonl/.json), CSV or Parquet files of Segment-spec messages. "
        "With no FILES, loads the sealed segments in $CORRAL_HOME/landing/ not loaded before. "
        "All or nothing: any invalid line stops the load and names file and line.",
    )
    load.add_argument("files", nargs="*", metavar="FILE")
    load.add_argument("--source", default="import", help="source id recorded on the rows (default: import)")
    load.add_argument("--skip-invalid", action="store_true", help="load the valid rows; keep invalid ones in raw.load_errors")
    load.set_defaults(run=cmd_load)

    collect = commands.add_parser(
        "collect",
        help="run the Segment/RudderStack-compatible collector (HTTP tracking API)",
        description="Serve the tracking API: /v1/{identify,track,page,screen,group,alias,batch} (and "
        "analytics.js's /v1/{i,t,p,s,g,a,b}), /v1/webhook/NAME, /health, /metrics. Write keys from "
        "CORRAL_WRITE_KEYS=source:key,...; accepted messages land durably in $CORRAL_HOME/landing/<source>/.",
    )
    collect.add_argument("--host", default="127.0.0.1", help="address to listen on (default 127.0.0.1)")
    collect.add_argument("--port", type=int, default=8088, help="port (default 8088)")
    collect.add_argument("--workers", type=int, default=os.cpu_count() or 1, help="worker processes (default: one per CPU)")
    collect.set_defaults(run=cmd_collect)

    build = commands.add_parser("build", help="dbt build: every model and its tests on the warehouse")
    build.add_argument("--select", nargs="+", help="dbt node selection (default: everything)")
    build.add_argument("--as-of", help="reproducible 'now' for windows, e.g. 2026-11-01 (default: the build time)")
    build.add_argument(
        "--full-refresh", action="store_true",
        help="rebuild incremental models from scratch (needed after changing identity settings; history is kept)",
    )
    build.set_defaults(run=cmd_build)

    sync = commands.add_parser(
        "sync", help="run declared syncs (dbt exposures with meta.corral_sync): audiences and traits, and event forwarding",
        description="Runs record syncs (the model diffed against what the destination last confirmed) and event syncs "
        "(mode: events: new profile_events rows since the sync's cursor, through its filters) side by side. "
        "A sync that is already running elsewhere is refused, not run twice.",
    )
    sync.add_argument("name", nargs="?", help="one sync (default: all)")
    sync.add_argument("--dry-run", action="store_true", help="say what would be sent, with samples; send nothing, move no cursor")
    sync.add_argument("--full", action="store_true",
                      help="record syncs: resend every row, not only changes (and retry rejected ones); not for event syncs")
    sync.set_defaults(run=cmd_sync)

    replay = commands.add_parser(
        "replay-rejected",
        help="check messages a tracking plan blocked against the current plans; land those that now pass, once",
        description="Loads new rejected files into raw.rejected_events, checks each message blocked by a tracking "
        "plan (and not replayed yet) against the current plan of its source (CORRAL_TRACKING_PLANS), and lands "
        "those that pass in raw.events, exactly once; the others stay for a later replay.",
    )
    replay.add_argument("--source", help="only this source's messages (default: all)")
    replay.add_argument("--dry-run", action="store_true", help="say what would land; land nothing")
    replay.set_defaults(run=cmd_replay_rejected)

    status = commands.add_parser("status", help="what the warehouse holds: events, profiles, sessions, audiences, syncs")
    status.set_defaults(run=cmd_status)
    return root


def main(argv: Sequence[str] | None = None) -> int:
    args = parser().parse_args(argv)
    home = CorralHome.from_env()
    os.environ["CORRAL_HOME"] = str(home.root)  # children (dbt) see the same home, resolved
    try:
        return args.run(args, home)
    except (LoadError, SyncConfigError, DbtFailed, ValueError, FileNotFoundError) as exc:  # config errors are ValueErrors
        print(f"corral {args.command}: {exc}", file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())
