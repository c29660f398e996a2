"""Runs declared syncs (record and event syncs) against one CORRAL_HOME: shared by `corral sync`,
the sync assets and the event-forwarding assets."""

from __future__ import annotations

from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor, as_completed
from contextlib import closing
from pathlib import Path

import duckdb
import httpx

from loaders.home import CorralHome
from loaders.warehouse import connect
from reverse_etl.destinations import make_destination
from reverse_etl.engine import SyncRunResult, prepare_connection, run_sync
from reverse_etl.syncs import EventSyncSpec, SyncConfigError, SyncSpec, load_event_syncs, load_syncs, read_manifest


def declared_syncs(manifest: Path) -> list[SyncSpec]:
    return load_syncs(read_manifest(manifest))


def declared_event_syncs(manifest: Path) -> list[EventSyncSpec]:
    return load_event_syncs(read_manifest(manifest))


def destination_env(home: CorralHome) -> dict[str, str]:
    """Destinations read base URLs and credentials from the environment; the file destination
    writes to the home's exports/ unless FILE_DESTINATION_DIR says otherwise."""
    env = home.env()
    env.setdefault("FILE_DESTINATION_DIR", str(home.exports))
    return env


def not_configured(sync: SyncSpec | EventSyncSpec, env: dict[str, str]) -> str | None:
    """Why the sync's destination cannot run with this environment (credentials not set, ...),
    or None: the destination's own check, with no request made."""
    try:
        with httpx.Client() as client:
            if isinstance(sync, EventSyncSpec):
                from reverse_etl.destinations.event_base import make_event_destination

                make_event_destination(sync.destination, env, client).check_events(sync)
            else:
                make_destination(sync.destination, env, client).check(sync)
    except SyncConfigError as exc:
        return str(exc)
    return None


def run_one(home: CorralHome, sync: SyncSpec, dry_run: bool = False, full: bool = False, client: httpx.Client | None = None,
            echo: Callable[[str], None] | None = None, env: dict[str, str] | None = None) -> SyncRunResult:
    """One sync run (config errors raise SyncConfigError); destinations read `env` (default:
    destination_env(home))."""
    with closing(connect(home)) as con:
        prepare_connection(con)
        return _run_on(con, sync, dry_run, full, client, echo, destination_env(home) if env is None else env)


def run_syncs(home: CorralHome, syncs: Sequence[SyncSpec | EventSyncSpec], dry_run: bool = False, full: bool = False,
              echo: Callable[[str], None] | None = None, env: dict[str, str] | None = None,
              parallel: int = 4) -> Iterator[tuple[SyncSpec | EventSyncSpec, SyncRunResult | Exception]]:
    """Run syncs, record and event syncs alike, side by side, each on its own warehouse cursor
    and HTTP connection pool, so a slow destination holds up only its own sync; yields each
    (sync, result or error) as it ends. `full` applies to record syncs (event syncs send each
    event once); destinations read `env` (default: destination_env(home))."""
    if not syncs:
        return
    env = destination_env(home) if env is None else env
    with closing(connect(home)) as con:
        prepare_connection(con)  # once, before the syncs write to it side by side
        if any(isinstance(sync, EventSyncSpec) for sync in syncs):
            from reverse_etl.events import prepare as prepare_events  # event syncs bring sqlglot (filters): only when there are some

            prepare_events(con)
        with ThreadPoolExecutor(max_workers=max(1, min(parallel, len(syncs))), thread_name_prefix="sync") as pool:
            futures = {pool.submit(_run_on, con.cursor(), sync, dry_run, full, None, echo, env): sync for sync in syncs}
            for future in as_completed(futures):
                error = future.exception()
                yield futures[future], error if isinstance(error, Exception) else future.result()


def _run_on(con: duckdb.DuckDBPyConnection, sync: SyncSpec | EventSyncSpec, dry_run: bool, full: bool,
            client: httpx.Client | None, echo: Callable[[str], None] | None, env: dict[str, str]) -> SyncRunResult:
    """HTTP destinations get a client with sane timeouts unless one is given."""
    owned = client is None
    client = client or httpx.Client(timeout=httpx.Timeout(30.0, connect=10.0))
    try:
        if isinstance(sync, EventSyncSpec):
            from reverse_etl.destinations.event_base import make_event_destination
            from reverse_etl.events import run_event_sync

            return run_event_sync(con, sync, make_event_destination(sync.destination, env, client), dry_run=dry_run, echo=echo)
        return run_sync(con, sync, make_destination(sync.destination, env, client), dry_run=dry_run, full=full, echo=echo)
    finally:
        if owned:
            client.close()
