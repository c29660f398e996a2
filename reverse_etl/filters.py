"""Destination filters of an event sync, Segment's four kinds, checked before a sync runs.

- `drop: <condition>`: events for which the condition is true are not sent;
- `keep: <condition>`: only events for which the condition is true are sent;
- `sample: <percent>`: a share of events, chosen by a hash of the message id (md5, first 32
  bits, mod 10,000), so the same events are chosen on every run and by every sync sampling
  the same percentage;
- `allow: [paths]` / `block: [paths]`: which `properties.*`, `traits.*` and `context.*` paths
  travel (for PII). With an allow-list only the listed paths of those three objects are sent
  (everything else in them is dropped); a block-list removes the listed paths.

An event goes out when it passes every filter; a condition that is null (a missing property)
neither drops nor keeps. Conditions are parsed with sqlglot by the same checker as computed
traits' filters (dagster_defs/traits.py `parse_filter`: names, values, comparisons, and/or/not,
in, like, is null, between, and lower/upper/trim/length/coalesce; no subquery, other function,
comment or second statement), names must be event fields, and the condition is compiled here
to SQL that runs in the warehouse. Anything else raises FilterError before a request is made.
"""

from __future__ import annotations

import copy
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

from sqlglot import exp

from reverse_etl.conditions import FilterError, parse_filter

# Segment-spec names of the event fields, and the mart columns they read (profile_events).
EVENT_FIELDS = {
    "event": "event_name", "type": "message_type", "name": "page_name", "userid": "user_id", "anonymousid": "anonymous_id",
    "messageid": "message_id", "receivedat": "received_at",  # the event time is occurred_at (timestamp is an SQL keyword)
}
JSON_FIELDS = ("properties", "traits", "context")
PROFILE_EVENT_COLUMNS = (  # the profile_events contract (dbt_project/models/marts/core/_core__models.yml)
    "message_id", "profile_id", "message_type", "event_name", "page_name", "user_id", "anonymous_id", "email", "device_id",
    "occurred_at", "received_at", "loaded_at", "profiled_at", "source_id", "page_url", "page_path", "page_referrer",
    "page_title", "user_agent", "group_id", "previous_id",
)
KINDS = ("drop", "keep", "sample", "allow", "block")
SAMPLE_BUCKETS = 10_000
PATH_PART_FORBIDDEN = set("'\"\\")

COMPARISON_SQL = {exp.EQ: "=", exp.NEQ: "<>", exp.GT: ">", exp.GTE: ">=", exp.LT: "<", exp.LTE: "<="}
FUNCTION_SQL = {exp.Lower: "lower", exp.Upper: "upper", exp.Trim: "trim", exp.Length: "length", exp.Coalesce: "coalesce"}


@dataclass(frozen=True)
class EventFilters:
    """An event sync's filters, parsed: `drop` and `keep` as the conditions written (compiled
    against the mart's columns by `where_sql`), `sample_percent`, and field lists."""

    drop: tuple[str, ...] = ()
    keep: tuple[str, ...] = ()
    sample_percent: float | None = None
    allow: tuple[str, ...] = ()
    block: tuple[str, ...] = ()
    trees: dict[str, exp.Expression] = field(default_factory=dict, compare=False, repr=False)

    def where_sql(self, columns: Iterable[str], alias: str = "e") -> str:
        """The SQL condition an event must meet to be sent (`true` without filters); FilterError
        names a field the mart does not have."""
        known = {c.lower(): c for c in columns}
        parts = [f"not coalesce({compile_condition(self.trees[text], known, alias)}, false)" for text in self.drop]
        parts += [f"coalesce({compile_condition(self.trees[text], known, alias)}, false)" for text in self.keep]
        if self.sample_percent is not None and self.sample_percent < 100:
            parts.append(f"{sample_bucket_sql(f'{alias}.message_id')} < {round(self.sample_percent * SAMPLE_BUCKETS / 100)}")
        return " and ".join(f"({part})" for part in parts) or "true"

    def shape(self, event: dict[str, Any]) -> dict[str, Any]:
        """The event with only the allowed, unblocked paths of properties, traits and context."""
        if not self.allow and not self.block:
            return event
        shaped = dict(event)
        if self.allow:
            for top in JSON_FIELDS:
                if isinstance(event.get(top), dict):
                    shaped[top] = _only(event[top], [p.split(".")[1:] for p in self.allow if p.split(".")[0] == top])
        for path in self.block:
            top, *rest = path.split(".")
            if isinstance(shaped.get(top), dict):
                shaped[top] = _without(shaped[top], rest)
        return shaped


def parse_filters(config: Any) -> EventFilters:
    """`filters:` of an event sync: a list of one-key mappings (drop, keep, sample, allow, block)."""
    if config is None:
        return EventFilters()
    if not isinstance(config, list):
        raise FilterError("filters must be a list, each item one of: " + ", ".join(f"{k}: ..." for k in KINDS))
    drop: list[str] = []
    keep: list[str] = []
    allow: list[str] = []
    block: list[str] = []
    sample: float | None = None
    trees: dict[str, exp.Expression] = {}
    for number, item in enumerate(config, start=1):
        if not isinstance(item, dict) or len(item) != 1 or next(iter(item)) not in KINDS:
            raise FilterError(f"filter #{number} must be a mapping with exactly one of {', '.join(KINDS)}")
        kind, value = next(iter(item.items()))
        if kind in ("drop", "keep"):
            try:
                trees[value] = parse_filter(value)
            except FilterError as error:
                raise FilterError(f"filter #{number} ({kind}: {value!r}) is not a plain boolean expression over event fields: {error}") from None
            _check_names(trees[value], number, kind, value)
            (drop if kind == "drop" else keep).append(value)
        elif kind == "sample":
            if sample is not None:
                raise FilterError(f"filter #{number}: only one sample filter per sync")
            if not isinstance(value, (int, float)) or isinstance(value, bool) or not 0 < value <= 100:
                raise FilterError(f"filter #{number}: sample is a percentage above 0 and at most 100, got {value!r}")
            if round(value * SAMPLE_BUCKETS / 100) != value * SAMPLE_BUCKETS / 100:
                raise FilterError(f"filter #{number}: sample takes at most two decimals, got {value!r}")
            sample = float(value)
        else:
            if not isinstance(value, list) or not value:
                raise FilterError(f"filter #{number}: {kind} takes a list of paths such as properties.email or context.ip")
            for path in value:
                _check_path(path, number, kind)
            (allow if kind == "allow" else block).extend(value)
    return EventFilters(tuple(drop), tuple(keep), sample, tuple(allow), tuple(block), trees)


def sample_bucket(message_id: str) -> int:
    """The bucket (0-9,999) of a message id; a sample of p% keeps buckets below p * 100. The
    Python twin of sample_bucket_sql."""
    import hashlib

    return int(hashlib.md5(message_id.encode()).hexdigest()[:8], 16) % SAMPLE_BUCKETS


def sample_bucket_sql(column: str) -> str:
    return f"(cast('0x' || substr(md5(cast({column} as varchar)), 1, 8) as bigint) % {SAMPLE_BUCKETS})"


def _check_path(path: Any, number: int, kind: str) -> None:
    parts = path.split(".") if isinstance(path, str) else []
    if len(parts) < 2 or parts[0] not in JSON_FIELDS or not all(parts):
        raise FilterError(f"filter #{number}: {kind} path {path!r} must be properties.<name>, traits.<name> or context.<path>")


def _check_names(tree: exp.Expression, number: int, kind: str, text: str) -> None:
    for node in tree.walk():
        if isinstance(node, (exp.Column, exp.Dot)) and not isinstance(node.parent, (exp.Column, exp.Dot)):
            path = _path(node)
            head = path[0].lower()
            problem = None
            if head in JSON_FIELDS:
                if len(path) == 1:
                    problem = f"{path[0]!r} is an object; name one of its fields, e.g. {path[0]}.plan"
                elif any(set(part) & PATH_PART_FORBIDDEN or not part for part in path[1:]):
                    problem = f"{'.'.join(path)!r}: a field name may not hold quotes or backslashes"
            elif len(path) > 1:
                problem = f"unknown field {'.'.join(path)!r}: only properties, traits and context have fields"
            elif EVENT_FIELDS.get(head, head) not in PROFILE_EVENT_COLUMNS:
                problem = (f"unknown field {path[0]!r}; event fields: {', '.join(sorted({*EVENT_FIELDS, *PROFILE_EVENT_COLUMNS}))}, "
                           f"or properties.<name>, traits.<name>, context.<path>")
            if problem:
                raise FilterError(f"filter #{number} ({kind}: {text!r}): {problem}")


def _path(node: exp.Expression) -> list[str]:
    if isinstance(node, exp.Dot):
        return [*_path(node.this), node.expression.name]
    return [node.args[key].name for key in ("catalog", "db", "table", "this") if node.args.get(key) is not None]


def compile_condition(tree: exp.Expression, columns: dict[str, str], alias: str = "e") -> str:
    """SQL for a parsed condition over the mart's columns (`columns`: lower-cased name -> name).
    A name compared with a number reads as a number, with true/false as a boolean, else as text;
    a name alone is true when it reads as true."""
    return _Compiler(columns, alias).condition(tree)


class _Compiler:
    def __init__(self, columns: dict[str, str], alias: str) -> None:
        self.columns, self.alias = columns, alias

    def condition(self, node: exp.Expression) -> str:
        if isinstance(node, exp.And):
            return f"({self.condition(node.left)} and {self.condition(node.right)})"
        if isinstance(node, exp.Or):
            return f"({self.condition(node.left)} or {self.condition(node.right)})"
        if isinstance(node, exp.Not):
            return f"(not {self.condition(node.this)})"
        if isinstance(node, exp.Paren):
            return self.condition(node.this)
        if type(node) in COMPARISON_SQL:
            kind = _kind([node.left, node.right])
            return f"({self.value(node.left, kind)} {COMPARISON_SQL[type(node)]} {self.value(node.right, kind)})"
        if isinstance(node, exp.Is):
            return f"({self.value(node.this, 'string')} is null)"
        if isinstance(node, exp.In):
            kind = _kind([node.this, *node.expressions])
            return f"({self.value(node.this, kind)} in ({', '.join(self.value(v, kind) for v in node.expressions)}))"
        if isinstance(node, exp.Like):
            return f"({self.value(node.this, 'string')} like {self.value(node.expression, 'string')})"
        if isinstance(node, exp.Between):
            kind = _kind([node.this, node.args["low"], node.args["high"]])
            return (f"({self.value(node.this, kind)} between {self.value(node.args['low'], kind)}"
                    f" and {self.value(node.args['high'], kind)})")
        if isinstance(node, exp.Boolean):
            return "true" if node.this else "false"
        if isinstance(node, (exp.Column, exp.Dot)):
            return self.value(node, "boolean")
        raise FilterError(f"{node.sql()!r} is not allowed")  # parse_filter let nothing else through

    def value(self, node: exp.Expression, kind: str) -> str:
        if isinstance(node, (exp.Literal, exp.Neg, exp.Boolean, exp.Null)):
            return node.sql(dialect="duckdb")
        if type(node) in FUNCTION_SQL:
            arguments = [node.this, *node.expressions] if isinstance(node, exp.Coalesce) else [node.this]
            inner = kind if isinstance(node, exp.Coalesce) else "string"
            return f"{FUNCTION_SQL[type(node)]}({', '.join(self.value(a, inner) for a in arguments)})"
        if isinstance(node, (exp.Column, exp.Dot)):
            return self.name(_path(node), kind)
        raise FilterError(f"{node.sql()!r} is not allowed")

    def name(self, path: list[str], kind: str) -> str:
        head = path[0].lower()
        if head in JSON_FIELDS and len(path) > 1:
            if head not in self.columns:
                raise FilterError(f"the model has no {head} column")
            json_path = "$." + ".".join(f'"{part}"' for part in path[1:])
            text = f"json_extract_string({self.alias}.{_quote(self.columns[head])}, '{json_path}')"
            return {"number": f"try_cast({text} as double)", "boolean": f"try_cast({text} as boolean)"}.get(kind, text)
        column = self.columns.get(EVENT_FIELDS.get(head, head)) if head not in JSON_FIELDS else None
        if column is None:
            known = sorted({*EVENT_FIELDS, *(c for c in self.columns if c not in JSON_FIELDS)})
            raise FilterError(f"unknown field {'.'.join(path)!r}; event fields: {', '.join(known)}, "
                              f"or properties.<name>, traits.<name>, context.<path>")
        sql = f"{self.alias}.{_quote(column)}"
        return f"try_cast({sql} as boolean)" if kind == "boolean" else sql


def _kind(operands: list[exp.Expression]) -> str:
    """How names among `operands` are read: as a number when compared with a number (or
    length()), as a boolean with true/false, else as text."""
    for node in operands:
        if isinstance(node, exp.Neg) or (isinstance(node, exp.Literal) and not node.is_string) or isinstance(node, exp.Length):
            return "number"
        if isinstance(node, exp.Boolean):
            return "boolean"
    return "string"


def _quote(name: str) -> str:
    return '"' + name.replace('"', '""') + '"'


def _only(value: dict[str, Any], paths: list[list[str]]) -> dict[str, Any]:
    kept: dict[str, Any] = {}
    for path in paths:
        source, target = value, kept
        for depth, part in enumerate(path):
            if not isinstance(source, dict) or part not in source:
                break
            if depth == len(path) - 1:
                target[part] = copy.deepcopy(source[part])
            else:
                source = source[part]
                target = target.setdefault(part, {}) if isinstance(target.get(part, {}), dict) else target
    return kept


def _without(value: dict[str, Any], path: list[str]) -> dict[str, Any]:
    if path[0] not in value:
        return value
    trimmed = dict(value)
    if len(path) == 1:
        del trimmed[path[0]]
    elif isinstance(trimmed[path[0]], dict):
        trimmed[path[0]] = _without(trimmed[path[0]], path[1:])
    return trimmed
