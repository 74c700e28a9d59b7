"""Remote routes through the Ray endpoint, with the official openai client.

The default config's `llama-3.1-8b-instruct` chain is groq → together →
openrouter; groq has no key here, so together serves first and openrouter is
the fallback. Both are fakes on loopback speaking the providers' wire format.
"""

from __future__ import annotations

import json
from typing import Any

import openai
import pytest

from orchestrator.testing.provider import FakeProvider

pytestmark = pytest.mark.e2e

CHAIN = "llama-3.1-8b-instruct"
QUESTION: list[Any] = [{"role": "user", "content": "What is the weather in Paris?"}]
TOOLS: list[Any] = [
    {
        "type": "function",
        "function": {
            "name": "get_weather",
            "description": "Weather for a city",
            "parameters": {"type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]},
        },
    }
]
FAULTS = [
    ("rate_limit", {"retry_after": 30}),
    ("server_error", {}),
    ("reset", {}),
    ("stall", {"stall_after": 0}),
    ("malformed", {"stall_after": 0}),
    ("slow_first_token", {"slow_ttft_s": 10}),
]


@pytest.fixture(autouse=True)
def healthy(remote_fakes: dict[str, FakeProvider]) -> None:
    for fake in remote_fakes.values():
        fake.clear_fault()
        fake.reset_stats()


def tool_call_of_stream(stream: Any) -> tuple[str, str, str | None]:
    name, args, finish = "", "", None
    for chunk in stream:
        for choice in chunk.choices:
            for call in choice.delta.tool_calls or []:
                name += (call.function and call.function.name) or ""
                args += (call.function and call.function.arguments) or ""
            finish = choice.finish_reason or finish
    return name, args, finish


@pytest.mark.parametrize("stream", [False, True], ids=["json", "sse"])
@pytest.mark.parametrize(("fault", "options"), FAULTS, ids=[f for f, _ in FAULTS])
def test_tools_answer_correctly_while_the_first_provider_fails(
    client: openai.OpenAI, remote_fakes: dict[str, FakeProvider], fault: str, options: dict[str, Any], stream: bool
) -> None:
    remote_fakes["together"].set_fault(fault, **options)
    if stream:
        raw = client.chat.completions.with_raw_response.create(model=CHAIN, messages=QUESTION, tools=TOOLS, stream=True)
        name, args, finish = tool_call_of_stream(raw.parse())
    else:
        raw = client.chat.completions.with_raw_response.create(model=CHAIN, messages=QUESTION, tools=TOOLS)
        choice = raw.parse().choices[0]
        assert choice.message.tool_calls
        call = choice.message.tool_calls[0]
        name, args, finish = call.function.name, call.function.arguments, choice.finish_reason  # type: ignore[union-attr]
    assert (name, json.loads(args), finish) == ("get_weather", {"city": "x"}, "tool_calls")
    assert raw.headers["x-served-by"].startswith("openrouter/")
    assert "fallback after together" in raw.headers["x-route-reason"]
    assert remote_fakes["together"].faults_applied.get(fault) == 1


def test_healthy_chain_is_served_by_its_first_available_route(client: openai.OpenAI) -> None:
    raw = client.chat.completions.with_raw_response.create(model=CHAIN, messages=QUESTION, max_tokens=20)
    assert raw.headers["x-served-by"].startswith("together/")
    assert raw.headers["x-route-reason"] == "remote: no local route"
    assert raw.parse().choices[0].message.content


@pytest.mark.parametrize("stream", [False, True], ids=["json", "sse"])
def test_anthropic_route_answers_a_chat_with_tools(client: openai.OpenAI, stream: bool) -> None:
    if stream:
        name, args, finish = tool_call_of_stream(
            client.chat.completions.create(model="anthropic/claude-haiku", messages=QUESTION, tools=TOOLS, stream=True)
        )
    else:
        choice = client.chat.completions.create(model="anthropic/claude-haiku", messages=QUESTION, tools=TOOLS).choices[
            0
        ]
        assert choice.message.tool_calls
        call = choice.message.tool_calls[0]
        name, args, finish = call.function.name, call.function.arguments, choice.finish_reason  # type: ignore[union-attr]
    assert (name, json.loads(args), finish) == ("get_weather", {"city": "x"}, "tool_calls")


def test_no_healthy_route_is_a_clean_openai_error(client: openai.OpenAI, remote_fakes: dict[str, FakeProvider]) -> None:
    remote_fakes["together"].set_fault("server_error")
    remote_fakes["openrouter"].set_fault("server_error")
    with pytest.raises(openai.APIStatusError) as info:
        client.chat.completions.create(model=CHAIN, messages=QUESTION)
    assert info.value.status_code == 502
    assert "together" in info.value.message and "openrouter" in info.value.message
