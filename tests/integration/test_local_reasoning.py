"""A local reasoning model with vLLM's reasoning parser, through the gateway, with the openai SDK.

No model here thinks aloud, so `RecordedEngine` replays what an R1-distill writes through the real
engine's output path: vLLM's deepseek_r1 reasoning parser (`local_models.tools`, composed with the
hermes tool-call parser), the real `Folding` into batches, the local provider and the whole gateway;
only vLLM's sampling is replaced by the recording, a token at a time (streamed) or all at once (whole).
The answer's reasoning is `reasoning_content`, before its content, as a remote reasoning model's is.
"""

from __future__ import annotations

import json
from collections import deque
from collections.abc import AsyncGenerator, AsyncIterator
from types import SimpleNamespace
from typing import Any

import httpx
import openai
import pytest
from openai_schema import validate

from local_models.catalog import prepare
from local_models.interface import Batch, EmbedResult, GenerateRequest, LoadStats, ModelInfo
from local_models.outputs import Folding, OutputReader
from local_models.tools import ToolCalling
from orchestrator.api import build_app
from orchestrator.app import build_pipeline
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


class RecordedEngine:
    """An `Engine` whose model writes the next recorded text; everything after sampling is real."""

    def __init__(self, tokenizer: Any):
        self._tokenizer = tokenizer
        self._tools = ToolCalling(tokenizer, "hermes", lambda params: None, "deepseek_r1")
        self._prompt = tokenizer.encode("<|user|>question<|assistant|><think>\n", add_special_tokens=False)
        self.replies: deque[str] = deque()

    async def generate(self, request: GenerateRequest) -> AsyncGenerator[Batch, None]:
        tools = self._tools.session(request)
        readers = tools.readers([self._prompt], 1) if tools is not None else None
        folding = Folding(OutputReader(self._tokenizer), request, [self._prompt], readers)
        ids = self._tokenizer.encode(self.replies.popleft(), add_special_tokens=False)
        outputs, done = [], ""
        for k in range(1, len(ids) + 1):
            text = self._tokenizer.decode(ids[:k])
            out = SimpleNamespace(index=0, text=text[len(done) :], token_ids=[ids[k - 1]], logprobs=None)
            out.finish_reason = "stop" if k == len(ids) else None
            outputs.append((0, SimpleNamespace(num_cached_tokens=0, outputs=[out])))
            done = text
        outputs.append((0, None))
        steps = [[o] for o in outputs] if request["stream"] else [outputs]  # by token, or all ready at once
        for items in steps:
            batch = folding.fold(items)
            if batch is not None:
                yield batch

    async def embed(self, inputs: list[str] | list[list[int]]) -> EmbedResult:
        raise NotImplementedError

    def stats(self) -> LoadStats:
        raise NotImplementedError

    def info(self) -> ModelInfo:
        return ModelInfo(
            name=MODEL,
            task="generate",
            max_model_len=4096,
            has_chat_template=True,
            tool_modes=self._tools.modes,
            tool_parser="hermes",
            reasoning_parser="deepseek_r1",
        )

    def shutdown(self) -> None:
        pass


@pytest.fixture(scope="module")
def engine() -> RecordedEngine:
    from transformers import AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(
        str(prepare("tiny-random", load_settings().data_dir, progress=False).path)
    )
    tokenizer.add_tokens(["<think>", "</think>"])  # single tokens, as in the R1-distills' vocabulary
    return RecordedEngine(tokenizer)


@pytest.fixture(scope="module")
async def sdk(engine: RecordedEngine) -> AsyncIterator[openai.AsyncOpenAI]:
    app = build_app(await build_pipeline({"local": (engine, engine.info())}))
    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(transport=transport, base_url="http://t") as http:
        async with openai.AsyncOpenAI(base_url="http://t/v1", api_key="x", http_client=http, max_retries=0) as c:
            yield c


def thought_tokens(engine: RecordedEngine) -> int:
    return len(engine._tokenizer.encode(f"{THOUGHT}\n", add_special_tokens=False))


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
