"""The synthetic Segment data set: deterministic, spec-shaped, and carrying the traffic patterns
(cross-device identity, skewed clocks, retries, junk ids, campaigns, orders) downstream needs."""

from __future__ import annotations

import json
import re
from collections import Counter, defaultdict
from datetime import datetime, timedelta
from pathlib import Path
from urllib.parse import parse_qs, urlsplit

import pytest

from loaders.synthetic import DemoSpec, generate_messages, write_ndjson

SPEC = DemoSpec(users=200, days=30)
TINY = DemoSpec(users=60, days=10)
SEGMENT_ROWS = 2_000
JUNK_IDS = {"undefined", "null", "0"}
ISO_MS = re.compile(r"^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}\.\d{3}Z$")
TOP_LEVEL_KEYS = {
    "type", "messageId", "anonymousId", "userId", "previousId", "groupId", "event", "name",
    "properties", "traits", "context", "originalTimestamp", "sentAt", "receivedAt",
}


def ts(value: str) -> datetime:
    assert value.endswith("Z"), value
    return datetime.fromisoformat(value[:-1])


def corrected(m: dict) -> datetime:
    """Segment's skew correction: receivedAt - (sentAt - originalTimestamp)."""
    return ts(m["receivedAt"]) - (ts(m["sentAt"]) - ts(m["originalTimestamp"]))


def real(identifier: str | None) -> bool:
    return bool(identifier) and identifier not in JUNK_IDS


@pytest.fixture(scope="module")
def written(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, list[Path]]:
    out = tmp_path_factory.mktemp("landing") / "demo"  # does not exist yet
    return out, write_ndjson(SPEC, out, segment_rows=SEGMENT_ROWS)


@pytest.fixture(scope="module")
def lines(written: tuple[Path, list[Path]]) -> list[str]:
    _, paths = written
    return [line for path in paths for line in path.read_text(encoding="utf-8").splitlines()]


@pytest.fixture(scope="module")
def messages(lines: list[str]) -> list[dict]:
    return [json.loads(line) for line in lines]


@pytest.fixture(scope="module")
def unique(messages: list[dict]) -> list[dict]:
    """One copy of each message (first occurrence)."""
    seen: set[str] = set()
    out = []
    for m in messages:
        if m["messageId"] not in seen:
            seen.add(m["messageId"])
            out.append(m)
    return out


# --- files ---------------------------------------------------------------------------------------


def test_same_spec_gives_identical_bytes_and_another_seed_differs(tmp_path: Path) -> None:
    first = write_ndjson(TINY, tmp_path / "a", segment_rows=500)
    again = write_ndjson(TINY, tmp_path / "b", segment_rows=500)
    other = write_ndjson(DemoSpec(users=60, days=10, seed=8), tmp_path / "c", segment_rows=500)
    assert [p.name for p in first] == [p.name for p in again]
    assert [p.read_bytes() for p in first] == [p.read_bytes() for p in again]
    assert b"".join(p.read_bytes() for p in first) != b"".join(p.read_bytes() for p in other)


def test_segments_are_sealed_numbered_and_bounded(written: tuple[Path, list[Path]], lines: list[str]) -> None:
    out, paths = written
    assert len(paths) >= 3, "the fixture should span several segments"
    assert [p.name for p in paths] == [f"demo-{i:04d}.ndjson" for i in range(1, len(paths) + 1)]
    assert sorted(out.iterdir()) == paths, "only the sealed segments, no .open leftovers"
    sizes = [len(p.read_text(encoding="utf-8").splitlines()) for p in paths]
    assert all(size <= SEGMENT_ROWS for size in sizes)
    assert all(size == SEGMENT_ROWS for size in sizes[:-1]), "segments are filled before a new one starts"
    for p in paths:
        assert p.read_bytes().endswith(b"\n")
    assert sum(sizes) == len(lines)


def test_generate_messages_yields_what_the_files_hold(tmp_path: Path) -> None:
    paths = write_ndjson(TINY, tmp_path)
    from_files = [json.loads(line) for p in paths for line in p.read_text(encoding="utf-8").splitlines()]
    assert list(generate_messages(TINY)) == from_files
    assert len(from_files) > 500


def test_invalid_specs_are_refused(tmp_path: Path) -> None:
    with pytest.raises(ValueError):
        DemoSpec(days=0)
    with pytest.raises(ValueError):
        DemoSpec(duplicate_rate=1.5)
    with pytest.raises(ValueError):
        write_ndjson(TINY, tmp_path, segment_rows=0)


def test_no_users_no_files(tmp_path: Path) -> None:
    assert write_ndjson(DemoSpec(users=0, days=5), tmp_path) == []


# --- Segment spec shape -----------------------------------------------------------------------


def test_every_message_has_the_fields_the_spec_requires(messages: list[dict]) -> None:
    types = Counter(m["type"] for m in messages)
    assert {"identify", "track", "page", "screen", "alias"} <= set(types)
    assert set(types) <= {"identify", "track", "page", "screen", "alias", "group"}
    for m in messages:
        assert set(m) <= TOP_LEVEL_KEYS, set(m) - TOP_LEVEL_KEYS
        assert "timestamp" not in m
        assert isinstance(m["messageId"], str) and m["messageId"]
        assert m.get("userId") or m.get("anonymousId")
        assert isinstance(m["context"], dict) and m["context"]["library"]["name"]
        if m["type"] == "alias":
            assert m["previousId"] and m["userId"]
        elif m["type"] == "track":
            assert m["event"] and isinstance(m["properties"], dict)
        elif m["type"] in ("page", "screen"):
            assert m["name"] and isinstance(m["properties"], dict)
        elif m["type"] == "identify":
            assert isinstance(m["traits"], dict)
        elif m["type"] == "group":
            assert m["groupId"] and isinstance(m["traits"], dict)


def test_web_and_app_contexts(messages: list[dict]) -> None:
    libraries = Counter(m["context"]["library"]["name"] for m in messages)
    assert set(libraries) == {"analytics.js", "analytics-ios", "analytics-android"}
    for m in messages:
        ctx = m["context"]
        if ctx["library"]["name"] == "analytics.js":
            assert m["type"] != "screen"
            assert ctx["userAgent"] and ctx["ip"] and ctx["locale"]
            page = ctx["page"]
            assert page["url"] == "https://shop.example.com" + page["path"] + page["search"]
            if m["type"] == "page":
                assert m["properties"] == page
        else:
            assert m["type"] != "page"
            assert ctx["device"]["id"] and ctx["device"]["type"] in ("ios", "android")
            assert ctx["os"]["name"] in ("iOS", "Android")


def test_timestamps_are_iso_ms_and_inside_the_window(messages: list[dict]) -> None:
    end = SPEC.end
    start = end - timedelta(days=SPEC.days)
    for m in messages:
        for key in ("originalTimestamp", "sentAt", "receivedAt"):
            assert ISO_MS.match(m[key]), m[key]
            assert start <= ts(m[key]) < end, (key, m[key])
        send_delay = ts(m["sentAt"]) - ts(m["originalTimestamp"])
        assert timedelta(0) <= send_delay <= timedelta(seconds=5)
        assert start <= corrected(m) < end


def test_output_is_ordered_by_received_at(unique: list[dict]) -> None:
    received = [m["receivedAt"] for m in unique]
    assert received == sorted(received)


# --- delivery artefacts ------------------------------------------------------------------------


def test_skew_correction_recovers_true_time(messages: list[dict]) -> None:
    skewed_devices: dict[str, list[float]] = defaultdict(list)
    devices = set()
    for m in messages:
        raw_offset = (ts(m["originalTimestamp"]) - ts(m["receivedAt"])).total_seconds()
        # corrected time = true time + network delay, so it sits just before receivedAt
        assert abs((corrected(m) - ts(m["receivedAt"])).total_seconds()) <= 10
        anonymous_id = m.get("anonymousId")
        if real(anonymous_id):
            devices.add(anonymous_id)
            if abs(raw_offset) > 60:
                skewed_devices[anonymous_id].append(raw_offset)
    assert skewed_devices, "some devices should have a wrong clock"
    share = len(skewed_devices) / len(devices)
    assert 0.01 <= share <= 0.12, share  # SPEC.skewed_device_rate = 0.05
    offsets = [o for seen in skewed_devices.values() for o in seen]
    assert max(abs(o) for o in offsets) <= 3 * 3600 + 10
    assert any(o > 0 for o in offsets) and any(o < 0 for o in offsets)
    for seen in skewed_devices.values():  # one offset per device clock, not random per message
        assert max(seen) - min(seen) <= 10


def test_without_skewed_devices_clocks_agree() -> None:
    spec = DemoSpec(users=60, days=10, skewed_device_rate=0.0, duplicate_rate=0.0)
    msgs = list(generate_messages(spec))
    assert all(abs((ts(m["originalTimestamp"]) - ts(m["receivedAt"])).total_seconds()) <= 10 for m in msgs)
    assert len({m["messageId"] for m in msgs}) == len(msgs), "no retries at duplicate_rate 0"


def test_duplicates_are_identical_later_copies_at_the_requested_rate(
    lines: list[str], messages: list[dict]
) -> None:
    by_id: dict[str, list[int]] = defaultdict(list)
    for index, m in enumerate(messages):
        by_id[m["messageId"]].append(index)
    copies = {mid: where for mid, where in by_id.items() if len(where) > 1}
    assert copies
    for where in copies.values():
        assert len(where) == 2
        assert lines[where[0]] == lines[where[1]], "a retry carries the same content"
    assert any(b - a > 1 for a, b in copies.values()), "copies arrive later, not always adjacent"
    rate = len(copies) / len(by_id)
    assert 0.005 <= rate <= 0.016, rate  # SPEC.duplicate_rate = 0.01


# --- identity ----------------------------------------------------------------------------------


def test_sign_ups_identify_on_the_web_before_anything_else(unique: list[dict]) -> None:
    first_seen: dict[str, datetime] = {}
    first_identify: dict[str, dict] = {}
    for m in sorted(unique, key=corrected):
        uid = m.get("userId")
        if real(uid):
            first_seen.setdefault(uid, corrected(m))
            if m["type"] == "identify":
                first_identify.setdefault(uid, m)
    assert 0.3 <= len(first_seen) / SPEC.users <= 0.5, len(first_seen)
    assert all(re.fullmatch(r"u_\d{6}", uid) for uid in first_seen)
    # corrected times carry up to 2 s of network jitter, so allow a little slack
    leading = [uid for uid, m in first_identify.items() if corrected(m) - first_seen[uid] <= timedelta(seconds=3)]
    assert len(leading) >= 0.95 * len(first_seen), (len(leading), len(first_seen))
    for uid in leading:
        m = first_identify[uid]
        assert {"email", "first_name", "last_name", "plan", "created_at"} <= set(m["traits"])
        assert m["context"]["library"]["name"] == "analytics.js" and real(m.get("anonymousId"))
        assert abs(ts(m["traits"]["created_at"]) - corrected(m)) <= timedelta(seconds=3)
    signed_up = [m for m in unique if m.get("event") == "Signed Up"]
    assert len(signed_up) >= 0.95 * len(first_seen)


def test_cross_device_links(unique: list[dict]) -> None:
    devices: dict[str, set[tuple[str, str]]] = defaultdict(set)  # userId -> {(library, anonymousId)}
    for m in unique:
        if m["type"] in ("identify", "alias") and real(m.get("userId")):
            anonymous_id = m["previousId"] if m["type"] == "alias" else m.get("anonymousId")
            if real(anonymous_id):
                devices[m["userId"]].add((m["context"]["library"]["name"], anonymous_id))
    cross = [uid for uid, seen in devices.items() if {lib for lib, _ in seen} > {"analytics.js"}]
    assert len(cross) >= 5, "identify on a web and a mobile anonymousId with the same userId"
    aliases = [m for m in unique if m["type"] == "alias"]
    assert aliases
    for m in aliases:
        assert m["previousId"] == m["anonymousId"] and m["previousId"] != m["userId"]
        assert "device" in m["context"]


def test_some_browsers_are_shared_by_two_accounts(unique: list[dict]) -> None:
    accounts: dict[str, set[str]] = defaultdict(set)
    for m in unique:
        if m["type"] == "identify" and real(m.get("userId")) and real(m.get("anonymousId")):
            accounts[m["anonymousId"]].add(m["userId"])
    shared = [anon for anon, users in accounts.items() if len(users) > 1]
    assert 1 <= len(shared) <= 0.05 * SPEC.users


def test_junk_identifiers_are_rare_but_present(unique: list[dict]) -> None:
    junk = [
        m for m in unique
        if m.get("anonymousId") == "undefined"
        or m.get("userId") in ("null", "0")
        or (m["type"] == "identify" and m["traits"].get("email") == "none")
    ]
    assert junk
    assert len(junk) < 0.005 * len(unique)


def test_traits_need_normalizing(unique: list[dict]) -> None:
    identifies = [m for m in unique if m["type"] == "identify" and real(m.get("userId"))]
    emails = [m["traits"]["email"] for m in identifies if "email" in m["traits"]]
    assert any(e != e.strip() for e in emails), "some emails carry whitespace"
    assert any(e != e.lower() for e in emails), "some emails carry upper case"
    owners: dict[str, set[str]] = defaultdict(set)
    for m in identifies:
        email = m["traits"].get("email")
        if email and email != "none":
            owners[email.strip().lower()].add(m["userId"])
    assert all(len(users) == 1 for users in owners.values()), "a normalized email is one person"
    phones = [m["traits"]["phone"] for m in identifies if "phone" in m["traits"]]
    shapes = {re.sub(r"\d", "9", p) for p in phones}
    assert len(shapes) >= 3, shapes
    assert all(len(re.sub(r"\D", "", p)) in (10, 11) for p in phones)


# --- behaviour ---------------------------------------------------------------------------------


def test_orders(unique: list[dict]) -> None:
    orders = [m for m in unique if m.get("event") == "Order Completed"]
    assert len(orders) >= 20
    for m in orders:
        props = m["properties"]
        assert props["currency"] == "USD" and props["order_id"]
        assert props["products"] and all({"product_id", "price", "quantity"} <= set(p) for p in props["products"])
        assert props["revenue"] == round(sum(p["price"] * p["quantity"] for p in props["products"]), 2)
        assert props["revenue"] >= 5
    assert len({m["properties"]["order_id"] for m in orders}) == len(orders)
    buyers = {m["userId"] for m in orders if real(m.get("userId"))}
    signed_up = {m["userId"] for m in unique if m["type"] == "identify" and real(m.get("userId"))}
    assert 0.4 <= len(buyers) / len(signed_up) <= 0.8
    assert any("userId" not in m for m in orders), "guest checkouts"
    regular = sorted(m["properties"]["revenue"] for m in orders)
    assert regular[len(regular) // 2] <= 500 < regular[-1], "most orders are 5..500, a few big spenders"
    completed = {m["properties"]["order_id"] for m in orders}
    started = {m["properties"]["order_id"] for m in unique if m.get("event") == "Checkout Started"}
    assert completed < started, "every order started checkout; some checkouts were abandoned"


def test_visits_start_with_a_view_and_are_bursts(unique: list[dict]) -> None:
    streams: dict[str, list[dict]] = defaultdict(list)
    for m in unique:
        if real(m.get("anonymousId")):
            streams[m["anonymousId"]].append(m)
    gaps: list[float] = []
    opening: Counter[str] = Counter()
    for stream in streams.values():
        # one anonymousId is one device clock: its originalTimestamps give the true order exactly
        stream.sort(key=lambda m: m["originalTimestamp"])
        opening[stream[0]["type"]] += 1
        times = [ts(m["originalTimestamp"]) for m in stream]
        gaps += [(b - a).total_seconds() for a, b in zip(times, times[1:], strict=False)]
    # (a junk anonymousId on a landing page view can hide it from its stream)
    assert opening["page"] + opening["screen"] >= 0.98 * len(streams), opening
    assert sum(g <= 600 for g in gaps) / len(gaps) > 0.8, "events of a visit are seconds to minutes apart"
    assert any(1800 < g < 3 * 3600 for g in gaps), "some pauses over 30 minutes split a visit"
    per_device = sorted(len(s) for s in streams.values())
    assert per_device[len(per_device) // 2] < per_device[-1] / 5, "long-tailed activity"


def test_acquisition_sources(unique: list[dict]) -> None:
    pages = [m for m in unique if m["type"] == "page"]
    referrers = Counter(m["properties"]["referrer"] for m in pages)
    assert referrers["https://www.google.com/"] and referrers[""]
    with_campaign = [m for m in pages if "campaign" in m["context"]]
    assert with_campaign
    for m in with_campaign:
        query = parse_qs(urlsplit(m["properties"]["url"]).query)
        campaign = m["context"]["campaign"]
        assert query["utm_source"] == [campaign["source"]]
        assert query["utm_medium"] == [campaign["medium"]]
        assert query["utm_campaign"] == [campaign["name"]]
        if campaign["medium"] == "cpc" and campaign["source"] == "google":
            assert "gclid" in query and campaign["term"]
    mediums = {m["context"]["campaign"]["medium"] for m in with_campaign}
    assert {"cpc", "email"} <= mediums and mediums & {"social", "paid_social"}
    utm_urls = [m for m in pages if "utm_medium=" in m["properties"]["url"]]
    assert len(with_campaign) < len(utm_urls), "most, not all, UTM landings carry context.campaign"


def test_crawlers_only_view_pages(unique: list[dict]) -> None:
    bots = [m for m in unique if "bot" in m["context"].get("userAgent", "").lower()]
    assert any("Googlebot" in m["context"]["userAgent"] for m in bots)
    assert all(m["type"] == "page" and "userId" not in m for m in bots)
