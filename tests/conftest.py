from __future__ import annotations

import contextlib
import json
import os
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from loaders.home import CorralHome


def write_ndjson(path: Path, messages: Iterable[Any]) -> Path:
    """Write messages one per line; str items are written verbatim (for malformed lines)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("".join((m if isinstance(m, str) else json.dumps(m)) + "\n" for m in messages))
    return path


def message(type_: str = "track", **fields: Any) -> dict[str, Any]:
    base: dict[str, Any] = {"type": type_, "anonymousId": "anon-1", "receivedAt": "2026-10-01T12:00:00.000Z"}
    if type_ == "track":
        base["event"] = "Product Viewed"
    base.update(fields)
    return {k: v for k, v in base.items() if v is not ...}


@pytest.fixture
def client() -> Iterator[httpx.Client]:
    """An HTTP client with short timeouts, for destinations talking to local fakes."""
    with httpx.Client(timeout=httpx.Timeout(2.0)) as c:
        yield c


@pytest.fixture
def home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> CorralHome:
    """A fresh, empty CORRAL_HOME, also set in the environment for code that reads it."""
    root = tmp_path / "home"
    monkeypatch.setenv("CORRAL_HOME", str(root))
    return CorralHome(root)


# --- a real PostgreSQL server for the Postgres target's tests (tests/test_postgres*.py) -----------


def postgres_bin_dir() -> Path | None:
    """Where initdb / pg_ctl / postgres live: PG_BIN_DIR, else the newest /usr/lib/postgresql/*/bin
    (Debian / Ubuntu packages), else the directory of `pg_ctl` on PATH (or /usr/local/bin)."""
    import shutil

    candidates = [Path(os.environ["PG_BIN_DIR"])] if os.environ.get("PG_BIN_DIR") else []
    candidates += sorted(Path("/usr/lib/postgresql").glob("*/bin"), key=lambda p: int(p.parent.name) if p.parent.name.isdigit() else 0, reverse=True)
    on_path = shutil.which("pg_ctl") or shutil.which("pg_ctl", path="/usr/local/bin:/usr/bin")
    candidates += [Path(on_path).resolve().parent] if on_path else []
    return next((c for c in candidates if (c / "initdb").exists() and (c / "pg_ctl").exists()), None)


@contextlib.contextmanager
def postgres_server(durable: bool = False) -> Iterator[dict[str, str]]:
    """A throwaway PostgreSQL server on a free loopback port, its data in a new temp dir, stopped
    and removed afterwards. Yields the CORRAL_PG_* env vars of its `corral` superuser (trust
    auth, loopback only). PostgreSQL refuses to run as root: as root it runs as user `postgres`
    (the system package creates it). `durable=False` turns fsync off, as test servers do."""
    import pwd
    import shutil
    import socket
    import subprocess
    import tempfile

    bin_dir = postgres_bin_dir()
    if bin_dir is None:
        raise FileNotFoundError("no PostgreSQL server binaries (initdb, pg_ctl): install them (apt-get install -y postgresql) or set PG_BIN_DIR")
    run_as: list[str] = []
    root = Path(tempfile.mkdtemp(prefix="corral-pg-"))
    if os.geteuid() == 0:
        account = pwd.getpwnam("postgres")
        os.chown(root, account.pw_uid, account.pw_gid)
        run_as = ["runuser", "-u", "postgres", "--"]
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    data = root / "data"
    options = f"-p {port} -k {root} -c listen_addresses=127.0.0.1 -c max_connections=40"
    if not durable:
        options += " -c fsync=off -c synchronous_commit=off -c full_page_writes=off"
    try:
        subprocess.run([*run_as, str(bin_dir / "initdb"), "-D", str(data), "-U", "corral", "--auth=trust", "-E", "UTF8", "--locale=C"],
                       check=True, capture_output=True, cwd=root)
        subprocess.run([*run_as, str(bin_dir / "pg_ctl"), "-D", str(data), "-o", options, "-l", str(root / "server.log"), "-w", "-t", "60", "start"],
                       check=True, capture_output=True, cwd=root)
        try:
            yield {"CORRAL_PG_HOST": "127.0.0.1", "CORRAL_PG_PORT": str(port), "CORRAL_PG_USER": "corral",
                   "CORRAL_PG_PASSWORD": "", "CORRAL_PG_DBNAME": "postgres"}
        finally:
            subprocess.run([*run_as, str(bin_dir / "pg_ctl"), "-D", str(data), "-m", "fast", "-w", "stop"], capture_output=True, cwd=root)
    finally:
        shutil.rmtree(root, ignore_errors=True)


def create_postgres_database(server: dict[str, str], name: str) -> dict[str, str]:
    """A new, empty database on `server`; its CORRAL_PG_* env vars."""
    import psycopg

    with psycopg.connect(host=server["CORRAL_PG_HOST"], port=server["CORRAL_PG_PORT"], user=server["CORRAL_PG_USER"],
                         dbname="postgres", autocommit=True) as con:
        con.execute(f'drop database if exists "{name}"')
        con.execute(f'create database "{name}"')
    return {**server, "CORRAL_PG_DBNAME": name}


@pytest.fixture(scope="session")
def postgres() -> Iterator[dict[str, str]]:
    """A real PostgreSQL server for the session (started here, stopped at the end): its CORRAL_PG_*
    env vars. Skips when the server binaries are missing, unless CORRAL_REQUIRE_POSTGRES=1 (CI,
    whose .ci/run installs them), where that fails."""
    if postgres_bin_dir() is None:
        message = "PostgreSQL server binaries not found (apt-get install -y postgresql, or PG_BIN_DIR)"
        if os.environ.get("CORRAL_REQUIRE_POSTGRES") == "1":
            pytest.fail(message)
        pytest.skip(message)
    with postgres_server() as server:
        yield server
