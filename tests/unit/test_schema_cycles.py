"""`schema_cycles.ref_cycle`: which structured-output schemas no value can match."""

from __future__ import annotations

from typing import Any

import pytest

from orchestrator.schema_cycles import ref_cycle


@pytest.mark.parametrize(
    ("schema", "circle"),
    [
        ({"$ref": "#"}, "# -> #"),
        ({"$ref": "#", "type": "object"}, "# -> #"),
        ({"$defs": {"a": {"$ref": "#/$defs/a"}}, "$ref": "#/$defs/a"}, "#/$defs/a -> #/$defs/a"),
        ({"definitions": {"a": {"$ref": "#/definitions/b"}, "b": {"$ref": "#"}}, "$ref": "#/definitions/a"}, "#"),
        ({"allOf": [{"type": "string"}, {"$ref": "#"}]}, "# -> #/allOf/1 -> #"),
        ({"type": "object", "properties": {"a": {"$ref": "#/properties/a"}}}, "#/properties/a -> #/properties/a"),
        ({"$defs": {"a~b": {"$ref": "#/$defs/a~0b"}}, "$ref": "#/$defs/a~0b"}, "#/$defs/a~0b"),
    ],
)
def test_a_circle_on_one_value_is_named(schema: dict[str, Any], circle: str) -> None:
    why = ref_cycle(schema)
    assert why is not None and circle in why


@pytest.mark.parametrize(
    "schema",
    [
        {"type": "object"},
        {"type": "object", "properties": {"kids": {"type": "array", "items": {"$ref": "#"}}}},  # a tree
        {"$defs": {"n": {"type": "object", "properties": {"next": {"$ref": "#/$defs/n"}}}}, "$ref": "#/$defs/n"},
        {"$defs": {"a": {"$ref": "#/$defs/b"}, "b": {"$ref": "#/$defs/a"}}, "type": "object"},  # never used
        {"anyOf": [{"type": "string"}, {"$ref": "#"}]},  # one branch ends
        {"$ref": "https://example.com/s.json#"},  # not ours to follow
        {"$ref": "#/$defs/missing"},
        {"$ref": 3},
    ],
)
def test_a_schema_some_value_matches_passes(schema: dict[str, Any]) -> None:
    assert ref_cycle(schema) is None


def test_a_long_circle_is_found_quickly_and_shown_short() -> None:
    defs: dict[str, Any] = {f"a{i}": {"$ref": f"#/$defs/a{i + 1}"} for i in range(5000)}
    defs["a5000"] = {"$ref": "#/$defs/a0"}
    why = ref_cycle({"$defs": defs, "$ref": "#/$defs/a0"})
    assert why is not None and "..." in why and len(why) < 300
