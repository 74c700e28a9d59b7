"""The request flow, readable top to bottom in one function: `Pipeline.serve`.

    resolve   the alias, once: rules, capabilities, context, routing headers (`Router.resolve`),
              a conversation that may be truncated first cut to fit (`truncation`);
              the cache directives (a bad one is a 400 before anything is reserved)
    admit     the key's limits, reserving the worst case at the resolved routes (the tab)
    cache     a reproducible request's stored answer, replayed as a whole or as a real stream
    plan      the resolved routes in order under the load of now (`Router.order`)
    flight    an identical request in flight is joined (it pays), or this one leads
    attempt   each route in turn, with retries and failover (`failover.run_with_failover`)
    meter     the answer's usage and cost on the request's tab (`metering.Meter`)
    store     a finished reproducible answer into the cache

A stream is handed to the front door only once a route produced its first
content, so every failure before that falls over to the next route without
the client seeing it. A whole answer is folded inside its attempt, so even a
failure mid-answer falls over. Every result carries a `Route`: who served it,
why, and what the cache did. The request's tab is passed along explicitly.
With tracing on, the cache lookup, the plan and each attempt are child spans
of the request's (`telemetry.py`).
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Mapping, Sequence
from contextlib import aclosing
from dataclasses import replace
from functools import partial
from typing import Any, TypeVar

from opentelemetry.trace import SpanKind

from orchestrator.accounting.prices import Prices
from orchestrator.caching.cache import Decision, Entry, ResponseCache, cache_key, complete_enough, decide
from orchestrator.caching.singleflight import Flight, SingleFlight
from orchestrator.calls import ASKING, CHAT, EMBEDDING, Call
from orchestrator.errors import ContextLengthExceeded, OrchestratorError, UpstreamTimeout
from orchestrator.failover import Breakers, OpenStream, Policy, Target, open_stream, read_whole, run_with_failover
from orchestrator.hedging import lost_race
from orchestrator.metering import Hedges, Meter, Spent
from orchestrator.protocol import ChatCompletionRequest, ModelCard, ModelList, Usage
from orchestrator.providers.base import ChunkStream, Provider
from orchestrator.routes import Route, Routed
from orchestrator.scheduling.capabilities import Registry
from orchestrator.scheduling.router import Resolution, RoutePlan, Router, RoutingState
from orchestrator.scheduling.tokens import UsageEstimator
from orchestrator.settings import CacheSettings
from orchestrator.telemetry import Telemetry
from orchestrator.truncation import fitted

__all__ = ["Pipeline", "Route", "Routed"]

T = TypeVar("T")


class Pipeline:
    """Answers `Call`s from the cache or the right route."""

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
        cache_config: CacheSettings | None = None,
        prices: Prices | None = None,
        telemetry: Telemetry | None = None,
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
        self._cache_config = cache_config or CacheSettings()
        self._flights = SingleFlight()
        self._prices = prices or Prices({})
        self._meter = Meter(self._prices, self._breakers)
        self.telemetry = telemetry or Telemetry.off()

    @property
    def registry(self) -> Registry:
        """The served models (read-only: the edge checks keys' models against it)."""
        return self._registry

    @property
    def prices(self) -> Prices:
        return self._prices

    @property
    def estimator(self) -> UsageEstimator | None:
        """Usage for answers that came without any: the local model's tokenizer, else a count of bytes."""
        return self._router.estimator

    def routing(self) -> RoutingState:
        """What the scheduler sees now: local load, burst budget, SLOs, spill states (the dashboard)."""
        return self._router.state()

    def models(self) -> ModelList:
        return ModelList(
            data=[ModelCard(id=e.name, created=self._created, owned_by=e.owned_by) for e in self._registry.entries()]
        )

    # ------------------------------------------------------------------- the flow

    async def serve(self, call: Call) -> Routed[Any]:
        """The answer to `call`: a whole one, or (for a stream request) an `OpenStream` at its first content."""
        self.telemetry.called(call)
        ASKING.set(call.tenant)  # for the local engine's fair queue (providers/local.py)
        call, resolution = await self._resolve(call)
        decision = self._decide(call)  # its directives checked before anything is reserved or counted
        call, resolution = await self._admit(call, resolution)
        key = self._cache_key(call, decision, resolution)
        if (hit := self._lookup(key, decision)) is not None:
            return await self._replay(call, hit)
        plan = self._plan(resolution)
        if not decision.cacheable:
            routed = await self._attempt(call, plan, whole=not call.stream)
            return self._metered(call, _with_cache(routed, decision), plan)
        lead = partial(self._attempt, call, plan, whole=False)
        flight, leads = self._flights.join(key, lead, partial(self._store, call, key, decision))
        try:
            routed = await self._follow(call, flight)
        except asyncio.CancelledError:
            if leads:  # its client left; the flight may go on for others: its upstream call is still this one's
                call.tab.expect_record()  # one row, when the call has ended (its prompt, if that is all it cost)
                flight.when_ended(lambda: self._meter.flight_ended(call, flight, plan, _cached(flight.route, decision)))
            raise
        except Exception:
            if call.stream or not flight.finished or flight.route is None:
                raise
            # The shared flight broke after it started: a whole answer retries on its own. What the broken
            # call read and made is its leader's to pay, as a whole answer broken off before a fallback is.
            broken = Spent()
            for part in self._meter.flight_parts(call, flight.route, flight.chunks) if leads else []:
                broken.add(part)
            routed, leads = await self._attempt(call, plan, whole=True, spent=broken), True
            await self._store_whole(call, key, decision, routed)
        routed = _with_cache(routed, decision)
        if not leads:
            return self._metered(call, _shared(routed), plan, shared=True)
        return self._metered(call, routed, plan, flight=flight)

    async def count(self, call: Call) -> int:
        """The call's prompt tokens as routing counts them (`Router.count`), for a model that exists
        (404) and that its key may use (403), within its key's requests per minute (429: counting costs the
        gateway CPU). Nothing is reserved or asked of any route."""
        self._usable(call)
        await call.tab.admit_unasked()
        return await self._router.count(call.body)

    async def tokens(self, call: Call) -> int:
        """The call's prompt tokens as `count` counts them, for a call about to be served (a response's, held
        to its `context_management` threshold): one of its key's requests per minute once it is admitted, not
        a second one now. For a model that exists (404) and that its key may use (403); nothing is reserved
        or asked of any route."""
        self._usable(call)
        return await self._router.count(call.body)

    async def fits(self, call: Call) -> bool:
        """Whether the chat call, as it is, fits a route of its model (its prompt and its output limit within
        the route's context), as truncation judges it (`_fits`): a route whose context isn't known fits, as
        does a prompt counted only as an upper bound. For a model that exists (404) and that its key may use
        (403); nothing is reserved or asked of any route."""
        self._usable(call)
        return not isinstance(call.body, ChatCompletionRequest) or await self._fits(call, call.body)

    def _usable(self, call: Call) -> None:
        """`ModelNotFound` (404) for a model that doesn't exist, `ModelNotAllowed` (403) for one the call's key
        may not use."""
        self._registry.resolve(call.model)
        call.tab.check_model(call.model)

    # ----------------------------------------------------------------- the steps

    async def _resolve(self, call: Call) -> tuple[Call, Resolution]:
        """The call's routes; a call that may be truncated (`Call.keep_turns`) first loses as few of its
        oldest turns as make it fit one (`truncation`)."""
        if call.keep_turns is not None and isinstance(call.body, ChatCompletionRequest):
            call = replace(call, body=await fitted(call.body, partial(self._fits, call), keep=call.keep_turns))
        return call, await self._router.resolve(call.body, call.kind.task, call.needs(), call.headers, call.tenant)

    async def _fits(self, call: Call, body: ChatCompletionRequest) -> bool:
        probe = replace(call, body=body)
        try:
            resolution = await self._router.resolve(body, probe.kind.task, probe.needs(), probe.headers, call.tenant)
        except ContextLengthExceeded:
            return False
        return self._router.fits(resolution, body.output_limit())

    async def _admit(self, call: Call, resolution: Resolution) -> tuple[Call, Resolution]:
        """The key's limits checked and its worst case reserved at the resolved routes; past a soft
        limit, the call moves to the key's cheaper model (resolved the same way)."""
        key = call.tab.key
        downgrade: tuple[Call, Resolution] | None = None
        if key is not None and key.limited and key.downgrade_to and key.downgrade_to != call.model:
            try:
                downgrade = await self._resolve(call.on(key.downgrade_to))
            except Exception:  # the cheaper model can't serve this request: no downgrade
                downgrade = None
        model = await call.tab.admit(
            call.body, resolution.backends, (downgrade[1].facts.model, downgrade[1].backends) if downgrade else None
        )
        if model == call.model or downgrade is None:
            return call, resolution
        return downgrade

    def _decide(self, call: Call) -> Decision:
        """What the cache may do for the call (an `InvalidRequest` for a bad directive)."""
        if not call.kind.streams:  # embeddings are answered fresh
            return Decision(read=False, write=False, ttl_s=0.0, cacheable=False)
        decision = decide(call.body, call.headers, mode=self._cache_config.mode, default_ttl_s=self._cache_config.ttl_s)
        return replace(decision, read=False, write=False) if self._cache is None else decision

    def _cache_key(self, call: Call, decision: Decision, resolution: Resolution) -> str:
        """The call's key where the cache or a flight will use it: a request that must stay local never
        reads an answer a remote route made, a request never reads one made for the alias its rules
        didn't choose (a rule may read tags, which the body's key leaves out), nor one of another
        tenant's, unless the cache is shared."""
        tenant = "shared" if self._cache_config.shared else call.tenant
        namespace = f"{tenant}|{resolution.facts.data_class}|{resolution.resolved.entry.name}"
        return cache_key(call.body, namespace) if decision.cacheable else ""

    def _lookup(self, key: str, decision: Decision) -> Entry | None:
        if not decision.read or self._cache is None:
            return None
        with self.telemetry.step("cache lookup") as span:
            hit = self._cache.get(key)
            span.set_attribute("orchestrator.cache", "HIT" if hit is not None else "MISS")
        return hit

    def _plan(self, resolution: Resolution) -> RoutePlan:
        with self.telemetry.step("plan") as span:
            plan = self._router.order(resolution)
            if span.is_recording() and plan.targets:
                span.set_attributes(
                    {
                        "orchestrator.routes": [f"{t.provider}/{t.model}" for t in plan.targets],
                        "orchestrator.route.reason": plan.targets[0].reason,
                        "orchestrator.overflow": plan.plan.overflow,
                    }
                )
        return plan

    async def _replay(self, call: Call, hit: Entry) -> Routed[Any]:
        kind, route = call.kind, _hit_route(hit)
        assert kind.replay is not None and kind.fresh is not None and kind.started is not None
        if not call.stream:
            return self._meter.whole(call, Routed(route, kind.fresh(hit)), None, hit=hit)
        replay = await open_stream(
            _together(kind.replay(hit)), has_content=kind.started, policy=self._policy, provider="cache"
        )  # fmt: skip
        return self._meter.stream(call, Routed(route, replay), None, hit=hit)

    async def _attempt(self, call: Call, plan: RoutePlan, *, whole: bool, spent: Spent | None = None) -> Routed[Any]:
        """The plan's routes in turn (retries, failover) until one answers: whole, or a stream at its
        first content. `spent`: what earlier upstream calls for this answer may be billed (it grows with
        each whole answer broken off here); when no route answers, that is recorded on the tab."""
        spent = spent if spent is not None else Spent()
        try:
            done = await run_with_failover(
                plan.targets,
                partial(self._attempt_route, call, plan, whole, spent),
                policy=self._policy,
                breakers=self._breakers,
                gave_up=plan.gave_up,
                settles=not call.stream,  # a client's stream settles its route at its end (`Meter.stream`)
            )
        except OrchestratorError as e:
            hedges = self._called_off(spent.unbilled(getattr(e, "called_off", ())), plan)
            if spent.parts or hedges.usd or hedges.tokens:
                self._overflowed(plan, spent, hedges)
                self._meter.lost(call, spent.parts, hedges)  # no answer, and still billed: on the tab
            raise
        except asyncio.CancelledError:
            # Its client left (a socket closed, Serve's proxy saw the connection go): what the routes read
            # and made so far is still billed by their providers, and was nobody's: an answer broken off
            # mid-way (a compaction is always asked whole, its long conversation read first), and the
            # prompt of every attempt cut off before its first token, as a hedge called off is billed.
            cut = self._cut_off(spent.cut, plan, "the answer" if call.kind is EMBEDDING else "the first token")
            if spent.parts or cut.usd or cut.tokens:
                self._overflowed(plan, spent, cut)
                self._meter.lost(call, spent.parts, cut)
            raise
        t = done.target
        # A hedge that answered first is load spill too: the local model was too slow for this request.
        overflow = plan.is_overflow(t) or done.hedged is not None
        # Attempts that didn't serve and may be billed: hedges called off had their prompt sent; a whole
        # answer broken off had its prompt read and some output made (`_fold_route`). Spill, where it was.
        hedges = self._called_off(spent.unbilled(done.called_off), plan)
        self._overflowed(plan, spent, hedges)
        route = Route(
            t.provider, t.model, done.reason(), overflow=overflow,
            discarded_usd=hedges.usd + spent.usd, discarded_tokens=hedges.tokens + spent.tokens,
        )  # fmt: skip
        return Routed(route, done.result)

    @staticmethod
    def _overflowed(plan: RoutePlan, spent: Spent, hedges: Hedges) -> None:
        """Load spill's part of what attempts that didn't serve may be billed, against the burst budget."""
        spill = hedges.spill_usd + sum(p.usd for p in spent.parts if p.overflow)
        if spill:
            plan.overflowed(spill)  # counts against the burst budget, once per upstream call

    def _called_off(self, hedges: tuple[Target, ...], plan: RoutePlan) -> Hedges:
        """What hedges called off may be billed: each had the prompt sent (no output came before it was
        cancelled), at its route's input price."""
        costs, n = self._prompts(hedges, plan)
        return Hedges(sum(costs), n * len(hedges), spill_usd=sum(costs))  # a hedge is load spill

    def _cut_off(self, targets: list[Target], plan: RoutePlan, before: str) -> Hedges:
        """What remote attempts cut off before `before` (their first token; an embedding's answer) when the client
        left may be billed, as hedges called off are, and the load spill's part of it."""
        if not targets:
            return Hedges()
        costs, n = self._prompts(targets, plan)
        spill = sum(usd for t, usd in zip(targets, costs, strict=True) if plan.is_overflow(t))
        routes = ", ".join(dict.fromkeys(f"{t.provider}/{t.model}" for t in targets))
        why = f"the client left before {before} (the prompt sent to {routes})"
        return Hedges(sum(costs), n * len(targets), why=why, first=targets[0], spill_usd=spill)

    def _prompts(self, targets: Sequence[Target], plan: RoutePlan) -> tuple[list[float], int]:
        """What sending the prompt (as counted for routing) costs at each target's input price, and its tokens."""
        n = plan.facts.prompt_tokens
        prompt = Usage(prompt_tokens=n, completion_tokens=0, total_tokens=n)
        return [self._prices.cost(t.provider, t.model, prompt) for t in targets], n

    async def _attempt_route(self, call: Call, plan: RoutePlan, whole: bool, spent: Spent, target: Target) -> Any:
        """One route's answer: opened to its first content within the route's patience, then folded
        whole when asked (inside the attempt: a failure mid-answer still falls over)."""
        attributes = {"gen_ai.provider.name": target.provider, "gen_ai.request.model": target.model}
        with self.telemetry.span(f"attempt {target.provider}", attributes, SpanKind.CLIENT) as span:
            result = await self._try_route(call, plan, whole, spent, target)
            span.set_attribute("orchestrator.outcome", "ok")
            return result

    async def _try_route(self, call: Call, plan: RoutePlan, whole: bool, spent: Spent, target: Target) -> Any:
        parts = len(spent.parts)
        try:
            if call.kind is EMBEDDING:
                return await self._embed(call, target)
            if whole:
                return await self._fold_route(call, plan, spent, target)
            assert call.kind.started is not None
            start = time.monotonic()
            opened = await open_stream(
                self._route_stream(call, plan, target), has_content=call.kind.started,
                policy=self._patience(target), provider=target.provider,
            )  # fmt: skip
            plan.first_token(target, (time.monotonic() - start) * 1000)
            return opened
        except asyncio.CancelledError as e:
            # A remote call cut off before it produced anything: its provider had the prompt (a local engine
            # drops the request; a race's loser is billed as its race says: `Spent.unbilled`).
            if not lost_race(e) and len(spent.parts) == parts and not plan.is_local(target):
                spent.cut.append(target)
            raise

    async def _fold_route(self, call: Call, plan: RoutePlan, spent: Spent, target: Target) -> Any:
        """A whole answer from one route: its chunks folded as they come, under the same patience and
        idle timeout as a stream (`read_whole`), counted as local load while they last, and the time
        spent waiting on them counted on the tab. Broken off after its first content (a failure, a
        timeout, a cancel), what it read and made so far goes into `spent`."""
        kind, tab = call.kind, call.tab
        assert kind.started is not None and kind.fold is not None
        fold = kind.fold()
        start = time.monotonic()
        produced = False

        def started() -> None:
            nonlocal produced
            produced = True
            plan.first_token(target, (time.monotonic() - start) * 1000)

        def waited(seconds: float) -> None:
            tab.upstream_s += seconds

        sent = plan.attempting(target)
        try:
            await read_whole(
                self._chunks(call, target).batches(), fold.add, has_content=kind.started, policy=self._patience(target),
                provider=target.provider, started=started, waited=waited,
            )  # fmt: skip
        except BaseException:
            # Broken off mid-answer (an error, the answer's time, a cancel): what the route read and made
            # may be billed (see `_attempt`). A cancel before it produced anything is `_try_route`'s to note.
            if produced:
                part = self._meter.partial(call, target.provider, target.model, fold, plan.is_overflow(target), target)
                spent.add(part)
            raise
        finally:
            sent()
        return fold.whole()

    async def _route_stream(self, call: Call, plan: RoutePlan, target: Target) -> AsyncIterator[list[Any]]:
        """The provider's chunks for `call`, in the batches they came in: counted as local load while they
        last, and the time spent waiting on them counted on the tab (it is not the gateway's overhead)."""
        tab = call.tab
        sent = plan.attempting(target)
        try:
            async with aclosing(self._chunks(call, target).batches()) as batches:
                while True:
                    t0 = time.perf_counter()
                    try:
                        batch = await anext(batches)
                    except StopAsyncIteration:
                        return
                    finally:
                        tab.upstream_s += time.perf_counter() - t0
                    yield batch
        finally:
            sent()

    def _chunks(self, call: Call, target: Target) -> ChunkStream[Any]:
        provider, model = self._providers[target.provider], target.model
        return provider.chat(call.body, model) if call.kind is CHAT else provider.complete(call.body, model)

    async def _embed(self, call: Call, target: Target) -> Any:
        t0 = time.perf_counter()
        try:
            return await self._providers[target.provider].embed(call.body, target.model)
        finally:
            call.tab.upstream_s += time.perf_counter() - t0

    async def _follow(self, call: Call, flight: Flight[Any]) -> Routed[Any]:
        """The flight's answer as this call wants it: its stream, or folded whole within the answer's time
        (as one asked for whole on its own is: a stream that never ends must not hold the client, nor the
        flight's upstream call, which stops when its last follower leaves)."""
        routed = await flight.follow()
        if call.stream:
            return routed
        try:
            async with asyncio.timeout(self._policy.answer_timeout_s):
                return Routed(routed.route, await call.kind.assemble(routed.result.chunks()))
        except TimeoutError:
            raise UpstreamTimeout(
                f"{routed.route.provider}: the whole answer took over {self._policy.answer_timeout_s:g} s."
            ) from None

    def _metered(
        self,
        call: Call,
        routed: Routed[Any],
        plan: RoutePlan,
        *,
        shared: bool = False,
        flight: Flight[Any] | None = None,
    ) -> Routed[Any]:
        if isinstance(routed.result, OpenStream):
            return self._meter.stream(call, routed, plan, shared=shared, flight=flight)
        return self._meter.whole(call, routed, plan, shared=shared)

    async def _store(self, call: Call, key: str, decision: Decision, flight: Flight[Any]) -> None:
        """A flight's finished answer into the cache (its leader's `on_finish`)."""
        if not decision.write or flight.route is None:
            return
        whole = await call.kind.assemble(_aiter(flight.chunks))
        await self._store_whole(call, key, decision, Routed(flight.route, whole))

    async def _store_whole(self, call: Call, key: str, decision: Decision, routed: Routed[Any]) -> None:
        body = routed.result.model_dump()
        if self._cache is None or not decision.write or not complete_enough(call.kind.name, body):
            return
        entry = Entry(kind=call.kind.name, body=body, provider=routed.route.provider, model=routed.route.model)  # type: ignore[arg-type]
        # Off the event loop: a write waits on the disk, a lookup must not wait on it.
        await asyncio.to_thread(self._cache.set, key, entry, decision.ttl_s)

    def _patience(self, target: Target) -> Policy:
        """The policy for one route: its own first-token timeout where the plan gave it one."""
        if target.first_token_timeout_s is None:
            return self._policy
        return self._policy.model_copy(
            update={"first_token_timeout_s": min(self._policy.first_token_timeout_s, target.first_token_timeout_s)}
        )


def _cached(route: Route | None, decision: Decision) -> Route | None:
    return replace(route, cache=decision.outcome_if_missed) if route is not None else None


def _with_cache(routed: Routed[T], decision: Decision) -> Routed[T]:
    return Routed(replace(routed.route, cache=decision.outcome_if_missed), routed.result)


def _shared(routed: Routed[T]) -> Routed[T]:
    route = routed.route
    return Routed(replace(route, reason=f"{route.reason}; shared with an identical request in flight"), routed.result)


def _hit_route(entry: Entry) -> Route:
    return Route(provider="cache", model=f"{entry.provider}/{entry.model}", reason="cache-hit", cache="HIT")


async def _together(chunks: AsyncIterator[T]) -> AsyncIterator[list[T]]:
    """`chunks` as one batch: a cached answer's replay is there at once (one write to the client)."""
    yield [chunk async for chunk in chunks]


async def _aiter(items: list[T]) -> AsyncIterator[T]:
    for item in items:
        yield item
