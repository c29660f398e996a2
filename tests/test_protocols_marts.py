"""The protocols marts built by dbt from what a real collector landed: violations per day, new
unplanned event names, and rejected messages with their replay status."""

from __future__ import annotations

import copy
from collections.abc import Iterator
from contextlib import closing
from typing import Any

import duckdb
import httpx
import pytest
import segment.analytics as segment

from collector_process import CollectorProcess
from dagster_defs.cli import main
from loaders.home import CorralHome
from test_tracking_plan import CASES, PLAN, load, write_plan

pytestmark = pytest.mark.slow


def query(home: CorralHome, sql: str) -> list[tuple[Any, ...]]:
    with closing(duckdb.connect(str(home.warehouse), read_only=True)) as con:
        return con.execute(sql).fetchall()


@pytest.fixture(scope="module")
def built(tmp_path_factory: pytest.TempPathFactory) -> Iterator[CorralHome]:
    root = tmp_path_factory.mktemp("protocols")
    plans = root / "plans"
    write_plan(plans, "web", PLAN, mode="block")
    write_plan(plans, "app", PLAN, mode="allow")
    process = CollectorProcess(root / "home", write_keys="web:web-key,app:app-key",
                               extra_env={"CORRAL_TRACKING_PLANS": str(plans), "CORRAL_SEGMENT_MAX_AGE_SECONDS": "0.2"}).start()
    try:
        for key, run in (("web-key", "w"), ("app-key", "a")):
            client = segment.Client(key, host=process.url, sync_mode=True)
            for case, (event, properties, _) in CASES.items():
                client.track(f"user-{run}", event, copy.deepcopy(properties), message_id=f"{run}-{case}")
            client.flush()
        # a second message with the same typo, and a spec-invalid one
        bad = [{"type": "track", "event": "Order Complete", "userId": "u", "messageId": "w-typo-2", "properties": {}},
               {"type": "track", "userId": "u"}]
        assert httpx.post(f"{process.url}/v1/batch", json={"batch": bad}, auth=("web-key", "")).status_code == 200
    finally:
        process.stop()
    home = load(process)
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("CORRAL_HOME", str(home.root))
        mp.setenv("CORRAL_TRACKING_PLANS", str(plans))
        (plans / "web.yml").write_text((plans / "web.yml").read_text().replace("enum: [USD, EUR]", "enum: [USD, EUR, GBP]"))
        assert main(["replay-rejected"]) == 0
        assert main(["build", "--select", "+path:models/marts/protocols"]) == 0
        yield home


def test_violations_daily_counts_each_source_event_and_rule(built: CorralHome) -> None:
    daily = query(built, """
        select source_id, event_name, rule, violation_count, message_count, blocked_message_count, allowed_count
        from marts.tracking_plan_violations_daily order by source_id, event_name, rule""")
    assert daily == [
        ("app", "Order Complete", "unplanned_event", 1, 1, 0, 1),
        ("app", "Order Completed", "additionalProperties", 1, 1, 0, 1),
        ("app", "Order Completed", "enum", 1, 1, 0, 1),
        ("app", "Order Completed", "required", 1, 1, 0, 1),
        ("app", "Order Completed", "type", 1, 1, 0, 1),
        ("web", "Order Complete", "unplanned_event", 2, 2, 2, 0),
        ("web", "Order Completed", "additionalProperties", 1, 1, 1, 0),
        ("web", "Order Completed", "enum", 1, 1, 1, 0),
        ("web", "Order Completed", "required", 1, 1, 1, 0),
        ("web", "Order Completed", "type", 1, 1, 1, 0),
    ]
    assert query(built, "select count(*) from marts.tracking_plan_violations") == [(11,)]


def test_unplanned_event_names_are_reported_new_with_the_likely_typo(built: CorralHome) -> None:
    assert query(built, """
        select source_id, event_name, message_count, blocked_message_count, is_new, suggested_event
        from marts.unplanned_events order by source_id""") == [
        ("app", "Order Complete", 1, 0, True, "Order Completed"),
        ("web", "Order Complete", 2, 2, True, "Order Completed"),
    ]


def test_rejected_messages_show_what_the_replay_landed(built: CorralHome) -> None:
    statuses = dict(query(built, "select coalesce(message_id, 'no id'), status from marts.rejected_messages"))
    assert statuses == {
        "w-unplanned": "pending", "w-wrong_type": "pending", "w-missing_required": "pending", "w-extra_property": "pending",
        "w-enum_miss": "replayed", "w-typo-2": "pending", "no id": "invalid",
    }
    assert query(built, "select message_id from raw.events where source_id = 'web' order by message_id") == [("w-enum_miss",), ("w-valid",)]
