"""End to end through the `corral` command: files → raw.events → dbt build → audience CSV."""

from __future__ import annotations

import argparse
import csv
import json
import math
import re
from collections import Counter
from collections.abc import Iterator
from contextlib import closing
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

import duckdb
import pandas as pd
import pytest

from fakes import mixpanel
from fakes.hubspot import TOKEN as HUBSPOT_TOKEN
from fakes.hubspot import FakeHubSpot, serve

from dagster_defs.cli import main
from dagster_defs.project import DBT_PROJECT_DIR
from dagster_defs.traits import project_trait_definitions
from identity_reference import resolve
from traits_reference import profile_traits
from loaders.home import CorralHome
from loaders.synthetic import DemoSpec, write_ndjson
from reverse_etl.destinations.mixpanel import insert_id

pytestmark = pytest.mark.slow
SPEC = DemoSpec(users=150, days=30, seed=3)


@pytest.fixture(scope="module")
def forwarded() -> Iterator[mixpanel.FakeMixpanel]:
    with mixpanel.serve(mixpanel.FakeMixpanel()) as fake:
        yield fake


@pytest.fixture(scope="module")
def built(tmp_path_factory: pytest.TempPathFactory, forwarded: mixpanel.FakeMixpanel) -> Iterator[CorralHome]:
    home = CorralHome(tmp_path_factory.mktemp("pipeline") / "home")
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("CORRAL_HOME", str(home.root))
        write_ndjson(SPEC, home.landing / "demo")
        assert main(["load"]) == 0
        assert main(["build", "--as-of", SPEC.end.isoformat()]) == 0
        with serve(FakeHubSpot()) as hubspot:  # the project's HubSpot sync and its Mixpanel event sync go to local fakes
            mp.setenv("HUBSPOT_ACCESS_TOKEN", HUBSPOT_TOKEN)
            mp.setenv("HUBSPOT_BASE_URL", hubspot.url)
            for name, value in {"BASE_URL": forwarded.url, "SERVICE_ACCOUNT_USER": mixpanel.USER,
                                "SERVICE_ACCOUNT_SECRET": mixpanel.SECRET, "PROJECT_ID": mixpanel.PROJECT}.items():
                mp.setenv(f"MIXPANEL_{name}", value)
            assert main(["sync"]) == 0
            assert hubspot.contacts, "the high-value customers reached HubSpot"
        yield home


def messages(home: CorralHome) -> list[dict[str, Any]]:
    return [json.loads(line) for path in sorted((home.landing / "demo").glob("*.ndjson")) for line in path.read_text().splitlines()]


def parse(ts: str) -> datetime:
    return datetime.fromisoformat(ts.replace("Z", "+00:00")).replace(tzinfo=None)


def query(home: CorralHome, sql: str) -> list[tuple[Any, ...]]:
    with closing(duckdb.connect(str(home.warehouse), read_only=True)) as con:
        return con.execute(sql).fetchall()


def test_every_message_lands_once_and_resends_are_counted(built: CorralHome) -> None:
    sent = messages(built)
    distinct = len({m["messageId"] for m in sent})
    assert distinct < len(sent), "the demo data must contain SDK resends"
    assert query(built, "select count(*), count(distinct message_id) from raw.events") == [(distinct, distinct)]
    assert query(built, "select sum(rows_duplicate) from raw.loaded_files") == [(len(sent) - distinct,)]
    assert query(built, "select count(*) from staging.stg_corral__events") == [(distinct,)]


def test_event_time_is_corrected_for_clock_skew(built: CorralHome) -> None:
    expected = {}
    for m in messages(built):
        received = parse(m["receivedAt"])
        expected[m["messageId"]] = received - (parse(m["sentAt"]) - parse(m["originalTimestamp"]))
    got = dict(query(built, "select message_id, occurred_at from staging.stg_corral__events"))
    assert got == expected


def test_repeat_buyers_match_the_identity_reference(built: CorralHome) -> None:
    """Profiles from the Python identity reference (tests/identity_reference.py), orders
    counted per profile: the audience must be exactly the profiles with two or more."""
    unique = list({m["messageId"]: m for m in messages(built)}.values())

    def when(m: dict[str, Any]) -> datetime:
        return parse(m["receivedAt"]) - (parse(m["sentAt"]) - parse(m["originalTimestamp"]))

    resolution = resolve((when(m), m) for m in unique)
    orders: Counter[str] = Counter(
        resolution.profile_of_message(m) for m in unique if m["type"] == "track" and m["event"] == "Order Completed"
    )
    expected = {profile for profile, n in orders.items() if profile and n >= 2}
    assert {p for (p,) in query(built, "select profile_id from audiences.repeat_buyers")} == expected
    assert len(expected) > 10, "the demo data must contain repeat buyers"


def test_audience_csv_is_the_audience(built: CorralHome) -> None:
    with (built.exports / "repeat_buyers.csv").open(newline="") as fh:
        exported = list(csv.DictReader(fh))
    assert list(exported[0]) == ["profile_id", "user_id", "email", "order_count", "total_revenue"]
    table = query(built, "select profile_id, order_count from audiences.repeat_buyers")
    assert sorted((r["profile_id"], int(r["order_count"])) for r in exported) == sorted(table)
    assert (built.exports / "cart_abandoners.csv").exists()


def test_cart_abandoners_are_within_the_window(built: CorralHome) -> None:
    rows = query(built, "select last_checkout_at, email from audiences.cart_abandoners")
    assert all(SPEC.end - timedelta(days=7) < at <= SPEC.end and email for at, email in rows)


def test_computed_traits_equal_a_pandas_computation(built: CorralHome) -> None:
    """Every shipped trait (all nine types, windows and filters among them) on the demo data,
    recomputed in Python from profile_events (tests/traits_reference.py)."""
    definitions = project_trait_definitions(DBT_PROJECT_DIR)
    with closing(duckdb.connect(str(built.warehouse), read_only=True)) as con:
        events = con.execute(
            "select profile_id, message_id, message_type, event_name, occurred_at, properties::varchar as properties,"
            " context::varchar as context, traits::varchar as traits from marts.profile_events"
        ).df()
        table = con.execute("select * from marts.profile_traits").df()
    expected = profile_traits(events, list(table["profile_id"]), definitions, datetime.combine(SPEC.end, datetime.min.time()))
    assert len(table) == len(expected) == query(built, "select count(*) from marts.profiles")[0][0]
    for definition in definitions:
        name = definition["name"]
        got = {row["profile_id"]: row[name] for row in table[["profile_id", name]].to_dict("records")}
        filled = 0
        for profile_id, wanted in expected.items():
            want = wanted[name]
            value = got[profile_id]
            value = None if value is None or (not isinstance(value, (str, list)) and pd.isna(value)) else value
            if definition["type"] == "unique_list" and value is not None:
                value = json.loads(value)
            if isinstance(value, pd.Timestamp):
                value = value.to_pydatetime()
            if isinstance(want, float):
                assert value is not None and math.isclose(value, want, rel_tol=1e-9), (name, profile_id, value, want)
            else:
                assert value == want, (name, profile_id, value, want)
            filled += want not in (None, 0, [])
        assert filled >= 3, f"the demo data must give trait {name} a value for several profiles"


def test_audiences_and_their_history_on_the_demo(built: CorralHome) -> None:
    audiences = dict(query(built, "select audience, member_count from marts.audiences"))
    assert set(audiences) == {"cart_abandoners", "engaged_visitors", "high_value_customers", "recently_inactive_customers", "repeat_buyers"}
    for audience, size in audiences.items():
        assert size == query(built, f"select count(*) from audiences.{audience}")[0][0] > 0, audience
    assert query(built, "select audience, count(*) from marts.audience_memberships group by 1 order by 1") == sorted(audiences.items())
    assert query(built, "select distinct event_type from marts.audience_events") == [("entered",)]  # one build: everyone entered
    assert sorted(query(built, "select audience, member_count, entered_count, exited_count from marts.audience_sizes")) == sorted(
        (audience, size, size, 0) for audience, size in audiences.items()
    )
    high_value = query(built, "select count(*) from marts.profile_traits join marts.profiles using (profile_id)"
                       " where email is not null and (lifetime_revenue >= 1000 or revenue_last_90_days >= 500)")
    assert high_value == [(audiences["high_value_customers"],)]


def test_second_load_loads_nothing_and_status_reports(built: CorralHome, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("CORRAL_HOME", str(built.root))
    capsys.readouterr()
    assert main(["load"]) == 0
    assert "0 rows loaded" in capsys.readouterr().out
    assert main(["status"]) == 0
    out = capsys.readouterr().out
    profiles = query(built, "select count(*) from marts.profiles")[0][0]
    assert re.search(rf"^  profiles +{profiles:,}$", out, re.MULTILINE)
    assert "sync repeat_buyers_to_file" in out and "success" in out


def test_dry_run_and_unknown_sync(built: CorralHome, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("CORRAL_HOME", str(built.root))
    size = query(built, "select count(*) from audiences.repeat_buyers")[0][0]
    assert main(["sync", "repeat_buyers_to_file", "--dry-run"]) == 0  # synced already: nothing to send
    assert f"would send 0 records from repeat_buyers to file (mirror: 0 added, 0 changed, 0 removed, {size:,} unchanged)" in capsys.readouterr().out
    assert main(["sync", "repeat_buyers_to_file", "--dry-run", "--full"]) == 0
    out = capsys.readouterr().out
    assert f"would send {size:,} records" in out and "upsert" in out
    assert main(["sync", "nope"]) == 1
    assert "no sync named 'nope'" in capsys.readouterr().err


FUNNEL = ("Product Viewed", "Product Added", "Checkout Started", "Order Completed")


def test_corral_sync_forwards_the_demo_event_sync_through_its_filters_once(built: CorralHome, forwarded: mixpanel.FakeMixpanel,
                                                                         capsys: pytest.CaptureFixture[str],
                                                                         monkeypatch: pytest.MonkeyPatch) -> None:
    # what the declaration's filters say, applied in Python to the rows of the model the sync reads
    rows = query(built, "select message_id, message_type, event_name, context from marts.profile_events")
    expected = [m for m, kind, event, context in rows if kind == "track" and event in FUNNEL
                and not str((json.loads(context or "{}").get("page") or {}).get("path") or "").lower().startswith("/internal")]
    assert expected, "the demo has funnel events"
    assert sorted(forwarded.insert_ids()) == sorted({insert_id(m) for m in expected})  # each once, nothing else
    assert forwarded.violations == []
    for event in forwarded.received:
        assert event["event"] in FUNNEL
        assert not {"email", "ip"} & set(event["properties"]), "blocked paths never leave the warehouse"
    monkeypatch.setenv("CORRAL_HOME", str(built.root))
    for name, value in {"BASE_URL": forwarded.url, "SERVICE_ACCOUNT_USER": mixpanel.USER,
                        "SERVICE_ACCOUNT_SECRET": mixpanel.SECRET, "PROJECT_ID": mixpanel.PROJECT}.items():
        monkeypatch.setenv(f"MIXPANEL_{name}", value)
    before = forwarded.requests
    capsys.readouterr()
    assert main(["sync", "commerce_events_to_mixpanel"]) == 0
    assert "commerce_events_to_mixpanel: success: 0 of 0 new events forwarded to mixpanel" in capsys.readouterr().out
    assert forwarded.requests == before  # nothing new since the cursor: no request
    assert main(["sync", "commerce_events_to_mixpanel", "--full"]) == 1
    assert "--full does not apply to event sync 'commerce_events_to_mixpanel'" in capsys.readouterr().err
    runs = query(built, "select status, succeeded from corral_sync.runs where sync_name = 'commerce_events_to_mixpanel' order by started_at")
    assert runs == [("success", len(expected)), ("success", 0)]
    assert main(["status"]) == 0
    assert re.search(rf"sync commerce_events_to_mixpanel +success: 0 events forwarded \({len(expected):,} in all, up to events loaded 20",
                     capsys.readouterr().out)


def test_demo_skips_syncs_without_credentials_and_says_why(built: CorralHome, capsys: pytest.CaptureFixture[str],
                                                          monkeypatch: pytest.MonkeyPatch) -> None:
    from dagster_defs.cli import cmd_sync

    monkeypatch.setenv("CORRAL_HOME", str(built.root))
    for name in ("HUBSPOT_ACCESS_TOKEN", "MIXPANEL_PROJECT_TOKEN", "MIXPANEL_SERVICE_ACCOUNT_USER", "MIXPANEL_SERVICE_ACCOUNT_SECRET",
                 "MIXPANEL_PROJECT_ID"):
        monkeypatch.delenv(name, raising=False)
    capsys.readouterr()
    assert cmd_sync(argparse.Namespace(name=None, dry_run=False, full=False, configured_only=True), CorralHome(built.root)) == 0
    out = capsys.readouterr().out
    assert re.search(r"^high_value_customers_to_hubspot: skipped: .*HUBSPOT_ACCESS_TOKEN", out, re.MULTILINE)
    assert re.search(r"^commerce_events_to_mixpanel: skipped: .*MIXPANEL_PROJECT_TOKEN", out, re.MULTILINE)
    assert re.search(r"^repeat_buyers_to_file: success: ", out, re.MULTILINE)


def test_homes_are_independent(home: CorralHome, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    other = CorralHome(tmp_path / "other")
    data = tmp_path / "one.ndjson"
    data.write_text(json.dumps({"type": "track", "event": "E", "userId": "u"}) + "\n")
    assert main(["load", str(data)]) == 0
    monkeypatch.setenv("CORRAL_HOME", str(other.root))
    assert main(["load", str(data)]) == 0  # loads again: a different home
    for h in (home, other):
        assert query(h, "select count(*) from raw.events") == [(1,)]


@pytest.mark.parametrize("command", ["demo", "load", "build", "sync", "status"])
def test_every_command_has_help(command: str, capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exited:
        main([command, "--help"])
    assert exited.value.code == 0
    assert f"usage: corral {command}" in capsys.readouterr().out
