"""Computed-trait definitions, checked with sqlglot before a build sends them to dbt.

The definitions are the dbt var `corral_computed_traits` (dbt_project.yml); the macro
`computed_traits` turns them into SQL and refuses bad ones itself, on every engine. This
module applies the same rules in Python with sqlglot's parser, so `corral build`, `corral demo`
and the Dagster definitions stop on a bad trait before dbt runs, with every problem listed.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import sqlglot
import yaml
from sqlglot import exp
from sqlglot.errors import ParseError, TokenError
from sqlglot.tokens import TokenType

TYPES = {
    "event_counter": False, "aggregation": True, "most_frequent": True, "first": True, "last": True,
    "unique_list": True, "unique_list_count": True, "first_seen": False, "last_seen": False,
}  # type -> needs a property
KEYS = {"name", "type", "description", "event", "message_type", "property", "function", "filter", "window_days", "min_occurrences"}
MESSAGE_TYPES = {"track", "page", "screen", "identify", "group", "alias"}
FUNCTIONS: dict[type[exp.Expression], str] = {exp.Lower: "string", exp.Upper: "string", exp.Trim: "string", exp.Length: "number", exp.Coalesce: "string"}
COMPARISONS = (exp.EQ, exp.NEQ, exp.GT, exp.GTE, exp.LT, exp.LTE)
NAME_TOKENS = {TokenType.VAR, TokenType.IDENTIFIER}
VALUE_TOKENS = NAME_TOKENS | {TokenType.STRING, TokenType.NUMBER, TokenType.TRUE, TokenType.FALSE, TokenType.NULL}
NAME = re.compile(r"^[a-z][a-z0-9_]{0,62}$")
PROPERTY = re.compile(r"^[A-Za-z_][A-Za-z0-9_ ]*(\.[A-Za-z_][A-Za-z0-9_ ]*)*$")


class TraitDefinitionError(ValueError):
    """One or more computed traits are wrong; the message names each and what to fix."""


class FilterError(ValueError):
    """A filter is not a plain boolean expression over event fields."""


@dataclass(frozen=True)
class Operand:
    kind: str  # name, string, number, boolean, null, function


def parse_filter(text: str) -> exp.Expression:
    """The filter's syntax tree, or FilterError saying why it is refused."""
    if not isinstance(text, str) or not text.strip():
        raise FilterError("a filter must be non-empty text")
    try:
        tokens = sqlglot.tokenize(text, read="duckdb")
        statements = sqlglot.parse(text, read="duckdb")
    except (ParseError, TokenError) as error:
        raise FilterError(f"it does not parse: {str(error).splitlines()[0]}") from None
    if any(token.token_type == TokenType.SEMICOLON for token in tokens) or len(statements) != 1 or statements[0] is None:
        raise FilterError("one expression only: ';' and further statements are not allowed")
    if any(token.comments for token in tokens):
        raise FilterError("comments are not allowed")
    if any(token.text == "==" for token in tokens):
        raise FilterError("'==' is not SQL; use '='")
    tree = statements[0]
    _condition(tree)
    # the parser can drop parts it does not use (length(a, b) reads as length(a)): every name and
    # value written must be in the tree
    written = [
        token for position, token in enumerate(tokens)
        if token.token_type in VALUE_TOKENS
        and not (token.token_type in NAME_TOKENS and position + 1 < len(tokens) and tokens[position + 1].token_type == TokenType.L_PAREN)
    ]
    parsed = [node for node in tree.walk() if isinstance(node, (exp.Identifier, exp.Literal, exp.Boolean, exp.Null))]
    if len(written) != len(parsed):
        raise FilterError("part of it would be ignored; check the function arguments")
    return tree


def _condition(node: exp.Expression) -> None:
    if isinstance(node, (exp.And, exp.Or)):
        _condition(node.left)
        _condition(node.right)
    elif isinstance(node, exp.Not):
        _condition(node.this)
    elif isinstance(node, exp.Paren):
        _condition(node.this)
    elif isinstance(node, COMPARISONS):
        _same_kind([_operand(node.left), _operand(node.right)])
    elif isinstance(node, exp.Is):
        if not isinstance(node.expression, exp.Null):
            raise FilterError("'is' must be followed by null or not null")
        _operand(node.this)
    elif isinstance(node, exp.In):
        if node.args.get("query") or node.args.get("unnest") or node.args.get("field") or not node.expressions:
            raise FilterError("in takes a list of one or more values, not a subquery")
        _same_kind([_operand(node.this), *(_operand(item) for item in node.expressions)])
    elif isinstance(node, exp.Like):
        _operand(node.this)
        if _operand(node.expression).kind != "string" or node.args.get("escape"):
            raise FilterError("like needs a quoted pattern")
    elif isinstance(node, exp.Between):
        _same_kind([_operand(node.this), _operand(node.args["low"]), _operand(node.args["high"])])
    elif isinstance(node, (exp.Column, exp.Dot, exp.Boolean)):
        _operand(node)
    else:
        raise FilterError(f"{node.sql(dialect='duckdb')!r} is not allowed: only names, values, comparisons, and/or/not, in, like, is null and between")


def _same_kind(operands: list[Operand]) -> None:
    kinds = {operand.kind for operand in operands}
    if "null" in kinds:
        raise FilterError("compare with null using 'is null' or 'is not null'")
    if "number" in kinds and kinds & {"string", "boolean"}:
        raise FilterError("a number is compared with text; quote both or neither")


def _operand(node: exp.Expression) -> Operand:
    if isinstance(node, exp.Neg) and isinstance(node.this, exp.Literal) and not node.this.is_string:
        return Operand("number")
    if isinstance(node, exp.Literal):
        return Operand("string" if node.is_string else "number")
    if isinstance(node, exp.Boolean):
        return Operand("boolean")
    if isinstance(node, exp.Null):
        return Operand("null")
    if isinstance(node, (exp.Column, exp.Dot)):
        if not all(isinstance(part, exp.Identifier) for part in _name_parts(node)):
            raise FilterError(f"{node.sql()!r} is not a plain name")
        return Operand("name")
    if type(node) in FUNCTIONS:
        arguments = [node.this, *node.expressions] if isinstance(node, exp.Coalesce) else [node.this]
        extra = {key for key, value in node.args.items() if value and key not in {"this", "expressions"}}
        if extra or any(argument is None for argument in arguments):
            raise FilterError(f"{node.sql()!r}: {node.key}() takes plain values only")
        for argument in arguments:
            if _operand(argument).kind == "null":
                raise FilterError(f"{node.key}() of null")
        return Operand("number" if FUNCTIONS[type(node)] == "number" else "function")
    if isinstance(node, exp.Func):
        allowed = ", ".join(sorted(f"{cls.key}()" for cls in FUNCTIONS))
        raise FilterError(f"function {node.sql()!r} is not allowed; allowed: {allowed}")
    raise FilterError(f"{node.sql(dialect='duckdb')!r} is not allowed: only names, values, comparisons, and/or/not, in, like, is null and between")


def _name_parts(node: exp.Expression) -> list[exp.Expression]:
    if isinstance(node, exp.Dot):
        return [*_name_parts(node.this), node.expression]
    if isinstance(node, exp.Column):
        return [node.args[key] for key in ("catalog", "db", "table", "this") if node.args.get(key) is not None]
    return [node]


def name_path(node: exp.Expression) -> list[str]:
    """A name's path as written: `context.page.path` -> ['context', 'page', 'path']."""
    return [part.name for part in _name_parts(node)]


def check_definitions(definitions: Any, where: str) -> list[str]:
    """Every problem with a list of trait definitions, each naming its trait."""
    if not isinstance(definitions, list) or not definitions:
        return [f"{where} must be a list of trait definitions"]
    problems: list[str] = []
    seen: set[str] = set()
    for number, definition in enumerate(definitions, start=1):
        if not isinstance(definition, dict):
            problems.append(f"{where}: computed trait #{number} must be a mapping with name and type")
            continue
        name = definition.get("name")
        label = f"{where}: computed trait {name!r}" if name else f"{where}: computed trait #{number}"
        problems += [f"{label}: {problem}" for problem in _definition_problems(definition, seen)]
        seen.add(str(name))
    return problems


def _definition_problems(definition: dict[str, Any], seen: set[str]) -> list[str]:
    problems = []
    name, kind, prop = definition.get("name"), definition.get("type"), definition.get("property")
    if not isinstance(name, str) or not NAME.match(name):
        problems.append("name must be a lower-case column name (letters, digits, underscores)")
    elif name in seen or name in {"profile_id", "computed_at"}:
        problems.append("the name is already taken; trait names must be unique and not profile_id or computed_at")
    if unknown := sorted(set(definition) - KEYS):
        problems.append(f"unknown key(s) {', '.join(unknown)}")
    if kind not in TYPES:
        problems.append(f"unknown type {kind!r}; use one of {', '.join(TYPES)}")
    elif TYPES[kind] and not prop:
        problems.append(f"type {kind} needs a property")
    elif not TYPES[kind] and prop:
        problems.append(f"type {kind} takes no property")
    if prop and (not isinstance(prop, str) or not PROPERTY.match(prop)):
        problems.append(f"property {prop!r} must be a dotted path of names")
    function = definition.get("function")
    if (kind == "aggregation") != (function is not None) or (function is not None and function not in {"sum", "avg", "min", "max"}):
        problems.append("an aggregation needs function: sum, avg, min or max" if kind == "aggregation" else "only an aggregation takes a function")
    event = definition.get("event")
    events = [event] if isinstance(event, str) else event
    if events is not None and (not isinstance(events, list) or not events or not all(isinstance(e, str) for e in events)):
        problems.append("event must be an event name or a list of them")
    message_type = definition.get("message_type")
    if message_type is not None and message_type not in MESSAGE_TYPES:
        problems.append(f"message_type must be one of {', '.join(sorted(MESSAGE_TYPES))}")
    window = definition.get("window_days")
    if window is not None and (not isinstance(window, int) or isinstance(window, bool) or window < 1):
        problems.append("window_days must be a whole number of days, at least 1")
    occurrences = definition.get("min_occurrences")
    if occurrences is not None and (kind != "most_frequent" or not isinstance(occurrences, int) or occurrences < 1):
        problems.append("min_occurrences must be a whole number of at least 1" if kind == "most_frequent" else "only most_frequent takes min_occurrences")
    text = definition.get("filter")
    if text is not None:
        try:
            parse_filter(text)
        except FilterError as error:
            problems.append(f"filter {text!r} is not a plain boolean expression: {error}")
    return problems


VAR = "corral_computed_traits"


def project_trait_definitions(project_dir: Path, dbt_vars: dict[str, Any] | None = None) -> Any:
    """The trait definitions a build will use: var corral_computed_traits as passed with --vars,
    else as dbt_project.yml sets it."""
    if dbt_vars and VAR in dbt_vars:
        return dbt_vars[VAR]
    project = yaml.safe_load((project_dir / "dbt_project.yml").read_text()) or {}
    return (project.get("vars") or {}).get(VAR)


def check_project_traits(project_dir: Path, dbt_vars: dict[str, Any] | None = None) -> None:
    """Raise TraitDefinitionError listing every bad computed trait the build would use."""
    where = f"var {VAR}" + (" (--vars)" if dbt_vars and VAR in dbt_vars else f" ({project_dir.name}/dbt_project.yml)")
    if problems := check_definitions(project_trait_definitions(project_dir, dbt_vars), where):
        raise TraitDefinitionError("\n".join(problems))
