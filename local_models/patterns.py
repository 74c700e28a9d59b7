"""What a request's JSON-schema `pattern`s would cost the structured-output backend, bounded.

xgrammar (the engine's structured-output backend) turns a counted repetition `x{m,n}` into
n copies of x, in time growing with n² and the size of x. vLLM converts a request's schema
as it adds the request, on the engine's event loop, and compiles it again in the engine:
one `"pattern": "[a-z]{0,9999}[0-9]{0,9999}x{5,9999}"` took 20 s to convert (48 s in all),
and every other client's stream on that engine stood still meanwhile. So the patterns of a
request's schemas (response_format, tools) are priced first, and a request whose patterns
would cost more than `MAX_COST` is refused before the engine sees it.

The price is an upper bound, without a regular-expression parser: each counted repetition
costs its bound squared times its atom's size (a character, a class, or a group: the sizes of
its items, repetitions included, so nesting multiplies). `[a-z]{0,1000}` is 1,000,000 and
took xgrammar 0.05 s on this project's 2-core machine; `(a|b|c|d|e|f|g|h){1,1000}`,
8,000,000 (the limit's four times over), took 0.5 s.
"""

from __future__ import annotations

import re
from typing import Any

from .errors import BadRequest

MAX_COST = 2_000_000
_COUNTED = re.compile(r"\{(\d+)(?:,(\d*))?\}")
_HUGE = 10**9  # a bound of more digits than this counts as this (and int() never sees 4,300 digits)


def check_patterns(value: Any, param: str) -> None:
    """`BadRequest` naming `param` when the patterns anywhere in `value` (a schema, a tool, a
    response_format: the strings under `pattern` and the keys of `patternProperties`) cost too much."""
    cost = sum(pattern_cost(p) for p in _patterns(value))
    if cost > MAX_COST:
        raise BadRequest(
            f"The regular expressions ('pattern') in '{param}' repeat too much for this local model's "
            "structured output: keep a counted repetition like {0,1000} to a thousand or so, and fewer of them.",
            param=param,
        )


def pattern_cost(pattern: str) -> int:
    """The upper bound on what xgrammar takes to convert `pattern` (see the module's docstring)."""
    groups: list[list[int]] = [[]]  # per open group, the sizes of its items so far
    cost, i, n = 0, 0, len(pattern)
    while i < n:
        c = pattern[i]
        if c == "\\":
            groups[-1].append(1)
            i += 2
        elif c == "[":
            i = _class_end(pattern, i)
            groups[-1].append(1)
        elif c == "(":
            groups.append([])
            i += 1
        elif c == ")" and len(groups) > 1:
            inner = groups.pop()
            groups[-1].append(max(1, sum(inner)))
            i += 1
        elif c == "{" and (m := _COUNTED.match(pattern, i)) and groups[-1]:
            bound = _bound(m.group(2) or m.group(1))  # `{m,}` repeats at least m times
            atom = groups[-1][-1]
            cost += bound * bound * atom
            groups[-1][-1] = atom * max(1, bound)
            i = m.end()
        else:
            if c not in "|*+?^$":
                groups[-1].append(1)
            i += 1
    return cost


def _class_end(pattern: str, i: int) -> int:
    """The index after the character class that opens at `i`."""
    j = i + 1
    if pattern.startswith("^", j):
        j += 1
    if pattern.startswith("]", j):
        j += 1
    while j < len(pattern) and pattern[j] != "]":
        j += 2 if pattern[j] == "\\" else 1
    return j + 1


def _bound(digits: str) -> int:
    return _HUGE if len(digits) > 9 else int(digits)


def _patterns(value: Any) -> list[str]:
    """Every pattern in a JSON value (walked without recursion: a body may nest deep)."""
    found: list[str] = []
    stack = [value]
    while stack:
        v = stack.pop()
        if isinstance(v, dict):
            if isinstance(p := v.get("pattern"), str):
                found.append(p)
            if isinstance(props := v.get("patternProperties"), dict):
                found.extend(k for k in props if isinstance(k, str))
            stack.extend(v.values())
        elif isinstance(v, list):
            stack.extend(v)
    return found
