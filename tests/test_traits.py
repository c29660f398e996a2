"""Computed traits and audiences: definitions and filters refused with a message naming the trait
(by the dbt macros on every build and by sqlglot before one), the two filter checks agreeing,
and audience membership history across builds where profiles enter, exit and re-enter."""

from __future__ import annotations

import json
import re
from contextlib import closing
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

import duckdb
import pytest
from hypothesis import HealthCheck, Phase, given, settings
from hypothesis import strategies as st

from dagster_defs import dbt_runner
from dagster_defs.dbt_runner import DbtFailed, run_dbt
from dagster_defs.traits import (
    FilterError,
    TraitDefinitionError,
    check_definitions,
    parse_filter,
)
from loaders.home import CorralHome
from loaders.load import load_files
from loaders.warehouse import connect

GOOD = [
    "revenue > 100",
    "plan = 'pro' and (revenue between 1 and 5 or country not in ('DE', 'FR'))",
    "coupon is not null",
    "not is_trial",
    "lower(context.page.path) like '/shoes%'",
    "\"my prop\" = 'x' or traits.email is null",
    "length(query) > 2 and coalesce(a, b) <> 'c'",
    "a = 'it''s; -- not a comment'",
    "revenue >= -1.5",
    "true",
]
MALICIOUS = [
    "1=1; drop table raw.events",
    "revenue > 0) or (1 = 1",
    "event in (select event from raw.events)",
    "(select count(*) from raw.events) > 0",
    "exists (select 1)",
    "read_csv('/etc/passwd') is not null",
    "current_setting('x') = 'y'",
    "revenue > 1 -- and plan = 'free'",
    "revenue > 1 /* comment */",
    "revenue > 1 union select 1",
    "cast(revenue as int) > 1",
    "case when a = 1 then true end",
    "revenue + 1 > 2",
]


@pytest.mark.parametrize("text", GOOD)
def test_plain_conditions_pass_the_sqlglot_check(text: str) -> None:
    parse_filter(text)


@pytest.mark.parametrize("text", MALICIOUS)
def test_statements_subqueries_comments_and_other_functions_are_refused(text: str) -> None:
    with pytest.raises(FilterError):
        parse_filter(text)


def test_every_problem_with_the_definitions_is_named() -> None:
    problems = check_definitions(
        [
            {"name": "orders", "type": "event_counter", "event": "Order Completed"},
            {"name": "bogus", "type": "percentile", "property": "revenue"},
            {"name": "first_plan", "type": "first", "event": "Signed Up"},
            {"name": "sneaky", "type": "event_counter", "filter": "1=1; drop table raw.events"},
            {"name": "orders", "type": "last_seen", "window_days": 0, "colour": "red"},
        ],
        "var corral_computed_traits",
    )
    assert problems == [
        "var corral_computed_traits: computed trait 'bogus': unknown type 'percentile'; use one of event_counter, aggregation,"
        " most_frequent, first, last, unique_list, unique_list_count, first_seen, last_seen",
        "var corral_computed_traits: computed trait 'first_plan': type first needs a property",
        "var corral_computed_traits: computed trait 'sneaky': filter '1=1; drop table raw.events' is not a plain boolean"
        " expression: one expression only: ';' and further statements are not allowed",
        "var corral_computed_traits: computed trait 'orders': the name is already taken; trait names must be unique and not"
        " profile_id or computed_at",
        "var corral_computed_traits: computed trait 'orders': unknown key(s) colour",
        "var corral_computed_traits: computed trait 'orders': window_days must be a whole number of days, at least 1",
    ]


@pytest.fixture(scope="module")
def empty_home(tmp_path_factory: pytest.TempPathFactory) -> CorralHome:
    home = CorralHome(tmp_path_factory.mktemp("traits") / "home")
    home.ensure()
    return home


def jinja_verdicts(home: CorralHome, filters: list[str]) -> dict[str, dict[str, Any]]:
    """What the dbt macro safe_filter makes of each filter: {'sql': ..., 'error': ...}."""
    lines: list[str] = []
    run_dbt(home, ["run-operation", "check_filters", "--args", json.dumps({"filters": filters})], echo=lines.append)
    results = [json.loads(line) for line in lines if line.startswith('{"filter"')]
    return {r["filter"]: r["result"] for r in results}


def sqlglot_accepts(text: str) -> bool:
    try:
        parse_filter(text)
    except FilterError:
        return False
    return True


@pytest.mark.slow
def test_the_dbt_macro_refuses_what_sqlglot_refuses(empty_home: CorralHome) -> None:
    verdicts = jinja_verdicts(empty_home, GOOD + MALICIOUS)
    assert [f for f in GOOD if verdicts[f]["error"] is not None] == []
    assert [f for f in MALICIOUS if verdicts[f]["error"] is None] == []
    assert "(at character 4)" in verdicts["1=1; drop table raw.events"]["error"]


# Tokens both checks read the same way (names that are SQL keywords, '==' and '1.' are read
# differently by design, so they are not drawn).
TOKENS = [
    "revenue", "plan", "context.page.path", '"my prop"', "'pro'", "'it''s'", "100", "-1.5", "true", "false", "null",
    "=", "<>", "!=", "<", ">=", "and", "or", "not", "in", "like", "is", "between", "(", ")", ",",
    "lower(", "length(", "coalesce(", "exp(", ";", "--", "select", "+", "*",
]


@st.composite
def condition(draw: st.DrawFn, depth: int = 0) -> str:
    value = st.sampled_from(["revenue", "plan", "context.page.path", "'pro'", "100", "-1.5", "true", "null", "lower(plan)", "length(plan)"])
    kind = draw(st.integers(0, 5 if depth < 2 else 2))
    if kind == 0:
        return f"{draw(value)} {draw(st.sampled_from(['=', '<>', '<', '>=']))} {draw(value)}"
    if kind == 1:
        return f"{draw(value)} {draw(st.sampled_from(['in', 'not in']))} ({', '.join(draw(st.lists(value, min_size=1, max_size=3)))})"
    if kind == 2:
        return f"{draw(value)} is {draw(st.sampled_from(['', 'not ']))}null"
    if kind == 3:
        return f"({draw(condition(depth + 1))}) {draw(st.sampled_from(['and', 'or']))} {draw(condition(depth + 1))}"
    if kind == 4:
        return f"not {draw(condition(depth + 1))}"
    return f"{draw(value)} between {draw(value)} and {draw(value)}"


@pytest.mark.slow
@settings(max_examples=2, deadline=None, phases=[Phase.generate], suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(
    st.lists(st.one_of(condition(), st.lists(st.sampled_from(TOKENS), min_size=1, max_size=8).map(" ".join)), min_size=120, max_size=120, unique=True)
)
def test_the_dbt_macro_and_sqlglot_agree_on_random_filters(empty_home: CorralHome, filters: list[str]) -> None:
    verdicts = jinja_verdicts(empty_home, filters)
    disagreements = {f: verdicts[f] for f in filters if (verdicts[f]["error"] is None) != sqlglot_accepts(f)}
    assert disagreements == {}
    assert sum(sqlglot_accepts(f) for f in filters) >= 20, "the sample must hold accepted filters too"


BAD_DEFINITIONS = {
    "unknown type": ({"name": "ltv", "type": "lifetime_value"}, 'computed trait "ltv": unknown type "lifetime_value"'),
    "missing property": ({"name": "total_spent", "type": "aggregation", "function": "sum", "event": "Order Completed"},
                         'computed trait "total_spent": type aggregation needs a property'),
    "malicious filter": ({"name": "sneaky", "type": "event_counter", "filter": "1=1; drop table raw.events"},
                         'computed trait "sneaky": filter "1=1; drop table raw.events" is not a plain boolean expression'),
}


@pytest.mark.slow
@pytest.mark.parametrize("case", BAD_DEFINITIONS)
def test_a_bad_definition_fails_the_dbt_build_naming_the_trait(case: str, empty_home: CorralHome, monkeypatch: pytest.MonkeyPatch) -> None:
    definition, message = BAD_DEFINITIONS[case]
    traits = {"corral_computed_traits": [{"name": "orders", "type": "event_counter", "event": "Order Completed"}, definition]}
    with pytest.raises(TraitDefinitionError, match=re.escape(message.split(": ", 1)[1].replace('"', "'"))):
        run_dbt(empty_home, ["build", "--select", "profile_traits"], dbt_vars=traits)  # the sqlglot check stops it first
    monkeypatch.setattr(dbt_runner, "check_project_traits", lambda *args: None)  # now dbt alone must refuse it
    lines: list[str] = []
    with pytest.raises(DbtFailed):
        run_dbt(empty_home, ["compile", "--select", "profile_traits"], dbt_vars=traits, echo=lines.append)
    assert f"var corral_computed_traits: {message}" in "\n".join(lines)


# Membership history ------------------------------------------------------------------------

BASE = datetime(2026, 1, 1, 9, 0)
HISTORY_MODELS = ["+audience_sizes", "+audience_memberships", "--exclude-resource-type", "test", "unit_test"]  # seeds and models; their tests run elsewhere


def track(user: str, event: str, day: float, **properties: Any) -> dict[str, Any]:
    at = BASE + timedelta(days=day)
    return {"type": "track", "messageId": f"{user}-{event}-{day}", "userId": user, "event": event,
            "properties": properties, "timestamp": at.isoformat() + "Z"}


def identify(user: str, day: float) -> dict[str, Any]:
    return {"type": "identify", "messageId": f"{user}-identify-{day}", "userId": user,
            "traits": {"email": f"{user}@example.com"}, "timestamp": (BASE + timedelta(days=day)).isoformat() + "Z"}


@pytest.mark.slow
def test_membership_history_across_builds_where_profiles_enter_exit_and_reenter(tmp_path: Path) -> None:
    home = CorralHome(tmp_path / "home")

    def load(name: str, messages: list[dict[str, Any]]) -> None:
        path = tmp_path / f"{name}.ndjson"
        path.write_text("".join(json.dumps(m) + "\n" for m in messages))
        with closing(connect(home)) as con:
            load_files(con, [path])

    def build(day: int, *flags: str) -> None:
        as_of = (BASE + timedelta(days=day)).isoformat(sep=" ")
        run_dbt(home, ["build", "--select", *HISTORY_MODELS, *flags], dbt_vars={"corral_as_of": as_of}, echo=lambda line: None)

    def query(sql: str) -> list[tuple[Any, ...]]:
        with closing(duckdb.connect(str(home.warehouse), read_only=True)) as con:
            return con.execute(sql).fetchall()

    load("first", [identify("pat", 0), track("pat", "Order Completed", 0.1, revenue=600),
                   identify("quinn", 0), track("quinn", "Order Completed", 0.2, revenue=50)])
    build(10)  # pat spent 600 in the last 90 days: high value
    build(100)  # those 600 are now older than 90 days and the lifetime total is under 1,000: pat exits
    load("second", [track("pat", "Order Completed", 105, revenue=700)])
    build(110)  # lifetime 1,300: pat enters again, and is a repeat buyer now
    build(110, "--full-refresh")  # nothing changes, and the history survives a full refresh

    pat = query("select profile_id from marts.profiles where user_id = 'pat'")[0][0]
    builds = [at for (at,) in query("select distinct computed_at from marts.audience_sizes order by 1")]
    assert len(builds) == 4
    events = query(f"""
        select audience, event_type, event_name, occurred_at from marts.audience_events
        where profile_id = '{pat}' order by audience, occurred_at""")
    assert events == [
        ("high_value_customers", "entered", "Audience Entered", builds[0]),
        ("high_value_customers", "exited", "Audience Exited", builds[1]),
        ("high_value_customers", "entered", "Audience Entered", builds[2]),
        ("repeat_buyers", "entered", "Audience Entered", builds[2]),
    ]
    assert query("select count(*) from marts.audience_events join marts.profiles using (profile_id) where user_id = 'quinn'") == [(0,)]
    assert query("select audience, profile_id, entered_at from marts.audience_memberships order by audience") == [
        ("high_value_customers", pat, builds[2]),
        ("repeat_buyers", pat, builds[2]),
    ]
    sizes = query("""
        select member_count, entered_count, exited_count from marts.audience_sizes
        where audience = 'high_value_customers' order by computed_at""")
    assert sizes == [(1, 1, 0), (0, 0, 1), (1, 1, 0), (1, 0, 0)]
    assert query("select count(distinct audience) from marts.audience_sizes") == [(5,)]  # empty audiences have rows too
