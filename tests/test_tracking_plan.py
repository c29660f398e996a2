"""Tracking plans: checked at start (file:line errors), enforced by the collector per source
(allow / block / omit_properties) with the real Segment and RudderStack client libraries,
violations and blocked messages loaded, plans picked up on restart, and `corral replay-rejected`
landing fixed messages exactly once."""

from __future__ import annotations

import copy
import json
import time
import uuid
from collections.abc import Iterator
from contextlib import closing
from pathlib import Path
from typing import Any

import httpx
import pytest
import segment.analytics as segment
from rudderstack.analytics import Client as RudderClient

from collector_process import CollectorProcess
from dagster_defs.cli import main
from loaders.home import CorralHome
from loaders.load import load_landing
from loaders.messages import validation_error
from loaders.protocols import DEFAULT_DIR, PlanError, load_plan, load_plans
from loaders.synthetic import DemoSpec, generate_messages
from loaders.warehouse import connect

PLAN = """\
events:
  Order Completed:
    properties:
      required: [order_id, revenue]
      additionalProperties: false
      properties:
        order_id: {type: string}
        revenue: {type: number, minimum: 0}
        currency: {type: string, enum: [USD, EUR]}
identify:
  traits:
    properties:
      plan: {type: string, enum: [free, pro]}
"""
VALID = {"order_id": "o1", "revenue": 10.5, "currency": "USD"}
# case -> (event, properties, the violation it must record (path, rule, received type) or None)
CASES: dict[str, tuple[str, dict[str, Any], tuple[str, str, str | None] | None]] = {
    "valid": ("Order Completed", VALID, None),
    "unplanned": ("Order Complete", VALID, ("event", "unplanned_event", None)),
    "wrong_type": ("Order Completed", {**VALID, "revenue": "10.5"}, ("properties.revenue", "type", "string")),
    "missing_required": ("Order Completed", {"revenue": 3, "currency": "EUR"}, ("properties.order_id", "required", "missing")),
    "extra_property": ("Order Completed", {**VALID, "coupon": "FALL15"}, ("properties.coupon", "additionalProperties", "string")),
    "enum_miss": ("Order Completed", {**VALID, "currency": "GBP"}, ("properties.currency", "enum", "string")),
}


def write_plan(folder: Path, source: str, text: str, mode: str | None = None) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / f"{source}.yml"
    path.write_text((f"mode: {mode}\n" if mode else "") + text)
    return path


def rows(home: CorralHome, sql: str, params: list[Any] | None = None) -> list[dict[str, Any]]:
    with closing(connect(home)) as con:
        cursor = con.execute(sql, params or [])
        names = [d[0] for d in cursor.description]
        return [dict(zip(names, row, strict=True)) for row in cursor.fetchall()]


def load(process: CollectorProcess) -> CorralHome:
    """Load what the collector has sealed (segments seal after 0.2 s here)."""
    home = CorralHome(process.home)
    deadline = time.monotonic() + 10
    while any(home.landing.rglob("*.open")) and time.monotonic() < deadline:
        time.sleep(0.05)
    with closing(connect(home)) as con:
        load_landing(con, home.landing)
    return home


def send_cases(process: CollectorProcess, key: str, run: str) -> None:
    """Every case as a `track` from the Segment Python library, message id `<run>-<case>`."""
    errors: list[Any] = []
    client = segment.Client(key, host=process.url, sync_mode=True, on_error=lambda e, batch: errors.append(e))
    for case, (event, properties, _) in CASES.items():
        client.track(f"user-{run}", event, copy.deepcopy(properties), message_id=f"{run}-{case}")
    client.flush()
    assert errors == []


# --- plans: checked at start, errors naming file and line -------------------------------------------


def test_example_plan_accepts_every_demo_message() -> None:
    """The shipped example plan is valid, and the demo shop's traffic keeps to it."""
    plan = load_plan(DEFAULT_DIR / "_example.yml")
    assert (plan.mode, plan.unplanned_events, len(plan.events)) == ("block", "block", 8)
    checked = 0
    for message in generate_messages(DemoSpec(users=40, days=10, seed=5)):
        message = json.loads(message) if isinstance(message, str) else message
        if validation_error(message) is None:
            assert plan.check(copy.deepcopy(message)) is None, message
            checked += 1
    assert checked > 500
    assert all(p.path.name != "_example.yml" for p in load_plans(DEFAULT_DIR).values()), "files starting with _ are not plans"


BROKEN = [
    ("mode: blok\n", 1, "mode must be one of allow, block, omit_properties"),
    ("events:\n  A:\n    properties:\n      requird: [a]\n", 4, "unknown JSON Schema keyword 'requird'; did you mean 'required'?"),
    ("events:\n  A:\n    properties:\n      properties:\n        a: {type: strin}\n", 5, "invalid JSON Schema at properties.a.type"),
    ("events:\n  A: {}\n  B: {}\n  A: {}\n", 4, "duplicate key 'A' (first at line 2)"),
    ("events:\n  A:\n    propertes: {}\n", 3, "unknown key 'propertes'"),
    ("events:\n  A:\n    properties: {type: object\n", 4, "not valid YAML"),
    ("events:\n  A:\n    properties:\n      additionalProperties: false\n      required: [b]\n      properties: {a: {}}\n", 5,
     "required property 'b' is not under 'properties' and additionalProperties is false"),
    ("events:\n  A:\n    properties:\n      properties:\n        a: {$ref: 'https://example.com/s.json'}\n", 5, "only references inside the plan"),
    ("events:\n  A:\n    properties:\n      properties:\n        a: {type: string, pattern: '(['}\n", 5, "is not a 'regex'"),
    ("events:\n  A:\n    properties:\n      properties:\n        on: {type: string}\n", 5, "quote it"),
    ("\n\nevnts: {}\n", 3, "unknown key 'evnts'; did you mean 'events'?"),
    ("identify:\n  traits:\n    type: string\n", 3, "'type' must be object"),
    ("definitions:\n  money: {type: number, minimum: zero}\nevents:\n  A: {properties: {properties: {x: {$ref: '#/definitions/money'}}}}\n", 2,
     "invalid JSON Schema"),
]


@pytest.mark.parametrize(("text", "line", "problem"), BROKEN, ids=[b[2][:40] for b in BROKEN])
def test_a_broken_plan_names_its_file_and_line(tmp_path: Path, text: str, line: int, problem: str) -> None:
    path = write_plan(tmp_path, "web", text)
    with pytest.raises(PlanError) as raised:
        load_plans(tmp_path)
    assert raised.value.path == path and raised.value.line == line, str(raised.value)
    assert str(raised.value).startswith(f"{path}:{line}: ") and problem in str(raised.value)


def test_plan_sources_must_exist_and_be_claimed_once(tmp_path: Path) -> None:
    write_plan(tmp_path, "webb", "events: {}\n")
    with pytest.raises(PlanError, match="plan for source 'webb', but CORRAL_WRITE_KEYS has no such source"):
        load_plans(tmp_path, known_sources=["web", "server"])
    write_plan(tmp_path, "apps", "sources: [ios, webb]\nevents: {}\n")
    with pytest.raises(PlanError, match="source 'webb' already has a tracking plan"):
        load_plans(tmp_path)
    (tmp_path / "webb.yml").unlink()
    assert set(load_plans(tmp_path)) == {"ios", "webb"}


def test_violations_name_path_rule_and_type_but_never_the_value(tmp_path: Path) -> None:
    plan = load_plan(write_plan(tmp_path, "web", PLAN, mode="allow"))
    for case, (event, properties, expected) in CASES.items():
        verdict = plan.check({"type": "track", "event": event, "properties": copy.deepcopy(properties)})
        if expected is None:
            assert verdict is None, case
            continue
        assert verdict is not None and not verdict.blocked, case
        assert [(v.path, v.rule, v.received_type) for v in verdict.violations] == [expected], case
    nested = load_plan(write_plan(tmp_path, "app", "events:\n  E:\n    properties:\n      properties:\n        items:\n"
                                  "          type: array\n          items: {type: object, properties: {price: {type: number}}}\n"))
    verdict = nested.check({"type": "track", "event": "E", "properties": {"items": [{"price": 1}, {"price": "secret-42"}]}})
    assert verdict is not None
    (violation,) = verdict.violations
    assert (violation.path, violation.rule, violation.expected, violation.received_type) == ("properties.items[1].price", "type", "number", "string")
    assert "secret-42" not in json.dumps(violation.record())
    typo = plan.check({"type": "track", "event": "Order Complete"})
    assert typo is not None and typo.violations[0].description.endswith("did you mean 'Order Completed'?")


def test_unplanned_events_can_be_blocked_while_properties_are_omitted(tmp_path: Path) -> None:
    plan = load_plan(write_plan(tmp_path, "web", "unplanned_events: block\n" + PLAN, mode="omit_properties"))
    verdict = plan.check({"type": "track", "event": "Nope", "properties": {}})
    assert verdict is not None and verdict.blocked
    message = {"type": "track", "event": "Order Completed", "properties": {**VALID, "currency": "GBP"}}
    verdict = plan.check(message)
    assert verdict is not None and not verdict.blocked and verdict.omitted == 1
    assert message["properties"] == {"order_id": "o1", "revenue": 10.5}
    lenient = load_plan(write_plan(tmp_path, "app", "unplanned_events: allow\n" + PLAN, mode="block"))
    unplanned = lenient.check({"type": "track", "event": "Nope"})
    assert unplanned is not None and not unplanned.blocked
    invalid = lenient.check({"type": "track", "event": "Order Completed", "properties": {}})
    assert invalid is not None and invalid.blocked


# --- the collector, per mode, with the real client libraries ----------------------------------------


@pytest.fixture(scope="module")
def collector(tmp_path_factory: pytest.TempPathFactory) -> Iterator[CollectorProcess]:
    root = tmp_path_factory.mktemp("plans")
    for mode in ("block", "allow"):
        write_plan(root / "plans", mode, PLAN, mode=mode)
    write_plan(root / "plans", "omit", PLAN, mode="omit_properties")
    process = CollectorProcess(
        root / "home",
        write_keys="block:block-key,allow:allow-key,omit:omit-key,open:open-key",
        extra_env={"CORRAL_TRACKING_PLANS": str(root / "plans"), "CORRAL_SEGMENT_MAX_AGE_SECONDS": "0.2"},
    ).start()
    yield process
    process.stop()


@pytest.mark.slow
def test_block_mode_keeps_violations_out_of_raw_events_but_not_lost(collector: CollectorProcess) -> None:
    run = uuid.uuid4().hex[:8]
    send_cases(collector, "block-key", run)
    home = load(collector)
    events = rows(home, "select message_id, properties from raw.events where user_id = ?", [f"user-{run}"])
    assert [(e["message_id"], json.loads(e["properties"])) for e in events] == [(f"{run}-valid", VALID)]
    rejected = rows(home, "select * from raw.rejected_events where message_id like ? order by landing_line", [f"{run}-%"])
    assert [r["message_id"] for r in rejected] == [f"{run}-{case}" for case in CASES if case != "valid"]
    assert {r["rejection"] for r in rejected} == {"tracking_plan"} and {r["source_id"] for r in rejected} == {"block"}
    wrong_type = next(r for r in rejected if r["message_id"] == f"{run}-wrong_type")
    assert json.loads(wrong_type["message"])["properties"] == CASES["wrong_type"][1], "kept as sent, for replay"
    assert "properties.revenue: expected number, got string" in wrong_type["reason"]
    assert json.loads(wrong_type["violations"])[0]["rule"] == "type"
    found = rows(home, "select message_id, property_path, rule, received_type, action, event from raw.violations where message_id like ?", [f"{run}-%"])
    assert sorted((v["message_id"], v["property_path"], v["rule"], v["received_type"]) for v in found) == sorted(
        (f"{run}-{case}", *expected) for case, (_, _, expected) in CASES.items() if expected
    )
    assert {v["action"] for v in found} == {"blocked"}
    assert {v["event"] for v in found} == {"Order Completed", "Order Complete"}


@pytest.mark.slow
def test_allow_mode_lands_everything_as_sent_and_records_violations(collector: CollectorProcess) -> None:
    run = uuid.uuid4().hex[:8]
    send_cases(collector, "allow-key", run)
    home = load(collector)
    events = rows(home, "select message_id, event, properties from raw.events where user_id = ? order by landing_line", [f"user-{run}"])
    assert [(e["message_id"], e["event"], json.loads(e["properties"])) for e in events] == [
        (f"{run}-{case}", event, properties) for case, (event, properties, _) in CASES.items()
    ]
    found = rows(home, "select message_id, property_path, rule, received_type, action from raw.violations where message_id like ?", [f"{run}-%"])
    assert sorted((v["message_id"], v["property_path"], v["rule"], v["received_type"]) for v in found) == sorted(
        (f"{run}-{case}", *expected) for case, (_, _, expected) in CASES.items() if expected
    )
    assert {v["action"] for v in found} == {"allowed"}
    assert rows(home, "select * from raw.rejected_events where message_id like ?", [f"{run}-%"]) == []


@pytest.mark.slow
def test_omit_properties_drops_only_the_invalid_properties(collector: CollectorProcess) -> None:
    run = uuid.uuid4().hex[:8]
    send_cases(collector, "omit-key", run)
    home = load(collector)
    events = rows(home, "select message_id, properties from raw.events where user_id = ?", [f"user-{run}"])
    landed = {e["message_id"].removeprefix(f"{run}-"): json.loads(e["properties"]) for e in events}
    assert landed == {
        "valid": VALID,
        "unplanned": VALID,  # nothing to check its properties against: kept whole, recorded
        "wrong_type": {"order_id": "o1", "currency": "USD"},
        "missing_required": {"revenue": 3, "currency": "EUR"},  # cannot be fixed by dropping: kept, recorded
        "extra_property": VALID,
        "enum_miss": {"order_id": "o1", "revenue": 10.5},
    }
    found = rows(home, "select message_id, rule, action from raw.violations where message_id like ?", [f"{run}-%"])
    assert {(v["message_id"].removeprefix(f"{run}-"), v["rule"], v["action"]) for v in found} == {
        ("unplanned", "unplanned_event", "allowed"), ("wrong_type", "type", "omitted"),
        ("missing_required", "required", "allowed"), ("extra_property", "additionalProperties", "omitted"),
        ("enum_miss", "enum", "omitted"),
    }


@pytest.mark.slow
def test_identify_traits_from_rudderstack_are_checked_in_context_traits(collector: CollectorProcess) -> None:
    """RudderStack's SDK sends identify traits in context.traits; the plan checks them there."""
    run = uuid.uuid4().hex[:8]
    errors: list[Any] = []
    client = RudderClient("block-key", host=collector.url, sync_mode=True, on_error=lambda e, b: errors.append(e))
    client.identify(f"good-{run}", {"plan": "pro"}, message_id=f"{run}-good")
    client.identify(f"bad-{run}", {"plan": "gold"}, message_id=f"{run}-bad")
    client.flush()
    assert errors == []
    home = load(collector)
    assert [r["message_id"] for r in rows(home, "select message_id from raw.events where message_id like ?", [f"{run}-%"])] == [f"{run}-good"]
    (violation,) = rows(home, "select property_path, rule, action from raw.violations where message_id = ?", [f"{run}-bad"])
    assert violation == {"property_path": "context.traits.plan", "rule": "enum", "action": "blocked"}


@pytest.mark.slow
def test_the_answer_and_metrics_say_what_was_blocked(collector: CollectorProcess) -> None:
    run = uuid.uuid4().hex[:8]
    batch = [{"type": "track", "event": event, "userId": "u", "messageId": f"{run}-{case}", "properties": properties}
             for case, (event, properties, _) in CASES.items()]
    response = httpx.post(f"{collector.url}/v1/batch", json={"batch": batch}, auth=("block-key", ""))
    assert response.status_code == 200
    body = response.json()
    assert (body["accepted"], body["rejected"], body["blocked"]) == (1, 0, 5)
    assert [n["messageId"] for n in body["violations"]] == [f"{run}-{case}" for case in CASES if case != "valid"]
    assert body["violations"][1]["violations"] == [
        {"path": "properties.revenue", "rule": "type", "action": "blocked", "description": "expected number, got string"}
    ]
    single = httpx.post(f"{collector.url}/v1/track", json=batch[1] | {"messageId": f"{run}-single"}, auth=("block-key", ""))
    assert single.status_code == 200 and single.json()["blocked"] == 1, "blocked is not an error: the message is kept"
    unplanned_source = httpx.post(f"{collector.url}/v1/batch", json={"batch": batch}, auth=("open-key", "")).json()
    assert unplanned_source == {"success": True, "accepted": 6, "rejected": 0}, "a source without a plan is not checked"
    metrics = httpx.get(f"{collector.url}/metrics").text
    assert 'corral_collector_messages_total{outcome="blocked"}' in metrics
    counts = {line.split(" ")[0]: float(line.split(" ")[1]) for line in metrics.splitlines() if not line.startswith("#")}
    assert counts['corral_collector_messages_total{outcome="blocked"}'] >= 6
    assert counts["corral_collector_plan_violations_total"] >= 6


# --- start, restart, replay ----------------------------------------------------------------------


@pytest.mark.slow
def test_a_broken_plan_stops_the_collector_naming_file_and_line(tmp_path: Path) -> None:
    path = write_plan(tmp_path / "plans", "web", PLAN.replace("enum: [USD, EUR]", "enum: USD"), mode="block")
    with pytest.raises(RuntimeError, match=f"corral collect: {path}:10: invalid JSON Schema at properties.currency.enum"):
        CollectorProcess(tmp_path / "home", extra_env={"CORRAL_TRACKING_PLANS": str(tmp_path / "plans")}).start()


@pytest.mark.slow
def test_a_plan_change_is_picked_up_on_restart(tmp_path: Path) -> None:
    plans = tmp_path / "plans"
    path = write_plan(plans, "web", PLAN, mode="block")
    env = {"CORRAL_TRACKING_PLANS": str(plans), "CORRAL_SEGMENT_MAX_AGE_SECONDS": "0.2"}
    process = CollectorProcess(tmp_path / "home", extra_env=env).start()
    send_cases(process, "web-key", "v1")
    process.stop()
    path.write_text(path.read_text().replace("additionalProperties: false", "additionalProperties: true"))
    process = CollectorProcess(tmp_path / "home", extra_env=env).start()
    try:
        send_cases(process, "web-key", "v2")
    finally:
        process.stop()
    home = load(process)
    landed = {r["message_id"] for r in rows(home, "select message_id from raw.events")}
    assert landed == {"v1-valid", "v2-valid", "v2-extra_property"}
    versions = rows(home, "select distinct substr(message_id, 1, 2) as run, plan_version from raw.violations order by run")
    assert len({v["plan_version"] for v in versions}) == 2, "each violation says which version of the plan judged it"


@pytest.mark.slow
def test_replay_after_the_plan_is_fixed_lands_them_exactly_once(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    plans = tmp_path / "plans"
    path = write_plan(plans, "web", PLAN, mode="block")
    env = {"CORRAL_TRACKING_PLANS": str(plans), "CORRAL_SEGMENT_MAX_AGE_SECONDS": "0.2"}
    process = CollectorProcess(tmp_path / "home", extra_env=env).start()
    try:
        send_cases(process, "web-key", "r")
        # an SDK retry of a blocked message: a second rejected copy of the same message id
        retry = {"type": "track", "event": "Order Completed", "userId": "user-r", "messageId": "r-enum_miss",
                 "properties": CASES["enum_miss"][1]}
        assert httpx.post(f"{process.url}/v1/track", json=retry, auth=("web-key", "")).json()["blocked"] == 1
    finally:
        process.stop()
    home = CorralHome(process.home)
    monkeypatch.setenv("CORRAL_HOME", str(home.root))
    monkeypatch.setenv("CORRAL_TRACKING_PLANS", str(plans))

    def landed() -> list[str]:
        return sorted(r["message_id"] for r in rows(home, "select message_id from raw.events"))

    assert main(["load"]) == 0
    assert main(["replay-rejected"]) == 0  # nothing fixed yet: nothing lands
    assert landed() == ["r-valid"]
    assert len(rows(home, "select * from raw.rejected_events where rejection = 'tracking_plan'")) == 6

    # Fix the plan for three of the five problems: revenue may be text, coupon allowed, GBP allowed.
    path.write_text("mode: block\n" + PLAN.replace("revenue: {type: number, minimum: 0}", "revenue: {type: [number, string]}")
                    .replace("order_id: {type: string}", "order_id: {type: string}\n        coupon: {type: string}")
                    .replace("enum: [USD, EUR]", "enum: [USD, EUR, GBP]"))
    assert main(["replay-rejected", "--dry-run"]) == 0
    assert landed() == ["r-valid"], "a dry run lands nothing"
    assert main(["replay-rejected"]) == 0
    assert landed() == ["r-enum_miss", "r-extra_property", "r-valid", "r-wrong_type"]
    assert main(["replay-rejected"]) == 0  # again: nothing new
    assert main(["load"]) == 0  # the replay segments are already loaded: not twice
    assert landed() == ["r-enum_miss", "r-extra_property", "r-valid", "r-wrong_type"]
    replayed = rows(home, "select message_id, outcome from raw.replayed_events order by message_id, outcome")
    assert [(r["message_id"], r["outcome"]) for r in replayed] == [
        ("r-enum_miss", "duplicate"), ("r-enum_miss", "landed"), ("r-extra_property", "landed"), ("r-wrong_type", "landed"),
    ]
    wrong_type = rows(home, "select properties, received_at from raw.events where message_id = 'r-wrong_type'")[0]
    assert json.loads(wrong_type["properties"]) == CASES["wrong_type"][1], "replayed as received"

    # The client resends a still-blocked message after the rest of the fix reaches the collector:
    # the replay finds it already loaded and does not land it again.
    path.write_text(path.read_text().replace("required: [order_id, revenue]", "required: [revenue]").replace(
        "events:\n", "events:\n  Order Complete:\n"))
    process = CollectorProcess(home.root, extra_env=env).start()
    try:
        resend = {"type": "track", "event": "Order Complete", "userId": "user-r", "messageId": "r-unplanned", "properties": VALID}
        assert httpx.post(f"{process.url}/v1/track", json=resend, auth=("web-key", "")).json()["accepted"] == 1
    finally:
        process.stop()
    assert main(["load"]) == 0
    assert main(["replay-rejected"]) == 0
    assert landed() == ["r-enum_miss", "r-extra_property", "r-missing_required", "r-unplanned", "r-valid", "r-wrong_type"]
    outcomes = {r["message_id"]: r["outcome"] for r in rows(home, "select message_id, outcome from raw.replayed_events where outcome <> 'duplicate'")}
    assert outcomes["r-unplanned"] == "already_loaded" and outcomes["r-missing_required"] == "landed"
    counts = rows(home, "select count(*) as n, count(distinct message_id) as d from raw.events")[0]
    assert counts["n"] == counts["d"] == 6


@pytest.mark.slow
def test_a_client_cannot_write_violations_itself(collector: CollectorProcess) -> None:
    """`_corral` on a landed line is the collector's; one sent by a client is dropped."""
    run = uuid.uuid4().hex[:8]
    fake = {"planVersion": "x", "violations": [{"path": "properties.x", "rule": "type", "action": "allowed"}]}
    for key in ("open-key", "allow-key"):
        message = {"type": "track", "event": "Order Completed", "userId": "u", "messageId": f"{run}-{key}",
                   "properties": VALID, "_corral": fake}
        assert httpx.post(f"{collector.url}/v1/track", json=message, auth=(key, "")).json()["accepted"] == 1
    home = load(collector)
    assert len(rows(home, "select * from raw.events where message_id like ?", [f"{run}-%"])) == 2
    assert rows(home, "select * from raw.violations where message_id like ?", [f"{run}-%"]) == []
    files = [p for p in (home.landing / "open").glob("*.ndjson") if run in p.read_text()]
    assert files and "_corral" not in files[0].read_text()
