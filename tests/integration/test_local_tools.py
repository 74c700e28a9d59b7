"""Tool calls of a local model with a tool-call parser, through the gateway, with the openai SDK.

No model here writes Hermes-format tool calls, so `RecordedEngine` replays recorded model text
through the real engine's output path: vLLM's hermes parser (`local_models.tools`), the real
`Folding` into batches, the local provider and the whole gateway; only vLLM's sampling is
replaced by the recording, one token at a time (streamed) or all at once (whole).
"""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from typing import Any

import openai
import pytest
from openai_schema import validate
from recorded_engine import RecordedEngine
from recorded_engine import sdk as gateway_sdk

from local_models.catalog import prepare
from orchestrator.settings import load_settings

MODEL = "hermes-recorded"
WEATHER: Any = {
    "type": "function",
    "function": {
        "name": "get_weather",
        "description": "The weather in a city.",
        "parameters": {"type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]},
    },
}
TIME: Any = {
    "type": "function",
    "function": {"name": "get_time", "parameters": {"type": "object", "properties": {"zone": {"type": "string"}}}},
}
ASK: Any = [{"role": "user", "content": "What is the weather and the time in Paris?"}]
# What Qwen2.5 writes for such a question (its chat template tells it the <tool_call> format).
CALLS = (
    "I'll look both up.\n"
    '<tool_call>\n{"name": "get_weather", "arguments": {"city": "Paris"}}\n</tool_call>\n'
    '<tool_call>\n{"name": "get_time", "arguments": {"zone": "Europe/Paris"}}\n</tool_call>'
)
ANSWER = "It is sunny in Paris, and 14:00."


@pytest.fixture(scope="module")
def engine() -> RecordedEngine:
    from transformers import AutoTokenizer

    path = prepare("tiny-random", load_settings().data_dir, progress=False).path
    return RecordedEngine(AutoTokenizer.from_pretrained(str(path)), MODEL, [1, 2, 3], "hermes")


@pytest.fixture(scope="module")
async def sdk(engine: RecordedEngine) -> AsyncIterator[openai.AsyncOpenAI]:
    async with gateway_sdk(engine) as client:
        yield client


def calls_of(message: Any) -> list[tuple[str, dict[str, Any]]]:
    return [(c.function.name, json.loads(c.function.arguments)) for c in message.tool_calls or []]


async def test_auto_tool_calls_whole(sdk: openai.AsyncOpenAI, engine: RecordedEngine) -> None:
    engine.replies.append(CALLS)
    raw = await sdk.chat.completions.with_raw_response.create(model=MODEL, messages=ASK, tools=[WEATHER, TIME])
    validate("CreateChatCompletionResponse", raw.http_response.json())
    assert raw.headers["x-served-by"] == f"local/{MODEL}"
    choice = raw.parse().choices[0]
    assert calls_of(choice.message) == [("get_weather", {"city": "Paris"}), ("get_time", {"zone": "Europe/Paris"})]
    assert choice.finish_reason == "tool_calls" and (choice.message.content or "").strip() == "I'll look both up."
    ids = [c.id for c in choice.message.tool_calls or []]
    assert all(i.startswith("call_") for i in ids) and len(set(ids)) == 2
    sent = engine.requests[-1]
    assert sent["tools"] == [WEATHER, TIME] and "tool_choice" not in sent  # OpenAI's default: auto


async def test_auto_tool_calls_streamed_in_openais_shape(sdk: openai.AsyncOpenAI, engine: RecordedEngine) -> None:
    engine.replies.append(CALLS)
    raw = await sdk.chat.completions.with_raw_response.create(
        model=MODEL, messages=ASK, tools=[WEATHER, TIME], stream=True
    )
    text = (await raw.http_response.aread()).decode()
    assert text.endswith("data: [DONE]\n\n")
    chunks = [json.loads(e[6:]) for e in text.split("\n\n") if e[6:] not in ("", "[DONE]")]
    for chunk in chunks:
        validate("CreateChatCompletionStreamResponse", chunk)
    deltas = [d for c in chunks for d in c["choices"][0]["delta"].get("tool_calls") or []]
    firsts = [d for d in deltas if "id" in d]
    # Each call opens with its id, type and name (and no more name after); arguments follow in pieces.
    assert [(d["index"], d["type"], d["function"]["name"]) for d in firsts] == [
        (0, "function", "get_weather"),
        (1, "function", "get_time"),
    ]
    assert all("name" not in d["function"] for d in deltas if "id" not in d)
    assert len(deltas) > 4  # arguments as they were written, not all at the end
    args = ["".join(d["function"].get("arguments") or "" for d in deltas if d["index"] == i) for i in (0, 1)]
    assert [json.loads(a) for a in args] == [{"city": "Paris"}, {"zone": "Europe/Paris"}]
    assert chunks[-1]["choices"][0]["finish_reason"] == "tool_calls"


async def test_the_sdks_stream_helper_folds_the_same_calls(sdk: openai.AsyncOpenAI, engine: RecordedEngine) -> None:
    engine.replies.append(CALLS)
    async with sdk.chat.completions.stream(model=MODEL, messages=ASK, tools=[WEATHER, TIME]) as stream:
        async for _ in stream:
            pass
        final = await stream.get_final_completion()
    assert calls_of(final.choices[0].message) == [
        ("get_weather", {"city": "Paris"}),
        ("get_time", {"zone": "Europe/Paris"}),
    ]


async def test_parallel_tool_calls_false_keeps_the_first(sdk: openai.AsyncOpenAI, engine: RecordedEngine) -> None:
    for stream in (False, True):
        engine.replies.append(CALLS)
        async with (
            sdk.chat.completions.stream(model=MODEL, messages=ASK, tools=[WEATHER, TIME], parallel_tool_calls=False)
            if stream
            else _whole(sdk) as answer
        ):
            message = (await answer.get_final_completion()).choices[0].message
        assert calls_of(message) == [("get_weather", {"city": "Paris"})]


class _whole:
    """A whole answer shaped like the SDK's stream manager, so one test body checks both."""

    def __init__(self, sdk: openai.AsyncOpenAI):
        self._sdk = sdk

    async def __aenter__(self) -> _whole:
        return self

    async def __aexit__(self, *exc: Any) -> None:
        return None

    async def get_final_completion(self) -> Any:
        return await self._sdk.chat.completions.create(
            model=MODEL, messages=ASK, tools=[WEATHER, TIME], parallel_tool_calls=False
        )


async def test_a_tool_round_trip(sdk: openai.AsyncOpenAI, engine: RecordedEngine) -> None:
    engine.replies.extend([CALLS, ANSWER])
    first = (await sdk.chat.completions.create(model=MODEL, messages=ASK, tools=[WEATHER, TIME])).choices[0].message
    results = [
        {"role": "tool", "tool_call_id": c.id, "content": "sunny" if i == 0 else "14:00"}
        for i, c in enumerate(first.tool_calls or [])
    ]
    history: Any = [*ASK, first.model_dump(exclude_none=True), *results]
    second = await sdk.chat.completions.create(model=MODEL, messages=history, tools=[WEATHER, TIME])
    assert second.choices[0].message.content == ANSWER and not second.choices[0].message.tool_calls
    assert second.choices[0].finish_reason == "stop"
    sent = engine.requests[-1]["messages"]
    assert [m["role"] for m in sent] == ["user", "assistant", "tool", "tool"]
    assert [c["id"] for c in sent[1]["tool_calls"]] == [c.id for c in first.tool_calls or []]
