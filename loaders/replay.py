"""`corral replay-rejected`: messages a tracking plan blocked, checked again against the current
plans; those that now pass land in `raw.events`, exactly once.

1. New rejected files are loaded into `raw.rejected_events` (loaders/load_protocols.py).
2. Pending rows: rejected by a tracking plan (spec-invalid messages cannot become valid) and not
   in `raw.replayed_events`. A message id already in `raw.events` (the SDK resent it after the
   plan was fixed) is marked `already_loaded`; later copies of one message id are `duplicate`.
3. Each pending message is checked with the same rules as the collector (messages.py, then the
   source's current plan, whose mode applies: omit_properties drops what still violates).
4. Those that pass are written, as they were received (same messageId, receivedAt; with the
   violations the plan lets through, as the collector writes them), to a sealed segment
   `landing/<source>/replay-*.ndjson`, loaded at once by the normal loader, and recorded as
   `landed` in `raw.replayed_events`. Those still blocked stay pending for a later replay.

Exactly once: the loader skips a message id already in `raw.events` and a file already loaded,
and the ledger makes a second replay find nothing to do; a crash between the load and the
ledger is caught by the first rule on the next replay (`already_loaded`).
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import duckdb
import orjson
import pyarrow as pa

from loaders.home import CorralHome
from loaders.landing import write_segment
from loaders.load import load_files
from loaders.load_protocols import load_protocol_files
from loaders.messages import validation_error
from loaders.protocols import RESERVED_KEY, TrackingPlan, annotate

LEDGER_SCHEMA = pa.schema([
    ("rejected_id", pa.string()), ("message_id", pa.string()), ("source_id", pa.string()),
    ("outcome", pa.string()), ("plan_version", pa.string()), ("landing_file", pa.string()),
])


@dataclass
class ReplayResult:
    pending: int = 0  # rejected rows considered
    landed: int = 0  # messages now in raw.events
    already_loaded: int = 0
    duplicates: int = 0
    still_blocked: int = 0
    reasons: Counter[str] = field(default_factory=Counter)  # why the still-blocked ones fail
    files: list[Path] = field(default_factory=list)
    dry_run: bool = False

    def describe(self) -> list[str]:
        if not self.pending:
            return ["nothing to replay: no message blocked by a tracking plan is waiting"]
        verb = "would land" if self.dry_run else "landed"
        lines = [(
            f"{self.pending:,} blocked message(s) checked against the current tracking plans: {self.landed:,} {verb} in raw.events, "
            f"{self.already_loaded:,} already there, {self.duplicates:,} duplicate copies, {self.still_blocked:,} still blocked"
        )]
        lines += [f"  landing segment {path}" for path in self.files]
        if self.reasons:
            lines.append("still blocked, most common violations:")
            lines += [f"  {count:,} × {reason}" for reason, count in self.reasons.most_common(10)]
        return lines


def replay_rejected(
    con: duckdb.DuckDBPyConnection, home: CorralHome, plans: dict[str, TrackingPlan], source: str | None = None, dry_run: bool = False
) -> ReplayResult:
    load_protocol_files(con, home.landing)
    rows = con.execute(
        """
        select rejected.rejected_id, rejected.message_id, rejected.source_id, rejected.message::varchar,
            exists (select 1 from raw.events loaded where loaded.message_id = rejected.message_id) as already_loaded
        from raw.rejected_events rejected
        where rejected.rejection = 'tracking_plan'
            and not exists (select 1 from raw.replayed_events done where done.rejected_id = rejected.rejected_id)
            and (cast(? as varchar) is null or rejected.source_id = ?)
        order by rejected.received_at, rejected.landing_file, rejected.landing_line
        """,
        [source, source],
    ).fetchall()
    result = ReplayResult(pending=len(rows), dry_run=dry_run)
    ledger: list[dict[str, Any]] = []
    passed: dict[str, list[tuple[str, str | None, bytes]]] = {}  # source -> (rejected id, message id, line)
    decided: dict[str, str] = {}  # message id -> outcome of its first copy in this replay
    for rejected_id, message_id, row_source, text, already_loaded in rows:
        plan = plans.get(row_source)
        version = plan.version if plan else None
        if already_loaded:
            result.already_loaded += 1
            ledger.append(_entry(rejected_id, message_id, row_source, "already_loaded", version))
            continue
        if message_id is not None and message_id in decided:
            if decided[message_id] == "landed":
                result.duplicates += 1
                ledger.append(_entry(rejected_id, message_id, row_source, "duplicate", version))
            else:
                result.still_blocked += 1
            continue
        message = orjson.loads(text) if text else None
        if isinstance(message, dict):
            message.pop(RESERVED_KEY, None)
        reason = validation_error(message)
        verdict = None
        if reason is None and plan is not None:
            verdict = plan.check(message)
            if verdict is not None and verdict.blocked:
                reason = "; ".join(f"{v.path}: {v.description}" for v in verdict.violations[:3])
        if message_id is not None:
            decided[message_id] = "blocked" if reason else "landed"
        if reason is not None:
            result.still_blocked += 1
            result.reasons[reason] += 1
            continue
        if verdict is not None and plan is not None:
            annotate(message, verdict, plan)
        passed.setdefault(row_source, []).append((rejected_id, message_id, orjson.dumps(message) + b"\n"))
        result.landed += 1
    if dry_run:
        return result
    for row_source, items in passed.items():
        plan = plans.get(row_source)
        path = write_segment(home.landing / row_source, b"".join(line for _, _, line in items), prefix="replay")
        load_files(con, [path], sources={path.resolve(): row_source})
        result.files.append(path)
        ledger += [_entry(rid, mid, row_source, "landed", plan.version if plan else None, str(path)) for rid, mid, _ in items]
    if ledger:
        table = pa.Table.from_pylist(ledger, schema=LEDGER_SCHEMA)
        con.register("_replay_ledger", table)
        try:
            con.execute(
                "insert into raw.replayed_events select rejected_id, message_id, source_id, outcome, plan_version, landing_file, "
                "now()::timestamp from _replay_ledger"
            )
        finally:
            con.unregister("_replay_ledger")
    return result


def _entry(rejected_id: str, message_id: str | None, source: str, outcome: str, version: str | None, landing_file: str | None = None) -> dict[str, Any]:
    return {"rejected_id": rejected_id, "message_id": message_id, "source_id": source, "outcome": outcome,
            "plan_version": version, "landing_file": landing_file}
