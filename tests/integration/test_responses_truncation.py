"""`truncation` on `POST /v1/responses`: "auto" drops the oldest turns of a conversation too long for the
local model's context; "disabled" (the default) refuses it. The real app on a real socket
(`anthropic_gateway`), over a fake local engine whose context (100) the router counts with a real tokenizer.
"""

from __future__ import annotations

from typing import Any

import httpx
from anthropic_gateway import TEAM, Gateway
from openai_schema import validate

pytest_plugins = ["anthropic_fixtures"]  # fakes, tokenizer, gw

CONTEXT = 100
LONG = " ".join(["one two three four five six seven eight nine ten"] * 4)  # ~50 tokens: two fit, three don't
WEATHER = {"type": "function", "name": "get_weather", "parameters": {"type": "object", "properties": {}}}


async def respond(gw: Gateway, **body: Any) -> httpx.Response:
    async with httpx.AsyncClient(base_url=gw.url, timeout=20) as http:
        r = await http.post(
            "/v1/responses", json={"model": "fake-chat", **body}, headers={"authorization": f"Bearer {TEAM}"}
        )
    if r.status_code == 200:
        validate("Response", r.json())
    return r


def roles(gw: Gateway) -> list[str]:
    """The roles of the messages the local engine was last asked to answer."""
    return [m["role"] for m in gw.engine.generations[-1].request["messages"]]


async def test_auto_drops_the_oldest_turns_of_a_chain_too_long_and_keeps_the_instructions(gw: Gateway) -> None:
    first = await respond(gw, instructions="Be brief.", input=LONG)
    assert first.status_code == 200, first.text
    chained = {"instructions": "Be brief.", "input": "and again", "previous_response_id": first.json()["id"]}

    refused = await respond(gw, **chained)  # the default, "disabled": the whole conversation or nothing
    assert refused.status_code == 400 and refused.json()["error"]["code"] == "context_length_exceeded", refused.text

    answered = await respond(gw, **chained, truncation="auto")
    assert answered.status_code == 200, answered.text
    assert answered.json()["truncation"] == "auto"
    assert roles(gw) == ["system", "assistant", "user"]  # only the oldest turn (the long question) went
    assert gw.engine.generations[-1].request["messages"][-1]["content"] == "and again"
    assert answered.json()["usage"]["input_tokens"] < CONTEXT


async def test_auto_drops_a_function_call_with_its_output(gw: Gateway) -> None:
    items = [
        {"role": "developer", "content": "Use the tools."},
        {"role": "user", "content": "what is the weather"},
        {"type": "function_call", "call_id": "call_1", "name": "get_weather", "arguments": "{}"},
        {"type": "function_call_output", "call_id": "call_1", "output": LONG},
        {"role": "user", "content": LONG},
    ]
    r = await respond(gw, input=items, tools=[WEATHER], tool_choice="none", truncation="auto")
    assert r.status_code == 200, r.text
    # The question went first; the call and its long output had to go too, together.
    assert roles(gw) == ["system", "user"]


async def test_a_last_turn_too_long_alone_is_still_a_400(gw: Gateway) -> None:
    r = await respond(
        gw, input=[{"role": "user", "content": "hi"}, {"role": "user", "content": LONG * 3}], truncation="auto"
    )
    assert r.status_code == 400 and r.json()["error"]["code"] == "context_length_exceeded", r.text
