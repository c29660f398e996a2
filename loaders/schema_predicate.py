"""A JSON Schema (draft-07) compiled to one Python predicate: `valid(value) -> bool`.

The collector asks one question of every message a plan covers — does it pass? — and needs the
answer in a few microseconds; which rules failed is asked only of the few that do not (jsonschema
lists them, loaders/protocols.py). So this compiles a schema into straight-line Python source that
returns False at the first failure, with set operations for `required` and
`additionalProperties: false`, exact type tests, and one function per `$ref`'d definition. About
twice as fast as fastjsonschema's validator on the plans we see (which also builds error details
it will not need here).

Keywords: type, enum, const, properties, required, additionalProperties, items (one schema),
minItems, maxItems, minLength, maxLength, pattern, format (fastjsonschema's regular expressions),
minimum, maximum, exclusiveMinimum, exclusiveMaximum, multipleOf, allOf, anyOf, oneOf, not, $ref
into `definitions` / `$defs`, and annotations. `compile_predicate` returns None for a schema
using anything else (patternProperties, dependencies, if/then/else, ...): the caller uses
fastjsonschema for it. Semantics follow jsonschema's (a test holds them to it): `integer` takes
1.0, `true` is not `1` in enum/const, `pattern` is `re.search` as written.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from typing import Any

from fastjsonschema.draft07 import CodeGeneratorDraft07

ANNOTATIONS = {"title", "description", "$comment", "examples", "default", "readOnly", "writeOnly", "deprecated", "$schema"}
CONTAINERS = {"definitions", "$defs"}
FORMATS: dict[str, str] = dict(CodeGeneratorDraft07.FORMAT_REGEXS)
TYPE_TESTS = {
    "string": "{c} is str",
    "number": "({c} is int or {c} is float)",
    "integer": "({c} is int or ({c} is float and {v}.is_integer()))",
    "boolean": "{c} is bool",
    "null": "{v} is None",
    "object": "{c} is dict",
    "array": "{c} is list",
}


class Unsupported(Exception):
    pass


def json_equal(a: Any, b: Any) -> bool:
    """Equality as JSON Schema means it: 1 == 1.0, but true is not 1."""
    ca, cb = a.__class__, b.__class__
    if ca is bool or cb is bool:
        return ca is cb and a == b
    if (ca is int or ca is float) and (cb is int or cb is float):
        return a == b
    if ca is dict and cb is dict:
        return a.keys() == b.keys() and all(json_equal(a[k], b[k]) for k in a)
    if ca is list and cb is list:
        return len(a) == len(b) and all(json_equal(x, y) for x, y in zip(a, b, strict=True))
    return ca is cb and a == b


def _in(value: Any, members: tuple[Any, ...]) -> bool:
    return any(json_equal(value, member) for member in members)


class _Compiler:
    def __init__(self, root: dict[str, Any]) -> None:
        self.root = root
        self.namespace: dict[str, Any] = {"_MISSING": _MISSING, "_in": _in, "_json_equal": json_equal}
        self.functions: list[str] = []
        self.refs: dict[str, str] = {}
        self.counter = 0

    def name(self, prefix: str) -> str:
        self.counter += 1
        return f"{prefix}{self.counter}"

    def constant(self, value: Any, prefix: str = "K") -> str:
        name = self.name(prefix)
        self.namespace[name] = value
        return name

    def function(self, schema: Any) -> str:
        """A function `name(v) -> bool` for `schema`."""
        name = self.name("_s")
        body: list[str] = []
        self.emit(schema, "v", body, 1)
        self.functions.append(f"def {name}(v):\n" + "".join(body) + "    return True\n")
        return name

    def ref(self, pointer: str) -> str:
        if pointer not in self.refs:
            parts = pointer.split("/")
            if len(parts) != 3 or parts[0] != "#" or parts[1] not in CONTAINERS:
                raise Unsupported(f"$ref {pointer}")
            target = (self.root.get(parts[1]) or {}).get(parts[2].replace("~1", "/").replace("~0", "~"))
            if target is None:
                raise Unsupported(f"$ref {pointer} not found")
            self.refs[pointer] = name = self.name("_r")
            body: list[str] = []
            self.emit(target, "v", body, 1)
            self.functions.append(f"def {name}(v):\n" + "".join(body) + "    return True\n")
        return self.refs[pointer]

    def emit(self, schema: Any, v: str, out: list[str], depth: int) -> None:
        """Statements that `return False` when the value in variable `v` breaks `schema`."""
        pad = "    " * depth
        if _anything(schema):
            return
        if schema is False:
            out.append(f"{pad}return False\n")
            return
        if not isinstance(schema, dict):
            raise Unsupported(repr(schema))
        if "$ref" in schema:  # draft-07: the keywords beside a $ref are ignored
            out.append(f"{pad}if not {self.ref(schema['$ref'])}({v}): return False\n")
            return
        unknown = [k for k in schema if k not in KNOWN and k not in ANNOTATIONS and k not in CONTAINERS and not k.startswith("x-")]
        if unknown:
            raise Unsupported(", ".join(unknown))
        c = self.name("c")
        out.append(f"{pad}{c} = {v}.__class__\n")
        types = None
        if "type" in schema:
            types = set(schema["type"]) if isinstance(schema["type"], list) else {schema["type"]}
            test = " or ".join(TYPE_TESTS[t].format(c=c, v=v) for t in sorted(types))
            out.append(f"{pad}if not ({test}): return False\n")
        if "enum" in schema:
            members = schema["enum"]
            if members and all(m.__class__ is str for m in members):
                out.append(f"{pad}if {c} is not str or {v} not in {self.constant(frozenset(members))}: return False\n")
            else:
                out.append(f"{pad}if not _in({v}, {self.constant(tuple(members))}): return False\n")
        if "const" in schema:
            out.append(f"{pad}if not _json_equal({v}, {self.constant(schema['const'])}): return False\n")
        for sub in schema.get("allOf", []):
            self.emit(sub, v, out, depth)
        if "anyOf" in schema:
            names = [self.function(sub) for sub in schema["anyOf"]]
            out.append(f"{pad}if not ({' or '.join(f'{n}({v})' for n in names)}): return False\n")
        if "oneOf" in schema:
            names = [self.function(sub) for sub in schema["oneOf"]]
            out.append(f"{pad}if ({' + '.join(f'bool({n}({v}))' for n in names)}) != 1: return False\n")
        if "not" in schema:
            out.append(f"{pad}if {self.function(schema['not'])}({v}): return False\n")
        # Keywords of one JSON type apply only to values of that type: with `type` known, a guard
        # that always holds is left out, and keywords of a type the value cannot have are skipped.
        for kind, emit in (("string", self._strings), ("number", self._numbers), ("object", self._objects), ("array", self._arrays)):
            possible = types is None or kind in types or (kind == "number" and "integer" in types)
            if possible:
                sure = types is not None and len(types) == 1 and (kind in types or (kind == "number" and "integer" in types))
                emit(schema, v, "True" if sure else TYPE_TESTS[kind].format(c=c, v=v), out, depth)

    def _strings(self, schema: dict[str, Any], v: str, guard: str, out: list[str], depth: int) -> None:
        checks = []
        if "minLength" in schema:
            checks.append(f"len({v}) < {int(schema['minLength'])}")
        if "maxLength" in schema:
            checks.append(f"len({v}) > {int(schema['maxLength'])}")
        if "pattern" in schema:
            checks.append(f"not {self.constant(re.compile(schema['pattern']).search, 'P')}({v})")
        if "format" in schema and schema["format"] in FORMATS:
            checks.append(f"not {self.constant(re.compile(FORMATS[schema['format']]).match, 'F')}({v})")
        elif "format" in schema:
            raise Unsupported(f"format {schema['format']}")
        if checks:
            out.append(f"{'    ' * depth}if {_and(guard, ' or '.join(checks))}: return False\n")

    def _numbers(self, schema: dict[str, Any], v: str, guard: str, out: list[str], depth: int) -> None:
        checks = []
        for key, op in (("minimum", "<"), ("maximum", ">"), ("exclusiveMinimum", "<="), ("exclusiveMaximum", ">=")):
            if key in schema:
                checks.append(f"{v} {op} {self.constant(schema[key])}")
        if "multipleOf" in schema:
            divisor = schema["multipleOf"]
            if not isinstance(divisor, int) or isinstance(divisor, bool):
                raise Unsupported("multipleOf with a fraction")  # float remainders: jsonschema's own rules
            checks.append(f"{v} % {divisor} != 0")
        if checks:
            out.append(f"{'    ' * depth}if {_and(guard, ' or '.join(checks))}: return False\n")

    def _objects(self, schema: dict[str, Any], v: str, guard: str, out: list[str], depth: int) -> None:
        required, properties = schema.get("required"), schema.get("properties") or {}
        extra = schema.get("additionalProperties", True)
        level = depth if guard == "True" else depth + 1
        inner = "    " * level
        body: list[str] = []
        if required:
            body.append(f"{inner}if not {self.constant(frozenset(required))} <= {v}.keys(): return False\n")
        if extra is False:
            body.append(f"{inner}if not {v}.keys() <= {self.constant(frozenset(properties))}: return False\n")
        elif not _anything(extra):
            key, item = self.name("k"), self.name("x")
            body.append(f"{inner}for {key}, {item} in {v}.items():\n")
            body.append(f"{inner}    if {key} in {self.constant(frozenset(properties))}: continue\n")
            self.emit(extra, item, body, level + 1)
        for name, sub in properties.items():
            checks: list[str] = []
            item = self.name("x")
            self.emit(sub, item, checks, level + 1)
            if checks:
                body.append(f"{inner}if {name!r} in {v}:\n{inner}    {item} = {v}[{name!r}]\n")
                body.extend(checks)
        if body:
            if guard != "True":
                out.append(f"{'    ' * depth}if {guard}:\n")
            out.extend(body)

    def _arrays(self, schema: dict[str, Any], v: str, guard: str, out: list[str], depth: int) -> None:
        items = schema.get("items", True)
        if isinstance(items, list):
            raise Unsupported("items as a list")
        checks = []
        if "minItems" in schema:
            checks.append(f"len({v}) < {int(schema['minItems'])}")
        if "maxItems" in schema:
            checks.append(f"len({v}) > {int(schema['maxItems'])}")
        pad = "    " * depth
        if checks:
            out.append(f"{pad}if {_and(guard, ' or '.join(checks))}: return False\n")
        if not _anything(items):
            item = self.name("x")
            if guard == "True":
                out.append(f"{pad}for {item} in {v}:\n")
                inner = depth + 1
            else:
                out.append(f"{pad}if {guard}:\n{pad}    for {item} in {v}:\n")
                inner = depth + 2
            body: list[str] = []
            self.emit(items, item, body, inner)
            out.extend(body or [f"{'    ' * inner}pass\n"])


_MISSING = object()


def _and(guard: str, test: str) -> str:
    return f"({test})" if guard == "True" else f"{guard} and ({test})"


def _anything(schema: Any) -> bool:
    """True for a schema every value passes (true, {}, or annotations only)."""
    return schema is True or (isinstance(schema, dict) and all(k in ANNOTATIONS or k.startswith("x-") for k in schema))
KNOWN = {
    "type", "enum", "const", "properties", "required", "additionalProperties", "items", "minItems", "maxItems",
    "minLength", "maxLength", "pattern", "format", "minimum", "maximum", "exclusiveMinimum", "exclusiveMaximum",
    "multipleOf", "allOf", "anyOf", "oneOf", "not", "$ref",
}


def compile_predicate(schema: Any) -> Callable[[Any], bool] | None:
    """`valid(value) -> bool` for `schema` (already checked against the draft-07 meta-schema),
    or None when it uses a keyword outside the subset above."""
    if not isinstance(schema, (dict, bool)):
        return None
    compiler = _Compiler(schema if isinstance(schema, dict) else {})
    try:
        root = compiler.function(schema)
    except Unsupported:
        return None
    exec(compile("\n".join(compiler.functions), "<tracking plan>", "exec"), compiler.namespace)  # noqa: S102 - our own generated code
    function: Callable[[Any], bool] = compiler.namespace[root]
    function.source = "\n".join(compiler.functions)  # type: ignore[attr-defined]
    return function
