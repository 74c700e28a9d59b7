"""Reasoning models through every front door: streamed as it comes, never fallen over, kept whole.

Two fake reasoning providers on real sockets: "deep" speaks OpenAI's wire
format and streams 30 words of `reasoning_content` (1.5 s at 20 words/s)
before its answer; "claude" speaks Anthropic's and answers with a signed
thinking block first. The gateway runs on a loopback socket (a stream's
timing is only visible there) with a first-token timeout of 0.5 s: shorter
than the reasoning, so a gateway that waited for content would fall over.
"""

from __future__ import annotations

import json
import time
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import anthropic
import httpx
import openai
import pytest
from anthropic.types import Message, RawMessageStreamEvent
from loopback import serving
from openai_schema import validate
from pydantic import TypeAdapter

from orchestrator.api import build_app
from orchestrator.app import build_pipeline
from orchestrator.settings import load_settings
from orchestrator.testing.engine import FakeEngine
from orchestrator.testing.provider import FakeProvider

KEYS = {"DEEP_KEY": "sk-deep-SECRET-1", "CLAUDE_KEY": "sk-ant-SECRET-2"}
REASONING_WORDS = 30
TOKENS_PER_S = 20.0
QUESTION = [{"role": "user", "content": "Why is the sky blue?"}]
WEATHER = {
    "name": "get_weather",
    "description": "The weather in a city.",
    "input_schema": {"type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]},
}


@pytest.fixture(scope="module")
def fakes() -> Iterator[dict[str, FakeProvider]]:
    with (
        FakeProvider(
            api_key=KEYS["DEEP_KEY"],
            reply="Rayleigh scattering.",
            reasoning_tokens=REASONING_WORDS,
            ttft_ms=50,
            tokens_per_s=TOKENS_PER_S,
        ) as deep,
        FakeProvider(api_key=KEYS["CLAUDE_KEY"], reply="Rayleigh scattering.", reasoning_tokens=6) as claude,
    ):
        yield {"deep": deep, "claude": claude}


@pytest.fixture(autouse=True)
def healthy(fakes: dict[str, FakeProvider]) -> None:
    for fake in fakes.values():
        fake.clear_fault()
        fake.reset_stats()


@pytest.fixture
async def url(fakes: dict[str, FakeProvider], tmp_path: Path) -> AsyncIterator[str]:
    settings = load_settings(
        data_dir=str(tmp_path),
        providers={
            "deep": {
                "base_url": fakes["deep"].base_url + "/v1",
                "api_key_env": "DEEP_KEY",
                "models": {"r1": {"id": "deep-reasoner"}},
            },
            "claude": {
                "kind": "anthropic",
                "base_url": fakes["claude"].base_url,
                "api_key_env": "CLAUDE_KEY",
                "models": {"sonnet": {"id": "claude-test"}},
            },
        },
        models={"thinkers": ["deep/r1", "claude/sonnet"]},
        resilience={"first_token_timeout_s": 0.5, "idle_timeout_s": 0.5, "deadline_s": 10.0, "backoff_base_s": 0.05},
        cache={"directory": str(tmp_path / "cache")},
        ledger={"path": str(tmp_path / "ledger.sqlite"), "owner": "process"},
    )
    engine = FakeEngine("fake-chat")
    async with httpx.AsyncClient() as upstream:
        pipeline = await build_pipeline({"local": (engine, engine.info())}, settings, env=KEYS, client=upstream)
        async with serving(build_app(pipeline)) as served:
            yield served


def chat_client(url: str) -> openai.AsyncOpenAI:
    return openai.AsyncOpenAI(base_url=url + "/v1", api_key="x", max_retries=0, timeout=20)


# ------------------------------------------------------------------------------ OpenAI chat


async def test_a_reasoning_stream_reaches_the_client_as_it_reasons(url: str, fakes: dict[str, FakeProvider]) -> None:
    async with chat_client(url) as client:
        start = time.monotonic()
        stream = await client.chat.completions.create(model="thinkers", messages=QUESTION, stream=True)  # type: ignore[arg-type]
        arrivals: list[tuple[float, str, str]] = []
        async for chunk in stream:
            for choice in chunk.choices:
                reasoning = getattr(choice.delta, "reasoning_content", None)
                if reasoning or choice.delta.content:
                    kind = "reasoning" if reasoning else "content"
                    arrivals.append((time.monotonic() - start, kind, reasoning or choice.delta.content or ""))
    first_reasoning = next(t for t, kind, _ in arrivals if kind == "reasoning")
    first_content = next(t for t, kind, _ in arrivals if kind == "content")
    # The reasoning came as it was made: the first word long before the answer (1.5 s of reasoning).
    assert first_reasoning < 0.5 < first_content
    assert "".join(text for _, kind, text in arrivals if kind == "reasoning").startswith("Let me think")
    # A healthy reasoning stream is never fallen over, however long it reasons before its content.
    assert fakes["deep"].counts["/v1/chat/completions"] == 1 and fakes["claude"].counts["/v1/messages"] == 0


async def test_a_whole_answer_keeps_its_reasoning_and_counts_it(url: str) -> None:
    async with httpx.AsyncClient(base_url=url, timeout=20) as http:
        r = await http.post("/v1/chat/completions", json={"model": "deep/r1", "messages": QUESTION})
    assert r.status_code == 200 and r.headers["x-served-by"] == "deep/deep-reasoner"
    body = r.json()
    validate("CreateChatCompletionResponse", body)
    message = body["choices"][0]["message"]
    assert message["content"] == "Rayleigh scattering."
    assert message["reasoning_content"].startswith("Let me think") and len(message["reasoning_content"].split()) == 30
    assert body["usage"]["completion_tokens_details"]["reasoning_tokens"] == REASONING_WORDS


async def test_reasoning_then_a_failure_ends_with_an_error_event_not_a_failover(
    url: str, fakes: dict[str, FakeProvider]
) -> None:
    fakes["deep"].set_fault("stream_error", stall_after=5)
    async with httpx.AsyncClient(base_url=url, timeout=20) as http:
        r = await http.post("/v1/chat/completions", json={"model": "thinkers", "messages": QUESTION, "stream": True})
    events = [line.removeprefix("data: ") for line in r.text.split("\n\n") if line.strip()]
    reasoning = [json.loads(e)["choices"][0]["delta"].get("reasoning_content") for e in events[1:-1]]
    assert all(reasoning) and len(reasoning) == 5  # what was reasoned reached the client ...
    assert "error" in json.loads(events[-1]) and "[DONE]" not in r.text  # ... and then it said it broke
    assert fakes["claude"].counts["/v1/messages"] == 0  # a stream that started is never answered twice


async def test_a_cached_reasoning_answer_is_replayed_with_its_reasoning(
    url: str, fakes: dict[str, FakeProvider]
) -> None:
    ask = {"model": "deep/r1", "messages": QUESTION, "temperature": 0}
    async with httpx.AsyncClient(base_url=url, timeout=20) as http:
        first = await http.post("/v1/chat/completions", json=ask)
        replay = await http.post("/v1/chat/completions", json={**ask, "stream": True})
    assert replay.headers["x-cache"] == "HIT" and fakes["deep"].counts["/v1/chat/completions"] == 1
    chunks = [json.loads(e.removeprefix("data: ")) for e in replay.text.split("\n\n") if e.startswith("data: {")]
    replayed = "".join(c["choices"][0]["delta"].get("reasoning_content") or "" for c in chunks if c["choices"])
    assert replayed == first.json()["choices"][0]["message"]["reasoning_content"]


async def test_an_anthropic_routes_thinking_is_reasoning_with_its_signature(url: str) -> None:
    async with httpx.AsyncClient(base_url=url, timeout=20) as http:
        r = await http.post("/v1/chat/completions", json={"model": "claude/sonnet", "messages": QUESTION})
    message = r.json()["choices"][0]["message"]
    assert message["reasoning_content"] == "Let me think about this step"
    assert message["reasoning_signature"].startswith("sig_") and message["content"] == "Rayleigh scattering."


async def test_reasoning_effort_is_a_thinking_budget_on_anthropic_routes(
    url: str, fakes: dict[str, FakeProvider]
) -> None:
    ask = {"model": "claude/sonnet", "messages": QUESTION, "reasoning_effort": "low", "temperature": 0.3}
    async with httpx.AsyncClient(base_url=url, timeout=20) as http:
        ok = await http.post("/v1/chat/completions", json={**ask, "max_tokens": 4000})
        small = await http.post("/v1/chat/completions", json={**ask, "max_tokens": 500})
    assert ok.status_code == 200
    sent = fakes["claude"].requests[-1].body
    assert sent["thinking"] == {"type": "enabled", "budget_tokens": 2048} and "temperature" not in sent
    assert small.status_code == 400 and small.json()["error"]["param"] == "max_tokens"


async def test_signed_reasoning_sent_back_in_chat_is_anthropics_thinking_again(
    url: str, fakes: dict[str, FakeProvider]
) -> None:
    assistant = {
        "role": "assistant",
        "content": None,
        "reasoning_content": "I should look it up.",
        "reasoning_signature": "sig_abc",
        "tool_calls": [{"id": "toolu_1", "type": "function", "function": {"name": "get_weather", "arguments": "{}"}}],
    }
    messages = [*QUESTION, assistant, {"role": "tool", "tool_call_id": "toolu_1", "content": "sunny"}]
    async with httpx.AsyncClient(base_url=url, timeout=20) as http:
        r = await http.post("/v1/chat/completions", json={"model": "claude/sonnet", "messages": messages})
    assert r.status_code == 200, r.text
    turn = fakes["claude"].requests[-1].body["messages"][1]
    assert turn["content"][0] == {"type": "thinking", "thinking": "I should look it up.", "signature": "sig_abc"}


# ------------------------------------------------------------------------------ Anthropic's Messages door


async def test_the_messages_door_relays_thinking_and_its_signature(url: str, fakes: dict[str, FakeProvider]) -> None:
    events: TypeAdapter[Any] = TypeAdapter(RawMessageStreamEvent)
    async with anthropic.AsyncAnthropic(base_url=url, api_key="x", max_retries=0) as client:
        whole = await client.messages.create(model="claude/sonnet", max_tokens=2000, messages=QUESTION)  # type: ignore[arg-type]
        Message.model_validate(whole.model_dump())
        assert [b.type for b in whole.content] == ["thinking", "text"]
        assert whole.content[0].signature.startswith("sig_")  # type: ignore[union-attr]
        async with client.messages.stream(model="deep/r1", max_tokens=2000, messages=QUESTION) as stream:  # type: ignore[arg-type]
            seen = [e async for e in stream]
            final = await stream.get_final_message()
    for event in seen:
        if event.type in ("message_start", "content_block_start", "content_block_delta", "content_block_stop"):
            events.validate_python(event.model_dump())
    assert [b.type for b in final.content] == ["thinking", "text"]
    assert final.content[0].thinking.startswith("Let me think")  # type: ignore[union-attr]


async def test_multi_turn_tool_use_with_thinking_through_the_messages_door(
    url: str, fakes: dict[str, FakeProvider]
) -> None:
    async with anthropic.AsyncAnthropic(base_url=url, api_key="x", max_retries=0) as client:
        first = await client.messages.create(
            model="claude/sonnet",
            max_tokens=2000,
            tools=[WEATHER],  # type: ignore[list-item]
            messages=[{"role": "user", "content": "Weather in Paris?"}],
        )
        assert [b.type for b in first.content] == ["thinking", "tool_use"]
        use = first.content[1]
        second = await client.messages.create(
            model="claude/sonnet",
            max_tokens=2000,
            tools=[WEATHER],  # type: ignore[list-item]
            messages=[
                {"role": "user", "content": "Weather in Paris?"},
                {"role": "assistant", "content": first.content},  # type: ignore[typeddict-item]
                {"role": "user", "content": [{"type": "tool_result", "tool_use_id": use.id, "content": "sunny"}]},  # type: ignore[union-attr]
            ],
        )
    assert second.stop_reason == "end_turn"
    sent_back = fakes["claude"].requests[-1].body["messages"][1]["content"][0]
    assert sent_back["type"] == "thinking" and sent_back["signature"] == first.content[0].signature  # type: ignore[union-attr]


# ------------------------------------------------------------------------------ the Responses door


async def test_the_responses_door_streams_a_reasoning_item(url: str) -> None:
    async with httpx.AsyncClient(base_url=url, timeout=20) as http:
        r = await http.post("/v1/responses", json={"model": "deep/r1", "input": "Why is the sky blue?", "stream": True})
    events = [json.loads(f.split("\n")[1].removeprefix("data: ")) for f in r.text.split("\n\n") if f.strip()]
    for event in events:
        validate("ResponseStreamEvent", event)
    kinds = [e["type"] for e in events]
    assert kinds[2] == "response.output_item.added" and events[2]["item"]["type"] == "reasoning"
    assert kinds.count("response.reasoning_text.delta") == REASONING_WORDS
    done = events[-1]["response"]
    assert [item["type"] for item in done["output"]] == ["reasoning", "message"]
    assert done["usage"]["output_tokens_details"]["reasoning_tokens"] == REASONING_WORDS


async def test_a_reasoning_item_sent_back_continues_an_anthropic_tool_use(
    url: str, fakes: dict[str, FakeProvider]
) -> None:
    tool = {"type": "function", "name": "get_weather", "parameters": WEATHER["input_schema"]}
    async with chat_client(url) as client:
        first = await client.responses.create(
            model="claude/sonnet", input="Weather in Paris?", tools=[tool], store=False
        )  # type: ignore[list-item]
        validate("Response", first.model_dump(mode="json", exclude_unset=True))
        reasoning, call = first.output
        assert reasoning.type == "reasoning" and call.type == "function_call"
        second = await client.responses.create(
            model="claude/sonnet",
            tools=[tool],  # type: ignore[list-item]
            store=False,
            input=[
                {"role": "user", "content": "Weather in Paris?"},
                reasoning.model_dump(exclude_none=True),  # type: ignore[list-item]
                call.model_dump(exclude_none=True),  # type: ignore[list-item]
                {"type": "function_call_output", "call_id": call.call_id, "output": "sunny"},
            ],
        )
    assert second.output_text
    thinking = fakes["claude"].requests[-1].body["messages"][1]["content"][0]
    assert thinking["type"] == "thinking" and thinking["signature"] == reasoning.encrypted_content  # type: ignore[union-attr]
