"""JSON schemas fitted to Anthropic's structured outputs (apex.translate.neutral.outputschema)."""

from __future__ import annotations

import pytest

import copy
from typing import Any, Literal

from anthropic.lib._parse._transform import transform_schema
from pydantic import BaseModel, Field

from apex.translate.neutral.outputschema import anthropic_output_schema


class Inner(BaseModel):
    x: int = Field(ge=0, le=9, description="an x")
    tags: list[str] = Field(min_length=1, max_length=3)


class Outer(BaseModel):
    city: str = Field(max_length=20, pattern="^[A-Z]")
    when: str = Field(json_schema_extra={"format": "date"})
    inner: Inner | None = None
    kind: Literal["a", "b"]
    many: list[Inner]


def fit(schema: dict[str, Any]) -> Any:
    """``anthropic_output_schema``, typed loosely for indexing into the answer."""
    return anthropic_output_schema(schema)


def _without_descriptions(node: Any) -> Any:
    if isinstance(node, dict):
        return {k: _without_descriptions(v) for k, v in node.items() if k != "description"}
    if isinstance(node, list):
        return [_without_descriptions(v) for v in node]
    return node


def test_a_pydantic_schema_is_fitted_as_the_anthropic_sdk_fits_it() -> None:
    """The same schema as the SDK's transform_schema (the reference): objects closed, $defs,
    refs, anyOf, enums, formats; the descriptions differ only in how values are written."""
    schema = Outer.model_json_schema()
    before = copy.deepcopy(schema)
    fitted = fit(schema)
    assert schema == before  # the client's schema is not changed in place
    assert _without_descriptions(fitted) == _without_descriptions(transform_schema(schema))
    assert fitted is not None
    x = fitted["$defs"]["Inner"]["properties"]["x"]
    assert x == {"type": "integer", "title": "X", "description": "an x\n\n{maximum: 9, minimum: 0}"}
    assert fitted["properties"]["city"]["description"] == '{maxLength: 20, pattern: "^[A-Z]"}'


def test_every_object_is_closed_through_items_combinators_and_definitions() -> None:
    schema = {"type": "object", "properties": {
        "list": {"type": "array", "items": {"type": "object", "properties": {"a": {"type": "string"}}}},
        "either": {"oneOf": [{"type": "object", "properties": {"b": {"type": "integer"}}}, {"type": "null"}]},
        "both": {"allOf": [{"$ref": "#/definitions/D"}]}},
        "definitions": {"D": {"properties": {"c": {"type": "boolean"}}, "additionalProperties": True}}}
    fitted = fit(schema)
    assert fitted is not None
    props = fitted["properties"]
    assert fitted["additionalProperties"] is False
    assert props["list"]["items"]["additionalProperties"] is False
    assert props["either"] == {"anyOf": [{"type": "object", "properties": {"b": {"type": "integer"}},
                                          "additionalProperties": False}, {"type": "null"}]}
    assert props["both"] == {"allOf": [{"$ref": "#/definitions/D"}]}
    assert fitted["definitions"]["D"] == {"type": "object", "properties": {"c": {"type": "boolean"}},
                                          "additionalProperties": False}


def test_what_anthropic_refuses_is_told_in_the_description() -> None:
    schema = {"type": "object", "properties": {
        "n": {"type": "number", "description": "N.", "exclusiveMinimum": 0, "multipleOf": 0.5},
        "s": {"type": "string", "format": "color", "minLength": 2},
        "l": {"type": "array", "items": {"type": "integer"}, "minItems": 2, "maxItems": 5, "uniqueItems": True}},
        "$schema": "http://json-schema.org/draft-07/schema#"}
    fitted = fit(schema)
    assert fitted is not None and "$schema" not in fitted and "description" not in fitted
    props = fitted["properties"]
    assert props["n"] == {"type": "number", "description": "N.\n\n{exclusiveMinimum: 0, multipleOf: 0.5}"}
    assert props["s"] == {"type": "string", "description": '{format: "color", minLength: 2}'}
    assert props["l"] == {"type": "array", "items": {"type": "integer"},
                          "description": "{minItems: 2, maxItems: 5, uniqueItems: true}"}
    kept = fit({"type": "array", "items": {"type": "string", "format": "uuid"}, "minItems": 1})
    assert kept == {"type": "array", "items": {"type": "string", "format": "uuid"}, "minItems": 1}


def test_a_fitted_schema_is_unchanged_and_type_lists_are_kept() -> None:
    """Claude Code's own schema goes as it came; Gemini's nullable (a type list) keeps its list."""
    closed = {"type": "object", "properties": {"title": {"type": "string"}}, "required": ["title"],
              "additionalProperties": False}
    assert fit(closed) == closed
    nullable = {"type": ["object", "null"], "properties": {"d": {"type": ["string", "null"], "format": "date"}}}
    assert fit(nullable) == {
        "type": ["object", "null"], "properties": {"d": {"type": ["string", "null"], "format": "date"}},
        "additionalProperties": False}


def test_objects_without_declared_properties_have_no_fitting() -> None:
    """Closed, a free-form object or a map could only be ``{}``: None, and the caller asks in the prompt."""
    assert fit({"type": "object"}) is None
    assert fit({"type": "object", "properties": {
        "scores": {"type": "object", "additionalProperties": {"type": "integer"}}}}) is None
    assert fit({"type": "object", "properties": {}, "additionalProperties": False}) == {
        "type": "object", "properties": {}, "additionalProperties": False}  # the client asked for {} itself


@pytest.mark.parametrize("schema", [
    {"type": {"a": 1}, "properties": {"x": {"type": "string"}}},
    {"type": "object", "properties": {"x": {"type": "string", "format": ["email"]}}, "additionalProperties": False},
    {"type": "object", "properties": {"x": {"type": ["string", {"bad": 1}], "format": {"f": 1}}}},
])
def test_malformed_types_and_formats_are_no_crash(schema: dict[str, object]) -> None:
    """A type that is an object, or a format that is a list, raised TypeError (unhashable):
    the client got a 500. The fitter leaves such values to the upstream to judge."""
    fitted = anthropic_output_schema(schema)
    assert fitted is None or isinstance(fitted, dict)
