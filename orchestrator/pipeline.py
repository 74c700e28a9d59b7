"""The request flow, readable top to bottom.

    cache lookup (reproducible requests) ──hit──▶ replay as JSON or as a real stream
    single-flight: an identical request already in flight is joined, not repeated
    plan: the scheduler orders the routes able to serve it (`router`, `scheduler`)
    run: try them with retries and failover (`failover.run_with_failover`)
    ──▶ a stream committed at its first content, or a whole answer
    store the finished answer in the cache

A stream is handed to the edge only once a route produced its first content
chunk, so every failure before that falls over to the next route without the
client seeing it. A whole (non-stream) answer is folded inside the attempt,
so even a failure mid-answer falls over. Plans are made lazily, only for
requests the cache doesn't answer. Every result carries a `Route`: who
served it, why, and what the cache did.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping
from dataclasses import dataclass, replace
from typing import Any, Literal, TypeVar

from orchestrator.accounting import Tab, current_tab
from orchestrator.cache import (
    Decision,
    Entry,
    ResponseCache,
    cache_key,
    complete_enough,
    decide,
    fresh_chat,
    fresh_completion,
    replay_chat,
    replay_completion,
)
from orchestrator.capabilities import Registry, Task, chat_needs
from orchestrator.failover import Breakers, OpenStream, Policy, Success, Target, open_stream, run_with_failover
from orchestrator.ledger import Ledger, LogLedger, Prices, UsageRecord
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
    Usage,
)
from orchestrator.providers.base import Provider
from orchestrator.router import Planned, Router
from orchestrator.routes import Route, Routed
from orchestrator.singleflight import Flight, SingleFlight
from orchestrator.streams import assemble_chat, assemble_completion
from orchestrator.usage_tokens import answer_text, chunk_text

__all__ = ["CacheConfig", "Pipeline", "Route", "Routed"]

T = TypeVar("T")
R = TypeVar("R")
W = TypeVar("W", ChatCompletion, CompletionChunk)


@dataclass(frozen=True)
class CacheConfig:
    mode: Literal["auto", "always", "never"] = "auto"
    ttl_s: float = 3600.0
    shared: bool = False  # one namespace for every key (otherwise each key has its own)


def _chat_started(chunk: ChatCompletionChunk) -> bool:
    return any(c.delta.content or c.delta.tool_calls or c.delta.refusal or c.finish_reason for c in chunk.choices)


def _completion_started(chunk: CompletionChunk) -> bool:
    return any(c.text or c.finish_reason for c in chunk.choices)


@dataclass(frozen=True)
class _Kind:
    """What differs between chat and text completions along the flow."""

    name: Literal["chat", "completion"]
    task: Task
    started: Callable[[Any], bool]
    assemble: Callable[[AsyncIterator[Any]], Awaitable[Any]]
    replay: Callable[[Entry], AsyncIterator[Any]]
    fresh: Callable[[Entry], Any]


CHAT = _Kind("chat", "chat", _chat_started, assemble_chat, replay_chat, fresh_chat)
COMPLETION = _Kind(
    "completion", "completions", _completion_started, assemble_completion, replay_completion, fresh_completion
)


class Pipeline:
    """Turns validated OpenAI requests into answers from the cache or the right backend."""

    def __init__(
        self,
        registry: Registry,
        providers: Mapping[str, Provider],
        *,
        router: Router,
        created: int,
        policy: Policy | None = None,
        breakers: Breakers | None = None,
        cache: ResponseCache | None = None,
        cache_config: CacheConfig | None = None,
        prices: Prices | None = None,
        ledger: Ledger | None = None,
    ):
        self._registry = registry
        self._providers = providers
        self._router = router
        self._created = created
        self._policy = policy or Policy()
        self._breakers = breakers or Breakers(
            self._policy.breaker_threshold, self._policy.breaker_cooldown_s, window_s=self._policy.breaker_window_s
        )
        self._cache = cache
        self._cache_config = cache_config or CacheConfig()
        self._flights = SingleFlight()
        self._prices = prices or Prices({})
        self._ledger = ledger or LogLedger()

    # ------------------------------------------------------------------ public API

    async def chat_stream(
        self, request: ChatCompletionRequest, headers: Mapping[str, str] | None = None, namespace: str = "open"
    ) -> Routed[OpenStream[ChatCompletionChunk]]:
        return await self._stream(CHAT, request, headers or {}, namespace)

    async def chat(
        self, request: ChatCompletionRequest, headers: Mapping[str, str] | None = None, namespace: str = "open"
    ) -> Routed[ChatCompletion]:
        result: Routed[ChatCompletion] = await self._whole(CHAT, request, headers or {}, namespace)
        return result

    async def complete_stream(
        self, request: CompletionRequest, headers: Mapping[str, str] | None = None, namespace: str = "open"
    ) -> Routed[OpenStream[CompletionChunk]]:
        return await self._stream(COMPLETION, request, headers or {}, namespace)

    async def complete(
        self, request: CompletionRequest, headers: Mapping[str, str] | None = None, namespace: str = "open"
    ) -> Routed[CompletionChunk]:
        result: Routed[CompletionChunk] = await self._whole(COMPLETION, request, headers or {}, namespace)
        return result

    async def embed(
        self, request: EmbeddingRequest, headers: Mapping[str, str] | None = None
    ) -> Routed[EmbeddingResponse]:
        targets = self._router.embedding_targets(request, headers or {})
        done = await run_with_failover(
            targets,
            lambda t: self._providers[t.provider].embed(request, t.model),
            policy=self._policy,
            breakers=self._breakers,
        )
        return Routed(Route(done.target.provider, done.target.model, done.reason()), done.result)

    def models(self) -> ModelList:
        return ModelList(
            data=[ModelCard(id=e.name, created=self._created, owned_by=e.owned_by) for e in self._registry.entries()]
        )

    # ------------------------------------------------------------------- the flow

    async def _stream(
        self,
        kind: _Kind,
        request: Any,
        headers: Mapping[str, str],
        namespace: str,
    ) -> Routed[OpenStream[Any]]:
        key, decision = self._decide(request, headers, namespace)
        if (hit := self._lookup(key, decision)) is not None:
            replay = await open_stream(
                kind.replay(hit), has_content=kind.started, policy=self._policy, provider="cache"
            )
            return self._metered(request, Routed(_hit_route(hit), replay), hit)
        # Planned (and so validated: headers, data class, capabilities, context) before any flight
        # is joined: a request that joins another is held to the same rules as one that leads.
        planned = await self._plan(kind, request, headers)

        def upstream() -> Awaitable[Routed[OpenStream[Any]]]:
            return self._open_routed(kind, request, planned)

        if not decision.cacheable:
            return self._metered(request, _with_cache(await upstream(), decision))
        flight, leads = self._flights.join(_flight_key(key, planned), upstream, self._storer(kind, key, decision))
        routed = _with_cache(await flight.follow(), decision)
        return self._metered(request, routed if leads else _shared(routed), shared=not leads)

    async def _whole(
        self,
        kind: _Kind,
        request: Any,
        headers: Mapping[str, str],
        namespace: str,
    ) -> Routed[Any]:
        key, decision = self._decide(request, headers, namespace)
        if (hit := self._lookup(key, decision)) is not None:
            return self._accounted(request, Routed(_hit_route(hit), kind.fresh(hit)), hit)
        planned = await self._plan(kind, request, headers)
        if decision.cacheable:
            # Join (or start) the shared flight; if it fails, retry on our own, with
            # whole-answer failover, rather than hand a shared failure on.
            flight, leads = self._flights.join(
                _flight_key(key, planned),
                lambda: self._open_routed(kind, request, planned),
                self._storer(kind, key, decision),
            )
            try:
                routed = await flight.follow()
                whole = Routed(routed.route, await kind.assemble(routed.result.chunks()))
                whole = _with_cache(whole, decision)
                return self._accounted(request, whole if leads else _shared(whole), shared=not leads)
            except Exception:
                if not flight.finished or flight.route is None:
                    raise
        tracked = self._tracked(kind, request, planned)
        done = await self._run(planned, lambda t: self._fold(kind, tracked(t), t, planned))
        routed_whole = self._routed(planned, done, done.result)
        if decision.write and complete_enough(kind.name, routed_whole.result.model_dump()):
            await self._store(key, kind, routed_whole.result.model_dump(), routed_whole.route, decision)
        return self._accounted(request, _with_cache(routed_whole, decision))

    async def _plan(self, kind: _Kind, request: Any, headers: Mapping[str, str]) -> Planned:
        needs = chat_needs(request) if kind is CHAT else set()
        return await self._router.plan(request, kind.task, needs, headers)

    def _call(self, kind: _Kind, request: Any, target: Target) -> AsyncIterator[Any]:
        """One route's answer to `request`, as a chunk stream."""
        provider = self._providers[target.provider]
        return provider.chat(request, target.model) if kind is CHAT else provider.complete(request, target.model)

    async def _open_routed(self, kind: _Kind, request: Any, planned: Planned) -> Routed[OpenStream[Any]]:
        tracked = self._tracked(kind, request, planned)

        async def opened(t: Target) -> OpenStream[Any]:
            start = time.monotonic()
            stream = await self._open(tracked(t), kind.started, t)
            self._router.first_token(t, (time.monotonic() - start) * 1000, planned)
            return stream

        done = await self._run(planned, opened)
        return self._routed(planned, done, done.result)

    async def _fold(self, kind: _Kind, stream: AsyncIterator[Any], target: Target, planned: Planned) -> Any:
        start = time.monotonic()
        opened = await self._open(stream, kind.started, target)
        self._router.first_token(target, (time.monotonic() - start) * 1000, planned)
        return await kind.assemble(opened.chunks())

    # ------------------------------------------------------------------ accounting

    @property
    def registry(self) -> Registry:
        """The served models (read-only: the edge checks keys' models and worst cases against it)."""
        return self._registry

    @property
    def prices(self) -> Prices:
        return self._prices

    def _record(
        self,
        request: Any,
        route: Route,
        usage: Usage | None,
        answer_id: str,
        *,
        stream: bool,
        complete: bool,
        hit: Entry | None,
        tab: Tab | None,
        text: Callable[[], str] | None = None,
        shared: bool = False,
    ) -> None:
        # Inside a request the edge opened, the record goes to that request's tab (the
        # edge settles, logs and meters it); without usage from the provider, the tab's
        # tokenizer counts it. An answer shared with the identical request that led its
        # flight is recorded like a cache hit: that request paid for it.
        estimated = False
        if usage is None and text is not None and tab is not None and tab.estimator is not None:
            usage, estimated = tab.estimator.estimate(request, text()), True
        cost = self._prices.cost(route.provider, route.model, usage)
        free = hit is not None or shared
        if route.overflow and not free:
            self._router.overflowed(cost)  # counts against the burst budget, once per upstream call
        if hit is not None:
            saved = self._prices.cost(hit.provider, hit.model, usage)
        else:
            saved = cost if shared else 0.0
        details = usage.prompt_tokens_details if usage is not None else None
        (tab or self._ledger).record(
            UsageRecord(
                id=answer_id,
                model=request.model,
                provider=route.provider,
                provider_model=route.model,
                route_reason=route.reason,
                cache="SHARED" if shared else route.cache,
                stream=stream,
                prompt_tokens=usage.prompt_tokens if usage else 0,
                completion_tokens=usage.completion_tokens if usage else 0,
                cached_tokens=details.cached_tokens if details else 0,
                cost_usd=0.0 if free else cost,
                saved_usd=saved,
                complete=complete,
                estimated=estimated,
            )
        )

    def _accounted(
        self, request: Any, routed: Routed[W], hit: Entry | None = None, *, shared: bool = False
    ) -> Routed[W]:
        whole = routed.result
        self._record(
            request,
            routed.route,
            whole.usage,
            whole.id,
            stream=False,
            complete=True,
            hit=hit,
            tab=current_tab(),
            text=lambda: answer_text(whole),
            shared=shared,
        )
        return routed

    def _metered(
        self, request: Any, routed: Routed[OpenStream[Any]], hit: Entry | None = None, *, shared: bool = False
    ) -> Routed[OpenStream[Any]]:
        """The same stream, recorded in the ledger when it ends (or breaks off)."""
        seen: dict[str, Any] = {"usage": None, "id": ""}
        texts: list[str] = []
        # Taken now: the stream may be closed later from another context (a collected generator).
        tab = current_tab()
        collect = tab is not None and tab.estimator is not None  # text only to count it, if need be

        def observe(chunk: Any) -> None:
            seen["id"] = seen["id"] or chunk.id
            seen["usage"] = chunk.usage or seen["usage"]
            if collect:
                texts.append(chunk_text(chunk))

        for chunk in routed.result.prefix:
            observe(chunk)

        async def rest() -> AsyncIterator[Any]:
            complete = False
            try:
                async for chunk in routed.result.rest:
                    observe(chunk)
                    yield chunk
                complete = True
            finally:
                self._record(
                    request,
                    routed.route,
                    seen["usage"],
                    seen["id"],
                    stream=True,
                    complete=complete,
                    hit=hit,
                    tab=tab,
                    text=lambda: "".join(texts),
                    shared=shared,
                )
                await routed.result.aclose()  # closing an outer generator doesn't close the inner

        return Routed(routed.route, OpenStream(routed.result.prefix, rest(), also=(routed.result,)))

    # ------------------------------------------------------------------- the cache

    def _decide(self, request: Any, headers: Mapping[str, str], namespace: str) -> tuple[str, Decision]:
        """The cache's decision, and the request's key where the cache or a flight will use it."""
        decision = decide(request, headers, mode=self._cache_config.mode, default_ttl_s=self._cache_config.ttl_s)
        if self._cache is None:
            decision = replace(decision, read=False, write=False)
        namespace = "shared" if self._cache_config.shared else namespace
        return (cache_key(request, namespace) if decision.cacheable else ""), decision

    def _lookup(self, key: str, decision: Decision) -> Entry | None:
        if not decision.read or self._cache is None:
            return None
        return self._cache.get(key)

    def _storer(self, kind: _Kind, key: str, decision: Decision) -> Callable[[Flight[Any]], Awaitable[None]]:
        async def store(flight: Flight[Any]) -> None:
            if not decision.write or flight.route is None:
                return
            whole = await kind.assemble(_aiter(flight.chunks))
            body = whole.model_dump()
            if complete_enough(kind.name, body):
                await self._store(key, kind, body, flight.route, decision)

        return store

    async def _store(self, key: str, kind: _Kind, body: dict[str, Any], route: Route, decision: Decision) -> None:
        if self._cache is None:
            return
        entry = Entry(kind=kind.name, body=body, provider=route.provider, model=route.model)
        # Off the event loop: a write waits on the disk, a lookup must not wait on it.
        await asyncio.to_thread(self._cache.set, key, entry, decision.ttl_s)

    # -------------------------------------------------------------------- helpers

    async def _run(self, planned: Planned, attempt: Callable[[Target], Awaitable[R]]) -> Success[R]:
        return await run_with_failover(planned.targets, attempt, policy=self._policy, breakers=self._breakers)

    def _tracked(self, kind: _Kind, request: Any, planned: Planned) -> Callable[[Target], AsyncIterator[Any]]:
        """How to call a route of `planned`, with each local attempt's output counted in the
        scheduler's view of the local load."""

        async def counted(target: Target) -> AsyncIterator[Any]:
            done = self._router.attempting(target, planned)
            stream = self._call(kind, request, target)
            try:
                async for chunk in stream:
                    yield chunk
            finally:
                done()
                await _close(stream)

        def tracked(target: Target) -> AsyncIterator[Any]:
            return counted(target) if self._router.is_local(target) else self._call(kind, request, target)

        return tracked

    def _routed(self, planned: Planned, done: Success[Any], result: T) -> Routed[T]:
        t = done.target
        overflow = self._router.is_overflow(planned, t)
        return Routed(Route(t.provider, t.model, done.reason(), overflow=overflow), result)

    async def _open(self, stream: AsyncIterator[T], started: Callable[[T], bool], target: Target) -> OpenStream[T]:
        policy = self._policy
        if target.first_token_timeout_s is not None:
            policy = replace(
                policy, first_token_timeout_s=min(policy.first_token_timeout_s, target.first_token_timeout_s)
            )
        return await open_stream(stream, has_content=started, policy=policy, provider=target.provider)


def _with_cache(routed: Routed[T], decision: Decision) -> Routed[T]:
    return Routed(replace(routed.route, cache=decision.outcome_if_missed), routed.result)


def _flight_key(cache_key: str, planned: Planned) -> str:
    """Requests share a flight only where they share a cache key and their plans agree on
    where they may go (a request that must stay local never rides a remote flight)."""
    return f"{cache_key}|{planned.facts.data_class}"


def _shared(routed: Routed[T]) -> Routed[T]:
    route = routed.route
    return Routed(replace(route, reason=f"{route.reason}; shared with an identical request in flight"), routed.result)


def _hit_route(entry: Entry) -> Route:
    return Route(provider="cache", model=f"{entry.provider}/{entry.model}", reason="cache-hit", cache="HIT")


async def _close(stream: AsyncIterator[Any]) -> None:
    aclose = getattr(stream, "aclose", None)
    if aclose is not None:
        await aclose()


async def _aiter(items: list[T]) -> AsyncIterator[T]:
    for item in items:
        yield item
