"""Bulk-load what the tracking plans found: violations into `raw.violations`, and the messages
the collector kept out of `raw.events` (`landing/_rejected/<source>/`) into `raw.rejected_events`.

Like `corral load`, DuckDB reads each sealed rejected file in one pass (never row by row) and its
rows go in with its ledger row (`raw.protocol_files`, by SHA-256) in one transaction; every
line lands (its id is `<file sha256>:<line>`), so `corral replay-rejected` can say which ones it
replayed. Violations come from two places: a blocked message's rejected record, and the
`_corral` key on the landed line of a message the plan let through (loaded by `corral load` in
the same transaction as the message, see loaders/load.py). A violation lands once per
(message id, property path, rule): a message resent by an SDK does not count twice.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from pathlib import Path

import duckdb

from loaders.landing import REJECTED_DIR
from loaders.protocols import RESERVED_KEY

REJECTED_KEYS = ("reason", "receivedAt", "sourceId", "blockedBy", "planVersion", "message.messageId", "message.type", "message.event")
VIOLATION_KEYS = ("path", "rule", "expected", "receivedType", "description", "action")


@dataclass
class SideFileResult:
    path: Path
    kind: str  # violations | rejected
    source_id: str
    rows_loaded: int = 0
    violations: int = 0
    invalid: int = 0
    already_loaded: bool = False


def side_files(landing: Path) -> list[tuple[Path, str, str]]:
    """Sealed files under `landing/_rejected/<source>/`: (path, kind, source)."""
    root = landing / REJECTED_DIR
    return [(p, "rejected", p.parent.name) for p in sorted(root.glob("*/*.ndjson")) if p.is_file()] if root.is_dir() else []


def insert_violations(con: duckdb.DuckDBPyConnection, found: str, params: list[object]) -> int:
    """Insert the violations of `found`, a query with columns message_id, source_id,
    message_type, event, plan_version, plan_file, received_at, landing_file, landing_line and
    `violations` (a JSON array of {path, rule, expected, receivedType, description, action});
    each (message_id, property_path, rule) once, the first landed copy winning."""
    v = {key: f"v[{i}]" for i, key in enumerate(VIOLATION_KEYS, start=1)}
    return con.execute(
        f"""
        insert into raw.violations
        select message_id, source_id, message_type, event, property_path, rule, expected, received_type, description,
            action, plan_version, plan_file, received_at, now()::timestamp, landing_file, landing_line
        from (
            select *, row_number() over (partition by message_id, property_path, rule order by landing_file, landing_line) as copy_number
            from (
                select found.* exclude (violations, item), {v['path']} as property_path, {v['rule']} as rule,
                    {v['expected']} as expected, {v['receivedType']} as received_type, {v['description']} as description,
                    coalesce({v['action']}, 'allowed') as action
                from (
                    select *, unnest(json_extract(violations, '$[*]')) as item from ({found}) where violations is not null
                ) found,
                lateral (select json_extract_string(found.item, [{", ".join(f"'$.{k}'" for k in VIOLATION_KEYS)}]) as v)
            )
            where message_id is not null and property_path is not null and rule is not null
        ) candidates
        where copy_number = 1
            and not exists (
                select 1 from raw.violations seen
                where seen.message_id = candidates.message_id and seen.property_path = candidates.property_path
                    and seen.rule = candidates.rule
            )
        """,
        params,
    ).fetchone()[0]


def load_event_violations(con: duckdb.DuckDBPyConnection, staged: str, landing_file: str, source_id: str) -> int:
    """The violations carried (key `_corral`) by the lines of `staged` (a table of line_no, raw)
    whose message was just loaded from `landing_file` into raw.events."""
    if not con.execute(f"select count(*) from {staged} where contains(raw, '\"{RESERVED_KEY}\"')").fetchone()[0]:
        return 0
    return insert_violations(
        con,
        f"""
        select events.message_id, ? as source_id, events.type as message_type, events.event,
            json_extract_string(staged.raw, '$.{RESERVED_KEY}.planVersion') as plan_version,
            json_extract_string(staged.raw, '$.{RESERVED_KEY}.planFile') as plan_file,
            events.received_at, events.landing_file, events.landing_line,
            json_extract(staged.raw, '$.{RESERVED_KEY}.violations') as violations
        from {staged} staged
        inner join raw.events events on events.landing_file = ? and events.landing_line = staged.line_no
        where contains(staged.raw, '"{RESERVED_KEY}"')
        """,
        [source_id, landing_file],
    )


def load_protocol_files(con: duckdb.DuckDBPyConnection, landing: Path) -> list[SideFileResult]:
    """Load every sealed rejected file not loaded before (by content), and the violations of
    the blocked messages in it."""
    loaded = {row[0] for row in con.execute("select file_sha256 from raw.protocol_files").fetchall()}
    results = []
    for path, kind, source in side_files(landing):
        path = path.resolve()
        with path.open("rb") as fh:
            digest = hashlib.file_digest(fh, "sha256").hexdigest()
        result = SideFileResult(path, kind, source)
        results.append(result)
        if digest in loaded:
            result.already_loaded = True
            continue
        con.execute("begin transaction")
        try:
            _stage_lines(con, path)
            _load_rejected(con, result, digest)
            con.execute(
                "insert into raw.protocol_files values (?, ?, ?, ?, ?, ?, ?, now()::timestamp)",
                [digest, str(path), kind, source, result.rows_loaded, result.violations, result.invalid],
            )
            con.execute("commit")
        except BaseException:
            con.execute("rollback")
            raise
        loaded.add(digest)
    return results


def _stage_lines(con: duckdb.DuckDBPyConnection, path: Path) -> None:
    con.execute(
        """
        create or replace temp table _side_lines as
        with text as (select string_split(content, chr(10)) as lines from read_text(?)),
        numbered as (select generate_subscripts(lines, 1) as line_no, rtrim(unnest(lines), chr(13)) as raw from text)
        select line_no, raw, json_valid(raw) and json_type(raw) = 'OBJECT' as usable
        from numbered where trim(raw) <> ''
        """,
        [str(path)],
    )


def _paths(keys: tuple[str, ...]) -> str:
    return "[" + ", ".join("'$." + ".".join(f'"{part}"' for part in key.split(".")) + "'" for key in keys) + "]"


def _timestamp(text: str) -> str:
    return f"try_cast({text} as timestamptz) at time zone 'UTC'"


def _load_rejected(con: duckdb.DuckDBPyConnection, result: SideFileResult, digest: str) -> None:
    r = {key: f"r[{i}]" for i, key in enumerate(REJECTED_KEYS, start=1)}
    result.invalid = con.execute("select count(*) from _side_lines where not usable").fetchone()[0]
    result.rows_loaded = con.execute(
        f"""
        insert into raw.rejected_events
        select ? || ':' || line_no, {r['message.messageId']}, coalesce({r['sourceId']}, ?),
            case when {r['blockedBy']} = 'tracking_plan' then 'tracking_plan' else 'spec' end,
            coalesce({r['reason']}, 'unknown'), lower({r['message.type']}), {r['message.event']}, {r['planVersion']},
            json_extract(raw, '$.violations'), json_extract(raw, '$.message'), {_timestamp(r['receivedAt'])},
            now()::timestamp, ?, line_no
        from (select line_no, raw, json_extract_string(raw, {_paths(REJECTED_KEYS)}) as r from _side_lines where usable)
        order by line_no
        """,
        [digest, result.source_id, str(result.path)],
    ).fetchone()[0]
    result.violations = insert_violations(
        con,
        f"""
        select {r['message.messageId']} as message_id, coalesce({r['sourceId']}, ?) as source_id,
            lower({r['message.type']}) as message_type, {r['message.event']} as event, {r['planVersion']} as plan_version,
            json_extract_string(raw, '$.planFile') as plan_file,
            coalesce({_timestamp(r['receivedAt'])}, now()::timestamp) as received_at, ? as landing_file, line_no as landing_line,
            json_extract(raw, '$.violations') as violations
        from (select line_no, raw, json_extract_string(raw, {_paths(REJECTED_KEYS)}) as r from _side_lines where usable)
        where {r['blockedBy']} = 'tracking_plan'
        """,
        [result.source_id, str(result.path)],
    )


def describe_side(results: list[SideFileResult]) -> list[str]:
    lines = []
    for result in results:
        if result.already_loaded:
            continue
        notes = [f"{result.violations:,} tracking-plan violations into raw.violations"] if result.violations else []
        notes += [f"{result.invalid:,} unreadable line(s) skipped"] if result.invalid else []
        lines.append(f"loaded {result.rows_loaded:,} rejected messages into raw.rejected_events from {result.path}"
                     + (f" ({'; '.join(notes)})" if notes else ""))
    return lines
