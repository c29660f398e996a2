"""Conditions over event fields: the one parser behind computed traits' filters
(dagster_defs/traits.py, twin of the dbt macro safe_filter) and event syncs' destination filters
(reverse_etl/filters.py). A condition must be a plain boolean expression: names (event
properties and fields, `context.` / `traits.` paths), literals, comparisons, and / or / not, in,
like, is null, between, and the functions lower, upper, trim, length, coalesce; anything else is
refused with a FilterError saying what and where."""

from __future__ import annotations

from dataclasses import dataclass

import sqlglot
from sqlglot import exp
from sqlglot.errors import ParseError, TokenError
from sqlglot.tokens import TokenType

FUNCTIONS: dict[type[exp.Expression], str] = {exp.Lower: "string", exp.Upper: "string", exp.Trim: "string", exp.Length: "number", exp.Coalesce: "string"}
COMPARISONS = (exp.EQ, exp.NEQ, exp.GT, exp.GTE, exp.LT, exp.LTE)
NAME_TOKENS = {TokenType.VAR, TokenType.IDENTIFIER}
VALUE_TOKENS = NAME_TOKENS | {TokenType.STRING, TokenType.NUMBER, TokenType.TRUE, TokenType.FALSE, TokenType.NULL}


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
    elif isinstance(node, (exp.Not, exp.Paren)):
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
