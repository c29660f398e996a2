"""The warehouse: the embedded DuckDB file (default) or the server CORRAL_TARGET names
(`postgres`, profiles.yml), and the `raw` schema the loaders own."""

from __future__ import annotations

import fcntl
import os
import warnings
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass

import duckdb

from loaders.home import CorralHome


@dataclass(frozen=True)
class Field:
    """One Segment-spec field of `raw.events`: warehouse column, SQL type, key in the message."""

    column: str
    sql_type: str
    key: str

    @property
    def is_object(self) -> bool:
        return self.sql_type == "json"

    @property
    def is_timestamp(self) -> bool:
        return self.sql_type == "timestamp"


MESSAGE_FIELDS: tuple[Field, ...] = (
    Field("message_id", "varchar", "messageId"),
    Field("type", "varchar", "type"),
    Field("user_id", "varchar", "userId"),
    Field("anonymous_id", "varchar", "anonymousId"),
    Field("previous_id", "varchar", "previousId"),
    Field("group_id", "varchar", "groupId"),
    Field("event", "varchar", "event"),
    Field("name", "varchar", "name"),
    Field("category", "varchar", "category"),
    Field("timestamp", "timestamp", "timestamp"),
    Field("original_timestamp", "timestamp", "originalTimestamp"),
    Field("sent_at", "timestamp", "sentAt"),
    Field("received_at", "timestamp", "receivedAt"),
    Field("traits", "json", "traits"),
    Field("properties", "json", "properties"),
    Field("context", "json", "context"),
    Field("integrations", "json", "integrations"),
)

RAW_DDL = f"""
create schema if not exists raw;
create table if not exists raw.events (
    {", ".join(f"{f.column} {f.sql_type}" for f in MESSAGE_FIELDS)},
    source_id varchar not null,
    loaded_at timestamp not null,
    landing_file varchar not null,
    landing_line bigint not null
);
create table if not exists raw.loaded_files (
    file_sha256 varchar primary key,
    path varchar not null,
    bytes bigint not null,
    source_id varchar not null,
    rows_loaded bigint not null,
    rows_duplicate bigint not null,
    rows_rejected bigint not null,
    loaded_at timestamp not null
);
create table if not exists raw.load_errors (
    file_sha256 varchar not null,
    path varchar not null,
    line bigint not null,
    reason varchar not null,
    raw varchar,
    loaded_at timestamp not null
);
-- Tracking plans (loaders/protocols.py, loaders/load_protocols.py): violations (from the `_corral` key of
-- loaded lines, and from rejected records), the messages kept out of raw.events (landing/_rejected/, each
-- file once, recorded in raw.protocol_files), and the ledger of `corral replay-rejected`.
create table if not exists raw.violations (
    message_id varchar not null,
    source_id varchar not null,
    message_type varchar,
    event varchar,
    property_path varchar not null,
    rule varchar not null,
    expected varchar,
    received_type varchar,
    description varchar,
    action varchar not null,
    plan_version varchar,
    plan_file varchar,
    received_at timestamp not null,
    loaded_at timestamp not null,
    landing_file varchar not null,
    landing_line bigint not null
);
create table if not exists raw.rejected_events (
    rejected_id varchar not null,
    message_id varchar,
    source_id varchar not null,
    rejection varchar not null,
    reason varchar not null,
    message_type varchar,
    event varchar,
    plan_version varchar,
    violations json,
    message json,
    received_at timestamp,
    loaded_at timestamp not null,
    landing_file varchar not null,
    landing_line bigint not null
);
create table if not exists raw.replayed_events (
    rejected_id varchar not null,
    message_id varchar,
    source_id varchar not null,
    outcome varchar not null,
    plan_version varchar,
    landing_file varchar,
    replayed_at timestamp not null
);
create table if not exists raw.protocol_files (
    file_sha256 varchar primary key,
    path varchar not null,
    kind varchar not null,
    source_id varchar not null,
    rows_loaded bigint not null,
    violations_loaded bigint not null,
    rows_invalid bigint not null,
    loaded_at timestamp not null
);
"""


def connect(home: CorralHome, read_only: bool = False) -> duckdb.DuckDBPyConnection:
    """Open the home's warehouse (creating it and the `raw` schema when writable), in UTC."""
    if read_only:
        con = duckdb.connect(str(home.warehouse), read_only=True)
    else:
        home.ensure()
        con = duckdb.connect(str(home.warehouse))
        con.execute(RAW_DDL)
    con.execute("set TimeZone = 'UTC'")
    return con


# --- other targets: the raw schema on the server `corral build` uses (profiles.yml) -------------

# Tables the loader writes, in the order a load copies them to a server target.
RAW_TABLES = ("events", "load_errors", "violations", "rejected_events", "replayed_events", "loaded_files", "protocol_files")


def target(environ: Mapping[str, str] | None = None) -> str:
    """The dbt target in use (CORRAL_TARGET, default duckdb), which is also where loads go."""
    return ((os.environ if environ is None else environ).get("CORRAL_TARGET") or "duckdb").strip()


@contextmanager
def exclusive_writer(
    home: CorralHome, on_wait: Callable[[], None] | None = None, environ: Mapping[str, str] | None = None
) -> Iterator[CorralHome]:
    """Hold the embedded warehouse's writer lock (an advisory lock on `warehouse.lock` beside
    it) while the block writes, waiting for another process's block to end first: DuckDB lets
    one process open the file for writing, and fails the second at once instead of waiting.
    Dagster's pool `corral_warehouse` queues the steps that write; this lock also covers two steps
    that claim the pool's one slot at the same instant (its SQLite storage does not lock the slot
    row). `on_wait` is called when the lock is held elsewhere, before waiting. Server targets take
    no lock: they take several writers."""
    if target(environ) != "duckdb":
        yield home
        return
    home.root.mkdir(parents=True, exist_ok=True)
    with open(home.root / "warehouse.lock", "a") as lock:
        try:
            fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            if on_wait:
                on_wait()
            fcntl.flock(lock, fcntl.LOCK_EX)  # released when the file closes, or when the process dies
        yield home


def postgres_conninfo(environ: Mapping[str, str] | None = None) -> str:
    """libpq connection string of the `postgres` target, from the env vars profiles.yml reads."""
    from psycopg.conninfo import make_conninfo

    env = os.environ if environ is None else environ
    return make_conninfo(
        host=env.get("CORRAL_PG_HOST", "127.0.0.1"),
        port=env.get("CORRAL_PG_PORT", "5432"),
        user=env.get("CORRAL_PG_USER", "corral"),
        password=env.get("CORRAL_PG_PASSWORD", ""),
        dbname=env.get("CORRAL_PG_DBNAME", "corral"),
        connect_timeout=10,
    )


def connect_postgres(environ: Mapping[str, str] | None = None):  # -> psycopg.Connection
    """A connection to the `postgres` target with the raw schema created (RAW_DDL is portable
    SQL: varchar, json, timestamp, bigint), in UTC, not in autocommit."""
    import psycopg

    con = psycopg.connect(postgres_conninfo(environ), autocommit=True)
    try:
        zone, collation = con.execute(
            "select current_setting('TimeZone'), datcollate from pg_database where datname = current_database()"
        ).fetchone()
        if zone != "UTC":
            # dbt's sessions (current_timestamp when corral_as_of is not set) must read time in UTC,
            # as DuckDB's do (profiles.yml): the database's default, set once by its owner
            try:
                con.execute("do $$ begin execute format('alter database %I set timezone to %L', current_database(), 'UTC'); end $$")
            except psycopg.Error as exc:
                warnings.warn(f"Postgres: could not make UTC the database's time zone ({exc}); run dbt with PGTZ=UTC", stacklevel=2)
        if collation not in ("C", "POSIX", "C.UTF-8", "C.utf8"):
            warnings.warn(
                f"Postgres: the database collates text as {collation!r}; DuckDB compares bytes. Ties broken by text "
                "(most frequent values, first/last picks) can then differ from DuckDB; create the database with "
                "`createdb --locale=C --template=template0` for identical results", stacklevel=2,
            )
        con.execute("set TimeZone = 'UTC'")
        if not con.execute("select 1 from information_schema.tables where table_schema = 'raw' and table_name = 'protocol_files'").fetchone():
            con.execute("select pg_advisory_lock(hashtext('corral.raw.ddl'))")  # two first loads at once
            try:
                con.execute(RAW_DDL)
            finally:
                con.execute("select pg_advisory_unlock(hashtext('corral.raw.ddl'))")
        con.autocommit = False
    except BaseException:
        con.close()
        raise
    return con
