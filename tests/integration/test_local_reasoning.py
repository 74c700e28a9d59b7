"""A local reasoning model with vLLM's reasoning parser, through the gateway, with the openai SDK.

No model here thinks aloud, so `RecordedEngine` replays what an R1-distill writes through the real
engine's output path: vLLM's deepseek_r1 reasoning parser (`local_models.tools`, composed with the
hermes tool-call parser), the real `Folding` into batches, the local provider and the whole gateway;
only vLLM's sampling is replaced by the recording, a token at a time (streamed) or all at once (whole).
The answer's reasoning is `reasoning_content`, before its content, as a remote reasoning model's is.
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

MODEL = "r1-recorded"
ASK: Any = [{"role": "user", "content": "What is the capital of France?"}]
THOUGHT = "The user asks for the capital of France. That is Paris; answer in one sentence."
ANSWER = "The capital of France is Paris."
# What an R1-distill writes (its template opens the thinking with "<think>\n" in the prompt).
REPLY = f"{THOUGHT}\n</think>\n\n{ANSWER}"
WEATHER: Any = {
    "type": "function",
    "function": {
        "name": "get_weather",
        "parameters": {"type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]},
    },
}


@pytest.fixture(scope="module")
def engine() -> RecordedEngine:
    from transformers import AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(
        str(prepare("tiny-random", load_settings().data_dir, progress=False).path)
    )
    tokenizer.add_tokens(["<think>", "</think>"])  # single tokens, as in the R1-distills' vocabulary
    prompt = tokenizer.encode("<|user|>question<|assistant|><think>\n", add_special_tokens=False)
    return RecordedEngine(tokenizer, MODEL, prompt, "hermes", "deepseek_r1")


@pytest.fixture(scope="module")
async def sdk(engine: RecordedEngine) -> AsyncIterator[openai.AsyncOpenAI]:
    async with gateway_sdk(engine) as client:
        yield client


def thought_tokens(engine: RecordedEngine) -> int:
    return len(engine.tokenizer.encode(f"{THOUGHT}\n", add_special_tokens=False))


async def test_a_whole_answer_has_its_reasoning_apart(sdk: openai.AsyncOpenAI, engine: RecordedEngine) -> None:
    engine.replies.append(REPLY)
    raw = await sdk.chat.completions.with_raw_response.create(model=MODEL, messages=ASK)
    body = raw.http_response.json()
    validate("CreateChatCompletionResponse", body)
    assert raw.headers["x-served-by"] == f"local/{MODEL}"
    message = body["choices"][0]["message"]
    assert message["reasoning_content"].strip() == THOUGHT and message["content"].strip() == ANSWER
    assert body["choices"][0]["finish_reason"] == "stop"
    usage = raw.parse().usage
    assert usage is not None and usage.completion_tokens_details is not None
    assert usage.completion_tokens_details.reasoning_tokens == thought_tokens(engine)


async def test_a_streamed_answer_sends_reasoning_then_content(sdk: openai.AsyncOpenAI, engine: RecordedEngine) -> None:
    engine.replies.append(REPLY)
    stream = await sdk.chat.completions.create(
        model=MODEL, messages=ASK, stream=True, stream_options={"include_usage": True}
    )
    kinds, reasoning, content, usage = [], "", "", None
    async for chunk in stream:
        validate("CreateChatCompletionStreamResponse", chunk.model_dump(exclude_unset=True))  # as sent
        usage = chunk.usage or usage
        if not chunk.choices:
            continue
        delta = chunk.choices[0].delta
        thought = getattr(delta, "reasoning_content", None) or ""
        reasoning += thought
        content += delta.content or ""
        kinds += [k for k, part in (("reasoning", thought), ("content", delta.content)) if part]
    assert reasoning.strip() == THOUGHT and content.strip() == ANSWER
    first_content = kinds.index("content")
    assert kinds[0] == "reasoning" and "reasoning" not in kinds[first_content:]  # all the thinking first
    assert kinds.count("reasoning") > 5  # streamed as it was written, not all at the end
    assert usage is not None and usage.completion_tokens_details is not None
    assert usage.completion_tokens_details.reasoning_tokens == thought_tokens(engine)


async def test_reasoning_then_a_tool_call(sdk: openai.AsyncOpenAI, engine: RecordedEngine) -> None:
    for stream in (False, True):
        engine.replies.append(
            'I need the weather tool.\n</think>\n\n<tool_call>\n{"name": "get_weather", "arguments": {"city": "Paris"}}'
            "\n</tool_call>"
        )
        if stream:
            async with sdk.chat.completions.stream(model=MODEL, messages=ASK, tools=[WEATHER]) as s:
                async for _ in s:
                    pass
                choice = (await s.get_final_completion()).choices[0]
        else:
            choice = (await sdk.chat.completions.create(model=MODEL, messages=ASK, tools=[WEATHER])).choices[0]
        message = choice.message
        assert getattr(message, "reasoning_content", "").strip() == "I need the weather tool."
        (call,) = message.tool_calls or []
        assert call.function.name == "get_weather" and json.loads(call.function.arguments) == {"city": "Paris"}
        assert choice.finish_reason == "tool_calls"
