"""Computed traits and audiences: rebuilding `profile_traits` (20 traits), the 5 audiences and
the membership history, next to plain scans of `marts.profile_events` in the same run.

    .venv/bin/python bench/traits_bench.py [--events 10000000] [--profiles 500000] [--seed 1]

Builds a fresh CORRAL_HOME and generates e-commerce events directly in DuckDB (one bulk `insert
... select` from `range()` with hash-based pseudo-randomness: deterministic for a seed) over the
120 days before a fixed as-of date: each person makes visits of 2-10 events (page views, Product
Viewed / Added with a category and product name, Products Searched, Checkout Started, Order
Completed with revenue, total and a coupon on 15%); 22% of the people are known: they identify
(user id + email) on each of their 1-2 devices, sign up and log in, so identity resolution gives
one profile per person and about 30% of the anonymous ids are identified. The whole project is
built once with `dbt build` (untimed for the comparison; the history models audience_events,
audience_memberships and audience_sizes are left out, so the first timed build starts with no
history), then traits and audiences are rebuilt twice with `dbt run --threads 1` (the second
build reads the history the first wrote), with `corral_as_of` fixed so every window is full.
The baselines are scans of `marts.profile_events` in Python: `count(*)`, profile id and time, the
property JSON, one field parsed from it. Checks the results, prints a table and rewrites its
section of bench/README.md.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from contextlib import closing
from dataclasses import dataclass
from datetime import date, datetime, timedelta
from pathlib import Path

import duckdb

sys.path.insert(0, str(Path(__file__).resolve().parent))

from identity_bench import FINISHED_LINE, MODEL_LINE, children_maxrss_mb, dbt_output
from readme_section import write_section
from sessions_bench import uuid_sql

from loaders.home import CorralHome
from loaders.warehouse import connect

BEGIN, END = "<!-- traits_bench:begin -->", "<!-- traits_bench:end -->"
AS_OF = datetime(2026, 11, 1)
AS_OF_VARS = ("--vars", json.dumps({"corral_as_of": AS_OF.isoformat(sep=" ")}))  # every window full
SPAN_DAYS = 120
KNOWN_PERCENT = 22  # known people have 1-2 devices: ~30% of the anonymous ids identify
AUDIENCES = ("cart_abandoners", "engaged_visitors", "high_value_customers", "recently_inactive_customers", "repeat_buyers")
HISTORY = ("audience_events", "audience_memberships", "audience_sizes")
# profile_traits+ misses the two audiences that do not read traits (they read sessions and events)
TIMED_SELECT = ("--select", "profile_traits+", "cart_abandoners", "engaged_visitors", "--threads", "1")
CATEGORIES = ("shoes", "bags", "coats", "hats", "dresses", "shirts", "jeans", "accessories")
QUERIES = ("running shoes", "rain coat", "leather bag", "tv", "summer dress", "wool hat", "jeans", "uk",
           "gift card", "sneakers", "linen shirt", "belt", "sale", "boots", "scarf", "backpack")
BASELINES = (  # (label, SQL): scans of the table every trait reads
    ("`select count(*)`", "select count(*) from marts.profile_events"),  # DuckDB answers it from metadata
    # max, not count: a count of a non-null column (or one under an always-true filter) is metadata too
    ("read `profile_id` and `occurred_at`, no JSON", "select max(profile_id), max(occurred_at) from marts.profile_events"),
    ("read the property JSON once", "select count(*), sum(length(properties::varchar)) from marts.profile_events"),
    ("parse one JSON field", "select count(properties->>'category') from marts.profile_events"),
)


@dataclass
class DbtRun:
    """One timed `dbt run` of traits, audiences and history."""

    wall_s: float  # the whole command, start-up included
    elapsed_s: float | None  # dbt's own "Finished running ... in"
    model_s: dict[str, float]

    @property
    def models_s(self) -> float:
        return sum(self.model_s.values())

    def per_model(self) -> str:
        return ", ".join(f"`{m}` {s:.2f}" for m, s in sorted(self.model_s.items(), key=lambda kv: -kv[1]))


@dataclass
class Result:
    events: int
    people: int
    generate_s: float
    full_build_s: float
    full_build_maxrss_mb: float
    runs: list[DbtRun]
    baselines_s: list[float]
    profiles: int
    identified_share: float
    sizes: dict[str, int]
    json_bytes: int
    maxrss_mb: float
    count_scans: bool  # whether DuckDB's plan for the bare count(*) scans the table at all
    traits: int  # trait columns of profile_traits


# --------------------------------------------------------------------------- generation


def pick(values: tuple[str, ...], expr: str) -> str:
    """A SQL expression choosing one of `values` by a non-negative integer expression."""
    return "[" + ", ".join(f"'{v}'" for v in values) + f"][1 + (({expr}) % {len(values)})::int]"


def generation_sql(events: int, people: int, seed: int) -> str:
    """One `insert ... select` of exactly `events` messages made by `people` people."""
    span_us = SPAN_DAYS * 86_400_000_000 - 4 * 3_600_000_000  # visits end before the as-of time
    start = (AS_OF - timedelta(days=SPAN_DAYS)).isoformat(sep=" ")
    category = f"case when h(p, j, 13) % 10 < 6 then {pick(CATEGORIES, 'favorite')} else {pick(CATEGORIES, 'item')} end"
    revenue = "round((10 + h(p, j, 11) % 19000 / 100.0) * case when h(p, j, 12) % 10 = 0 then 5 else 1 end, 2)"
    return f"""
    create or replace temp macro h(i, j, salt) as hash(i, j, salt, {int(seed)});
    insert into raw.events (
        message_id, type, user_id, anonymous_id, event, name, "timestamp", original_timestamp,
        sent_at, received_at, traits, properties, context, source_id, loaded_at, landing_file, landing_line
    )
    with
    people as (  -- exponential-ish events per person, known people 3x as active
        select *, case when known then 1 + h(p, 0, 4) % 2 else 1 end as devices,
            (1 + floor(-ln((h(p, 0, 2) % 1000000 + 1) / 1000000.0) * 1000)::bigint) * case when known then 3 else 1 end as w
        from (select p, h(p, 0, 1) % 100 < {KNOWN_PERCENT} as known, h(p, 0, 3) % 8 as favorite from range({people}) t(p))
    ),
    cumulative as (
        select *, sum(w) over (order by p rows unbounded preceding) as c, sum(w) over () as total,
            {events} - sum(devices) over () as extra
        from people
    ),
    sized as (  -- every device gets an event; the total is exact
        select *, (devices + (extra * c) // total - (extra * (c - w)) // total)::bigint as n_events,
            (2 + h(p, 0, 5) % 9)::bigint as visit_len
        from cumulative
    ),
    per_event as (select *, unnest(range(n_events)) as j from sized),
    placed as (
        select *, j // visit_len as v, j % visit_len as q,
            least(devices, (n_events + visit_len - 1) // visit_len) as used_devices,
            h(p, j, 8) % 100 as roll, h(p, j, 9) % 200 as item
        from per_event
    ),
    kinds as (
        select *, v % used_devices as d,
            h(p, v, 6) % {span_us} + q * (30000000 + h(p, v, 7) % 570000000) as at_us,  -- 30 s-10 min apart
            case
                when known and q = 0 and v < used_devices then 'identify'
                when known and v = 0 and q = 1 then 'Signed Up'
                when known and q = 0 and roll < 30 then 'Logged In'
                when q = 0 or roll < 36 then 'page'
                when roll < 68 then 'Product Viewed'
                when roll < 79 then 'Product Added'
                when roll < 88 then 'Products Searched'
                when roll < 97 then 'Checkout Started'
                else 'Order Completed' end as kind
        from placed
    ),
    described as (
        select *,
            case when kind in ('Product Viewed', 'Product Added') then '/products/' || item
                 when kind = 'Products Searched' then '/search' when kind like 'Checkout%' then '/checkout'
                 when kind = 'Order Completed' then '/checkout/done' when roll < 20 then '/'
                 when roll < 60 then '/category/' || {pick(CATEGORIES, 'item')} else '/products/' || item end as path,
            {revenue} as revenue,
            json_object('product_id', 'sku-' || item, 'name', 'Product ' || item, 'category', {category},
                        'price', 4.99 + item % 195) as product,
            timestamp '{start}' + to_microseconds(at_us::bigint) as event_at
        from kinds
    )
    select
        {uuid_sql(f"'{seed}m' || p || '-' || j")} as message_id,
        case when kind in ('identify', 'page') then kind else 'track' end as type,
        case when known then 'u' || p end as user_id,
        {uuid_sql(f"'{seed}a' || p || '-' || d")} as anonymous_id,
        case when kind not in ('identify', 'page') then kind end as event,
        case when kind = 'page' then 'Shop ' || path end as name,
        event_at as "timestamp", event_at as original_timestamp, event_at + interval 1 second as sent_at,
        event_at + interval 1 second + to_microseconds((h(p, j, 10) % 200000)::bigint) as received_at,
        case when kind = 'identify' then json_object('email', 'user' || p || '@mail.example', 'plan', 'free') end as traits,
        case kind
            when 'page' then json_object('path', path, 'url', 'https://www.shop.example' || path, 'title', 'Shop ' || path)
            when 'Product Viewed' then product
            when 'Product Added' then json_merge_patch(product, json_object('quantity', 1 + item % 3))
            when 'Products Searched' then json_object('query', {pick(QUERIES, 'h(p, j, 14)')})
            when 'Checkout Started' then json_object('order_id', 'o' || p || '-' || v, 'revenue', revenue, 'currency', 'USD')
            when 'Order Completed' then json_merge_patch(json_object('order_id', 'o' || p || '-' || v, 'revenue', revenue,
                'total', round(revenue * 1.08 + 4.99, 2), 'currency', 'USD'),
                case when h(p, j, 15) % 100 < 15 then json_object('coupon', 'SAVE' || (5 + h(p, j, 16) % 4 * 5))
                     else '{{}}' end)
            when 'Signed Up' then json_object('method', case when h(p, 0, 17) % 10 < 6 then 'email' else 'google' end)
            when 'Logged In' then json_object('method', case when h(p, j, 17) % 10 < 6 then 'email' else 'google' end)
        end as properties,
        json_object('page', json_object('path', path, 'url', 'https://www.shop.example' || path),
            'userAgent', case when (p + d) % 2 = 0 then 'Mozilla/5.0 (Windows NT 10.0; Win64; x64) Chrome/129.0'
                              else 'Mozilla/5.0 (iPhone; CPU iPhone OS 17_6 like Mac OS X) Safari/604.1' end) as context,
        'bench' as source_id, timestamp '{AS_OF.isoformat(sep=" ")}' as loaded_at,
        'bench-' || (p // 10000) as landing_file, p * 1000000 + j as landing_line
    from described
    """


def generate(home: CorralHome, events: int, people: int, seed: int) -> tuple[int, float]:
    """Fill raw.events of a fresh home; returns (messages, seconds)."""
    start = time.perf_counter()
    with closing(connect(home)) as con:
        con.execute("set enable_progress_bar = false")
        con.execute(generation_sql(events, people, seed))
        count = con.execute("select count(*) from raw.events").fetchone()[0]
    return count, time.perf_counter() - start


# --------------------------------------------------------------------------- dbt and baselines


def run_traits_dbt(home: CorralHome, echo: Callable[[str], None]) -> DbtRun:
    """Time `dbt run` of profile_traits, the audiences and the history; read dbt's per-model times."""
    start = time.perf_counter()
    lines = dbt_output(home, ["run", *TIMED_SELECT, *AS_OF_VARS], echo)
    wall = time.perf_counter() - start
    model_s = {m.group(1): float(m.group(2)) for line in lines if (m := MODEL_LINE.search(line))}
    missing = [m for m in ("profile_traits", *AUDIENCES, "int_audience_members", "audiences", *HISTORY) if m not in model_s]
    if missing:
        print("\n".join(lines), file=sys.stderr)
        raise SystemExit(f"no timing line in dbt's output for: {', '.join(missing)}")
    elapsed = next((float(m.group(1)) for line in lines if (m := FINISHED_LINE.search(line))), None)
    return DbtRun(wall, elapsed, model_s)


def time_baseline(home: CorralHome, sql: str, repeat: int = 3) -> float:
    """Median seconds of `sql`, each time on a fresh read-only connection (as each dbt run opens one)."""
    taken: list[float] = []
    for _ in range(repeat):
        with closing(connect(home, read_only=True)) as con:
            start = time.perf_counter()
            con.execute(sql).fetchall()
            taken.append(time.perf_counter() - start)
    return statistics.median(taken)


def check(home: CorralHome, builds: int) -> tuple[int, float, dict[str, int], int, bool, int]:
    """Fail unless traits cover every profile once, every audience has members and audience_sizes
    has a row per audience per build; returns (profiles, identified anonymous id share, sizes, JSON bytes,
    whether count(*) scans, traits)."""
    with closing(connect(home, read_only=True)) as con:
        one = lambda sql: con.execute(sql).fetchone()  # noqa: E731
        profiles, traits, distinct, covered = one(
            "select (select count(*) from marts.profiles), (select count(*) from marts.profile_traits),"
            " (select count(distinct profile_id) from marts.profile_traits),"
            " (select count(*) from marts.profile_traits join marts.profiles using (profile_id))"
        )
        sizes = {a: one(f"select count(*) from audiences.{a}")[0] for a in AUDIENCES}
        per_build = con.execute("select audience, count(*) from marts.audience_sizes group by audience").fetchall()
        stamps = one("select count(distinct computed_at) from marts.audience_sizes")[0]
        identified = one("select avg(known::int) from (select bool_or(user_id is not null) as known"
                         " from raw.events group by anonymous_id)")[0]
        json_bytes = one("select sum(length(properties::varchar)) from marts.profile_events")[0]
        count_plan = one("explain " + BASELINES[0][1])[1]
        trait_columns = one("select count(*) - 2 from information_schema.columns"  # not profile_id, computed_at
                            " where table_schema = 'marts' and table_name = 'profile_traits'")[0]
    print(f"profiles {profiles:,}, profile_traits rows {traits:,} ({distinct:,} distinct, {covered:,} in profiles); "
          f"audiences {sizes}; audience_sizes {dict(per_build)} over {stamps} builds", flush=True)
    problems = []
    if not profiles == traits == distinct == covered:
        problems.append("profile_traits is not one row per profile of marts.profiles")
    problems += [f"audience {a} is empty" for a, n in sizes.items() if n == 0]
    if stamps != builds or sorted(dict(per_build).items()) != sorted((a, builds) for a in AUDIENCES):
        problems.append(f"audience_sizes should have {builds} rows per audience (one per build)")
    if problems:
        raise SystemExit("CHECK FAILED: " + "; ".join(problems))
    return profiles, float(identified), sizes, int(json_bytes or 0), "Seq Scan" in count_plan, trait_columns


# --------------------------------------------------------------------------- report


def seconds(s: float) -> str:
    return f"{s:.2f}" if s >= 1 else f"{s:.3f}"


def times(ratio: float) -> str:
    return f"{ratio:,.0f}" if ratio >= 100 else f"{ratio:.1f}"


def report(r: Result, command: str) -> str:
    first, second = r.runs
    count_s, column_s, json_s, parse_s = r.baselines_s

    def row(label: str, s: float) -> str:
        return f"| {label} | {seconds(s)} | {times(s / count_s)} | {times(s / column_s)} | {times(s / json_s)} |"

    table = "\n".join([
        "| step | seconds | ÷ `count(*)` | ÷ key + time scan | ÷ JSON scan |",
        "| --- | ---: | ---: | ---: | ---: |",
        row("traits + audiences, build 1 (no history yet): dbt's model times", first.models_s),
        row("**traits + audiences, build 2 (history exists): dbt's model times**", second.models_s),
        row("build 2, whole `dbt run` with start-up", second.wall_s),
        row("`profile_traits` alone, build 2", second.model_s["profile_traits"]),
        *(row(f"baseline: {label}", s) for (label, _), s in zip(BASELINES, r.baselines_s)),
    ])
    details = (
        f"Details: {r.events:,} events from {r.people:,} people generated in {r.generate_s:.1f} s; identity resolution "
        f"gives {r.profiles:,} profiles, {r.identified_share:.0%} of the anonymous ids identified; "
        f"{r.json_bytes / 1e6:,.0f} MB of property JSON. Whole project first (`dbt build`: seeds, models, tests; the "
        f"history models left out so build 1 starts with none): {r.full_build_s:.1f} s, not part of the comparison. "
        f"Timed: `dbt run {' '.join(TIMED_SELECT)}` with `corral_as_of` {AS_OF:%Y-%m-%d} ({r.traits} traits in `profile_traits`, "
        f"the 5 audiences, `int_audience_members`, `audiences` and the history models), twice; build time = the sum of "
        f"dbt's own model times. Per model (s), build 1: {first.per_model()} (dbt's elapsed {first.elapsed_s or 0:.1f} s, "
        f"whole `dbt run` {first.wall_s:.1f} s). Build 2: {second.per_model()} (dbt's elapsed {second.elapsed_s or 0:.1f} s, "
        f"whole `dbt run` {second.wall_s:.1f} s). Audience members: "
        + ", ".join(f"`{a}` {n:,}" for a, n in r.sizes.items())
        + ". Baselines: each query on a fresh read-only DuckDB connection after dbt finished (as every dbt run opens "
        "the warehouse anew), median of 3; the JSON scan is `sum(length(properties::varchar))`, the parse "
        "`count(properties->>'category')`. Checked: `profile_traits` has exactly one row per profile of "
        "`marts.profiles`, every audience has members, `audience_sizes` has one row per audience per build. "
        f"Peak RSS: the full build's dbt {r.full_build_maxrss_mb:,.0f} MB; largest dbt process of the run "
        f"{r.maxrss_mb:,.0f} MB. Reproduce from the repository root with `{command}`."
    )
    ranked = sorted(second.model_s.items(), key=lambda kv: -kv[1])[:3]
    traits_s = second.model_s["profile_traits"]
    reading = (
        "Where the time goes (build 2): "
        + ", ".join(f"`{m}` {s:.2f} s ({s / second.models_s:.0%})" for m, s in ranked)
        + f" of {second.models_s:.2f} s. The bare `count(*)` takes {seconds(count_s)} s"
        + ("" if r.count_scans else ": it reads no data, DuckDB answers it from row-group metadata")
        + f"; reading the key and time columns takes {seconds(column_s)} s, the real floor. `profile_traits` "
        f"is {times(traits_s / json_s)}× reading the property JSON once and {times(traits_s / parse_s)}× parsing one "
        "field of it: it reads every event up to the as-of time, parses the property JSON once for all the fields the "
        "traits read (`json_extract_strings`), evaluates 20 conditions per event, and aggregates per profile, with a "
        "second grouping per (profile, value) for `most_frequent` and `unique_list`. `cart_abandoners` joins its checkouts back to every Order Completed event in "
        "`profile_events`; the other audiences read the narrow traits table or sessions, and the history models "
        "compare member lists (build 2 also ranks the history it reads)."
    )
    smaller = "" if r.events >= 10_000_000 else (
        "\n\nThe issue's size is 10,000,000 events; this run is smaller, so dbt's fixed cost per model weighs more."
    )
    return (
        f"{BEGIN}\n## Computed traits and audiences vs a scan of profile_events\n\n"
        f"`{command}` ({date.today()}, {platform.machine()}, {os.cpu_count()} CPUs, DuckDB {duckdb.__version__}), "
        f"{r.events:,} events, {r.profiles:,} profiles, {r.traits} traits, {len(AUDIENCES)} audiences:\n\n{table}\n\n{details}\n\n{reading}"
        f"{smaller}\n\nThe machine is shared (2 cores): absolute times move between runs, so the ratios from one run "
        f"are what count.\n{END}"
    )


def bench(opts: argparse.Namespace, work: Path, echo: Callable[[str], None]) -> Result:
    home = CorralHome(work / "home")
    events, generate_s = generate(home, opts.events, opts.profiles, opts.seed)
    print(f"generated {events:,} events for {opts.profiles:,} people in {generate_s:.1f}s", flush=True)
    start = time.perf_counter()
    dbt_output(home, ["build", "--exclude", *(f"{m}+" for m in HISTORY), *AS_OF_VARS], echo)
    full_build_s, full_rss = time.perf_counter() - start, children_maxrss_mb()
    print(f"full dbt build (without the history models) in {full_build_s:.1f}s", flush=True)
    runs = []
    for n in (1, 2):
        runs.append(run := run_traits_dbt(home, echo))
        print(f"traits + audiences build {n}: models {run.models_s:.2f}s, whole dbt run {run.wall_s:.1f}s", flush=True)
    baselines_s = [time_baseline(home, sql) for _, sql in BASELINES]
    print("baselines: " + ", ".join(f"{label} {s:.3f}s" for (label, _), s in zip(BASELINES, baselines_s)), flush=True)
    profiles, identified, sizes, json_bytes, count_scans, traits = check(home, builds=len(runs))
    return Result(events, opts.profiles, generate_s, full_build_s, full_rss, runs, baselines_s, profiles, identified,
                  sizes, json_bytes, children_maxrss_mb(), count_scans, traits)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--events", type=int, default=10_000_000)
    parser.add_argument("--profiles", type=int, default=500_000, help="people generated: about one profile each")
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--no-readme", action="store_true", help="print the section, do not write bench/README.md")
    parser.add_argument("--verbose", action="store_true", help="echo dbt's output")
    opts = parser.parse_args()
    if not 0 < 2 * opts.profiles <= opts.events:
        parser.error("need 0 < 2 x --profiles <= --events")
    command = (".venv/bin/python bench/traits_bench.py " + " ".join(sys.argv[1:])).strip()
    echo: Callable[[str], None] = print if opts.verbose else (lambda line: None)
    with tempfile.TemporaryDirectory(prefix="traits-bench-") as tmp:
        result = bench(opts, Path(tmp), echo)
    section = report(result, command)
    print("\n" + section)
    if not opts.no_readme:
        write_section(section, BEGIN, END)


if __name__ == "__main__":
    main()
