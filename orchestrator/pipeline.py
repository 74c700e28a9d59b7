"""The request flow, readable top to bottom.

    resolve the model name -> the backends able to serve this request (the plan)
    -> try them in order with retries and failover (`failover.run_with_failover`)
    -> a chunk stream committed at its first content, or a whole response

A stream is handed to the edge only once a route produced its first content
chunk, so every failure before that falls over to the next route without the
client seeing it. A whole (non-stream) response is folded inside the attempt,
so even a failure mid-answer falls over. The plan today is the configured
order; the scheduler (latency, load, price), the response cache,
single-flight and budgets slot in around `_plan` and `_run` (see
shared/DESIGN.md) and are not faked here. What the pipeline returns says who
served the request and why (`x-served-by`, `x-route-reason`).
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable, Callable, Mapping
from dataclasses import dataclass
from typing import Any, Generic, TypeVar

from orchestrator.capabilities import Feature, Registry, Task, chat_needs
from orchestrator.failover import Breakers, OpenStream, Policy, Success, Target, open_stream, run_with_failover
from orchestrator.protocol import (
    ChatCompletion,
    ChatCompletionChunk,
    ChatCompletionRequest,
    CompletionChunk,
    CompletionRequest,
    EmbeddingRequest,
    EmbeddingResponse,
    ModelCard,
    ModelList,
)
from orchestrator.providers.base import Provider
from orchestrator.streams import assemble_chat, assemble_completion

T = TypeVar("T")
R = TypeVar("R")


@dataclass(frozen=True)
class Route:
    """Who served a request, and why."""

    provider: str
    model: str
    reason: str


@dataclass(frozen=True)
class Routed(Generic[T]):
    route: Route
    result: T


def _chat_started(chunk: ChatCompletionChunk) -> bool:
    return any(c.delta.content or c.delta.tool_calls or c.delta.refusal or c.finish_reason for c in chunk.choices)


def _completion_started(chunk: CompletionChunk) -> bool:
    return any(c.text or c.finish_reason for c in chunk.choices)


class Pipeline:
    """Turns validated OpenAI requests into answers from the right backend."""

    def __init__(
        self,
        registry: Registry,
        providers: Mapping[str, Provider],
        *,
        created: int,
        policy: Policy | None = None,
        breakers: Breakers | None = None,
    ):
        self._registry = registry
        self._providers = providers
        self._created = created
        self._policy = policy or Policy()
        self._breakers = breakers or Breakers(self._policy.breaker_threshold, self._policy.breaker_cooldown_s)

    # ----------------------------------------------------------------------- chat

    async def chat_stream(self, request: ChatCompletionRequest) -> Routed[OpenStream[ChatCompletionChunk]]:
        plan = self._plan(request.model, "chat", chat_needs(request))
        done = await self._run(
            plan, lambda t: self._open(self._providers[t.provider].chat(request, t.model), _chat_started, t)
        )
        return _routed(done, done.result)

    async def chat(self, request: ChatCompletionRequest) -> Routed[ChatCompletion]:
        plan = self._plan(request.model, "chat", chat_needs(request))

        async def whole(t: Target) -> ChatCompletion:
            opened = await self._open(self._providers[t.provider].chat(request, t.model), _chat_started, t)
            return await assemble_chat(opened.chunks())

        done = await self._run(plan, whole)
        return _routed(done, done.result)

    # ---------------------------------------------------------------- completions

    async def complete_stream(self, request: CompletionRequest) -> Routed[OpenStream[CompletionChunk]]:
        plan = self._plan(request.model, "completions")
        done = await self._run(
            plan, lambda t: self._open(self._providers[t.provider].complete(request, t.model), _completion_started, t)
        )
        return _routed(done, done.result)

    async def complete(self, request: CompletionRequest) -> Routed[CompletionChunk]:
        plan = self._plan(request.model, "completions")

        async def whole(t: Target) -> CompletionChunk:
            stream = self._providers[t.provider].complete(request, t.model)
            opened = await self._open(stream, _completion_started, t)
            return await assemble_completion(opened.chunks())

        done = await self._run(plan, whole)
        return _routed(done, done.result)

    # ----------------------------------------------------------------- embeddings

    async def embed(self, request: EmbeddingRequest) -> Routed[EmbeddingResponse]:
        plan = self._plan(request.model, "embeddings")
        done = await self._run(plan, lambda t: self._providers[t.provider].embed(request, t.model))
        return _routed(done, done.result)

    def models(self) -> ModelList:
        return ModelList(
            data=[ModelCard(id=e.name, created=self._created, owned_by=e.owned_by) for e in self._registry.entries()]
        )

    # -------------------------------------------------------------------- helpers

    def _plan(self, name: str, task: Task, needs: set[Feature] | None = None) -> list[Target]:
        backends = self._registry.resolve(name).candidates(task, needs or set())
        return [Target(b.provider, b.model, "primary" if i == 0 else f"fallback-{i}") for i, b in enumerate(backends)]

    async def _run(self, plan: list[Target], attempt: Callable[[Target], Awaitable[R]]) -> Success[R]:
        return await run_with_failover(plan, attempt, policy=self._policy, breakers=self._breakers)

    async def _open(self, stream: AsyncIterator[T], started: Callable[[T], bool], target: Target) -> OpenStream[T]:
        return await open_stream(stream, has_content=started, policy=self._policy, provider=target.provider)


def _routed(done: Success[Any], result: T) -> Routed[T]:
    return Routed(Route(done.target.provider, done.target.model, done.reason()), result)
