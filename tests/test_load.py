"""`corral load`: bulk loads, exactly once, clear errors naming file and line, nothing half-loaded."""

from __future__ import annotations

import gzip
import json
import shutil
from contextlib import closing
from pathlib import Path
from typing import Any

import duckdb
import pyarrow as pa
import pyarrow.csv  # noqa: F401 - pa.csv below
import pyarrow.parquet as pq
import pytest
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from conftest import message, write_ndjson
from dagster_defs.cli import main
from loaders.home import CorralHome
from loaders.load import LoadError, load_files, load_landing
from loaders.messages import MESSAGE_TYPES, validation_error
from loaders.warehouse import connect


def count(con: duckdb.DuckDBPyConnection, table: str) -> int:
    return con.execute(f"select count(*) from {table}").fetchone()[0]


def test_loads_every_field_and_types_it(home: CorralHome, tmp_path: Path) -> None:
    path = write_ndjson(
        tmp_path / "a.ndjson",
        [
            message(
                "identify",
                messageId="m1",
                userId=42,
                traits={"email": "a@example.com"},
                context={"ip": "1.2.3.4"},
                originalTimestamp="2026-10-01T10:00:00.000+02:00",
                sentAt="2026-10-01T10:00:01.000+02:00",
                receivedAt="2026-10-01T08:00:03.500Z",
            ),
            message("track", messageId="m2", properties={"revenue": 12.5}, integrations={"All": True}),
        ],
    )
    with closing(connect(home)) as con:
        result = load_files(con, [path], source_id="web")
        rows = con.execute(
            "select message_id, type, user_id, original_timestamp, received_at, traits ->> 'email', "
            "properties ->> 'revenue', source_id, landing_line from raw.events order by message_id"
        ).fetchall()
    assert result.rows_loaded == 2
    m1, m2 = rows
    assert m1[:3] == ("m1", "identify", "42")
    assert str(m1[3]) == "2026-10-01 08:00:00"  # converted to UTC
    assert str(m1[4]) == "2026-10-01 08:00:03.500000"
    assert m1[5] == "a@example.com" and m1[7:] == ("web", 1)
    assert m2[0] == "m2" and m2[6] == "12.5" and m2[8] == 2


def test_same_file_twice_loads_nothing_even_renamed(home: CorralHome, tmp_path: Path) -> None:
    path = write_ndjson(tmp_path / "a.ndjson", [message(messageId=f"m{i}") for i in range(5)])
    renamed = tmp_path / "copy.ndjson"
    shutil.copy(path, renamed)
    with closing(connect(home)) as con:
        assert load_files(con, [path]).rows_loaded == 5
        second = load_files(con, [path, renamed])
        assert second.rows_loaded == 0
        assert all(f.already_loaded_as == str(path) for f in second.files)
        assert count(con, "raw.events") == 5 and count(con, "raw.loaded_files") == 1


def test_message_without_id_gets_a_deterministic_one(home: CorralHome, tmp_path: Path) -> None:
    a = write_ndjson(tmp_path / "a.ndjson", [message()])
    b = write_ndjson(tmp_path / "b.ndjson", [message(), message(anonymousId="anon-2")])
    with closing(connect(home)) as con:
        load_files(con, [a])
        result = load_files(con, [b])
        ids = [r[0] for r in con.execute("select message_id from raw.events order by landing_file, landing_line").fetchall()]
    assert (result.rows_loaded, result.files[0].duplicates) == (1, 1)  # same content, same id: a resend
    assert len(set(ids)) == 2 and all(i.startswith("corral-") for i in ids)


BAD_LINES = [
    ('{"type": "track", "anonymousId": "a"}', "track without 'event'"),
    ("{not json", "malformed JSON"),
    ('{"type": "nope", "userId": "u"}', "unknown type 'nope'"),
    ('{"type": "page"}', "missing both 'userId' and 'anonymousId'"),
    ('{"anonymousId": "a"}', "missing 'type'"),
    ("[1, 2]", "not a JSON object"),
    ('{"type": "alias", "userId": "u"}', "alias needs both 'previousId' and 'userId'"),
    ('{"type": "identify", "userId": "u", "traits": [1]}', "'traits' is not a JSON object"),
    ('{"type": "page", "userId": "u", "sentAt": "yesterday"}', "'sentAt' is not a timestamp: yesterday"),
]


def test_bad_lines_name_file_and_line_and_nothing_is_loaded(home: CorralHome, tmp_path: Path) -> None:
    good = write_ndjson(tmp_path / "good.ndjson", [message(messageId="ok")])
    lines = [json.dumps(message(messageId="fine"))] + [line for line, _ in BAD_LINES]
    bad = write_ndjson(tmp_path / "bad.ndjson", lines)
    with closing(connect(home)) as con, pytest.raises(LoadError) as raised:
        load_files(con, [good, bad])
    text = str(raised.value)
    for number, (_, reason) in enumerate(BAD_LINES, start=2):
        assert f"{bad.resolve()}:{number}: {reason}" in text
    assert "nothing was loaded" in text
    with closing(connect(home)) as con:
        assert count(con, "raw.events") == 0
        assert count(con, "raw.loaded_files") == 0
        assert count(con, "raw.load_errors") == 0


def test_skip_invalid_keeps_good_rows_and_the_bad_ones_aside(home: CorralHome, tmp_path: Path) -> None:
    bad = write_ndjson(tmp_path / "bad.ndjson", [json.dumps(message(messageId="fine")), "{oops", "", '{"type":"page"}'])
    with closing(connect(home)) as con:
        result = load_files(con, [bad], skip_invalid=True)
        assert result.rows_loaded == 1
        assert con.execute("select message_id from raw.events").fetchall() == [("fine",)]
        kept = con.execute("select line, reason, raw from raw.load_errors order by line").fetchall()
        assert kept == [(2, "malformed JSON", "{oops"), (4, "missing both 'userId' and 'anonymousId'", '{"type":"page"}')]
        assert con.execute("select rows_loaded, rows_rejected from raw.loaded_files").fetchall() == [(1, 2)]


def test_csv_and_parquet_load_the_same_as_ndjson(home: CorralHome, tmp_path: Path) -> None:
    messages = [
        message("identify", messageId="m1", userId="u1", traits={"email": "x@example.com", "plan": "pro"}),
        message("track", messageId="m2", properties={"revenue": 3}, sentAt="2026-10-01T11:59:59Z"),
    ]
    ndjson = write_ndjson(tmp_path / "m.ndjson", messages)
    # CSV as a warehouse export would have it: snake_case columns, objects as JSON text.
    csv = tmp_path / "m.csv"
    pa.csv.write_csv(
        pa.table(
            {
                "message_id": ["m1", "m2"],
                "type": ["identify", "track"],
                "anonymous_id": ["anon-1", "anon-1"],
                "user_id": ["u1", None],
                "event": [None, "Product Viewed"],
                "traits": [json.dumps(messages[0]["traits"]), None],
                "properties": [None, json.dumps({"revenue": 3})],
                "sent_at": [None, "2026-10-01T11:59:59Z"],
                "received_at": ["2026-10-01T12:00:00.000Z"] * 2,
            }
        ),
        csv,
    )
    # Parquet with camelCase keys and real nested structs.
    parquet = tmp_path / "m.parquet"
    pq.write_table(
        pa.Table.from_pylist(
            [{**m, **{k: m.get(k) for k in ("traits", "properties", "userId", "event", "sentAt")}} for m in messages]
        ),
        parquet,
    )
    query = (
        "select message_id, type, user_id, anonymous_id, event, traits->>'email', traits->>'plan', "
        "properties->>'revenue', sent_at, received_at from raw.events where source_id = ? order by message_id"
    )
    results = {}
    for source, path in (("ndjson", ndjson), ("csv", csv), ("parquet", parquet)):
        with closing(connect(CorralHome(home.root / source))) as con:
            load_files(con, [path], source_id=source)
            results[source] = con.execute(query, [source]).fetchall()
    assert len(results["ndjson"]) == 2
    assert results["csv"] == results["ndjson"]
    assert results["parquet"] == results["ndjson"]


def test_bad_csv_row_is_named(home: CorralHome, tmp_path: Path) -> None:
    csv = tmp_path / "bad.csv"
    csv.write_text("type,userId,traits\nidentify,u1,{}\nidentify,u2,{broken\n")
    with closing(connect(home)) as con, pytest.raises(LoadError, match=r"bad.csv:3: 'traits' is not a JSON object"):
        load_files(con, [csv])


def test_unsupported_file_type_is_refused_before_loading(home: CorralHome, tmp_path: Path) -> None:
    good = write_ndjson(tmp_path / "a.ndjson", [message()])
    other = tmp_path / "a.ndjson.gz"
    other.write_bytes(gzip.compress(good.read_bytes()))
    with closing(connect(home)) as con:
        with pytest.raises(ValueError, match="unsupported file type '.gz'"):
            load_files(con, [good, other])
        assert count(con, "raw.events") == 0


def test_landing_loads_sealed_segments_once_with_their_source(home: CorralHome) -> None:
    write_ndjson(home.landing / "web" / "seg-1.ndjson", [message(messageId="a")])
    write_ndjson(home.landing / "web" / "seg-2.ndjson.open", [message(messageId="b")])  # still being written
    write_ndjson(home.landing / "seg-3.ndjson", [message(messageId="c")])
    write_ndjson(home.landing / "_rejected" / "web" / "seg-4.ndjson", [{"reason": "r", "message": message(messageId="d")}])
    with closing(connect(home)) as con:
        assert load_landing(con, home.landing).rows_loaded == 2
        assert load_landing(con, home.landing).rows_loaded == 0
        (home.landing / "web" / "seg-2.ndjson.open").rename(home.landing / "web" / "seg-2.ndjson")
        assert load_landing(con, home.landing).rows_loaded == 1
        rows = con.execute("select message_id, source_id from raw.events order by message_id").fetchall()
    assert rows == [("a", "web"), ("b", "web"), ("c", "default")]


def test_cli_load_reports_errors_and_exits_nonzero(home: CorralHome, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    bad = write_ndjson(tmp_path / "bad.ndjson", [json.dumps(message()), '{"type": "track", "userId": "u"}'])
    assert main(["load", str(bad)]) == 1
    assert f"{bad.resolve()}:2: track without 'event'" in capsys.readouterr().err
    good = write_ndjson(tmp_path / "good.ndjson", [message()])
    assert main(["load", str(good)]) == 0
    assert main(["load", str(good)]) == 0
    out = capsys.readouterr().out
    assert "loaded 1 rows" in out and "skipped" in out


# --- property: the bulk SQL validation agrees with the collector's Python rules ----------------

ABSENT = object()
ids = st.sampled_from([ABSENT, None, "", "  ", "u1", 7, True])
objects = st.sampled_from([ABSENT, None, {}, {"a": 1}, [1], "text", 3])
stamps = st.sampled_from([ABSENT, None, "2026-10-01T10:00:00Z", "2026-10-01 10:00:00+01:00", "2026-10-01", "soon", 5])


@st.composite
def messages(draw: st.DrawFn) -> dict[str, Any]:
    m = {
        "type": draw(st.sampled_from([ABSENT, None, "", "Track", "nope", 1, *MESSAGE_TYPES])),
        "userId": draw(ids),
        "anonymousId": draw(ids),
        "previousId": draw(ids),
        "event": draw(st.sampled_from([ABSENT, None, "", "Order Completed"])),
        "traits": draw(objects),
        "properties": draw(objects),
        "context": draw(objects),
        "sentAt": draw(stamps),
        "receivedAt": draw(stamps),
    }
    return {k: v for k, v in m.items() if v is not ABSENT}


@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(batch=st.lists(messages(), min_size=1, max_size=40))
@example(batch=[{"type": "identify", "userId": "u1"}, {"type": "identify", "userId": "u1"}])  # a resend without messageId
def test_bulk_validation_matches_the_collectors_rules(batch: list[dict[str, Any]], tmp_path_factory: pytest.TempPathFactory) -> None:
    work = tmp_path_factory.mktemp("prop")
    path = write_ndjson(work / "batch.ndjson", batch)
    expected = {i: validation_error(m) for i, m in enumerate(batch, start=1)}
    with closing(connect(CorralHome(work / "home"))) as con:
        result = load_files(con, [path], skip_invalid=True)
        loaded = {line for (line,) in con.execute("select landing_line from raw.events").fetchall()}
    got = {e.line: e.reason for e in result.errors}
    assert got == {line: reason for line, reason in expected.items() if reason}
    # no messageId here, so a line identical to an earlier one is a resend (its id is a hash of
    # the message): only the first of identical valid lines loads
    lines = path.read_text().splitlines()
    first_of_each = {line for line, reason in expected.items() if reason is None and lines.index(lines[line - 1]) == line - 1}
    assert loaded == first_of_each


def test_each_message_id_lands_once_across_files_and_within_one(home: CorralHome, tmp_path: Path) -> None:
    first = write_ndjson(tmp_path / "first.ndjson", [message(messageId="a"), message(messageId="b"), message(messageId="a")])
    retry = write_ndjson(tmp_path / "retry.ndjson", [message(messageId="b", event="Resent"), message(messageId="c")])
    with closing(connect(home)) as con:
        one = load_files(con, [first])
        two = load_files(con, [retry])
        rows = con.execute("select message_id, event, landing_line from raw.events order by message_id").fetchall()
        ledger = con.execute("select rows_loaded, rows_duplicate from raw.loaded_files order by path").fetchall()
    assert (one.rows_loaded, one.files[0].duplicates, two.rows_loaded, two.files[0].duplicates) == (2, 1, 1, 1)
    assert rows == [("a", "Product Viewed", 1), ("b", "Product Viewed", 2), ("c", "Product Viewed", 2)]
    assert ledger == [(2, 1), (1, 1)]
