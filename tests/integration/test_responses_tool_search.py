"""Tool search on `POST /v1/responses` (`tool_search`, deferred tools): Codex CLI offers a client-run search
over its MCP tools to its GPT-5 models. Through the official openai SDK and raw bodies, on routes that know
only function tools (an OpenAI-compatible fake and an Anthropic one, on real sockets, recording what they
were sent); every body and event held to the spec."""

from __future__ import annotations

import base64
import json
from typing import Any

import httpx
import pytest
from fastapi import FastAPI
from openai_schema import validate
from test_responses_door import kinds, post, raw_events, sdk
from two_fakes import TEAM_KEY
from two_fakes import fakes_fixture as fakes_fixture
from two_fakes import healthy_fixture as healthy_fixture
from two_fakes import remote_fixture as remote_fixture

from orchestrator.testing.provider import FakeProvider

SEARCH: dict[str, Any] = {  # as Codex CLI 0.171 sends it
    "type": "tool_search",
    "execution": "client",
    "description": "# Tool discovery\n\nSearches over deferred tool metadata with BM25.",
    "parameters": {
        "type": "object",
        "properties": {"query": {"type": "string"}, "limit": {"type": "number"}},
        "required": ["query"],
        "additionalProperties": False,
    },
}
WEATHER: dict[str, Any] = {
    "type": "function",
    "name": "get_weather",
    "description": "The weather in a city.",
    "parameters": {"type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]},
}
SHELL: dict[str, Any] = {
    "type": "function",
    "name": "exec_command",
    "parameters": {"type": "object", "properties": {"cmd": {"type": "string"}}, "required": ["cmd"]},
}
LOADED: dict[str, Any] = {  # an MCP server's tools as Codex's search loads them: a namespace
    "type": "namespace",
    "name": "mcp__weather",
    "description": "The weather server.",
    "tools": [WEATHER],
}


def offered(fake: FakeProvider) -> list[str]:
    return [t["function"]["name"] for t in fake.requests[-1].body.get("tools", [])]


@pytest.mark.parametrize("stream", [False, True], ids=["json", "sse"])
async def test_a_clients_search_is_a_function_and_its_call_a_tool_search_call(
    remote: FastAPI, fakes: dict[str, FakeProvider], stream: bool
) -> None:
    body = {"model": "alpha/m", "input": "What's the weather in Paris?", "tools": [SEARCH], "stream": stream}
    if stream:
        events = await raw_events(remote, body, TEAM_KEY)
        assert "response.function_call_arguments.delta" not in kinds(events)  # none of its own: the item says it
        response = events[-1]["response"]
        added = next(e for e in events if e["type"] == "response.output_item.added")["item"]
        done = next(e for e in events if e["type"] == "response.output_item.done")["item"]
        assert added["type"] == done["type"] == "tool_search_call" and added["status"] == "in_progress"
        assert done == response["output"][0]
    else:
        r = await post(remote, body, TEAM_KEY)
        assert r.status_code == 200, r.text
        response = r.json()
        validate("Response", response)
    [call] = response["output"]
    assert call["type"] == "tool_search_call" and call["execution"] == "client" and call["status"] == "completed"
    assert call["arguments"] == {"query": "x"}  # the fake fills the schema it was offered: an object, not a string
    assert call["call_id"] and call["id"].startswith("tsc_")
    assert response["tools"] == [SEARCH]
    [tool] = fakes["alpha"].requests[-1].body["tools"]
    assert tool["function"] == {
        "name": "tool_search",
        "description": SEARCH["description"],
        "parameters": SEARCH["parameters"],
    }


@pytest.mark.parametrize("model", ["alpha/m", "claude/haiku"])
async def test_what_a_search_loaded_is_offered_from_then_on_and_its_calls_come_back_by_their_own_names(
    remote: FastAPI, fakes: dict[str, FakeProvider], model: str
) -> None:
    """Codex runs the search and sends its output back: the route reads which tools it loaded and is offered
    them; the deferred tool the request holds back is not offered before that. A call of a loaded tool comes
    back as that tool's, in its namespace."""
    deferred = {**WEATHER, "name": "get_forecast", "defer_loading": True}
    history = [
        {"role": "user", "content": "What's the weather in Paris?"},
        {"type": "tool_search_call", "call_id": "call_s", "execution": "client", "arguments": {"query": "weather"}},
        {"type": "tool_search_output", "call_id": "call_s", "execution": "client", "tools": [LOADED]},
    ]
    client = sdk(remote, TEAM_KEY)
    tools = [SEARCH, SHELL, deferred]
    raw = await client.responses.with_raw_response.create(model=model, input=history, tools=tools)  # type: ignore[arg-type]
    response = json.loads(raw.content)
    validate("Response", response)
    provider = fakes["alpha" if model == "alpha/m" else "claude"]
    sent = provider.requests[-1].body
    names = [t["function"]["name"] for t in sent["tools"]] if model == "alpha/m" else [t["name"] for t in sent["tools"]]
    assert names == ["tool_search", "exec_command", "mcp__weather__get_weather"]  # not get_forecast: deferred
    if model == "alpha/m":
        call = sent["messages"][1]["tool_calls"][0]
        assert call["function"] == {"name": "tool_search", "arguments": json.dumps({"query": "weather"})}
        result = sent["messages"][2]
        assert result["role"] == "tool" and result["tool_call_id"] == "call_s"
        assert "mcp__weather__get_weather" in result["content"]
    else:
        use = next(b for m in sent["messages"] for b in m["content"] if isinstance(b, dict) and b["type"] == "tool_use")
        assert use["name"] == "tool_search" and use["input"] == {"query": "weather"}
    if model != "alpha/m":
        return  # (Anthropic's fake reads "Go on." in the tool result's user turn: it answers, it doesn't call)
    # The fake calls the first tool it is offered unless a tool result ends the request: with the search the
    # server's (not offered), the first is the loaded one.
    body = {
        "model": model,
        "input": [*history, {"role": "user", "content": "Go on."}],
        "tools": [{"type": "tool_search"}],
    }
    r = await post(remote, body, TEAM_KEY)
    assert r.status_code == 200, r.text
    validate("Response", r.json())
    [call] = r.json()["output"]
    assert call["type"] == "function_call"
    assert (call["namespace"], call["name"]) == ("mcp__weather", "get_weather")


async def test_the_deferred_tools_of_a_server_search_are_offered_from_the_start(
    remote: FastAPI, fakes: dict[str, FakeProvider]
) -> None:
    """No route here searches for a request: with OpenAI's hosted search the deferred tools are offered at
    once, the search itself not, and the model calls the tool it wants straight away."""
    deferred = {**WEATHER, "defer_loading": True}
    body = {"model": "alpha/m", "input": "Weather in Paris?", "tools": [{"type": "tool_search"}, deferred]}
    r = await post(remote, body, TEAM_KEY)
    assert r.status_code == 200, r.text
    validate("Response", r.json())
    assert offered(fakes["alpha"]) == ["get_weather"]
    assert "defer_loading" not in fakes["alpha"].requests[-1].body["tools"][0]["function"]
    [call] = r.json()["output"]
    assert call["type"] == "function_call" and call["name"] == "get_weather"


async def test_a_loaded_tool_stays_offered_across_a_stored_chain(
    remote: FastAPI, fakes: dict[str, FakeProvider]
) -> None:
    history = [
        {"role": "user", "content": "Weather?"},
        {"type": "tool_search_call", "call_id": "call_s", "execution": "client", "arguments": {"query": "weather"}},
        {"type": "tool_search_output", "call_id": "call_s", "execution": "client", "tools": [LOADED]},
    ]
    first = await post(remote, {"model": "alpha/m", "input": history, "tools": [SEARCH]}, TEAM_KEY)
    assert first.status_code == 200, first.text
    second = {
        "model": "alpha/m",
        "input": "And in Rome?",
        "tools": [SEARCH],
        "previous_response_id": first.json()["id"],
    }
    r = await post(remote, second, TEAM_KEY)
    assert r.status_code == 200, r.text
    assert offered(fakes["alpha"]) == ["tool_search", "mcp__weather__get_weather"]


@pytest.mark.parametrize(
    ("tools", "param"),
    [
        ([{"type": "file_search", "vector_store_ids": ["vs_1"]}], "input[1].tools[0].type"),
        (
            [{"type": "namespace", "name": "n", "tools": [{"type": "mcp", "server_label": "s"}]}],
            "input[1].tools[0].tools[0].type",
        ),
        ("not a list", "input[1].tools"),
        ([{"type": "tool_search"}], "input[1].tools[0]"),  # a search finds tools, not another search
    ],
)
async def test_a_search_output_with_tools_no_route_runs_is_a_400(
    remote: FastAPI, fakes: dict[str, FakeProvider], tools: Any, param: str
) -> None:
    body = {
        "model": "alpha/m",
        "input": [
            {"role": "user", "content": "hi"},
            {"type": "tool_search_output", "call_id": "c", "execution": "client", "tools": tools},
        ],
        "tools": [SEARCH],
    }
    r = await post(remote, body, TEAM_KEY)
    assert r.status_code == 400, r.text
    error = r.json()["error"]
    assert error["param"] == param and error["type"] == "invalid_request_error"
    assert fakes["alpha"].requests == []


FORECAST: dict[str, Any] = {**WEATHER, "name": "get_forecast", "description": "The forecast for a city."}


@pytest.mark.parametrize("model", ["alpha/m", "claude/haiku"])
@pytest.mark.parametrize(
    ("tools", "searches"),
    [
        # The request holds the namespace back and the search loads it, as OpenAI's client search has it.
        (
            [SEARCH, {**LOADED, "tools": [{**WEATHER, "defer_loading": True}, {**FORECAST, "defer_loading": True}]}],
            [[{**LOADED, "tools": [WEATHER, FORECAST]}]],
        ),
        ([SEARCH], [[LOADED], [LOADED, {**LOADED, "tools": [FORECAST]}]]),  # loaded again by a second search
        ([SEARCH], [[LOADED], [{**LOADED, "tools": [WEATHER, FORECAST]}]]),  # the namespace again, with more
        ([SEARCH, WEATHER], [[WEATHER, {**LOADED, "tools": [WEATHER, FORECAST]}]]),  # a tool the request has
    ],
    ids=["deferred", "twice", "more", "offered"],
)
async def test_a_tool_loaded_again_is_offered_once(
    remote: FastAPI, fakes: dict[str, FakeProvider], model: str, tools: list[Any], searches: list[list[Any]]
) -> None:
    """A search may load a tool the request holds back, or one an earlier search loaded (it finds it again):
    the same tool, offered once, not two tools of one name (which was a 400 for every later request of the
    conversation, its stored chain too); a namespace loaded again with more of its functions offers those."""
    history: list[Any] = [{"role": "user", "content": "Weather?"}]
    for i, found in enumerate(searches):
        call = {"type": "tool_search_call", "call_id": f"call_{i}", "execution": "client", "arguments": {"query": "w"}}
        history += [call, {"type": "tool_search_output", "call_id": f"call_{i}", "execution": "client", "tools": found}]
    first = await post(remote, {"model": model, "input": history, "tools": tools}, TEAM_KEY)
    assert first.status_code == 200, first.text
    validate("Response", first.json())
    chained = {"model": model, "input": "And Rome?", "tools": tools, "previous_response_id": first.json()["id"]}
    r = await post(remote, chained, TEAM_KEY)
    assert r.status_code == 200, r.text
    sent = fakes["alpha" if model == "alpha/m" else "claude"].requests[-1].body["tools"]
    names = [t["function"]["name"] if model == "alpha/m" else t["name"] for t in sent]
    expected = ["mcp__weather__get_weather", "mcp__weather__get_forecast"]
    assert sorted(names) == sorted(["tool_search", *(["get_weather"] if WEATHER in tools else []), *expected])


@pytest.mark.parametrize(
    ("tools", "param"),
    [
        ([SEARCH, {**WEATHER, "name": "tool_search"}], "tools[1].name"),
        ([{"type": "custom", "name": "tool_search"}, SEARCH], "tools[1]"),
        ([SEARCH, SEARCH], "tools[1]"),
        ([SEARCH, {"type": "tool_search"}], "tools[1]"),
    ],
    ids=["function", "custom", "two", "server-too"],
)
async def test_a_tool_a_route_would_know_as_the_search_is_a_400(
    remote: FastAPI, fakes: dict[str, FakeProvider], tools: list[Any], param: str
) -> None:
    """A client's search is the route's function `tool_search`: another tool of that name (or another search)
    was offered beside it, and its calls came back as searches."""
    for path in ("/v1/responses", "/v1/responses/compact"):  # a summary is asked with the turns' tools
        r = await post(remote, {"model": "alpha/m", "input": "Weather?", "tools": tools}, TEAM_KEY, path=path)
        assert r.status_code == 400, r.text
        assert r.json()["error"]["param"] == param
    assert fakes["alpha"].requests == []


@pytest.mark.parametrize("model", ["alpha/m", "claude/haiku"])
@pytest.mark.parametrize("arguments", ["weather", ["weather"], 5])
async def test_a_search_call_whose_arguments_are_no_object_is_a_400(
    remote: FastAPI, fakes: dict[str, FakeProvider], model: str, arguments: Any
) -> None:
    """The spec's arguments of a search sent back are an object, as a route's call of a function takes them:
    other JSON went to an OpenAI-compatible route as the call's arguments, and an Anthropic route's was a 400
    naming a chat field the request doesn't have."""
    body = {
        "model": model,
        "input": [
            {"role": "user", "content": "Weather?"},
            {"type": "tool_search_call", "call_id": "call_s", "execution": "client", "arguments": arguments},
            {"type": "tool_search_output", "call_id": "call_s", "execution": "client", "tools": [LOADED]},
        ],
        "tools": [SEARCH],
    }
    r = await post(remote, body, TEAM_KEY)
    assert r.status_code == 400, r.text
    assert r.json()["error"]["param"] == "input[1].arguments"
    assert all(fake.requests == [] for fake in fakes.values())


async def test_search_items_are_listed_in_the_specs_shape(remote: FastAPI) -> None:
    """A search's items as `input_items` (and a conversation's items) list them: the call id null for a
    server's search, who ran it (a client that left it out: the client where there is a call id), the tools
    an output loaded as a response echoes tools. They were listed as sent, which the spec's items are not."""
    items = [
        {"role": "user", "content": "Weather?"},
        {"type": "tool_search_call", "arguments": {"query": "weather"}},  # a server's, as OpenAI's are sent back
        {"type": "tool_search_output", "tools": [LOADED]},
        {"type": "tool_search_call", "call_id": "call_s", "arguments": {"query": "shell"}},
        {"type": "tool_search_output", "call_id": "call_s", "tools": [{"type": "function", "name": "exec_command"}]},
    ]
    r = await post(remote, {"model": "alpha/m", "input": items, "tools": [SEARCH]}, TEAM_KEY)
    assert r.status_code == 200, r.text
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=remote), base_url="http://t") as http:
        listed = await http.get(
            f"/v1/responses/{r.json()['id']}/input_items?order=asc", headers={"Authorization": f"Bearer {TEAM_KEY}"}
        )
    assert listed.status_code == 200, listed.text
    validate("ResponseItemList", listed.json())
    _, server_call, server_output, call, output = listed.json()["data"]
    assert server_call["call_id"] is server_output["call_id"] is None
    assert (server_call["execution"], server_output["execution"]) == ("server", "server")
    assert (call["execution"], output["execution"]) == ("client", "client")
    assert output["tools"] == [{"type": "function", "name": "exec_command", "parameters": None, "strict": None}]


@pytest.mark.parametrize(
    ("path", "body", "param"),
    [
        ("/v1/responses", {"tools": [{**LOADED, "description": None}]}, "tools[0].description"),
        (
            "/v1/responses/compact",
            {"tools": [SHELL, {"type": "namespace", "name": "n", "tools": [WEATHER]}]},
            "tools[1].description",
        ),
        (
            "/v1/responses/input_tokens",
            {"tools": [{k: v for k, v in LOADED.items() if k != "description"}]},
            "tools[0].description",
        ),
        (
            "/v1/responses",
            {
                "tools": [SEARCH],
                "input": [
                    {"role": "user", "content": "Weather?"},
                    {
                        "type": "tool_search_output",
                        "call_id": "c",
                        "tools": [{"type": "namespace", "name": "n", "tools": [WEATHER]}],
                    },
                ],
            },
            "input[1].tools[0].description",
        ),
    ],
    ids=["null", "compact", "count", "loaded"],
)
async def test_a_namespace_without_its_description_is_a_400_naming_it(
    remote: FastAPI, fakes: dict[str, FakeProvider], path: str, body: dict[str, Any], param: str
) -> None:
    """The spec's namespace tool requires its description (Codex always sends one): one without it was served,
    and the `tools` the response echoed failed the spec."""
    r = await post(remote, {"model": "alpha/m", "input": "Weather?", **body}, TEAM_KEY, path=path)
    assert r.status_code == 400, r.text
    validate("ErrorResponse", r.json())
    assert r.json()["error"] == {
        "message": f"Missing required parameter: '{param}'.",
        "type": "invalid_request_error",
        "param": param,
        "code": "missing_required_parameter",
    }
    assert all(fake.requests == [] for fake in fakes.values())


def searched(*found: list[Any]) -> list[Any]:
    """A conversation in which the client's searches loaded `found`, one search each: a search's output is at
    input[2 + 2k]."""
    items: list[Any] = [{"role": "user", "content": "Weather?"}]
    for i, tools in enumerate(found):
        call = {"type": "tool_search_call", "call_id": f"call_{i}", "execution": "client", "arguments": {"query": "w"}}
        items += [call, {"type": "tool_search_output", "call_id": f"call_{i}", "execution": "client", "tools": tools}]
    return items


PATCH_TOOL: dict[str, Any] = {"type": "custom", "name": "apply_patch", "description": "Edit files."}
PATCH_FUNCTION: dict[str, Any] = {"type": "function", "name": "apply_patch", "parameters": {"type": "object"}}


@pytest.mark.parametrize(
    ("tools", "found", "param"),
    [
        # A request's function of the chat name a loaded namespace's function has: the loaded one, by its place.
        ([SEARCH, {**WEATHER, "name": "mcp__weather__get_weather"}], [[LOADED]], "input[2].tools[0].tools[0].name"),
        ([SEARCH], [[{**WEATHER, "name": "mcp__weather__get_weather"}], [LOADED]], "input[4].tools[0].tools[0].name"),
        # A custom tool and a function of one name: one was offered, the other's calls came back.
        ([SEARCH, PATCH_FUNCTION], [[PATCH_TOOL]], "input[2].tools[0].name"),
        ([SEARCH, PATCH_TOOL], [[SHELL, PATCH_FUNCTION]], "input[2].tools[1].name"),
        ([SEARCH], [[PATCH_FUNCTION], [PATCH_TOOL]], "input[4].tools[0].name"),
        ([SEARCH, PATCH_TOOL, PATCH_FUNCTION], [], "tools[2].name"),
    ],
    ids=["namespace", "two-searches", "custom-loaded", "function-loaded", "both-loaded", "both-asked"],
)
async def test_a_loaded_tool_a_route_would_know_by_another_tools_name_is_a_400_naming_it(
    remote: FastAPI, fakes: dict[str, FakeProvider], tools: list[Any], found: list[list[Any]], param: str
) -> None:
    """The 400 names the loaded tool by its place in the input (it said `input.tools[j]`, with no item). A
    custom tool and a function of one name were served: the route was offered one of them, and its calls came
    back as the custom tool's whichever it was."""
    for path in ("/v1/responses", "/v1/responses/compact"):
        r = await post(remote, {"model": "alpha/m", "input": searched(*found), "tools": tools}, TEAM_KEY, path=path)
        assert r.status_code == 400, r.text
        validate("ErrorResponse", r.json())
        assert r.json()["error"]["param"] == param
        assert r.json()["error"]["type"] == "invalid_request_error"
    assert fakes["alpha"].requests == []


async def test_a_tool_the_request_adds_that_a_route_would_know_as_a_loaded_one_is_a_400_naming_the_tool(
    remote: FastAPI, fakes: dict[str, FakeProvider]
) -> None:
    """The loaded tool is in the stored chain, which the client can't change: the 400 names the request's tool."""
    first = await post(remote, {"model": "alpha/m", "input": searched([LOADED]), "tools": [SEARCH]}, TEAM_KEY)
    assert first.status_code == 200, first.text
    tools = [SEARCH, {**WEATHER, "name": "mcp__weather__get_weather"}]
    body = {"model": "alpha/m", "input": "Rome?", "tools": tools, "previous_response_id": first.json()["id"]}
    r = await post(remote, body, TEAM_KEY)
    assert r.status_code == 400, r.text
    assert r.json()["error"]["param"] == "tools[1].name"
    assert r.json()["error"]["message"] == (
        "The function 'mcp__weather__get_weather' would be the tool 'mcp__weather__get_weather' on a route, which "
        "the function 'get_weather' of the namespace 'mcp__weather' (from previous_response_id) is already; give "
        "one of them another name."
    )


async def test_a_custom_tool_loaded_again_stays_custom(remote: FastAPI, fakes: dict[str, FakeProvider]) -> None:
    """The request holds its custom tool back and a search loads it: one tool, offered once, its call custom."""
    tools = [SEARCH, {**PATCH_TOOL, "defer_loading": True}]
    r = await post(remote, {"model": "alpha/m", "input": searched([PATCH_TOOL]), "tools": tools}, TEAM_KEY)
    assert r.status_code == 200, r.text
    assert offered(fakes["alpha"]) == ["tool_search", "apply_patch"]


def sealed(summary: str, tools: Any) -> str:
    """A compaction's `encrypted_content` as this gateway seals it, with the tools it carries (a client's own)."""
    payload = json.dumps({"summary": summary, "tools": tools}).encode()
    return "orch-cmp-v1." + base64.urlsafe_b64encode(payload).decode()


@pytest.mark.parametrize("how", ["compact", "trigger", "again"])
async def test_a_compaction_carries_the_tools_a_search_loaded(
    remote: FastAPI, fakes: dict[str, FakeProvider], how: str
) -> None:
    """A compaction replaces the search's call and output with its summary: the tools they loaded went with
    them, and the next turn was offered the search alone (the model had to search again). The compaction item
    carries them: a turn after it is offered them, a compaction of a compaction keeps them."""
    history = [*searched([LOADED], [{**LOADED, "tools": [FORECAST]}]), {"role": "assistant", "content": "Snow."}]
    body = {"model": "alpha/m", "tools": [SEARCH]}
    if how == "trigger":
        r = await post(remote, {**body, "input": [*history, {"type": "compaction_trigger"}]}, TEAM_KEY)
        assert r.status_code == 200, r.text
        output = r.json()["output"]
    else:
        r = await post(remote, {**body, "input": history}, TEAM_KEY, path="/v1/responses/compact")
        assert r.status_code == 200, r.text
        validate("CompactResource", r.json())
        output = r.json()["output"]
        if how == "again":  # the compacted conversation goes on, and is compacted again
            later = [*output, {"role": "user", "content": "Rome?"}, {"role": "assistant", "content": "Rain."}]
            r = await post(remote, {**body, "input": later}, TEAM_KEY, path="/v1/responses/compact")
            assert r.status_code == 200, r.text
            output = r.json()["output"]
    assert [i["type"] for i in output][-1] == "compaction"
    r = await post(remote, {**body, "input": [*output, {"role": "user", "content": "Go on."}]}, TEAM_KEY)
    assert r.status_code == 200, r.text
    validate("Response", r.json())
    assert offered(fakes["alpha"]) == ["tool_search", "mcp__weather__get_weather", "mcp__weather__get_forecast"]
    count = await post(remote, {**body, "input": output}, TEAM_KEY, path="/v1/responses/input_tokens")
    assert count.status_code == 200, count.text


@pytest.mark.parametrize(
    ("carried", "tools", "param"),
    [
        ([{"type": "file_search"}], [SEARCH], "input[1].encrypted_content"),
        ("all of them", [SEARCH], "input[1].encrypted_content"),
        ([{**WEATHER, "name": "é" * 200}], [SEARCH], "input[1].encrypted_content"),
        ([LOADED], [SEARCH, {**WEATHER, "name": "mcp__weather__get_weather"}], "tools[1].name"),
        ([PATCH_FUNCTION, PATCH_TOOL], [SEARCH], "input[1].encrypted_content"),
    ],
    ids=["no-route-runs-it", "no-list", "bad-name", "clash", "clash-within"],
)
async def test_tools_a_compaction_carries_are_checked_as_a_searchs(
    remote: FastAPI, fakes: dict[str, FakeProvider], carried: Any, tools: list[Any], param: str
) -> None:
    """A client may seal anything (the item says nothing it couldn't send): the tools it carries are checked as
    a search's output's are, a 400 naming the item (or the request's tool a carried one would clash with)."""
    item = {"type": "compaction", "encrypted_content": sealed("Earlier: weather.", carried)}
    body = {"model": "alpha/m", "input": [{"role": "user", "content": "Weather?"}, item], "tools": tools}
    for path in ("/v1/responses", "/v1/responses/compact", "/v1/responses/input_tokens"):
        r = await post(remote, body, TEAM_KEY, path=path)
        assert r.status_code == 400, (path, r.text)
        validate("ErrorResponse", r.json())
        assert r.json()["error"]["param"] == param
    assert fakes["alpha"].requests == []
