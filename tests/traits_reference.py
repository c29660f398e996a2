"""Computed traits read plainly, in pandas and Python, to hold the SQL of profile_traits to.

Each trait type as Segment defines it (see models/marts/traits/_traits__models.yml), filters
evaluated on sqlglot's syntax tree with SQL's three-valued logic: a name compared with a number
is read as a number, else as text; a bare name means name = 'true'.
"""

from __future__ import annotations

import json
import math
import operator
import re
from datetime import datetime, timedelta
from typing import Any

import pandas as pd
from sqlglot import exp

from dagster_defs.traits import COMPARISONS, name_path, parse_filter

Row = dict[str, Any]


def json_text(document: Any, path: list[str]) -> str | None:
    """What json_extract_string gives: the value at the path as text, null for JSON null."""
    value = json.loads(document) if isinstance(document, str) else document
    for key in path:
        if not isinstance(value, dict) or key not in value:
            return None
        value = value[key]
    if value is None:
        return None
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, (dict, list)):
        return json.dumps(value, separators=(",", ":"))
    return str(value)


def field(row: Row, path: list[str]) -> str | None:
    if len(path) > 1 and path[0].lower() in ("properties", "context", "traits"):
        return json_text(row[path[0].lower()], path[1:])
    return json_text(row["properties"], path)


def number(text: Any) -> float | None:
    try:
        return None if text is None else float(text)
    except ValueError:
        return None


def _value(node: exp.Expression, row: Row, numeric: bool) -> Any:
    if isinstance(node, exp.Neg):
        return -float(node.this.this)
    if isinstance(node, exp.Literal):
        return float(node.this) if numeric and not node.is_string else node.this
    if isinstance(node, exp.Boolean):
        return "true" if node.this else "false"
    if isinstance(node, (exp.Column, exp.Dot)):
        text = field(row, name_path(node))
        return number(text) if numeric else text
    if isinstance(node, exp.Length):
        text = _value(node.this, row, False)
        return None if text is None else len(text)
    if isinstance(node, exp.Coalesce):
        values = [_value(arg, row, False) for arg in [node.this, *node.expressions]]
        text = next((v for v in values if v is not None), None)
    else:
        text = _value(node.this, row, False)
        if text is not None:
            text = {exp.Lower: str.lower, exp.Upper: str.upper, exp.Trim: lambda s: s.strip(" ")}[type(node)](text)
    return number(text) if numeric else text


def _is_number(node: exp.Expression) -> bool:
    return isinstance(node, (exp.Neg, exp.Length)) or (isinstance(node, exp.Literal) and not node.is_string)


def evaluate(node: exp.Expression, row: Row) -> bool | None:
    """The filter's truth value on one event: True, False or None (SQL null)."""
    if isinstance(node, exp.Paren):
        return evaluate(node.this, row)
    if isinstance(node, exp.And):
        left, right = evaluate(node.left, row), evaluate(node.right, row)
        return False if False in (left, right) else (None if None in (left, right) else True)
    if isinstance(node, exp.Or):
        left, right = evaluate(node.left, row), evaluate(node.right, row)
        return True if True in (left, right) else (None if None in (left, right) else False)
    if isinstance(node, exp.Not):
        inner = evaluate(node.this, row)
        return None if inner is None else not inner
    if isinstance(node, exp.Is):
        return _value(node.this, row, False) is None
    if isinstance(node, exp.Like):
        text = _value(node.this, row, False)
        if text is None:
            return None
        pattern = "".join(".*" if c == "%" else "." if c == "_" else re.escape(c) for c in node.expression.this)
        return re.fullmatch(pattern, text, re.DOTALL) is not None
    if isinstance(node, (exp.Column, exp.Dot)):
        text = field(row, name_path(node))
        return None if text is None else text == "true"
    if isinstance(node, exp.Boolean):
        return bool(node.this)
    operands = {exp.In: lambda n: [n.this, *n.expressions], exp.Between: lambda n: [n.this, n.args["low"], n.args["high"]]}
    parts = operands[type(node)](node) if type(node) in operands else [node.left, node.right]
    numeric = any(_is_number(part) for part in parts)
    values = [_value(part, row, numeric) for part in parts]
    if isinstance(node, exp.In):
        if values[0] is None:
            return None
        return True if values[0] in [v for v in values[1:] if v is not None] else (None if None in values[1:] else False)
    if None in values:
        return None
    if isinstance(node, exp.Between):
        return values[1] <= values[0] <= values[2]
    compare = {exp.EQ: operator.eq, exp.NEQ: operator.ne, exp.GT: operator.gt, exp.GTE: operator.ge, exp.LT: operator.lt, exp.LTE: operator.le}
    assert isinstance(node, COMPARISONS)
    return compare[type(node)](values[0], values[1])


def matches(trait: dict[str, Any], row: Row, as_of: datetime, condition: exp.Expression | None) -> bool:
    events = [trait["event"]] if isinstance(trait.get("event"), str) else trait.get("event")
    message_type = trait.get("message_type", "track" if events else None)
    if message_type and row["message_type"] != message_type:
        return False
    if events and row["event_name"] not in events:
        return False
    if trait.get("window_days") and row["occurred_at"] <= as_of - timedelta(days=trait["window_days"]):
        return False
    if trait.get("property") and field(row, trait["property"].split(".")) is None:
        return False
    return condition is None or evaluate(condition, row) is True


def trait_value(trait: dict[str, Any], rows: list[Row]) -> Any:
    """One profile's value of one trait from its matching events (in (occurred_at, message_id) order)."""
    kind = trait["type"]
    values = [field(row, trait["property"].split(".")) for row in rows] if trait.get("property") else []
    if kind == "event_counter":
        return len(rows)
    if kind == "unique_list_count":
        return len(set(values))
    if not rows:
        return None
    if kind == "aggregation":
        numbers = [n for n in map(number, values) if n is not None]
        if not numbers:
            return None
        return {"sum": math.fsum, "avg": lambda ns: math.fsum(ns) / len(ns), "min": min, "max": max}[trait["function"]](numbers)
    if kind == "most_frequent":
        counts = pd.Series(values).value_counts()
        best = min(counts.index[counts == counts.max()])
        return best if counts[best] >= trait.get("min_occurrences", 2) else None
    if kind in ("first", "last"):
        return values[0] if kind == "first" else values[-1]
    if kind == "unique_list":
        return sorted(set(values))
    return rows[0]["occurred_at"] if kind == "first_seen" else rows[-1]["occurred_at"]


def profile_traits(events: pd.DataFrame, profile_ids: list[str], definitions: list[dict[str, Any]], as_of: datetime) -> dict[str, dict[str, Any]]:
    """profile_id -> {trait name: value} for every profile, from profile_events rows."""
    rows = sorted(
        (row for row in events.to_dict("records") if row["occurred_at"] <= as_of),
        key=lambda row: (row["occurred_at"], row["message_id"]),
    )
    by_profile: dict[str, list[Row]] = {profile_id: [] for profile_id in profile_ids}
    for row in rows:
        by_profile.setdefault(row["profile_id"], []).append(row)
    conditions = {t["name"]: parse_filter(t["filter"]) if t.get("filter") else None for t in definitions}
    return {
        profile_id: {
            t["name"]: trait_value(t, [row for row in profile_rows if matches(t, row, as_of, conditions[t["name"]])])
            for t in definitions
        }
        for profile_id, profile_rows in by_profile.items()
    }
