"""Destination filters (reverse_etl/filters.py): every condition form compiled to SQL and run
in DuckDB against known events, names read as the comparison needs (number, boolean, text),
nulls neither dropping nor keeping, the md5 sample agreeing between Python and SQL and across
runs, allow/block lists on nested paths, and every refusal named before anything runs."""

from __future__ import annotations

import json

import duckdb
import pytest

from dagster_defs.traits import FilterError
from reverse_etl.filters import EventFilters, parse_filters, sample_bucket, sample_bucket_sql

EVENTS = [  # message_id, message_type, event_name, user_id, properties, context
    ("e1", "track", "Order Completed", "u1", {"revenue": 150, "plan": "Pro", "vip": True}, {"page": {"path": "/checkout"}}),
    ("e2", "track", "Order Completed", "u2", {"revenue": 50, "plan": "free", "vip": False}, {"page": {"path": "/cart"}}),
    ("e3", "track", "Debug", None, {"revenue": "200", "plan": None}, {}),
    ("e4", "page", None, "u4", {}, {"page": {"path": "/pricing"}}),
    ("e5", "identify", None, "u5", {"revenue": -3}, {"ip": "10.1.1.1"}),
]


@pytest.fixture(scope="module")
def con() -> duckdb.DuckDBPyConnection:
    con = duckdb.connect()
    con.execute("create table events (message_id varchar, message_type varchar, event_name varchar, user_id varchar, properties json,"
                " context json, occurred_at timestamp)")
    for m, t, e, u, p, c in EVENTS:
        con.execute("insert into events values (?, ?, ?, ?, ?, ?, timestamp '2026-11-01 12:00:00')", [m, t, e, u, json.dumps(p), json.dumps(c)])
    return con


def passing(con: duckdb.DuckDBPyConnection, filters: list[dict[str, object]]) -> list[str]:
    columns = [row[0] for row in con.execute("describe events").fetchall()]
    where = parse_filters(filters).where_sql(columns)
    return [m for (m,) in con.execute(f"select message_id from events as e where {where} order by message_id").fetchall()]


@pytest.mark.parametrize(("kind", "condition", "expected"), [
    ("drop", "event = 'Debug'", ["e1", "e2", "e4", "e5"]),  # e4, e5 have no event: null never drops
    ("keep", "event = 'Order Completed' and properties.revenue > 100", ["e1"]),
    ("keep", "properties.revenue > 100", ["e1", "e3"]),  # the text "200" reads as a number
    ("keep", "properties.revenue < 0", ["e5"]),
    ("keep", "properties.revenue between 40 and 160", ["e1", "e2"]),
    ("keep", "type in ('page', 'identify')", ["e4", "e5"]),
    ("keep", "not type in ('page', 'identify')", ["e1", "e2", "e3"]),
    ("keep", "lower(properties.plan) = 'pro'", ["e1"]),
    ("keep", "properties.plan is null", ["e3", "e4", "e5"]),  # a JSON null and a missing key alike
    ("keep", "properties.plan is not null", ["e1", "e2"]),
    ("keep", "properties.vip", ["e1"]),
    ("keep", "properties.vip = false", ["e2"]),
    ("keep", "context.page.path like '/c%'", ["e1", "e2"]),
    ("keep", "userId <> 'u1' or messageId = 'e1'", ["e1", "e2", "e4", "e5"]),  # e3: null user id, not kept
    ("keep", "length(coalesce(user_id, '')) = 0", ["e3"]),
    ("keep", "occurred_at >= '2026-11-01'", ["e1", "e2", "e3", "e4", "e5"]),
    ("drop", "(event = 'Debug' or type = 'page') and user_id is null", ["e1", "e2", "e4", "e5"]),
])
def test_each_condition_form_runs_in_the_warehouse(con: duckdb.DuckDBPyConnection, kind: str, condition: str, expected: list[str]) -> None:
    assert passing(con, [{kind: condition}]) == expected


def test_filters_combine_every_one_must_pass(con: duckdb.DuckDBPyConnection) -> None:
    assert passing(con, [{"drop": "event = 'Debug'"}, {"keep": "type = 'track'"}, {"keep": "properties.revenue > 10"}]) == ["e1", "e2"]
    assert passing(con, []) == ["e1", "e2", "e3", "e4", "e5"] and parse_filters(None) == EventFilters()


def test_sampling_is_deterministic_by_message_id_and_the_sql_agrees_with_python() -> None:
    con = duckdb.connect()
    con.execute("create table ids as select 'msg-' || i as message_id from range(5000) t(i)")
    sql = {m: b for m, b in con.execute(f"select message_id, {sample_bucket_sql('message_id')} from ids").fetchall()}
    assert sql == {m: sample_bucket(m) for m in sql}
    chosen = [m for m in sql if sample_bucket(m) < 1000]  # 10%
    assert 400 < len(chosen) < 600
    columns = ["message_id"]
    where = parse_filters([{"sample": 10}]).where_sql(columns)
    twice = [{m for (m,) in con.execute(f"select message_id from ids as e where {where}").fetchall()} for _ in range(2)]
    assert twice[0] == twice[1] == set(chosen)
    assert sample_bucket("abc") == 0x90015098 % 10_000  # md5("abc") = 900150983cd2...: the same in every process and version
    assert parse_filters([{"sample": 100}]).where_sql(columns) == "true"


def test_allow_and_block_lists_shape_nested_paths_without_touching_the_event() -> None:
    event = {"type": "identify", "messageId": "m", "userId": "u", "traits": {"email": "a@b.c", "plan": "pro", "address": {"city": "X", "street": "Y"}},
             "context": {"ip": "1.2.3.4", "page": {"path": "/"}, "traits": {"email": "a@b.c"}}}
    blocked = parse_filters([{"block": ["traits.email", "traits.address.street", "context.ip", "context.traits.email", "traits.nothing.here"]}])
    assert blocked.shape(event) == {"type": "identify", "messageId": "m", "userId": "u", "traits": {"plan": "pro", "address": {"city": "X"}},
                                    "context": {"page": {"path": "/"}, "traits": {}}}
    allowed = parse_filters([{"allow": ["traits.plan", "traits.address.city", "context.page.path"]}])
    assert allowed.shape(event) == {"type": "identify", "messageId": "m", "userId": "u", "traits": {"plan": "pro", "address": {"city": "X"}},
                                    "context": {"page": {"path": "/"}}}
    both = parse_filters([{"allow": ["traits.plan", "traits.email"]}, {"block": ["traits.email"]}])
    assert both.shape(event)["traits"] == {"plan": "pro"} and both.shape(event)["context"] == {}
    assert event["traits"]["email"] == "a@b.c" and event["context"]["ip"] == "1.2.3.4"  # the original is untouched


@pytest.mark.parametrize(("filters", "problem"), [
    ([{"drop": "event = 'x'; drop table events"}], "';' and further statements are not allowed"),
    ([{"keep": "event in (select event_name from events)"}], "not a subquery"),
    ([{"keep": "(select 1) = 1"}], "is not allowed"),
    ([{"keep": "exists (select 1)"}], "is not allowed"),
    ([{"drop": "md5(event) = 'x'"}], "function 'MD5(event)' is not allowed"),
    ([{"drop": "read_text('/etc/passwd') = 'x'"}], "is not allowed"),
    ([{"drop": "event = 'x' -- comment"}], "comments are not allowed"),
    ([{"drop": "event = 'x' /* c */"}], "comments are not allowed"),
    ([{"drop": "delete from events"}], "is not allowed"),
    ([{"drop": "event"}], None),  # a name alone is a boolean condition: allowed
    ([{"drop": "password = 'x'"}], "unknown field 'password'"),
    ([{"drop": "events.event_name = 'x'"}], "unknown field 'events.event_name'"),
    ([{"drop": "properties > 1"}], "'properties' is an object"),
    ([{"drop": "event == 'x'"}], "'==' is not SQL"),
    ([{"drop": "event = null"}], "is null"),
    ([{"drop": "properties.revenue > '1' || 'x'"}], "is not allowed"),
    ([{"drop": ""}], "non-empty"),
    ([{"drop": 5}], "non-empty text"),
    ([{"sample": 0}], "above 0 and at most 100"),
    ([{"sample": 101}], "above 0 and at most 100"),
    ([{"sample": 12.345}], "two decimals"),
    ([{"sample": 10}, {"sample": 20}], "only one sample"),
    ([{"allow": "traits.email"}], "takes a list of paths"),
    ([{"block": ["email"]}], "must be properties.<name>"),
    ([{"block": ["userId.x"]}], "must be properties.<name>"),
    ([{"drop": "a", "keep": "b"}], "exactly one of"),
    ([{"rename": "x"}], "exactly one of"),
    ({"drop": "event = 'x'"}, "filters must be a list"),
])
def test_refusals_name_the_filter_and_the_problem(filters: object, problem: str | None) -> None:
    if problem is None:
        parse_filters(filters)
        return
    with pytest.raises(FilterError, match=None) as refused:
        parse_filters(filters)
    assert problem in str(refused.value)
