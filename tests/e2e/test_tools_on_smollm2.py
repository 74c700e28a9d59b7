"""Tool calls on the local model (SmolLM2 on CPU vLLM, no tool-call parser), with the openai client.

SmolLM2 calls a tool when told to (tool_choice "required" or a named function): structured
output makes its arguments valid against the tool's schema. It can't decide by itself whether
to call one (tool_choice "auto" needs a parser for a tool-call format it doesn't have), so
`auto` spills such a request to a remote route and the local-only alias refuses it, naming the
setting that would enable it.
"""

from __future__ import annotations

import json
from typing import Any

import jsonschema
import openai
import pytest
from openai_schema import validate

pytestmark = pytest.mark.e2e

CHAT_MODEL = "smollm2-135m"
WEATHER: Any = {
    "type": "function",
    "function": {
        "name": "get_weather",
        "description": "The current weather in a city.",
        "parameters": {
            "type": "object",
            "properties": {"city": {"type": "string"}, "unit": {"type": "string", "enum": ["celsius", "fahrenheit"]}},
            "required": ["city", "unit"],
            "additionalProperties": False,
        },
    },
}
ASK: Any = [{"role": "user", "content": "What is the weather in Paris?"}]


# A patient client: SmolLM2 on two shared cores is slow, and `auto` would rightly spill a request whose
# first token it predicts late (earlier tests' work still counts in the load it sees).
PATIENT = {"x-ttft-slo-ms": "30000"}


def test_a_tool_round_trip_on_auto_stays_on_the_local_model(client: openai.OpenAI) -> None:
    named: Any = {"type": "function", "function": {"name": "get_weather"}}
    raw = client.chat.completions.with_raw_response.create(
        model="auto",
        messages=ASK,
        tools=[WEATHER],
        tool_choice=named,
        temperature=0,
        max_tokens=60,
        extra_headers=PATIENT,
    )
    validate("CreateChatCompletionResponse", raw.http_response.json())
    assert raw.headers["x-served-by"] == f"local/{CHAT_MODEL}", raw.headers["x-route-reason"]
    first = raw.parse().choices[0]
    (call,) = first.message.tool_calls or []
    assert first.finish_reason == "stop" and call.id.startswith("call_")  # a named call stops, as OpenAI's
    assert call.function.name == "get_weather"  # type: ignore[union-attr]
    jsonschema.validate(json.loads(call.function.arguments), WEATHER["function"]["parameters"])  # type: ignore[union-attr]
    history: Any = [
        *ASK,
        first.message.model_dump(exclude_none=True),
        {"role": "tool", "tool_call_id": call.id, "content": '{"sky": "sunny", "celsius": 21}'},
    ]
    raw = client.chat.completions.with_raw_response.create(
        model="auto",
        messages=history,
        tools=[WEATHER],
        tool_choice="none",
        temperature=0,
        max_tokens=30,
        extra_headers=PATIENT,
    )
    validate("CreateChatCompletionResponse", raw.http_response.json())
    assert raw.headers["x-served-by"] == f"local/{CHAT_MODEL}", raw.headers["x-route-reason"]
    answer = raw.parse().choices[0]
    assert answer.message.content and not answer.message.tool_calls


def test_required_streams_a_valid_call(client: openai.OpenAI) -> None:
    # The local-only alias: no remote route behind it to take over while SmolLM2 writes the call's name.
    with client.chat.completions.stream(
        model="local",
        messages=ASK,
        tools=[WEATHER],
        tool_choice="required",
        parallel_tool_calls=False,
        temperature=0,
        max_tokens=60,
    ) as stream:
        deltas = [e for e in stream if e.type == "tool_calls.function.arguments.delta"]
        final = stream.get_final_completion()
    (call,) = final.choices[0].message.tool_calls or []
    assert call.function.name == "get_weather" and final.choices[0].finish_reason == "tool_calls"  # type: ignore[union-attr]
    jsonschema.validate(json.loads(call.function.arguments), WEATHER["function"]["parameters"])  # type: ignore[union-attr]
    assert len(deltas) > 1  # as generated


def test_auto_tool_choice_spills_and_the_local_alias_says_what_it_needs(client: openai.OpenAI) -> None:
    raw = client.chat.completions.with_raw_response.create(model="auto", messages=ASK, tools=[WEATHER], max_tokens=30)
    assert not raw.headers["x-served-by"].startswith("local/")
    assert raw.headers["x-route-reason"] == "capability: the local model lacks auto_tools"
    with pytest.raises(openai.BadRequestError) as e:
        client.chat.completions.create(model="local", messages=ASK, tools=[WEATHER], max_tokens=30)
    error = e.value.body
    assert isinstance(error, dict) and (error["param"], error["code"]) == ("tool_choice", "unsupported_auto_tools")
    assert "local.tool_parser" in error["message"]
