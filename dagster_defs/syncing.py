"""Runs declared syncs against one CORRAL_HOME: shared by `corral sync` and the sync assets."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor, as_completed
from contextlib import closing
from pathlib import Path

import duckdb
import httpx

from loaders.home import CorralHome
from loaders.warehouse import connect
from reverse_etl.destinations import make_destination
from reverse_etl.engine import SyncRunResult, prepare_connection, run_sync
from reverse_etl.syncs import SyncSpec, load_syncs, read_manifest


def declared_syncs(manifest: Path) -> list[SyncSpec]:
    return load_syncs(read_manifest(manifest))


def destination_env(home: CorralHome) -> dict[str, str]:
    """Destinations read base URLs and credentials from the environment; the file destination
    writes to the home's exports/ unless FILE_DESTINATION_DIR says otherwise."""
    env = home.env()
    env.setdefault("FILE_DESTINATION_DIR", str(home.exports))
    return env


def run_one(home: CorralHome, sync: SyncSpec, dry_run: bool = False, full: bool = False, client: httpx.Client | None = None,
            echo: Callable[[str], None] | None = None, env: dict[str, str] | None = None) -> SyncRunResult:
    """One sync run (config errors raise SyncConfigError); destinations read `env` (default:
    destination_env(home))."""
    with closing(connect(home)) as con:
        prepare_connection(con)
        return _run_on(con, home, sync, dry_run, full, client, echo, env)


def run_syncs(home: CorralHome, syncs: list[SyncSpec], dry_run: bool = False, full: bool = False,
              echo: Callable[[str], None] | None = None, parallel: int = 4) -> Iterator[tuple[SyncSpec, SyncRunResult | Exception]]:
    """Run syncs side by side, each on its own warehouse cursor and HTTP connection pool, so a
    slow destination holds up only its own sync; yields each (sync, result or error) as it ends."""
    with closing(connect(home)) as con:
        prepare_connection(con)  # once, before the syncs write to it side by side
        with ThreadPoolExecutor(max_workers=max(1, min(parallel, len(syncs))), thread_name_prefix="sync") as pool:
            futures = {pool.submit(_run_on, con.cursor(), home, sync, dry_run, full, None, echo, None): sync for sync in syncs}
            for future in as_completed(futures):
                error = future.exception()
                yield futures[future], error if isinstance(error, Exception) else future.result()


def _run_on(con: duckdb.DuckDBPyConnection, home: CorralHome, sync: SyncSpec, dry_run: bool, full: bool,
            client: httpx.Client | None, echo: Callable[[str], None] | None, env: dict[str, str] | None) -> SyncRunResult:
    """HTTP destinations get a client with sane timeouts unless one is given."""
    owned = client is None
    client = client or httpx.Client(timeout=httpx.Timeout(30.0, connect=10.0))
    try:
        destination = make_destination(sync.destination, destination_env(home) if env is None else env, client)
        return run_sync(con, sync, destination, dry_run=dry_run, full=full, echo=echo)
    finally:
        if owned:
            client.close()
