"""Bulk-load what the collector kept aside into the warehouse, each file exactly once:
`landing/_violations/<source>/` → `raw.violations` and `landing/_rejected/<source>/` →
`raw.rejected_events`.

Like `corral load`, DuckDB reads each sealed file in one pass (never row by row) and its rows go
in with its ledger row (`raw.protocol_files`, by SHA-256) in one transaction. A violation lands
once per (message id, property path, rule): a message resent by an SDK does not count twice.
Every rejected line lands (its id is `<file sha256>:<line>`), so `corral replay-rejected` can
say which ones it replayed.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from pathlib import Path

import duckdb

from loaders.landing import REJECTED_DIR, VIOLATIONS_DIR

KINDS = {VIOLATIONS_DIR: "violations", REJECTED_DIR: "rejected"}
VIOLATION_KEYS = (
    "messageId", "sourceId", "type", "event", "path", "rule", "expected", "receivedType", "description", "action",
    "planVersion", "planFile", "receivedAt",
)
REJECTED_KEYS = ("reason", "receivedAt", "sourceId", "blockedBy", "planVersion", "message.messageId", "message.type", "message.event")


@dataclass
class SideFileResult:
    path: Path
    kind: str  # violations | rejected
    source_id: str
    rows_loaded: int = 0
    duplicates: int = 0
    invalid: int = 0
    already_loaded: bool = False


def side_files(landing: Path) -> list[tuple[Path, str, str]]:
    """Sealed files under `landing/_violations/<source>/` and `landing/_rejected/<source>/`:
    (path, kind, source)."""
    found = []
    for folder, kind in KINDS.items():
        root = landing / folder
        if root.is_dir():
            found += [(p, kind, p.parent.name) for p in sorted(root.glob("*/*.ndjson")) if p.is_file()]
    return found


def load_protocol_files(con: duckdb.DuckDBPyConnection, landing: Path) -> list[SideFileResult]:
    """Load every sealed violations and rejected file not loaded before (by content)."""
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
            (_load_violations if kind == "violations" else _load_rejected)(con, result, digest)
            con.execute(
                "insert into raw.protocol_files values (?, ?, ?, ?, ?, ?, ?, now()::timestamp)",
                [digest, str(path), kind, source, result.rows_loaded, result.duplicates, result.invalid],
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


def _load_violations(con: duckdb.DuckDBPyConnection, result: SideFileResult, digest: str) -> None:
    v = {key: f"v[{i}]" for i, key in enumerate(VIOLATION_KEYS, start=1)}
    result.invalid = con.execute("select count(*) from _side_lines where not usable").fetchone()[0]
    candidates = f"""
        select line_no,
            {v['messageId']} as message_id, coalesce({v['sourceId']}, ?) as source_id, {v['type']} as message_type,
            {v['event']} as event, {v['path']} as property_path, {v['rule']} as rule, {v['expected']} as expected,
            {v['receivedType']} as received_type, {v['description']} as description, coalesce({v['action']}, 'allowed') as action,
            {v['planVersion']} as plan_version, {v['planFile']} as plan_file,
            coalesce({_timestamp(v['receivedAt'])}, now()::timestamp) as received_at
        from (select line_no, json_extract_string(raw, {_paths(VIOLATION_KEYS)}) as v from _side_lines where usable)
    """
    total = con.execute(f"select count(*) from ({candidates}) where message_id is not null and property_path is not null and rule is not null",
                        [result.source_id]).fetchone()[0]
    result.rows_loaded = con.execute(
        f"""
        insert into raw.violations
        select message_id, source_id, message_type, event, property_path, rule, expected, received_type, description,
            action, plan_version, plan_file, received_at, now()::timestamp, ?, line_no
        from (
            select *, row_number() over (partition by message_id, property_path, rule order by line_no) as copy_number
            from ({candidates}) where message_id is not null and property_path is not null and rule is not null
        ) found
        where copy_number = 1
            and not exists (
                select 1 from raw.violations seen
                where seen.message_id = found.message_id and seen.property_path = found.property_path and seen.rule = found.rule
            )
        order by line_no
        """,
        [str(result.path), result.source_id],
    ).fetchone()[0]
    result.duplicates = total - result.rows_loaded


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


def describe_side(results: list[SideFileResult]) -> list[str]:
    lines = []
    for result in results:
        if result.already_loaded:
            continue
        table = "raw.violations" if result.kind == "violations" else "raw.rejected_events"
        notes = [f"{result.duplicates:,} already loaded"] if result.duplicates else []
        notes += [f"{result.invalid:,} unreadable line(s) skipped"] if result.invalid else []
        lines.append(f"loaded {result.rows_loaded:,} {result.kind} rows into {table} from {result.path}"
                     + (f" ({'; '.join(notes)})" if notes else ""))
    return lines
