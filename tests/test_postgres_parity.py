"""The same project on DuckDB and on PostgreSQL gives the same results, row for row.

One home, one demo data set (the small one tests/test_pipeline.py builds), loaded and built
through the `corral` command on the embedded DuckDB warehouse (the default target) and on a real
PostgreSQL server (CORRAL_TARGET=postgres; the session fixture `postgres` in conftest.py starts
one on a loopback port with its data in a temp dir, and stops it afterwards); then a second, smaller
data set is loaded and built incrementally on both, and the results compared.

What is compared: every table of the schemas `marts` and `audiences` (all marts: profiles,
profile_events, profile_identifiers, profile_merges, profile_traits, sessions, page_views,
audiences, audience_memberships, audience_events, audience_sizes, the protocols marts, and every
audience model) and the raw tables the loader writes (`raw.events`, `raw.loaded_files`,
`raw.load_errors`, `raw.violations`, `raw.rejected_events`): the same tables, the same columns
in the same order, and the same multiset of rows, every value equal:

- ids (profile ids, session ids, surrogate keys: md5 hex on both) and text exactly;
- counts and other integers exactly (Postgres `numeric` sums are read as numbers, DuckDB
  `hugeint` too);
- timestamps exactly, to the microsecond (both are UTC, without time zone);
- floats (revenue sums and averages, durations) within a relative 1e-9: the engines add doubles
  in different orders;
- JSON (traits, properties, unique-list traits) as parsed JSON values, key order ignored.

Canonical order: rows are sorted by all their values (None first, floats rounded to 6 places for
the sort only), then compared pairwise. Not compared, because they say when a build or a load ran,
not what it found, and differ between any two runs on the same engine: `loaded_at` (load time),
`profiled_at`, `updated_at`, `computed_at`, `merged_at` (build start), and the audience history's
build-stamped columns (`audience_events.occurred_at` and `audience_event_id`, a hash of it;
`audience_sizes.audience_size_id`, likewise; `audience_memberships.entered_at`).
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from contextlib import closing
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

import duckdb
import psycopg
import pytest

from conftest import create_postgres_database
from parity import RAW_TABLES, Table, assert_same_tables, build_on_both, duckdb_tables, identity_rounds
from dagster_defs.cli import main
from loaders.home import CorralHome
from loaders.synthetic import DemoSpec

pytestmark = pytest.mark.slow
SPEC = DemoSpec(users=150, days=30, seed=3)
SECOND = DemoSpec(users=40, days=30, seed=4)  # loaded after the first build: the incremental path


@pytest.fixture(scope="module")
def built(tmp_path_factory: pytest.TempPathFactory, postgres: dict[str, str]) -> Iterator[tuple[CorralHome, dict[str, str]]]:
    home = CorralHome(tmp_path_factory.mktemp("parity") / "home")
    server = create_postgres_database(postgres, "corral_parity")
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("CORRAL_HOME", str(home.root))

        def use_target(target: str) -> None:
            if target == "duckdb":
                mp.delenv("CORRAL_TARGET", raising=False)
            else:
                mp.setenv("CORRAL_TARGET", "postgres")
                for name, value in server.items():
                    mp.setenv(name, value)

        build_on_both(home, "postgres", use_target, SPEC, SECOND)
        yield home, server


def postgres_tables(server: dict[str, str]) -> dict[tuple[str, str], Table]:
    tables = {}
    with psycopg.connect(host=server["CORRAL_PG_HOST"], port=server["CORRAL_PG_PORT"], user=server["CORRAL_PG_USER"],
                         dbname=server["CORRAL_PG_DBNAME"]) as con:
        names = con.execute(
            "select table_schema, table_name from information_schema.tables where table_schema in ('marts', 'audiences')"
            " or (table_schema = 'raw' and table_name = any(%s))", [list(RAW_TABLES)]
        ).fetchall()
        for schema, table in names:
            described = con.execute(
                "select column_name, data_type from information_schema.columns where table_schema = %s and table_name = %s"
                " order by ordinal_position", [schema, table]
            ).fetchall()
            columns = [row[0] for row in described]
            json_columns = {row[0] for row in described if row[1] in ("json", "jsonb")}
            tables[(schema, table)] = (columns, json_columns, con.execute(f'select * from "{schema}"."{table}"').fetchall())
    return tables


def test_every_mart_is_the_same_on_duckdb_and_postgres(built: tuple[CorralHome, dict[str, str]]) -> None:
    home, server = built
    assert_same_tables(duckdb_tables(home.warehouse), postgres_tables(server), "Postgres")


def test_identity_resolution_takes_the_same_rounds(built: tuple[CorralHome, dict[str, str]]) -> None:
    """Both engines run the same set-based rounds: each build (the first and the incremental one)
    logs the same round counts on both (O(log diameter), not one per hop)."""
    home, _ = built
    rounds = identity_rounds((home.root / "dbt" / "logs" / "dbt.log").read_text(), ("postgres",))
    assert len(rounds["duckdb"]) == 2 and rounds["postgres"] == rounds["duckdb"], rounds


def test_a_second_postgres_load_loads_nothing(built: tuple[CorralHome, dict[str, str]], capsys: pytest.CaptureFixture[str],
                                              monkeypatch: pytest.MonkeyPatch) -> None:
    """Exactly once on the server too: the ledger is read from Postgres, so the same landing
    files load nothing the second time."""
    home, server = built
    monkeypatch.setenv("CORRAL_HOME", str(home.root))
    monkeypatch.setenv("CORRAL_TARGET", "postgres")
    for name, value in server.items():
        monkeypatch.setenv(name, value)
    capsys.readouterr()
    assert main(["load"]) == 0
    assert "0 rows loaded" in capsys.readouterr().out
    with psycopg.connect(host=server["CORRAL_PG_HOST"], port=server["CORRAL_PG_PORT"], user="corral", dbname=server["CORRAL_PG_DBNAME"]) as con:
        assert con.execute("select count(*) = count(distinct message_id) from raw.events").fetchone() == (True,)
        assert con.execute("select count(*) from raw.loaded_files").fetchone() == (len(list(home.landing.rglob("*.ndjson"))),)


def test_an_invalid_file_loads_nothing_on_postgres(built: tuple[CorralHome, dict[str, str]], tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    home, server = built
    monkeypatch.setenv("CORRAL_HOME", str(home.root))
    monkeypatch.setenv("CORRAL_TARGET", "postgres")
    for name, value in server.items():
        monkeypatch.setenv(name, value)
    good = {"type": "track", "event": "E", "userId": "u-new", "messageId": "parity-new-1"}
    bad = tmp_path / "bad.ndjson"
    bad.write_text(json.dumps(good) + "\n" + "{not json\n")
    with psycopg.connect(host=server["CORRAL_PG_HOST"], port=server["CORRAL_PG_PORT"], user="corral", dbname=server["CORRAL_PG_DBNAME"]) as con:
        before = con.execute("select (select count(*) from raw.events), (select count(*) from raw.loaded_files)").fetchone()
    assert main(["load", str(bad)]) == 1  # all or nothing, as on DuckDB
    with psycopg.connect(host=server["CORRAL_PG_HOST"], port=server["CORRAL_PG_PORT"], user="corral", dbname=server["CORRAL_PG_DBNAME"]) as con:
        assert con.execute("select (select count(*) from raw.events), (select count(*) from raw.loaded_files)").fetchone() == before
    assert main(["load", "--skip-invalid", str(bad)]) == 0
    with psycopg.connect(host=server["CORRAL_PG_HOST"], port=server["CORRAL_PG_PORT"], user="corral", dbname=server["CORRAL_PG_DBNAME"]) as con:
        assert con.execute("select count(*) from raw.events where message_id = 'parity-new-1'").fetchone() == (1,)
        assert con.execute("select line, reason from raw.load_errors where path = %s", [str(bad.resolve())]).fetchall() == [(2, "malformed JSON")]


def test_identity_resolution_on_postgres_keeps_its_rounds_and_results(postgres: dict[str, str], tmp_path: Path,
                                                                      monkeypatch: pytest.MonkeyPatch) -> None:
    """A 2,000-hop chain (anonymous id k and device k on one message, device k and anonymous id
    k+1 on the next) and two users sharing a device and an email: on Postgres the chain is one
    profile in the same few rounds as on DuckDB (O(log diameter), not 2,000), the shared device
    stays with the user who used it first, and every identifier is in the same profile on both."""
    start = datetime(2026, 1, 1)
    messages = []

    def add(minute: float, **fields: Any) -> None:
        at = (start + timedelta(minutes=minute)).isoformat() + "Z"
        messages.append({"type": "track", "event": "Seen", "messageId": f"m{len(messages)}", "timestamp": at, **fields})

    for k in range(2000):
        add(10 + k, anonymousId=f"chain-a{k}", context={"device": {"id": f"chain-d{k}"}})
        add(10.5 + k, anonymousId=f"chain-a{k + 1}", context={"device": {"id": f"chain-d{k}"}})
    add(1, userId="u1", anonymousId="a-u1", context={"device": {"id": "shared-device"}, "traits": {"email": "Shared@Example.com"}})
    add(2, userId="u2", anonymousId="a-u2", context={"device": {"id": "shared-device"}, "traits": {"email": "shared@example.com"}})
    add(3, anonymousId="a-late", context={"device": {"id": "shared-device"}})
    path = tmp_path / "identity.ndjson"
    path.write_text("".join(json.dumps(m) + "\n" for m in messages))
    home = CorralHome(tmp_path / "home")
    monkeypatch.setenv("CORRAL_HOME", str(home.root))
    select = ["build", "--select", "+profiles", "+profile_identifiers", "+profile_merges"]
    monkeypatch.delenv("CORRAL_TARGET", raising=False)
    assert main(["load", str(path)]) == 0 and main(select) == 0
    server = create_postgres_database(postgres, "corral_identity")
    monkeypatch.setenv("CORRAL_TARGET", "postgres")
    for name, value in server.items():
        monkeypatch.setenv(name, value)
    assert main(["load", str(path)]) == 0 and main(select) == 0

    sql = ("select identifier_type, identifier_value, profile_id from marts.profile_identifiers"
           " order by identifier_type, identifier_value")
    rounds_sql = "select max(resolution_rounds) from intermediate.int_identity_components"
    with closing(duckdb.connect(str(home.warehouse), read_only=True)) as con:
        on_duckdb, duckdb_rounds = con.execute(sql).fetchall(), con.execute(rounds_sql).fetchone()[0]
    with psycopg.connect(host=server["CORRAL_PG_HOST"], port=server["CORRAL_PG_PORT"], user="corral", dbname=server["CORRAL_PG_DBNAME"]) as con:
        on_postgres, postgres_rounds = con.execute(sql).fetchall(), con.execute(rounds_sql).fetchone()[0]
    assert on_postgres == on_duckdb
    assert postgres_rounds == duckdb_rounds < 20, f"{postgres_rounds} rounds on Postgres for a 2,000-hop chain"
    profiles = dict(((t, v), p) for t, v, p in on_postgres)
    assert len({p for (t, v), p in profiles.items() if v.startswith("chain-")}) == 1
    assert profiles[("device_id", "shared-device")] == profiles[("user_id", "u1")] != profiles[("user_id", "u2")]
    assert profiles[("anonymous_id", "a-late")] == profiles[("user_id", "u1")]


@pytest.mark.parametrize("command", [["status"], ["sync"], ["replay-rejected"], ["demo", "--users", "5"]])
def test_commands_on_the_embedded_warehouse_stop_on_a_server_target(command: list[str], home: CorralHome,
                                                                     capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch) -> None:
    """Syncs, status, demo and replay read or write the embedded warehouse file: on a server target
    they say so instead of using a warehouse `corral build` does not."""
    monkeypatch.setenv("CORRAL_TARGET", "postgres")
    assert main(command) == 1
    assert "embedded DuckDB warehouse only" in capsys.readouterr().err
    assert not home.root.exists() or not home.warehouse.exists()
