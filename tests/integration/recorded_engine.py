"""An `Engine` whose model writes recorded text: everything after vLLM's sampling is real.

For parsers no model here exercises (a Qwen2.5's Hermes tool calls, an R1-distill's thinking): the
recording goes through the real engine's output path — `local_models.tools` with vLLM's own parsers,
the real `Folding` into batches — then the local provider and the whole gateway, a token at a time
(streamed) or all at once (whole). `sdk` is the openai client on a gateway over it.
"""

from __future__ import annotations

from collections import deque
from collections.abc import AsyncGenerator, AsyncIterator
from contextlib import asynccontextmanager
from types import SimpleNamespace
from typing import Any

import httpx
import openai

from local_models.interface import Batch, EmbedResult, GenerateRequest, LoadStats, ModelInfo
from local_models.outputs import Folding, OutputReader
from local_models.tools import ToolCalling
from orchestrator.api import build_app
from orchestrator.app import build_pipeline


class RecordedEngine:
    """Replays `replies` in order, after `prompt` (token ids), with `tool_parser` and `reasoning_parser`."""

    def __init__(
        self, tokenizer: Any, name: str, prompt: list[int], tool_parser: str, reasoning_parser: str | None = None
    ):
        self.name = name
        self.tokenizer = tokenizer
        self._tools = ToolCalling(tokenizer, tool_parser, lambda params: None, reasoning_parser)
        self._prompt = prompt
        self._tool_parser, self._reasoning_parser = tool_parser, reasoning_parser
        self.replies: deque[str] = deque()
        self.requests: list[GenerateRequest] = []

    async def generate(self, request: GenerateRequest) -> AsyncGenerator[Batch, None]:
        self.requests.append(request)
        tools = self._tools.session(request)
        readers = tools.readers([self._prompt], 1) if tools is not None else None
        folding = Folding(OutputReader(self.tokenizer), request, [self._prompt], readers)
        ids = self.tokenizer.encode(self.replies.popleft(), add_special_tokens=False)
        outputs, done = [], ""
        for k in range(1, len(ids) + 1):
            text = self.tokenizer.decode(ids[:k])
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
        info = ModelInfo(
            name=self.name,
            task="generate",
            max_model_len=4096,
            has_chat_template=True,
            tool_modes=self._tools.modes,
            tool_parser=self._tool_parser,
        )
        if self._reasoning_parser is not None:
            info["reasoning_parser"] = self._reasoning_parser
        return info

    def shutdown(self) -> None:
        pass


@asynccontextmanager
async def sdk(engine: RecordedEngine) -> AsyncIterator[openai.AsyncOpenAI]:
    """The official client on a gateway whose local model is `engine`."""
    app = build_app(await build_pipeline({"local": (engine, engine.info())}))
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://t") as http:
        async with openai.AsyncOpenAI(base_url="http://t/v1", api_key="x", http_client=http, max_retries=0) as c:
            yield c
