"""The compiled plan predicate (loaders/schema_predicate.py) says valid exactly when jsonschema
does, on random schemas of its keyword subset and random JSON values; formats as fastjsonschema."""

from __future__ import annotations

from typing import Any

import fastjsonschema
import jsonschema
import pytest
from hypothesis import HealthCheck, assume, example, given, settings
from hypothesis import strategies as st

from loaders.protocols import DEFAULT_DIR, load_plan
from loaders.schema_predicate import compile_predicate, json_equal

KEYS = ["a", "b", "c", "on"]
scalars = st.one_of(
    st.none(), st.booleans(), st.integers(-3, 3), st.sampled_from([0.0, 1.0, -1.5, 2.5, 1e300]),
    st.sampled_from(["", "a", "ab", "abc", "ABC", "abc\n", "x y", "2026-10-01T12:00:00Z", "https://x.example/p", "ü"]),
)
values = st.recursive(
    scalars,
    lambda inner: st.one_of(st.lists(inner, max_size=4), st.dictionaries(st.sampled_from(KEYS), inner, max_size=4)),
    max_leaves=12,
)
TYPES = ["string", "number", "integer", "boolean", "null", "object", "array"]


def schemas(with_refs: bool = True) -> st.SearchStrategy[Any]:
    def extend(inner: st.SearchStrategy[Any]) -> st.SearchStrategy[Any]:
        keyword = st.one_of(
            st.builds(lambda t: {"type": t}, st.one_of(st.sampled_from(TYPES), st.lists(st.sampled_from(TYPES), min_size=1, max_size=3, unique=True))),
            st.builds(lambda e: {"enum": e}, st.lists(scalars, min_size=1, max_size=4)),
            st.builds(lambda c: {"const": c}, values),
            st.builds(lambda p, r, a: {"properties": p, "required": r, **({"additionalProperties": a} if a is not None else {})},
                      st.dictionaries(st.sampled_from(KEYS), inner, max_size=3), st.lists(st.sampled_from(KEYS), max_size=2, unique=True),
                      st.one_of(st.none(), st.booleans(), inner)),
            st.builds(lambda i, lo, hi: {"items": i, **lo, **hi}, inner,
                      st.sampled_from([{}, {"minItems": 1}]), st.sampled_from([{}, {"maxItems": 2}])),
            st.builds(lambda lo, hi, pat: {**lo, **hi, **pat}, st.sampled_from([{}, {"minLength": 1}, {"minLength": 3}]),
                      st.sampled_from([{}, {"maxLength": 2}]), st.sampled_from([{}, {"pattern": "^[a-z]+$"}, {"pattern": "b"}, {"pattern": "^A"}])),
            st.builds(lambda k, n: {k: n}, st.sampled_from(["minimum", "maximum", "exclusiveMinimum", "exclusiveMaximum"]),
                      st.sampled_from([-1, 0, 1, 1.5])),
            st.builds(lambda n: {"multipleOf": n}, st.sampled_from([1, 2, 3])),
            st.builds(lambda k, subs: {k: subs}, st.sampled_from(["allOf", "anyOf", "oneOf"]), st.lists(inner, min_size=1, max_size=3)),
            st.builds(lambda sub: {"not": sub}, inner),
        )
        return st.builds(lambda parts: {k: v for part in parts for k, v in part.items()}, st.lists(keyword, min_size=1, max_size=3))

    base = st.one_of(st.just({}), st.booleans(), st.sampled_from([{"type": t} for t in TYPES]), *([st.just({"$ref": "#/definitions/d"})] if with_refs else []))
    return st.recursive(base, extend, max_leaves=8)


@st.composite
def schema_with_definitions(draw: st.DrawFn) -> dict[str, Any]:
    root = draw(schemas())
    definition = draw(schemas(with_refs=False))
    return {"definitions": {"d": definition}, "allOf": [root]}


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow, HealthCheck.filter_too_much])
@given(schema_with_definitions(), st.lists(values, min_size=1, max_size=8))
@example({"type": "integer"}, [1.0, 1.5, True, 2])
@example({"enum": [1, "a"]}, [True, 1.0, "a", [1]])
@example({"const": [1, {"a": False}]}, [[1.0, {"a": False}], [True, {"a": 0}]])
@example({"pattern": "^[a-z]+$"}, ["abc\n", "abc", 3])
@example({"required": ["a"], "additionalProperties": False, "properties": {"a": {"type": "number"}}}, [{"a": 1}, {"a": 1, "b": 2}, {}, []])
@example({"multipleOf": 2}, [4, 4.0, 3, 2.5, True])
def test_the_predicate_agrees_with_jsonschema(schema: dict[str, Any], instances: list[Any]) -> None:
    try:
        jsonschema.Draft7Validator.check_schema(schema)
    except jsonschema.SchemaError:
        assume(False)
    valid = compile_predicate(schema)
    assert valid is not None, "every keyword drawn is in the compiled subset"
    reference = jsonschema.Draft7Validator(schema)
    for instance in instances:
        assert valid(instance) == reference.is_valid(instance), (schema, instance, getattr(valid, "source", ""))


@pytest.mark.parametrize("fmt", ["date-time", "email", "uri", "ipv4", "date"])
@given(st.sampled_from(["2026-10-01T12:00:00Z", "2026-10-01", "a@b.co", "@x", "https://x.example/p", "no scheme", "10.0.0.1", "999.1.1.1", "", 3]))
def test_formats_are_fastjsonschema_s(fmt: str, value: Any) -> None:
    schema = {"type": "object", "properties": {"v": {"format": fmt}}}
    valid = compile_predicate(schema)
    assert valid is not None
    compiled = fastjsonschema.compile(schema)
    try:
        compiled({"v": value})
        expected = True
    except fastjsonschema.JsonSchemaValueException:
        expected = False
    assert valid({"v": value}) == expected


def test_keywords_outside_the_subset_fall_back_to_fastjsonschema(tmp_path: Any) -> None:
    for schema in ({"patternProperties": {"^x": {"type": "string"}}}, {"if": {"type": "string"}, "then": {"minLength": 1}},
                   {"dependencies": {"a": ["b"]}}, {"format": "custom-thing"}, {"multipleOf": 0.5}):
        assert compile_predicate(schema) is None, schema
    plan = tmp_path / "web.yml"
    plan.write_text("mode: block\nevents:\n  E:\n    properties:\n      patternProperties: {'^x_': {type: integer}}\n")
    compiled = load_plan(plan)
    assert compiled.check({"type": "track", "event": "E", "properties": {"x_a": 1}}) is None
    verdict = compiled.check({"type": "track", "event": "E", "properties": {"x_a": "1"}})
    assert verdict is not None and verdict.blocked and verdict.violations[0].path == "properties.x_a"


def test_the_example_plan_compiles_to_predicates() -> None:
    plan = load_plan(DEFAULT_DIR / "_example.yml")
    checkers = [*plan.events.values(), *plan.sections.values(), plan.common]
    assert all(hasattr(c.valid, "source") for c in checkers if c is not None), "no schema of the example needs the fallback"


def test_json_equality_is_json_schema_s() -> None:
    assert json_equal(1, 1.0) and not json_equal(True, 1) and not json_equal(0, False)
    assert json_equal({"a": [1, 2.0]}, {"a": [1.0, 2]}) and not json_equal({"a": 1}, {"a": 1, "b": 2})
    assert not json_equal("1", 1) and json_equal(None, None)
