"""Tracking plans (Protocols): what each source may send, checked by the collector at the door.

One YAML file per source in the plans directory (`CORRAL_TRACKING_PLANS`, default
`loaders/tracking_plans/`); the file `web.yml` is the plan of source `web` (or name several
sources with `sources: [ios, android]`). Files starting with `_` are not plans (examples).

    mode: block                    # allow | block | omit_properties
    unplanned_events: block        # track events not listed: allow | block (default: block in block mode)
    definitions:                   # optional JSON Schemas shared by every schema: {$ref: "#/definitions/product"}
      product: {type: object, required: [product_id], properties: {product_id: {type: string}}}
    events:                        # allowed `track` events, each with a JSON Schema (draft-07) of its properties
      Order Completed:
        description: A customer paid.
        properties:
          required: [order_id, revenue]
          additionalProperties: false
          properties:
            order_id: {type: string}
            revenue: {type: number, minimum: 0}
            currency: {type: string, enum: [USD, EUR]}
      Signed Out:                  # planned; properties not checked
    identify: {traits: <schema>}   # `identify` traits (RudderStack's context.traits too)
    group: {traits: <schema>}
    page: {properties: <schema>}
    screen: {properties: <schema>}
    common: <schema>               # checked against every whole message (e.g. required context fields)

Modes: `allow` accepts every message and records its violations; `block` keeps a message that
violates the plan out of `raw.events` (it is landed in `landing/_rejected/<source>/` with its
violations, for `corral replay-rejected`); `omit_properties` drops each top-level property (or
trait) holding a violation and keeps the message (a missing required property cannot be
dropped: that violation is recorded, the message kept). A kept message carries its violations
on its landed line under the reserved key `_corral` (never a column of `raw.events`); the loader
moves them, and those of blocked messages, into `raw.violations`.

Plans are read and checked when the collector starts (unknown keys, JSON Schema keywords and
their values, `$ref`s outside the file, a `required` property that `additionalProperties: false`
forbids): a broken plan stops it with `file:line: problem`. Each schema is compiled once into a
Python predicate (loaders/schema_predicate.py; fastjsonschema for keywords outside its subset);
only a message that fails it is explained, by jsonschema, which lists every violation.
"""

from __future__ import annotations

import difflib
import hashlib
import os
import re
from collections.abc import Callable, Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import fastjsonschema
import jsonschema
import orjson
import yaml

from loaders.schema_predicate import compile_predicate

DEFAULT_DIR = Path(__file__).with_name("tracking_plans")
MODES = ("allow", "block", "omit_properties")
UNPLANNED = ("allow", "block")
ACTIONS = ("allowed", "omitted", "blocked")
SOURCE_NAME = re.compile(r"^[a-z0-9][a-z0-9_\-]*$")
PLAN_KEYS = {"sources", "mode", "unplanned_events", "description", "definitions", "events", "identify", "group", "page", "screen", "common"}
SECTIONS = {"identify": "traits", "group": "traits", "page": "properties", "screen": "properties"}
ENTRY_KEYS = {"description", "labels"}
MAX_EXPECTED_CHARS = 200
_EMPTY: dict[str, Any] = {}

# JSON Schema draft-07 keywords, by what their value holds (2019-09's $defs and deprecated too).
_SCHEMA_VALUED = {"additionalItems", "additionalProperties", "contains", "else", "if", "not", "propertyNames", "then"}
_SCHEMA_MAPS = {"definitions", "$defs", "properties", "patternProperties"}
_SCHEMA_ARRAYS = {"allOf", "anyOf", "oneOf"}
_PLAIN = {
    "$id", "$schema", "$ref", "$comment", "title", "description", "default", "readOnly", "writeOnly", "examples",
    "deprecated", "multipleOf", "maximum", "exclusiveMaximum", "minimum", "exclusiveMinimum", "maxLength",
    "minLength", "pattern", "maxItems", "minItems", "uniqueItems", "maxProperties", "minProperties", "required",
    "const", "enum", "type", "format", "contentMediaType", "contentEncoding",
}
KEYWORDS = _SCHEMA_VALUED | _SCHEMA_MAPS | _SCHEMA_ARRAYS | _PLAIN | {"items", "dependencies"}

Location = tuple[Any, ...]


class PlanError(ValueError):
    """A plan that cannot be used: `file:line: problem`."""

    def __init__(self, path: Path, line: int | None, problem: str) -> None:
        self.path, self.line, self.problem = path, line, problem
        super().__init__(f"{path}:{line}: {problem}" if line else f"{path}: {problem}")


# --- YAML with line numbers ------------------------------------------------------------------------


@dataclass
class _Document:
    """A parsed YAML file and the line (1-based) of every value in it, by its key path."""

    path: Path
    data: Any
    lines: dict[Location, int]

    def line(self, location: Location) -> int | None:
        """The line of `location`, or of its nearest ancestor that has one."""
        for end in range(len(location), -1, -1):
            if location[:end] in self.lines:
                return self.lines[location[:end]]
        return None

    def error(self, location: Location, problem: str) -> PlanError:
        return PlanError(self.path, self.line(location), problem)


def read_yaml(path: Path) -> _Document:
    """Parse with PyYAML's safe loader, keeping each value's line; duplicate keys are refused."""
    try:
        text = path.read_text()
    except UnicodeDecodeError as exc:
        raise PlanError(path, None, f"not UTF-8 text: {exc}") from None
    loader = yaml.SafeLoader(text)
    try:
        node = loader.get_single_node()
        if node is None:
            return _Document(path, None, {})
        _refuse_duplicates(path, node)
        data = loader.construct_document(node)
        lines: dict[Location, int] = {}
        _record_lines(loader, node, data, (), lines)
    except yaml.MarkedYAMLError as exc:
        mark = exc.problem_mark or exc.context_mark
        problem = " ".join(str(p) for p in (exc.context, exc.problem) if p)
        raise PlanError(path, mark.line + 1 if mark else None, f"not valid YAML: {problem}") from None
    except yaml.YAMLError as exc:
        raise PlanError(path, None, f"not valid YAML: {exc}") from None
    finally:
        loader.dispose()
    return _Document(path, data, lines)


def _refuse_duplicates(path: Path, node: yaml.Node) -> None:
    if isinstance(node, yaml.MappingNode):
        seen: dict[str, int] = {}
        for key, value in node.value:
            if isinstance(key, yaml.ScalarNode) and key.tag != "tag:yaml.org,2002:merge":
                if key.value in seen:
                    raise PlanError(path, key.start_mark.line + 1, f"duplicate key {key.value!r} (first at line {seen[key.value]})")
                seen[key.value] = key.start_mark.line + 1
            _refuse_duplicates(path, value)
    elif isinstance(node, yaml.SequenceNode):
        for item in node.value:
            _refuse_duplicates(path, item)


def _record_lines(loader: yaml.SafeLoader, node: yaml.Node, value: Any, location: Location, lines: dict[Location, int]) -> None:
    lines.setdefault(location, node.start_mark.line + 1)
    if isinstance(node, yaml.MappingNode) and isinstance(value, dict):
        for key_node, value_node in node.value:  # merges (<<) are already flattened in here
            key = loader.construct_object(key_node, deep=True)
            if isinstance(key, (str, int, float, bool)) and key in value:
                lines[location + (key,)] = key_node.start_mark.line + 1
                _record_lines(loader, value_node, value[key], location + (key,), lines)
    elif isinstance(node, yaml.SequenceNode) and isinstance(value, list):
        for index, (item_node, item) in enumerate(zip(node.value, value, strict=False)):
            _record_lines(loader, item_node, item, location + (index,), lines)


# --- plan structure --------------------------------------------------------------------------------


def _check_keywords(doc: _Document, schema: Any, location: Location) -> None:
    """Every key of a schema object is a JSON Schema keyword (or `x-...`), so a misspelt
    `requried:` is an error, not a rule silently ignored."""
    if isinstance(schema, bool):
        return
    if not isinstance(schema, dict):
        raise doc.error(location, f"expected a JSON Schema (a mapping), got {_json_type(schema)}")
    for key, value in schema.items():
        here = location + (key,)
        if not isinstance(key, str):
            raise doc.error(here, f"schema key {key!r} is not text (YAML reads yes/no/on/off as booleans: quote it)")
        if key.startswith("x-"):
            continue
        if key not in KEYWORDS:
            close = difflib.get_close_matches(key, sorted(KEYWORDS), n=1)
            hint = f"; did you mean {close[0]!r}?" if close else ""
            raise doc.error(here, f"unknown JSON Schema keyword {key!r}{hint}")
        if key in _SCHEMA_VALUED:
            _check_keywords(doc, value, here)
        elif key in _SCHEMA_MAPS:
            if not isinstance(value, dict):
                raise doc.error(here, f"{key!r} must map names to schemas")
            for name, sub in value.items():
                if not isinstance(name, str):
                    raise doc.error(here + (name,), f"name {name!r} under {key!r} is not text (YAML reads yes/no/on/off as booleans: quote it)")
                _check_keywords(doc, sub, here + (name,))
        elif key in _SCHEMA_ARRAYS or (key == "items" and isinstance(value, list)):
            if not isinstance(value, list):
                raise doc.error(here, f"{key!r} must be a list of schemas")
            for index, sub in enumerate(value):
                _check_keywords(doc, sub, here + (index,))
        elif key == "items":
            _check_keywords(doc, value, here)
        elif key == "dependencies" and isinstance(value, dict):
            for name, sub in value.items():
                if not isinstance(sub, list):
                    _check_keywords(doc, sub, here + (name,))
        elif key == "$ref" and not (isinstance(value, str) and value.startswith("#")):
            raise doc.error(here, f"$ref {value!r}: only references inside the plan ('#/definitions/...') are allowed")


def _lint_required(doc: _Document, schema: Any, location: Location) -> None:
    """A property both required and forbidden by `additionalProperties: false` (typo in one
    of the two) means no message can ever pass."""
    if not isinstance(schema, dict):
        return
    required, defined = schema.get("required"), schema.get("properties")
    if schema.get("additionalProperties") is False and isinstance(required, list):
        patterns = [p for p in (schema.get("patternProperties") or {}) if isinstance(p, str)]
        for name in required:
            if isinstance(name, str) and name not in (defined or {}) and not any(re.search(p, name) for p in patterns):
                raise doc.error(
                    location + ("required",),
                    f"required property {name!r} is not under 'properties' and additionalProperties is false: no message could pass",
                )
    for key, value in schema.items():
        if key in _SCHEMA_VALUED or key == "items":
            for index, sub in enumerate(value) if isinstance(value, list) else [(None, value)]:
                _lint_required(doc, sub, location + ((key, index) if index is not None else (key,)))
        elif key in _SCHEMA_MAPS and isinstance(value, dict):
            for name, sub in value.items():
                _lint_required(doc, sub, location + (key, name))
        elif key in _SCHEMA_ARRAYS and isinstance(value, list):
            for index, sub in enumerate(value):
                _lint_required(doc, sub, location + (key, index))


# --- violations ------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Violation:
    """One way a message breaks its plan. `path` is dotted from the message root
    (`properties.revenue`, `traits.address.city`, `properties.products[0].price`); `rule` is
    the JSON Schema keyword that failed, or `unplanned_event`; `received_type` is the JSON type
    of the value found (`missing` for a missing required property). Values themselves are never
    copied here (they may be personal data): the whole message is in the rejected file."""

    path: str
    rule: str
    expected: str | None
    received_type: str | None
    description: str
    drop: Location | None = None  # the top-level key omit_properties would remove, from the message root
    action: str = "allowed"

    def record(self) -> dict[str, Any]:
        return {"path": self.path, "rule": self.rule, "expected": self.expected, "receivedType": self.received_type,
                "description": self.description, "action": self.action}


@dataclass(frozen=True)
class Verdict:
    """What the plan decided for one message with violations."""

    blocked: bool
    violations: tuple[Violation, ...]
    omitted: int = 0  # properties or traits removed (omit_properties)

    @property
    def reason(self) -> str:
        shown = "; ".join(f"{v.path}: {v.description}" for v in self.violations[:5])
        more = f"; and {len(self.violations) - 5} more" if len(self.violations) > 5 else ""
        return f"blocked by the tracking plan ({len(self.violations)} violation(s)): {shown}{more}"


def _json_type(value: Any) -> str:
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "boolean"
    if isinstance(value, int):
        return "integer"
    if isinstance(value, float):
        return "number"
    if isinstance(value, str):
        return "string"
    if isinstance(value, list):
        return "array"
    if isinstance(value, dict):
        return "object"
    return type(value).__name__


def _dotted(location: Iterable[Any]) -> str:
    text = ""
    for part in location:
        text += f"[{part}]" if isinstance(part, int) else (f".{part}" if text else str(part))
    return text


def _expected(value: Any) -> str | None:
    if value is None or isinstance(value, (dict, bool)):
        return None
    text = value if isinstance(value, str) else orjson.dumps(value, option=orjson.OPT_NON_STR_KEYS).decode()
    return text if len(text) <= MAX_EXPECTED_CHARS else text[: MAX_EXPECTED_CHARS - 3] + "..."


_LIMITS = {"minimum": "below the minimum", "exclusiveMinimum": "not above", "maximum": "above the maximum",
           "exclusiveMaximum": "not below", "minLength": "shorter than", "maxLength": "longer than",
           "minItems": "fewer items than", "maxItems": "more items than", "multipleOf": "not a multiple of",
           "minProperties": "fewer properties than", "maxProperties": "more properties than"}


def _describe(rule: str, expected: Any, received: str | None) -> str:
    if rule == "type":
        wanted = " or ".join(expected) if isinstance(expected, list) else expected
        return f"expected {wanted}, got {received}"
    if rule == "required":
        return "required property missing"
    if rule == "additionalProperties":
        return "property not in the plan (additionalProperties: false)"
    if rule == "enum":
        return f"not one of the allowed values {_expected(expected)}"
    if rule == "const":
        return f"not the constant {_expected(expected)}"
    if rule == "pattern":
        return f"does not match the pattern {expected}"
    if rule == "format":
        return f"not a valid {expected}"
    if rule in _LIMITS:
        return f"{_LIMITS[rule]} {expected}"
    return f"fails {rule}"


@dataclass
class _Checker:
    """One compiled schema: `valid` says whether a value passes (fast: a compiled predicate);
    only when it does not, jsonschema lists every violation (slow, rare)."""

    valid: Callable[[Any], bool]
    compiled: Callable[[Any], Any]  # fastjsonschema's validator: its first error, if jsonschema finds none
    full: jsonschema.protocols.Validator

    def violations(self, value: Any, root: Location, top_level_drop: bool) -> list[Violation]:
        found: dict[tuple[str, str], Violation] = {}

        def add(location: Location, rule: str, expected: Any, received: str | None, droppable: bool) -> None:
            path = _dotted(root + location)
            drop = (root + location[:1]) if (droppable and top_level_drop and location) else None
            found.setdefault((path, rule), Violation(path, rule, _expected(expected), received, _describe(rule, expected, received), drop))

        for error in self.full.iter_errors(value):
            location, rule = tuple(error.absolute_path), str(error.validator)
            if rule == "required" and isinstance(error.instance, dict):
                for name in error.validator_value:
                    if name not in error.instance:
                        add(location + (name,), "required", None, "missing", droppable=bool(location))
            elif rule == "additionalProperties" and error.validator_value is False and isinstance(error.instance, dict):
                for name in _extra_keys(error.instance, error.schema):
                    add(location + (name,), rule, None, _json_type(error.instance[name]), droppable=True)
            else:
                add(location, rule, error.validator_value, _json_type(error.instance), droppable=True)
        if not found:  # jsonschema cannot check this (a format without its package): fastjsonschema's error
            try:
                self.compiled(value)
            except fastjsonschema.JsonSchemaValueException as first:
                add(tuple(first.path[1:]), first.rule or "schema", first.rule_definition, _json_type(first.value), droppable=True)
            else:
                add((), "schema", None, _json_type(value), droppable=False)
        return list(found.values())


def _extra_keys(instance: dict[str, Any], schema: Mapping[str, Any]) -> Iterator[str]:
    defined = schema.get("properties") or {}
    patterns = [p for p in (schema.get("patternProperties") or {})]
    for key in instance:
        if key not in defined and not any(re.search(p, key) for p in patterns):
            yield key


# --- compiled plans --------------------------------------------------------------------------------


@dataclass
class TrackingPlan:
    path: Path
    sources: tuple[str, ...]
    version: str  # the first 12 hex digits of the file's SHA-256
    mode: str
    unplanned_events: str
    events: dict[str, _Checker | None]  # None: planned, properties not checked
    sections: dict[str, _Checker]  # message type -> its traits / properties checker
    common: _Checker | None = None
    _suggestions: dict[str, str | None] = field(default_factory=dict, repr=False)

    def check(self, message: dict[str, Any]) -> Verdict | None:
        """Check one valid Segment-spec message (type already lower-cased); None when it keeps
        to the plan. With violations, applies the mode: omit_properties removes the offending
        properties or traits from `message` (in place). The common case, a message that passes,
        costs the compiled checks and nothing else."""
        kind = message["type"]
        if kind == "track":
            event = message.get("event")
            checker = self.events.get(event if event.__class__ is str else str(event), _UNPLANNED)
            if checker is _UNPLANNED:
                return self._verdict(message)
            if checker is not None:
                properties = message.get("properties")
                if not checker.valid(_EMPTY if properties is None else properties):
                    return self._verdict(message)
        elif kind in self.sections:
            *_, value = _section(message, kind)
            if not self.sections[kind].valid(_EMPTY if value is None else value):
                return self._verdict(message)
        if self.common is not None and not self.common.valid(message):
            return self._verdict(message)
        return None

    def _verdict(self, message: dict[str, Any]) -> Verdict | None:
        """Every violation of a message that failed a check, and what the mode does with them."""
        kind = message["type"]
        violations: list[Violation] = []
        unplanned = False
        if kind == "track":
            event = message.get("event")
            if event.__class__ is not str:
                event = str(event)
            try:
                checker = self.events[event]
            except KeyError:
                unplanned = True
                violations.append(self._unplanned(event))
            else:
                if checker is not None:
                    violations += self._run(checker, message, "properties")
        elif kind in self.sections:
            where, _ = _section(message, kind)
            violations += self._run(self.sections[kind], message, *where)
        if self.common is not None and not self.common.valid(message):
            violations += [_keep(v) for v in self.common.violations(message, (), False)]
        if not violations:
            return None
        if unplanned and self.unplanned_events == "block":
            blocked = True
        else:  # an unplanned event let through is blocked only for its common-schema violations
            blocked = self.mode == "block" and any(v.rule != "unplanned_event" for v in violations)
        if blocked:
            return Verdict(True, tuple(_with_action(v, "blocked") for v in violations))
        if self.mode == "omit_properties":
            return self._omit(message, violations)
        return Verdict(False, tuple(violations))

    def _run(self, checker: _Checker, message: dict[str, Any], *where: str) -> list[Violation]:
        container: Any = message
        for key in where:
            container = container.get(key) if isinstance(container, dict) else None
        value = _EMPTY if container is None else container
        return [] if checker.valid(value) else checker.violations(value, where, True)

    def _unplanned(self, event: str) -> Violation:
        if event not in self._suggestions:
            if len(self._suggestions) > 10_000:
                self._suggestions.clear()
            close = difflib.get_close_matches(event, list(self.events), n=1, cutoff=0.75)
            self._suggestions[event] = close[0] if close else None
        suggestion = self._suggestions[event]
        hint = f"; did you mean {suggestion!r}?" if suggestion else ""
        return Violation("event", "unplanned_event", suggestion, None, f"event {event!r} is not in the tracking plan{hint}")

    def _omit(self, message: dict[str, Any], violations: list[Violation]) -> Verdict:
        dropped: set[Location] = set()
        result = []
        for violation in violations:
            if violation.drop is None:
                result.append(violation)
                continue
            *parents, key = violation.drop
            container: Any = message
            for part in parents:
                container = container.get(part) if isinstance(container, dict) else None
            if isinstance(container, dict) and (violation.drop in dropped or key in container):
                if violation.drop not in dropped:
                    del container[key]
                    dropped.add(violation.drop)
                result.append(_with_action(violation, "omitted"))
            else:
                result.append(violation)
        return Verdict(False, tuple(result), omitted=len(dropped))

    def describe(self) -> str:
        sections = ", ".join(sorted(self.sections) + (["common"] if self.common else []))
        return (f"{', '.join(self.sources)}: {self.mode}, unplanned events {self.unplanned_events}, "
                f"{len(self.events)} event(s){f', {sections}' if sections else ''} ({self.path.name}, version {self.version})")


_UNPLANNED: Any = object()


def _section(message: dict[str, Any], kind: str) -> tuple[tuple[str, ...], Any]:
    """Where an identify / group / page / screen message keeps what its plan section checks, and
    the value there: `traits` (RudderStack's SDKs send identify traits in `context.traits`) or
    `properties`."""
    key = SECTIONS[kind]
    value = message.get(key)
    if key == "traits" and value is None:
        context = message.get("context")
        if isinstance(context, dict) and context.get("traits") is not None:
            return ("context", "traits"), context["traits"]
    return (key,), value


def _with_action(violation: Violation, action: str) -> Violation:
    return Violation(violation.path, violation.rule, violation.expected, violation.received_type,
                     violation.description, violation.drop, action)


def _keep(violation: Violation) -> Violation:
    return Violation(violation.path, violation.rule, violation.expected, violation.received_type, violation.description)


def _compile(doc: _Document, schema: Any, location: Location, definitions: dict[str, Any]) -> _Checker:
    """Check one schema (of an object: properties, traits or a whole message) and compile it."""
    if schema is None:
        schema = {}
    _check_keywords(doc, schema, location)
    if isinstance(schema, bool):
        schema = {} if schema else {"not": {}}
    schema = dict(schema)
    if "type" not in schema:
        schema["type"] = "object"
    elif schema["type"] != "object":
        raise doc.error(location + ("type",), f"this schema describes an object; 'type' must be object, not {schema['type']!r}")
    if definitions:
        clash = sorted(set(definitions) & set(schema.get("definitions") or {}))
        if clash:
            raise doc.error(location + ("definitions",), f"definitions {clash} are already defined at the top of the plan")
        schema["definitions"] = {**definitions, **(schema.get("definitions") or {})}
    try:
        jsonschema.Draft7Validator.check_schema(schema)
    except jsonschema.SchemaError as exc:
        inner = tuple(exc.absolute_path)
        where = ("definitions",) + inner[1:] if inner[:1] == ("definitions",) and inner[1:2] and inner[1] in definitions else location + inner
        raise doc.error(where, f"invalid JSON Schema at {_dotted(inner) or 'the root'}: {exc.message}") from None
    _lint_required(doc, schema, location)
    try:
        compiled = fastjsonschema.compile(schema, handlers={}, use_default=False)
    except (fastjsonschema.JsonSchemaDefinitionException, re.error, ValueError, TypeError) as exc:
        raise doc.error(location, f"cannot compile this schema: {exc}") from None
    full = jsonschema.Draft7Validator(schema, format_checker=jsonschema.Draft7Validator.FORMAT_CHECKER)
    return _Checker(compile_predicate(schema) or _passes(compiled), compiled, full)


def _passes(compiled: Callable[[Any], Any]) -> Callable[[Any], bool]:
    """fastjsonschema's validator as a predicate (schemas outside the predicate compiler's subset)."""

    def valid(value: Any) -> bool:
        try:
            compiled(value)
        except fastjsonschema.JsonSchemaValueException:
            return False
        return True

    return valid


def _entry(doc: _Document, value: Any, location: Location, schema_key: str, allowed: set[str]) -> Any:
    """An event or section entry: {description, labels, <schema_key>: schema}."""
    if value is None:
        return None
    if not isinstance(value, dict):
        raise doc.error(location, f"expected a mapping with {schema_key!r} (a JSON Schema), got {_json_type(value)}")
    unknown = [k for k in value if k not in allowed | {schema_key}]
    if unknown:
        close = difflib.get_close_matches(str(unknown[0]), sorted(allowed | {schema_key}), n=1)
        hint = f"; did you mean {close[0]!r}?" if close else ""
        raise doc.error(location + (unknown[0],), f"unknown key {unknown[0]!r} (allowed: {', '.join(sorted(allowed | {schema_key}))}){hint}")
    labels = value.get("labels")
    if labels is not None and not isinstance(labels, dict):
        raise doc.error(location + ("labels",), "labels are key: value pairs")
    return value.get(schema_key)


def _choice(doc: _Document, data: dict[str, Any], key: str, choices: tuple[str, ...], default: str) -> str:
    value = data.get(key, default)
    if value not in choices:
        raise doc.error((key,), f"{key} must be one of {', '.join(choices)}; got {value!r}")
    return value


def load_plan(path: Path) -> TrackingPlan:
    """Read, check and compile one plan file. Raises PlanError naming the file and line."""
    doc = read_yaml(path)
    data = doc.data
    if not isinstance(data, dict):
        raise doc.error((), "a tracking plan is a mapping with 'events' (and mode, identify, page, ...)")
    unknown = [k for k in data if k not in PLAN_KEYS]
    if unknown:
        close = difflib.get_close_matches(str(unknown[0]), sorted(PLAN_KEYS), n=1)
        hint = f"; did you mean {close[0]!r}?" if close else ""
        raise doc.error((unknown[0],), f"unknown key {unknown[0]!r}{hint} (allowed: {', '.join(sorted(PLAN_KEYS))})")
    sources = data.get("sources", [path.stem])
    if isinstance(sources, str):
        sources = [sources]
    if not isinstance(sources, list) or not sources:
        raise doc.error(("sources",), "sources is a list of source names")
    for index, source in enumerate(sources):
        if not isinstance(source, str) or not SOURCE_NAME.match(source):
            raise doc.error(("sources", index) if "sources" in data else (), f"source {source!r} must be lower-case letters, digits, '_' or '-'")
    mode = _choice(doc, data, "mode", MODES, "allow")
    unplanned = _choice(doc, data, "unplanned_events", UNPLANNED, "block" if mode == "block" else "allow")
    definitions = data.get("definitions") or {}
    if not isinstance(definitions, dict):
        raise doc.error(("definitions",), "definitions map names to JSON Schemas")
    _check_keywords(doc, {"definitions": definitions}, ())
    events_data = data.get("events") or {}
    if not isinstance(events_data, dict):
        raise doc.error(("events",), "events map each track event name to {properties: <JSON Schema>}")
    events: dict[str, _Checker | None] = {}
    for name, entry in events_data.items():
        if not isinstance(name, str) or not name.strip():
            raise doc.error(("events", name), f"event name {name!r} must be non-empty text")
        schema = _entry(doc, entry, ("events", name), "properties", ENTRY_KEYS)
        events[name] = None if schema is None else _compile(doc, schema, ("events", name, "properties"), definitions)
    sections: dict[str, _Checker] = {}
    for kind, key in SECTIONS.items():
        if kind in data:
            schema = _entry(doc, data[kind], (kind,), key, ENTRY_KEYS)
            if schema is not None:
                sections[kind] = _compile(doc, schema, (kind, key), definitions)
    common = _compile(doc, data["common"], ("common",), definitions) if data.get("common") is not None else None
    version = hashlib.sha256(path.read_bytes()).hexdigest()[:12]
    return TrackingPlan(path, tuple(sources), version, mode, unplanned, events, sections, common)


def plans_directory(environ: Mapping[str, str] | None = None) -> Path:
    """Where the tracking plans are: CORRAL_TRACKING_PLANS, else loaders/tracking_plans/."""
    env = os.environ if environ is None else environ
    return Path(env.get("CORRAL_TRACKING_PLANS") or DEFAULT_DIR).expanduser()


def plan_files(directory: Path) -> list[Path]:
    if not directory.is_dir():
        return []
    return sorted(p for p in directory.iterdir() if p.suffix in (".yml", ".yaml") and not p.name.startswith(("_", ".")) and p.is_file())


def load_plans(directory: Path, known_sources: Iterable[str] | None = None) -> dict[str, TrackingPlan]:
    """Every plan in `directory`, by source. A source claimed by two files, or (given the
    collector's sources) a plan for a source that does not exist, is an error."""
    plans: dict[str, TrackingPlan] = {}
    known = set(known_sources) if known_sources is not None else None
    if known_sources is not None and not directory.exists() and directory != DEFAULT_DIR:
        raise PlanError(directory, None, "tracking plan directory (CORRAL_TRACKING_PLANS) not found")
    for path in plan_files(directory):
        plan = load_plan(path)
        for source in plan.sources:
            if source in plans:
                raise PlanError(path, None, f"source {source!r} already has a tracking plan: {plans[source].path}")
            if known is not None and source not in known:
                raise PlanError(path, None, f"plan for source {source!r}, but CORRAL_WRITE_KEYS has no such source (known: {', '.join(sorted(known))})")
            plans[source] = plan
    return plans


RESERVED_KEY = "_corral"  # on a landed line: {"planVersion", "planFile", "violations": [...]}


def annotate(message: dict[str, Any], verdict: Verdict, plan: TrackingPlan) -> None:
    """Put the violations of a message the plan lets through on the message itself (under
    `_corral`), so they land with it, in the same file and the same fsync, and are loaded
    exactly when it is."""
    message[RESERVED_KEY] = {"planVersion": plan.version, "planFile": plan.path.name,
                             "violations": [v.record() for v in verdict.violations]}


def blocked_line(verdict: Verdict, message_line: bytes, source: str, plan: TrackingPlan, received_at: str) -> bytes:
    """The line of `landing/_rejected/<source>/` for a blocked message: as a spec-invalid one
    (reason, receivedAt, sourceId, message) plus blockedBy, planVersion and the violations.
    `message_line` is the message already serialized (it is not serialized twice)."""
    record = {
        "reason": verdict.reason, "receivedAt": received_at, "sourceId": source, "blockedBy": "tracking_plan",
        "planVersion": plan.version, "planFile": plan.path.name, "violations": [v.record() for v in verdict.violations],
    }
    return orjson.dumps(record)[:-1] + b',"message":' + message_line.rstrip(b"\n") + b"}\n"
