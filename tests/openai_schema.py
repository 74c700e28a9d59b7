"""Validate response bodies against the official OpenAI OpenAPI spec in ../shared.

The spec is OpenAPI 3.1 but still uses 3.0's `nullable: true` in places; here
that is read as "null is also allowed". One relaxation is documented: the
spec's `CreateCompletionResponse` (shared by streamed and whole text
completions) has a non-nullable `finish_reason`, while OpenAI streams
`finish_reason: null` in every chunk but the last; stream chunks of text
completions are validated with `finish_reason` nullable.
"""

from __future__ import annotations

import copy
import json
from functools import cache
from pathlib import Path
from typing import Any

import jsonschema

SPEC = Path(__file__).resolve().parents[1].parent / "shared" / "openai-openapi.json"


def _nullable_to_31(node: Any) -> Any:
    if isinstance(node, dict):
        out = {k: _nullable_to_31(v) for k, v in node.items()}
        if out.pop("nullable", False):
            return {"anyOf": [out, {"type": "null"}]}
        return out
    if isinstance(node, list):
        return [_nullable_to_31(v) for v in node]
    return node


@cache
def _spec() -> dict[str, Any]:
    spec = json.loads(SPEC.read_text())
    return {"components": _nullable_to_31(spec["components"])}


@cache
def _validator(name: str, completion_stream: bool = False) -> jsonschema.protocols.Validator:
    spec = copy.deepcopy(_spec()) if completion_stream else _spec()
    if completion_stream:
        choice = spec["components"]["schemas"]["CreateCompletionResponse"]["properties"]["choices"]["items"]
        choice["properties"]["finish_reason"] = {"anyOf": [choice["properties"]["finish_reason"], {"type": "null"}]}
    schema = {"$ref": f"#/components/schemas/{name}", **spec}
    cls = jsonschema.validators.validator_for(schema, default=jsonschema.Draft202012Validator)
    return cls(schema)


def validate(name: str, body: Any, *, completion_stream: bool = False) -> None:
    """Raise `jsonschema.ValidationError` unless `body` is a valid `name` object."""
    _validator(name, completion_stream).validate(body)
