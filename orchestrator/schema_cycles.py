"""A structured-output schema no answer can match: one whose `$ref`s go round in a circle.

`{"$ref": "#"}` says "a value that matches this schema", and nothing more: following it never
reaches a type, so no JSON value matches, and the grammar the local engine builds from it
(`root ::= root`) allows only the empty answer — a 200 with empty content, a wrong answer. OpenAI
refuses such a schema (its root must be an object; recursion must go through a property or an
array's items), so here it is a 400 naming the field, whichever route would have served it.

A circle counts only where it stays on the same value — through a `$ref`, or an `allOf` member (each
applies to the value itself) — and only where the schema reaches it (an unused definition is no
answer's concern). A `$ref` under `properties` or `items` is recursion that descends (a tree),
which is fine. Only local references (`#`, `#/…`) are followed; others are the route's to judge.
"""

from __future__ import annotations

from typing import Any
from urllib.parse import unquote

_DEFINITIONS = ("$defs", "definitions")  # reached only through a `$ref`


def ref_cycle(schema: dict[str, Any]) -> str | None:
    """Why `schema` matches no value (a circle of references on one value, as pointers), or None."""
    edges = _same_value_edges(schema)
    explored: set[str] = set()  # no circle runs through these
    for start in edges:
        path, on_path, branches = [start], {start}, [iter(edges[start])]
        while path:
            step = next(branches[-1], None)
            if step is None:
                explored.add(path[-1])
                on_path.remove(path.pop())
                branches.pop()
            elif step in on_path:
                circle = [*path[path.index(step) :], step]
                shown = " -> ".join(circle if len(circle) <= 8 else [*circle[:4], "...", *circle[-2:]])
                return f"its references go round in a circle ({shown})"
            elif step not in explored:
                path.append(step)
                on_path.add(step)
                branches.append(iter(edges.get(step, ())))
    return None


def _same_value_edges(schema: dict[str, Any]) -> dict[str, list[str]]:
    """For each subschema the schema reaches (by JSON pointer), those that apply to the same value:
    its local `$ref`'s target and its `allOf` members."""
    edges: dict[str, list[str]] = {}
    seen = {"#"}
    stack: list[tuple[str, Any]] = [("#", schema)]
    while stack:
        pointer, node = stack.pop()
        children: list[tuple[str, Any]] = []
        if isinstance(node, list):
            children = [(f"{pointer}/{i}", v) for i, v in enumerate(node)]
        elif isinstance(node, dict):
            children = [(f"{pointer}/{_escape(str(k))}", v) for k, v in node.items() if k not in _DEFINITIONS]
            targets = [f"{pointer}/allOf/{i}" for i, m in enumerate(_list(node.get("allOf"))) if isinstance(m, dict)]
            if isinstance(ref := node.get("$ref"), str) and (target := _resolve(schema, ref)) is not None:
                targets.append(target[0])
                children.append(target)
            if targets:
                edges[pointer] = targets
        for child in children:
            if child[0] not in seen:
                seen.add(child[0])
                stack.append(child)
    return edges


def _resolve(schema: dict[str, Any], ref: str) -> tuple[str, Any] | None:
    """What a local `$ref` names in `schema` (its canonical JSON pointer, and it), or None (not
    local, or nothing there)."""
    if not ref.startswith("#"):
        return None
    node: Any = schema
    parts = [unquote(p).replace("~1", "/").replace("~0", "~") for p in ref[1:].split("/")[1:]]
    for part in parts:
        if isinstance(node, dict) and part in node:
            node = node[part]
        elif isinstance(node, list) and part.isdigit() and int(part) < len(node):
            node = node[int(part)]
        else:
            return None
    return "".join(["#", *(f"/{_escape(p)}" for p in parts)]), node


def _list(value: object) -> list[Any]:
    return value if isinstance(value, list) else []


def _escape(key: str) -> str:
    return key.replace("~", "~0").replace("/", "~1")
