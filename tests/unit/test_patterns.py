"""The price of a request's JSON-schema patterns to the structured-output backend (`local_models.patterns`)."""

from __future__ import annotations

import pytest

from local_models.errors import BadRequest
from local_models.patterns import MAX_COST, check_patterns, pattern_cost


@pytest.mark.parametrize(
    ("pattern", "cost"),
    [
        ("^[0-9a-f]{8}-[0-9a-f]{4}$", 64 + 16),
        ("[a-z]{0,1000}", 1_000_000),
        ("(a|b){3}", 9 * 2),  # a group is the size of its items
        ("((a{2}){3})", 4 + 9 * 2),  # nesting multiplies
        ("a{5,}", 25),  # at least five: five
        (r"\{1000\}x", 0),  # escaped braces repeat nothing
        ("[{]{10}", 100),  # nor do braces in a class
        ("{3}", 0),  # nothing to repeat
        ("a{" + "9" * 5000 + "}", 10**18),  # no int() of 5,000 digits: a huge bound
    ],
)
def test_pattern_cost(pattern: str, cost: int) -> None:
    assert pattern_cost(pattern) == cost


def test_realistic_schemas_pass() -> None:
    email = r"^[A-Za-z0-9._%+-]{1,64}@[A-Za-z0-9.-]{1,255}\.[A-Za-z]{2,63}$"
    ipv4 = r"^((25[0-5]|2[0-4]\d|1\d\d|[1-9]?\d)\.){3}(25[0-5]|2[0-4]\d|1\d\d|[1-9]?\d)$"
    schema = {
        "type": "object",
        "properties": {"email": {"type": "string", "pattern": email}, "ip": {"type": "string", "pattern": ipv4}},
        "patternProperties": {"^x-[a-z]{1,32}$": {"type": "string"}},
    }
    check_patterns({"type": "json_schema", "json_schema": {"name": "s", "schema": schema}}, "response_format")
    check_patterns(None, "response_format")


def test_patterns_that_would_stall_the_engine_are_refused_naming_the_field() -> None:
    # 20 s of xgrammar's conversion on the engine's event loop, every other stream standing still.
    slow = {"type": "string", "pattern": "[a-z]{0,9999}[0-9]{0,9999}x{5,9999}"}
    with pytest.raises(BadRequest) as info:
        check_patterns({"type": "json_schema", "json_schema": {"name": "s", "schema": slow}}, "response_format")
    assert info.value.param == "response_format"
    many = {"type": "object", "properties": {str(i): {"type": "string", "pattern": "[a-z]{0,500}"} for i in range(9)}}
    assert 9 * 250_000 > MAX_COST
    tool = {"type": "function", "function": {"name": "f", "parameters": many}}
    with pytest.raises(BadRequest) as info:
        check_patterns(tool, "tools[0]")
    assert info.value.param == "tools[0]"
    deep: dict[str, object] = slow
    for _ in range(5000):  # walked without recursion
        deep = {"items": deep}
    with pytest.raises(BadRequest):
        check_patterns(deep, "response_format")
