"""Custom tools on `POST /v1/responses` (free-form input; Codex CLI's `apply_patch` for its GPT-5 models),
through the official openai SDK, on routes that know only function tools: an OpenAI-compatible fake and an
Anthropic one, on real sockets, recording what they were sent. Bodies and events are held to the spec."""

from __future__ import annotations

import json
from typing import Any

import pytest
from fastapi import FastAPI
from openai_schema import validate
from test_responses_door import kinds, post, raw_events, sdk
from two_fakes import TEAM_KEY
from two_fakes import fakes_fixture as fakes_fixture
from two_fakes import healthy_fixture as healthy_fixture
from two_fakes import remote_fixture as remote_fixture

from orchestrator.testing.provider import FakeProvider

GRAMMAR = 'start: begin_patch hunk+ end_patch\nbegin_patch: "*** Begin Patch" LF\nend_patch: "*** End Patch" LF?'
APPLY_PATCH: dict[str, Any] = {
    "type": "custom",
    "name": "apply_patch",
    "description": "Use the `apply_patch` tool to edit files.",
    "format": {"type": "grammar", "syntax": "lark", "definition": GRAMMAR},
}
PATCH = "*** Begin Patch\n*** Add File: hello.txt\n+hello\n*** End Patch\n"


@pytest.mark.parametrize("stream", [False, True], ids=["json", "sse"])
async def test_a_custom_tool_is_offered_as_a_function_of_one_string_and_its_call_comes_back_custom(
    remote: FastAPI, fakes: dict[str, FakeProvider], stream: bool
) -> None:
    body = {
        "model": "alpha/m",
        "input": "Add hello.txt",
        "tools": [APPLY_PATCH],
        "tool_choice": {"type": "custom", "name": "apply_patch"},
    }
    if stream:
        events = await raw_events(remote, body, TEAM_KEY)
        assert "response.custom_tool_call_input.done" in kinds(events)
        assert "response.function_call_arguments.delta" not in kinds(events)
        done = next(e for e in events if e["type"] == "response.custom_tool_call_input.done")
        response = events[-1]["response"]
        assert done["input"] == response["output"][0]["input"]
    else:
        r = await post(remote, body, TEAM_KEY)
        assert r.status_code == 200, r.text
        response = r.json()
        validate("Response", response)
    [call] = response["output"]
    assert call["type"] == "custom_tool_call" and call["name"] == "apply_patch"
    assert call["input"] == "x"  # the fake fills the one string it was offered; the client gets the string
    assert response["tools"] == [APPLY_PATCH] and response["tool_choice"] == {"type": "custom", "name": "apply_patch"}
    sent = fakes["alpha"].requests[-1].body
    [tool] = sent["tools"]
    assert tool["function"]["name"] == "apply_patch"
    assert tool["function"]["parameters"]["properties"] == {
        "input": {"type": "string", "description": "The tool's whole input."}
    }
    assert GRAMMAR in tool["function"]["description"] and "lark" in tool["function"]["description"]
    assert sent["tool_choice"] == {"type": "function", "function": {"name": "apply_patch"}}


@pytest.mark.parametrize("model", ["alpha/m", "claude/haiku"])
async def test_a_custom_tool_round_trip_sends_the_call_and_its_output_back(
    remote: FastAPI, fakes: dict[str, FakeProvider], model: str
) -> None:
    """Codex sends its history back with the call and its output: a route sees the function call with the
    input as its one argument, and the tool's output."""
    history = [
        {"role": "user", "content": "Add hello.txt"},
        {"type": "custom_tool_call", "call_id": "call_1", "name": "apply_patch", "input": PATCH},
        {"type": "custom_tool_call_output", "call_id": "call_1", "output": "Done: A hello.txt"},
    ]
    client = sdk(remote, TEAM_KEY)
    raw = await client.responses.with_raw_response.create(model=model, input=history, tools=[APPLY_PATCH])  # type: ignore[arg-type,list-item]
    validate("Response", json.loads(raw.content))
    assert raw.parse().status == "completed"
    provider = "alpha" if model == "alpha/m" else "claude"
    sent = fakes[provider].requests[-1].body
    if provider == "alpha":
        call = sent["messages"][1]["tool_calls"][0]
        assert call["function"] == {"name": "apply_patch", "arguments": json.dumps({"input": PATCH})}
        assert sent["messages"][2] == {"role": "tool", "tool_call_id": "call_1", "content": "Done: A hello.txt"}
    else:
        use = next(b for m in sent["messages"] for b in m["content"] if isinstance(b, dict) and b["type"] == "tool_use")
        assert use["name"] == "apply_patch" and use["input"] == {"input": PATCH}
    items = await client.responses.input_items.with_raw_response.list(raw.parse().id, order="asc")
    listed = json.loads(items.content)
    validate("ResponseItemList", listed)
    assert [i["type"] for i in listed["data"]] == ["message", "custom_tool_call", "custom_tool_call_output"]
    assert listed["data"][1]["input"] == PATCH
