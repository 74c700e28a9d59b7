"""Metering: one `UsageRecord` per answer, on the request's tab.

The flow's meter step. A whole answer is recorded at once; a stream when it
ends or breaks off (with the usage it reported, or, without any, what the
tab's tokenizer counts of its text). A cache hit costs nothing and saves what
the stored answer cost; so does an answer shared with the identical request
that led its flight (that one paid: for the flight's whole upstream call, even
when its own client left before the others had their answer). Load spill's
cost counts against the burst budget once per upstream call
(`RoutePlan.overflowed`). What attempts that didn't serve may be billed
(`Route.discarded_usd`: a hedge called off, a whole answer broken off before
a fallback) is part of the request's cost, whichever route served it, and
what they read and made (`Route.discarded_tokens`) is spent by its key as
the answer's tokens are; with no route serving, it is the failed request's
record (`lost`). The flow gathers those attempts as it goes (`Spent`, one
`Part` per upstream call broken off; `Hedges` for those called off).
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable, Sequence
from dataclasses import dataclass, field
from typing import Any, TypeVar

from orchestrator.accounting.prices import Prices, UsageRecord
from orchestrator.caching.cache import Entry
from orchestrator.caching.singleflight import Flight
from orchestrator.calls import Call
from orchestrator.errors import OrchestratorError, UpstreamError
from orchestrator.failover import Breakers, OpenStream, Target, trips_breaker
from orchestrator.protocol import EmbeddingResponse, Usage
from orchestrator.routes import Route, Routed
from orchestrator.scheduling.router import RoutePlan
from orchestrator.scheduling.tokens import answer_text, chunk_text

T = TypeVar("T")


class Meter:
    """Records what each answer used and cost, at the prices it was served at."""

    def __init__(self, prices: Prices, breakers: Breakers | None = None):
        self._prices = prices
        self._breakers = breakers  # told how each client's stream from a route ended (`stream`)

    def whole(
        self, call: Call, routed: Routed[T], plan: RoutePlan | None, *, hit: Entry | None = None, shared: bool = False
    ) -> Routed[T]:
        answer: Any = routed.result
        if isinstance(answer, EmbeddingResponse):
            u = answer.usage
            usage = Usage(prompt_tokens=u.prompt_tokens, completion_tokens=0, total_tokens=u.prompt_tokens)
            self._record(call, routed.route, usage, call.tab.request_id, plan, stream=False, complete=True)
            return routed
        self._record(
            call, routed.route, answer.usage, answer.id, plan, stream=False, complete=True, hit=hit, shared=shared,
            text=lambda: answer_text(answer),  # counted only when the provider gave no usage
        )  # fmt: skip
        return routed

    def stream(
        self,
        call: Call,
        routed: Routed[OpenStream[Any]],
        plan: RoutePlan | None,
        *,
        hit: Entry | None = None,
        shared: bool = False,
        flight: Flight[Any] | None = None,
    ) -> Routed[OpenStream[Any]]:
        """The same stream, recorded when it ends (or breaks off). The leader of a `flight` whose client
        leaves before its end is recorded when the flight ends: the upstream call goes on for the requests
        sharing it, and all of it is the leader's to pay (they are recorded as shared, free)."""
        seen = _Seen(collect=call.tab.estimator is not None)  # text only to count it, if need be
        for chunk in routed.result.prefix:
            seen.observe(chunk)
            seen.prompt = seen.prompt or getattr(chunk, "prompt_usage", None)  # what the route said it read, first

        ended = False

        def end(complete: bool, broke: OrchestratorError | None) -> None:
            """Once, however the stream ends: at its end, broken off, or closed (before it was read, too)."""
            nonlocal ended
            if ended:
                return
            ended = True
            if hit is None and not shared:
                self._settle(routed.route.provider, broke)
            if flight is not None and not complete and broke is None:  # its client left: the flight's whole call
                call.tab.expect_record()
                flight.when_ended(lambda: self.flight_ended(call, flight, plan, routed.route))
                return
            self._record(
                call, routed.route, seen.usage, seen.id, plan, stream=True, complete=complete, hit=hit,
                shared=shared, text=seen.text, prompt=seen.prompt,
            )  # fmt: skip

        async def rest() -> AsyncIterator[list[Any]]:
            complete = False
            broke: OrchestratorError | None = None
            try:
                async for batch in routed.result.rest:
                    for chunk in batch:
                        seen.observe(chunk)
                    yield batch
                complete = True
            except OrchestratorError as e:
                call.tab.error_code, broke = e.code, e  # broken off after the client's 200: the log says why
                raise
            finally:
                end(complete, broke)
                await routed.result.aclose()  # closing an outer generator doesn't close the inner

        closed = _OnClose(lambda: end(False, None))
        return Routed(routed.route, OpenStream(routed.result.prefix, rest(), also=(routed.result, closed)))

    def flight_ended(self, call: Call, flight: Flight[Any], plan: RoutePlan | None, route: Route | None) -> None:
        """The upstream call of a flight `call` led, recorded from what it made (its usage, or the count of
        its text), once it has ended: for a leader that left before the end (its client went away).
        `route`: the flight's as the leader's answer showed it (None: the flight's own)."""
        route = route or flight.route
        # No first content, no output: nothing of it to bill here (a remote call's prompt is `Pipeline._attempt`'s).
        if route is None:
            call.tab.no_record()
            return
        try:
            seen = _Seen(collect=call.tab.estimator is not None)
            for chunk in flight.chunks:
                seen.observe(chunk)
            prompt = getattr(flight.chunks[0], "prompt_usage", None) if flight.chunks else None
            # Not complete: its client had only part of the answer (whatever the call made, all of it is billed).
            self._record(
                call, route, seen.usage, seen.id, plan, stream=call.stream, complete=False, text=seen.text,
                prompt=prompt,
            )  # fmt: skip
        except Exception:
            call.tab.no_record()  # not left waiting
            raise

    def partial(
        self, call: Call, provider: str, model: str, fold: Any, overflow: bool, target: Target | None = None
    ) -> Part:
        """What a whole answer broken off may cost at its route: its usage if it came, else the prompt and
        the text so far as the tab's estimator counts them."""
        try:
            partial = fold.whole()
        except UpstreamError:
            return Part(provider, model, None, 0.0, overflow, False, target)
        usage, estimated = partial.usage, False
        if usage is None and call.tab.estimator is not None:
            usage, estimated = call.tab.estimator.estimate(call.body, answer_text(partial)), True
        return Part(provider, model, usage, self._prices.cost(provider, model, usage), overflow, estimated, target)

    def flight_parts(self, call: Call, route: Route, chunks: list[Any]) -> list[Part]:
        """What a flight's upstream call that broke off after its first content may cost (`partial`), and
        the attempts before it that didn't serve (the route's `discarded_usd`)."""
        assert call.kind.fold is not None
        fold = call.kind.fold()
        for chunk in chunks:
            fold.add(chunk)
        parts = [self.partial(call, route.provider, route.model, fold, route.overflow)]
        if route.discarded_usd or route.discarded_tokens:  # its spill was counted when the flight's call was made
            n = route.discarded_tokens
            usage = Usage(prompt_tokens=n, completion_tokens=0, total_tokens=n) if n else None
            parts.append(Part(route.provider, route.model, usage, route.discarded_usd, overflow=False))
        return parts

    def lost(self, call: Call, parts: Sequence[Part], hedges: Hedges) -> None:
        """No route answered `call`, and attempts that didn't may be billed all the same (`parts`: whole
        answers broken off after their first content, each with its provider, model, usage and cost;
        `hedges`: the prompts of hedges called off): recorded on the tab, at the first part's route."""
        usage: Usage | None = None
        for p in parts:
            if p.usage is not None:
                usage = p.usage if usage is None else usage + p.usage
        first = parts[0] if parts else hedges.first
        broken = [f"{p.provider}/{p.model} broke off mid-answer" for p in parts]
        call.tab.record(
            UsageRecord(
                id=call.tab.request_id,
                model=call.model,
                provider=first.provider if first else "none",
                provider_model=first.model if first else "none",
                route_reason="failed: " + "; ".join(broken + ([hedges.why] if hedges.tokens or hedges.usd else [])),
                cache="BYPASS",
                stream=call.stream,
                prompt_tokens=usage.prompt_tokens if usage else 0,
                completion_tokens=usage.completion_tokens if usage else 0,
                cached_tokens=0,
                cost_usd=sum(p.usd for p in parts) + hedges.usd,
                saved_usd=0.0,
                complete=False,
                estimated=any(p.estimated for p in parts),
                discarded_tokens=hedges.tokens,
            )
        )

    def _settle(self, provider: str, broke: OrchestratorError | None) -> None:
        """The route's circuit told how its stream ended (the failover's own count stops at the first
        content of a stream: `run_with_failover(settles=False)`): broken off, a failure as one before it
        would be; to its end, or until the client left, a success (it closes a half-open probe too)."""
        if self._breakers is None:
            return
        if broke is not None and trips_breaker(broke):
            self._breakers.failure(provider, getattr(broke, "retry_after", None))
        else:
            self._breakers.success(provider)

    def _record(
        self,
        call: Call,
        route: Route,
        usage: Usage | None,
        answer_id: str,
        plan: RoutePlan | None,
        *,
        stream: bool,
        complete: bool,
        hit: Entry | None = None,
        shared: bool = False,
        text: Callable[[], str] | None = None,
        prompt: Usage | None = None,
    ) -> None:
        """`usage` as reported, else counted (`text`: the answer's text so far; `prompt`: what the route said
        at its start that it read of the prompt, its prompt cache's reads and writes too, which no count
        of ours knows: a stream broken off before its end is counted for its output only)."""
        tab = call.tab
        estimated = False
        if usage is None and text is not None and tab.estimator is not None:
            usage, estimated = tab.estimator.estimate(call.body, text()), True
            if prompt is not None:
                output = usage.completion_tokens
                usage = Usage(
                    prompt_tokens=prompt.prompt_tokens,
                    completion_tokens=output,
                    total_tokens=prompt.prompt_tokens + output,
                    prompt_tokens_details=prompt.prompt_tokens_details,
                )
        cost = self._prices.cost(route.provider, route.model, usage)
        free = hit is not None or shared
        if plan is not None and route.overflow and not free:
            plan.overflowed(cost)  # counts against the burst budget, once per upstream call
        if not free:
            cost += route.discarded_usd  # attempts that didn't serve (the flow counted their spill already)
        saved = self._prices.cost(hit.provider, hit.model, usage) if hit is not None else (cost if shared else 0.0)
        details = usage.prompt_tokens_details if usage is not None else None
        tab.record(
            UsageRecord(
                id=answer_id,
                model=call.model,
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
                discarded_tokens=0 if free else route.discarded_tokens,
            )
        )


@dataclass(frozen=True)
class Hedges:
    """Upstream calls for one answer that had its prompt sent and were cancelled before any output came, not
    billed as a `Part`: hedges called off, or (its client gone) attempts cut off before their first token;
    what their providers may bill for the prompt each was sent."""

    usd: float = 0.0
    tokens: int = 0
    spill_usd: float = 0.0  # the part of `usd` that was load spill (against the burst budget): all of a hedge's
    why: str = "hedges called off"
    first: Target | None = None  # the first of them: the route a row of nothing else names


@dataclass(frozen=True)
class Part:
    """An upstream call for an answer that didn't serve it, and what its provider may bill for it."""

    provider: str
    model: str
    usage: Usage | None  # what it reported, or the estimate (`estimated`); None: nothing to count
    usd: float
    overflow: bool  # load spill: it counts against the burst budget
    estimated: bool = False
    target: Target | None = None  # the plan's route it was an attempt of


@dataclass
class Spent:
    """The upstream calls for one answer that didn't serve it and may be billed (whole answers broken off
    after their first content: their prompt read, some output made)."""

    parts: list[Part] = field(default_factory=list)
    # Remote attempts cut off before their first token by their request's own end (its client gone, its
    # deadline), not by a race they lost: each had the prompt sent. Billed when the client left (`Pipeline._attempt`).
    cut: list[Target] = field(default_factory=list)

    def add(self, part: Part) -> None:
        if part.usd or part.usage is not None:
            self.parts.append(part)

    @property
    def usd(self) -> float:
        return sum(p.usd for p in self.parts)

    @property
    def tokens(self) -> int:
        """What they read and made, as their usage (or its estimate) says."""
        return sum(p.usage.prompt_tokens + p.usage.completion_tokens for p in self.parts if p.usage is not None)

    def unbilled(self, hedges: tuple[Target, ...]) -> tuple[Target, ...]:
        """The hedges called off that are not in here already (one that made output before it was
        cancelled is billed as what it made, its prompt included)."""
        return tuple(h for h in hedges if not any(p.target is h for p in self.parts))


class _OnClose:
    """Something `OpenStream.aclose` closes: calls `then` (a stream closed before its rest was read)."""

    def __init__(self, then: Callable[[], None]):
        self._then = then

    async def aclose(self) -> None:
        self._then()


class _Seen:
    """What a stream showed so far: its id, its usage, and (only if needed) its text."""

    __slots__ = ("collect", "id", "prompt", "texts", "usage")

    def __init__(self, collect: bool):
        self.collect = collect
        self.id = ""
        self.usage: Usage | None = None
        self.prompt: Usage | None = None  # the prompt's usage the stream's opening said (Anthropic's, the engine's)
        self.texts: list[str] = []

    def observe(self, chunk: Any) -> None:
        self.id = self.id or chunk.id
        self.usage = chunk.usage or self.usage
        if self.collect:
            self.texts.append(chunk_text(chunk))

    def text(self) -> str:
        return "".join(self.texts)
