"""Runs declared syncs against one CORRAL_HOME: shared by `corral sync` and the sync assets."""

from __future__ import annotations

from collections.abc import Callable
from contextlib import closing
from pathlib import Path

import httpx

from loaders.home import CorralHome
from loaders.warehouse import connect
from reverse_etl.destinations import make_destination
from reverse_etl.engine import SyncRunResult, run_sync
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
            echo: Callable[[str], None] | None = None) -> SyncRunResult:
    """One sync run; HTTP destinations get a client with sane timeouts unless one is given."""
    owned = client is None
    client = client or httpx.Client(timeout=httpx.Timeout(30.0, connect=10.0))
    try:
        destination = make_destination(sync.destination, destination_env(home), client)
        with closing(connect(home)) as con:
            return run_sync(con, sync, destination, dry_run=dry_run, full=full, echo=echo)
    finally:
        if owned:
            client.close()
