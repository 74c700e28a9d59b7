"""`tool_names`: Responses function names as the chat tool names a route takes, and back."""

from __future__ import annotations

import re
from typing import Any

import pytest

from orchestrator.errors import InvalidRequest
from orchestrator.frontdoors.responses.tool_names import Found, chat_name, renamed
from orchestrator.frontdoors.responses.wire import CustomTool, FunctionTool, NamespaceTool, ResponsesRequest

CHAT_NAME = re.compile(r"^[a-zA-Z0-9_-]{1,64}$")


def request(*tools: dict[str, Any]) -> ResponsesRequest:
    return ResponsesRequest.model_validate({"model": "m", "input": "hi", "tools": list(tools)})


def function(name: str) -> dict[str, Any]:
    return {"type": "function", "name": name}


def namespace(name: str, *functions: str) -> dict[str, Any]:
    return {"type": "namespace", "name": name, "description": name, "tools": [function(f) for f in functions]}


@pytest.mark.parametrize(
    ("namespace_name", "name", "expected"),
    [(None, "get_weather", "get_weather"), ("crm", "find", "crm__find"), (None, "a" * 64, "a" * 64)],
)
def test_a_name_that_fits_goes_as_it_is(namespace_name: str | None, name: str, expected: str) -> None:
    assert chat_name(namespace_name, name) == expected


@pytest.mark.parametrize(
    ("namespace_name", "name"),
    [("n" * 40, "f" * 30), (None, "f" * 65), (None, "f" * 128), ("mcp.server", "find"), (None, "a.b")],
)
def test_a_name_that_doesnt_is_shortened_to_one_a_route_takes(namespace_name: str | None, name: str) -> None:
    short = chat_name(namespace_name, name)
    assert CHAT_NAME.match(short) and short == chat_name(namespace_name, name)  # the same in every request


def test_long_names_that_begin_alike_stay_apart() -> None:
    assert chat_name("n" * 60, "first") != chat_name("n" * 60, "second")
    assert chat_name("n" * 60, "x") != chat_name(None, "n" * 60 + "__x_")


def test_renamed_maps_each_chat_name_back() -> None:
    long = "f" * 100
    r = request(function("plain"), function(long), namespace("crm", "find", "add"))
    assert renamed(r.tools) == {
        chat_name(None, long): (None, long),
        "crm__find": ("crm", "find"),
        "crm__add": ("crm", "add"),
    }


@pytest.mark.parametrize(
    ("tools", "param"),
    [
        ([namespace("crm", "find"), function("crm__find")], "tools[0].tools[0].name"),
        ([namespace("crm", "find", "find")], "tools[0].tools[1].name"),
        ([function(chat_name("n" * 60, "x")), namespace("n" * 60, "x")], "tools[1].tools[0].name"),
    ],
)
def test_two_tools_of_one_chat_name_are_a_400_naming_the_second(tools: list[dict[str, Any]], param: str) -> None:
    with pytest.raises(InvalidRequest) as e:
        renamed(request(*tools).tools)
    assert e.value.param == param


def test_two_plain_functions_of_one_name_are_the_routes_to_judge() -> None:
    assert renamed(request(function("a"), function("a")).tools) == {}


def test_a_function_a_search_loads_again_is_no_clash() -> None:
    """A search may load a tool the request holds back, or one an earlier search loaded: the same function."""
    r = request(namespace("crm", "find"), {"type": "tool_search", "execution": "client"})
    loaded = request(namespace("crm", "find", "add"), namespace("crm", "find")).tools or []
    found = [Found(t, f"input[1].tools[{j}]") for j, t in enumerate(loaded) if isinstance(t, NamespaceTool)]
    assert renamed(r.tools, found) == {
        "crm__find": ("crm", "find"),
        "crm__add": ("crm", "add"),
    }


def test_a_function_a_route_would_know_as_the_clients_search_is_a_400() -> None:
    with pytest.raises(InvalidRequest) as e:
        renamed(request({"type": "tool_search", "execution": "client"}, function("tool_search")).tools)
    assert e.value.param == "tools[1].name"


NAMESPACE = NamespaceTool.model_validate(namespace("crm", "find"))
CUSTOM = CustomTool(type="custom", name="crm__find")
FIND = FunctionTool(type="function", name="crm__find")


@pytest.mark.parametrize(
    ("tools", "loaded", "param"),
    [
        # The later of two is named, where the request has it.
        ([function("crm__find")], [Found(NAMESPACE, "input[3].tools[0]")], "input[3].tools[0].tools[0].name"),
        # Where the later came with a stored chain (or a compaction), the earlier: the client can change it.
        ([function("crm__find")], [Found(NAMESPACE, "previous_response_id", exact=False)], "tools[0].name"),
        # Neither is the request's own: the field that brought them in.
        ([], [Found(CUSTOM, "conversation", False), Found(FIND, "conversation", False)], "conversation"),
        # A custom tool and a function of one name are two tools, wherever they are.
        ([{"type": "custom", "name": "crm__find"}, function("crm__find")], [], "tools[1].name"),
        ([function("crm__find")], [Found(CUSTOM, "input[1].tools[0]")], "input[1].tools[0].name"),
    ],
)
def test_a_clash_names_the_tool_the_client_can_change(
    tools: list[dict[str, Any]], loaded: list[Found], param: str
) -> None:
    with pytest.raises(InvalidRequest) as e:
        renamed(request(*tools).tools if tools else None, loaded)
    assert e.value.param == param


def test_a_custom_tool_loaded_again_is_no_clash() -> None:
    r = request({"type": "custom", "name": "apply_patch", "defer_loading": True})
    assert renamed(r.tools, [Found(CustomTool(type="custom", name="apply_patch"), "input[1].tools[0]")]) == {}
