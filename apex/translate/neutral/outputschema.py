"""A client's JSON schema fitted to the subset Anthropic's structured outputs take (``output_config.format``).

Anthropic compiles the schema into a grammar and answers 400 to what it cannot compile
(structured-outputs docs, "JSON Schema limitations"): an object that does not say
``additionalProperties: false``, numeric and string-length constraints, array constraints
other than ``minItems`` 0 or 1, string formats outside its list, ``oneOf``. OpenAI's
non-strict json_schema, Responses' ``strict: false`` and Gemini's ``responseSchema`` have no
such rules, so their schemas are fitted here the way the anthropic SDK's ``transform_schema``
(``anthropic/lib/_parse/_transform.py``) fits a pydantic model's for ``messages.parse``:
every object is closed, ``oneOf`` becomes ``anyOf``, and each keyword outside the SDK's
subset (what Anthropic refuses, and to be safe ``pattern`` and ``default``, which it takes
only in part) is removed and written into the node's ``description`` (``{"minimum": 1,
"maximum": 10}`` reads ``{minimum: 1, maximum: 10}``) so the model still sees the constraint
it is no longer held to. The walk follows properties, items, anyOf/oneOf/allOf and
$defs/definitions.

Where the SDK would raise or mislead, this differs: a type list (``["string", "null"]``,
what Gemini's ``nullable`` becomes) is kept, each of its types fitted; a node without a type
stays as it is; ``$schema``/``$id``/``$comment`` are dropped, not described. An object that
declares no properties but allows others (``{"type": "object"}``, a map) has no fitting:
closed, it could only ever be ``{}``. Then the answer is None, and the caller asks for JSON in
the system prompt instead.
What this module must not do: decide whether a model takes structured outputs (the capability table does).
"""

from __future__ import annotations

from typing import Final

import msgspec

__all__ = ["anthropic_output_schema"]

Json = dict[str, object]

# The string formats Anthropic takes (docs; the SDK's SupportedStringFormats).
_STRING_FORMATS: Final = frozenset({"date-time", "time", "date", "duration", "email", "hostname", "uri", "ipv4",
                                    "ipv6", "uuid"})
_UNSEEN: Final = ("$schema", "$id", "$comment")  # no meaning to the model: dropped, not described
_ENCODER: Final = msgspec.json.Encoder()


class _NoFit(Exception):
    """The schema has a node Anthropic cannot express without changing what it allows."""


def anthropic_output_schema(schema: Json) -> Json | None:
    """``schema`` fitted to Anthropic's structured outputs (a new dict; ``schema`` is not
    changed), or None when it allows objects no closed schema can describe."""
    try:
        fitted = _fit(schema)
    except _NoFit:
        return None
    assert isinstance(fitted, dict)
    return fitted


def _fit(node: object) -> object:
    if not isinstance(node, dict):
        return node  # a boolean schema, or a malformed one: the upstream judges it
    rest: Json = dict(node)
    out: Json = {}
    for key in ("$defs", "definitions"):
        if key in rest:
            defs = rest.pop(key)
            out[key] = {name: _fit(sub) for name, sub in defs.items()} if isinstance(defs, dict) else defs
    if "$ref" in rest:  # as the SDK: a reference keeps only its description
        out["$ref"] = rest.pop("$ref")
        if "description" in rest:
            out["description"] = rest["description"]
        return out
    for key in _UNSEEN:
        rest.pop(key, None)
    kind = rest.pop("type", None)
    if kind is None and "properties" in rest:
        kind = "object"  # properties without a type: an object is meant
    enum = rest.get("enum")
    if isinstance(enum, list) and enum and all(_primitive(v) for v in enum):
        out["enum"] = rest.pop("enum")
    if "const" in rest and _primitive(rest["const"]):
        out["const"] = rest.pop("const")
    literal = "enum" in out or "const" in out  # the values say it all; the SDK drops the type beside them
    for key, name in (("anyOf", "anyOf"), ("oneOf", "anyOf"), ("allOf", "allOf")):
        variants = rest.get(key)
        if isinstance(variants, list):
            out[name] = [_fit(v) for v in variants]
            del rest[key]
            break  # a second combinator is left over, described (Anthropic takes no anyOf beside allOf)
    else:
        if kind is not None and not literal:
            out["type"] = kind
    for key in ("description", "title"):
        if key in rest:
            out[key] = rest.pop(key)
    # A type that is neither a name nor a list of names (a client's malformed schema) names no
    # kind here; the upstream judges it.
    kinds: set[str] = (set() if literal else {k for k in kind if isinstance(k, str)} if isinstance(kind, list)
                       else {kind} if isinstance(kind, str) else set())
    if "object" in kinds:
        properties = rest.pop("properties", None)
        others = rest.pop("additionalProperties", None)
        if not properties and others is not False:
            raise _NoFit  # free-form or a map: closed, only {} would be allowed
        out["properties"] = ({name: _fit(sub) for name, sub in properties.items()}
                             if isinstance(properties, dict) else {})
        out["additionalProperties"] = False
        if "required" in rest:
            out["required"] = rest.pop("required")
    if "string" in kinds and isinstance(rest.get("format"), str) and rest["format"] in _STRING_FORMATS:
        out["format"] = rest.pop("format")
    if "array" in kinds:
        if isinstance(rest.get("items"), dict):
            out["items"] = _fit(rest.pop("items"))
        least = rest.get("minItems")
        if type(least) is int and least in (0, 1):
            out["minItems"] = rest.pop("minItems")
    if rest:  # what Anthropic does not take, told to the model instead
        said = ", ".join(f"{key}: {_ENCODER.encode(value).decode()}" for key, value in rest.items())
        description = out.get("description")
        out["description"] = (f"{description}\n\n" if isinstance(description, str) else "") + "{" + said + "}"
    return out


def _primitive(value: object) -> bool:
    return value is None or isinstance(value, (str, int, float, bool))
