"""Executing a plan of routes: retries, circuit breakers, timeouts, and failover.

`run_with_failover(targets, attempt)` tries the targets in order and returns
the first success. The rules, in the order they apply:

1. A provider whose circuit is open is skipped (`Breakers`); after its
   cooldown one probe request is let through (half-open), and a success
   closes the circuit. Only the route's own failures feed a breaker (down,
   timed out, 5xx, 429, the operator's credentials refused), once per
   request, within a window: a client's bad requests never open a circuit
   other clients depend on, nor does a local replica that went away
   (`ReplicaLost`: the deployment's other replicas serve), nor a wait for a
   first token that was the request's own: the plan's patience running out
   (`Target.first_token_timeout_s`, shorter than the route's: a wrong
   prediction, under an SLO the request may have set), or a route that gave
   other requests their first tokens meanwhile (a huge prompt, a long think). A route known to
   be alive by another signal (`Target.alive`: a local engine that reports
   its load) is never shut out when it is all that is left: it gets this
   request's attempts anyway, even when other requests opened its circuit
   while this one waited on it.
2. A failure that retrying can't fix (a 4xx, `insufficient_quota`, a
   client error such as a too-long prompt) is never retried on that route.
3. A retryable failure (429, 5xx, connection reset, a stall, local
   back-pressure) moves on to the next route at once: a healthy alternative
   is never kept waiting behind a backoff. Only when every route has had its
   turn does a route get another attempt, not before its `Retry-After` (or an
   exponential backoff) has passed. A lost local replica is the exception:
   the same route is tried again at once (once), on another replica.
4. All of it happens inside the request's deadline; a `Retry-After` longer
   than the time left ends that route.
5. When everything failed, the client gets the most telling error
   (`combine`): the client's own mistake as a 400, rate limits as a 429
   with the shortest Retry-After, otherwise a 502 naming every route's
   failure.
"""

from __future__ import annotations

import asyncio
import math
import random
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, field, replace
from typing import Any, Generic, TypeVar

from orchestrator.errors import (
    FirstTokenTimeout,
    InvalidRequest,
    OrchestratorError,
    Overloaded,
    ReplicaLost,
    UpstreamError,
    UpstreamRateLimited,
    UpstreamRejected,
    UpstreamTimeout,
    UpstreamUnavailable,
)
from orchestrator.hedging import Deadline, HedgedAttempt, attempt_deadline, discard, first_content
from orchestrator.settings import ResilienceSettings

T = TypeVar("T")
R = TypeVar("R")


@dataclass(frozen=True)
class Target:
    """One route of a plan: a provider, the model it knows, and why it is in the plan."""

    provider: str
    model: str
    reason: str = "primary"
    first_token_timeout_s: float | None = None  # this route's own patience; None: the policy's
    alive: bool = False  # known alive (a local engine reporting its load): tried even with its circuit open
    hedge_after_s: float | None = None  # no first token by then: the next route is tried beside it


# Retries, timeouts and breakers are the `resilience:` settings section, as configured.
Policy = ResilienceSettings


@dataclass
class _Circuit:
    failures: int = 0
    last_failure: float = 0.0
    open_until: float = 0.0
    probing: bool = False
    probe_since: float = 0.0


@dataclass
class Breakers:
    """Per-provider circuit breakers (closed -> open -> half-open -> closed).

    A circuit opens after `threshold` failures of distinct requests (the caller reports at most
    one per request), each within `window_s` of the one before.
    """

    threshold: int = 3
    cooldown_s: float = 30.0
    clock: Callable[[], float] = time.monotonic
    window_s: float = 60.0
    _circuits: dict[str, _Circuit] = field(default_factory=dict)
    _answered: dict[str, float] = field(default_factory=dict)  # provider -> when it last gave a first token

    def answered(self, provider: str) -> None:
        """The provider gave some request its first token now (it is up, whatever else waits on it)."""
        self._answered[provider] = self.clock()

    def answered_since(self, provider: str, since: float) -> bool:
        return self._answered.get(provider, -math.inf) >= since

    def allow(self, provider: str) -> bool:
        c = self._circuits.get(provider)
        if c is None or c.failures < self.threshold:
            return True
        now = self.clock()
        if now < c.open_until or (c.probing and now - c.probe_since < self.cooldown_s):
            return False
        # Half-open: one probe at a time; one never heard of again (its answer lost) gives way to another.
        c.probing, c.probe_since = True, now
        return True

    def success(self, provider: str) -> None:
        self._circuits.pop(provider, None)

    def failure(self, provider: str, retry_after: float | None = None) -> None:
        c = self._circuits.setdefault(provider, _Circuit())
        now = self.clock()
        if c.failures < self.threshold and now - c.last_failure > self.window_s:
            c.failures = 0  # the earlier failures are too old to say anything about now
        c.failures += 1
        c.last_failure = now
        c.probing = False
        if c.failures >= self.threshold:
            c.open_until = self.clock() + max(self.cooldown_s, retry_after or 0.0)

    def state(self, provider: str) -> str:
        c = self._circuits.get(provider)
        if c is None or c.failures < self.threshold:
            return "closed"
        return "half-open" if self.clock() >= c.open_until else "open"


@dataclass(frozen=True)
class Success(Generic[R]):
    target: Target
    result: R
    failures: tuple[tuple[Target, OrchestratorError], ...] = ()
    hedged: Target | None = None  # the route this one was tried beside, given up when this one answered first
    called_off: tuple[Target, ...] = ()  # hedges started beside a route and cancelled (their prompts may be billed)

    def reason(self) -> str:
        """Why this route served: its plan reason, plus what failed before it (or the hedge it won, or
        the hedges called off)."""
        if self.hedged is not None:
            after = (self.hedged.hedge_after_s or 0.0) * 1000
            return f"hedge: {self.hedged.provider} had no first token after {after:.0f} ms ({self.hedged.reason})"
        off = "".join(f"; hedge to {t.provider}/{t.model} called off" for t in self.called_off)
        return self._why() + off

    def _why(self) -> str:
        if not self.failures:
            return self.target.reason
        failed = ", ".join(f"{t.provider} {e.code or e.status_code}" for t, e in self.failures)
        if self.target.reason != "fallback":
            return f"{self.target.reason}; fallback after {failed}"
        if all(isinstance(e, Overloaded) for _, e in self.failures):
            return f"back-pressure: {failed}"  # a full local queue moved it on at once
        return f"fallback after {failed}"


def retryable(e: OrchestratorError) -> bool:
    return isinstance(e, UpstreamError | Overloaded) and bool(getattr(e, "retryable", False))


def trips_breaker(e: OrchestratorError) -> bool:
    """Whether the failure counts against its route's circuit (not the request's fault, nor a lost replica's)."""
    if isinstance(e, UpstreamRejected):
        return e.upstream_status in (401, 403)  # a bad key won't fix itself
    return retryable(e) and not isinstance(e, Overloaded | ReplicaLost)


async def run_with_failover(
    targets: list[Target],
    attempt: Callable[[Target], Awaitable[R]],
    *,
    policy: Policy,
    breakers: Breakers,
    clock: Callable[[], float] = time.monotonic,
    sleep: Callable[[float], Awaitable[None]] = asyncio.sleep,
    gave_up: Callable[[Target, float], None] | None = None,
    settles: bool = True,
) -> Success[R]:
    """The first target whose `attempt` succeeds, following the module's rules (and a target's hedge:
    `orchestrator.hedging`; `gave_up` hears of an attempt cancelled after so many ms because its
    hedge answered first). `settles`: a success closes its route's circuit; False where the attempt's
    result is a client's stream opened at its first content, whose end says whether the route answered
    (`metering.Meter.stream` tells the circuit)."""
    run = _Run(targets, attempt, policy, breakers, clock, sleep, gave_up)
    run.settles = settles
    return await run.run()


class _Run(Generic[R]):
    """One request's way through its routes: rounds of attempts, then the alive routes left."""

    def __init__(
        self,
        targets: list[Target],
        attempt: Callable[[Target], Awaitable[R]],
        policy: Policy,
        breakers: Breakers,
        clock: Callable[[], float],
        sleep: Callable[[float], Awaitable[None]],
        gave_up: Callable[[Target, float], None] | None = None,
    ):
        self.targets, self.attempt, self.policy, self.breakers = targets, attempt, policy, breakers
        self.clock, self.sleep, self.gave_up = clock, sleep, gave_up
        self.hedges: dict[int, int] = {}  # a route tried as a hedge -> the round it was tried in
        self.deadline = clock() + policy.deadline_s
        self.failures: list[tuple[Target, OrchestratorError]] = []
        self.done: set[int] = set()  # routes not to try again
        self.not_before: dict[int, float] = {}  # a route's next attempt, not before (backoff, Retry-After)
        self.tripped: set[str] = set()  # providers this request already reported to the breakers
        self.shut_out: list[int] = []  # alive routes skipped for an open circuit
        self.replaced: set[int] = set()  # routes retried at once after a replica was lost under the request
        self.called_off: list[Target] = []  # hedges cancelled because the route beside them answered first
        self.settles = True  # a success closes its route's circuit (see `run_with_failover`)
        self.began: dict[int, float] = {}  # each route's latest attempt, started at (the breakers' clock)

    async def run(self) -> Success[R]:
        try:
            won = await self._run()
        except OrchestratorError as e:
            if self.called_off:  # no route answered, and these hedges had their prompts sent all the same
                e.called_off = tuple(self.called_off)  # type: ignore[attr-defined]
            raise
        return replace(won, called_off=tuple(self.called_off)) if self.called_off else won

    async def _run(self) -> Success[R]:
        for round_ in range(self.policy.attempts):
            for i, target in enumerate(self.targets):
                if self.hedges.get(i) == round_:
                    continue  # tried beside the route before it in this round
                if i in self.done or not await self._waited(i) or not self._allowed(i, target):
                    continue
                if (won := await self._try(i, target, round_)) is not None:
                    return won
        # Nothing else could serve: an alive route gets this request's attempts even with its circuit
        # open (the breaker protects other routes' time, and there are none left to protect).
        for i in self.shut_out:
            target = self.targets[i]
            tried = sum(t is target for t, _ in self.failures)
            for round_ in range(tried, self.policy.attempts):
                if i in self.done or not await self._waited(i):
                    break
                if (won := await self._try(i, target, round_)) is not None:
                    return won
        raise combine(self.failures)

    async def _waited(self, i: int) -> bool:
        """Wait out the route's backoff; False when that would pass the deadline (the route is done)."""
        wait = self.not_before.get(i, 0.0) - self.clock()
        if wait > 0:
            if self.clock() + wait >= self.deadline:
                self.done.add(i)
                return False
            await self.sleep(wait)
        return True

    def _allowed(self, i: int, target: Target) -> bool:
        if self.breakers.allow(target.provider):
            return True
        if target.alive and i not in self.shut_out:
            self.shut_out.append(i)
        return False

    async def _try(self, i: int, target: Target, round_: int) -> Success[R] | None:
        """One attempt within the deadline: the success, or None with the failure noted."""
        remaining = self.deadline - self.clock()
        if remaining <= 0:
            raise combine(self.failures, deadline_passed=True)
        self.began[i] = self.breakers.clock()
        if round_ == 0 and target.hedge_after_s is not None and i + 1 < len(self.targets):
            won = await self._race(i, target, round_, remaining)
            lost = [e for t, e in self.failures if t is target]
            if won is None and lost and isinstance(lost[-1], ReplicaLost) and i not in self.replaced:
                self.replaced.add(i)  # as below: straight to another of its replicas, once
                return await self._try(i, target, round_)
            return won
        deadline: Deadline | None = None
        try:
            async with asyncio.timeout(remaining) as timeout:
                with attempt_deadline(Deadline(timeout, self.policy.answer_timeout_s)) as deadline:
                    result = await self.attempt(target)
        except TimeoutError:
            error: OrchestratorError = _timed_out(target, self.policy, deadline is not None and deadline.reached)
        except OrchestratorError as e:
            error = e
        else:
            self.breakers.answered(target.provider)
            if self.settles:
                self.breakers.success(target.provider)
            return Success(target, result, tuple(self.failures))
        self._failed(i, target, error, round_)
        if isinstance(error, ReplicaLost) and i not in self.replaced:
            self.replaced.add(i)  # the route itself is fine: straight to another of its replicas, once
            return await self._try(i, target, round_)
        return None

    async def _race(self, i: int, target: Target, round_: int, remaining: float) -> Success[R] | None:
        """`target`, and once it has had `hedge_after_s` without a first content, the next route beside it
        (if that one may be tried now): the first to reach its first content serves, the other is cancelled.
        Each one's failure is noted as a plain attempt's would be; None when both failed."""
        j, hedge = i + 1, self.targets[i + 1]
        first: HedgedAttempt[Target, R] = HedgedAttempt(self.attempt, target)
        racing = [first]
        given_up = False  # `target` cancelled because the hedge reached its first content first
        try:
            async with asyncio.timeout(remaining) as timeout:
                deadline = Deadline(timeout, self.policy.answer_timeout_s)
                await asyncio.wait(first.waiters(), timeout=target.hedge_after_s, return_when=asyncio.FIRST_COMPLETED)
                if not first.answered and self._may_hedge(j, hedge, round_):
                    racing.append(HedgedAttempt(self.attempt, hedge))
                while not any(a.first.is_set() for a in racing):
                    for a in [a for a in racing if a.task.done()]:
                        racing.remove(a)
                        if (won := self._ended(i if a is first else j, a, round_)) is not None:
                            return won  # an answer without any content (empty) is an answer
                    if not racing:
                        return None
                    waiters = set().union(*(a.waiters() for a in racing))
                    await asyncio.wait(waiters, return_when=asyncio.FIRST_COMPLETED)
                winner = next(a for a in racing if a.first.is_set())
                for loser in racing:
                    if loser is not winner:
                        given_up = loser is first
                        if given_up and self.gave_up is not None:
                            self.gave_up(target, loser.elapsed_ms())
                        await self._discard(loser, first, lost=True)
                racing = [winner]
                deadline.reach()  # the rest of the answer has the answer's time
                await asyncio.wait({winner.task})
                won = self._ended(i if winner is first else j, winner, round_)
                return replace(won, hedged=target) if won is not None and given_up else won
        except TimeoutError:
            self._failed(i, target, _timed_out(target, self.policy, deadline.reached), round_)
            return None
        finally:
            for a in racing:
                if not a.task.done():
                    await self._discard(a, first)
                a.stop_waiting()

    async def _discard(
        self, attempt: HedgedAttempt[Target, R], first: HedgedAttempt[Target, R], *, lost: bool = False
    ) -> None:
        """Cancel a raced attempt (`lost`: the other answered first; otherwise the request itself ended); a
        hedge cancelled is one called off (its prompt may be billed)."""
        if attempt is not first:
            self.called_off.append(attempt.target)
        await discard(attempt, lost=lost)

    def _may_hedge(self, j: int, hedge: Target, round_: int) -> bool:
        """Whether route `j` may be tried now as a hedge (then it counts as tried in this round)."""
        if j in self.done or self.not_before.get(j) or not self._allowed(j, hedge):
            return False
        self.hedges[j] = round_
        self.began[j] = self.breakers.clock()
        return True

    def _own_wait(self, i: int, target: Target, error: OrchestratorError) -> bool:
        """Whether `error` is a first-token timeout that says more about this request than about its route,
        so no one else's requests lose the route over it: the plan giving up sooner than the route's own
        timeout (a local attempt's patience, from an SLO the request may have set itself: a prediction that
        was wrong), or a route that gave other requests their first tokens while this one waited (a huge
        prompt, a long think before the first word)."""
        if not isinstance(error, FirstTokenTimeout):
            return False
        patience = target.first_token_timeout_s
        if patience is not None and patience < self.policy.first_token_timeout_s:
            return True
        return self.breakers.answered_since(target.provider, self.began.get(i, math.inf))

    def _ended(self, i: int, attempt: HedgedAttempt[Target, R], round_: int) -> Success[R] | None:
        """A raced attempt's end as `_try` would take it: its success, or None with the failure noted."""
        target, task = attempt.target, attempt.task
        error = task.exception()
        if error is None:
            self.breakers.answered(target.provider)
            if self.settles:
                self.breakers.success(target.provider)
            return Success(target, task.result(), tuple(self.failures))
        if not isinstance(error, OrchestratorError):
            raise error
        self._failed(i, target, error, round_)
        return None

    def _failed(self, i: int, target: Target, error: OrchestratorError, round_: int) -> None:
        self.failures.append((target, error))
        if trips_breaker(error) and not self._own_wait(i, target, error) and target.provider not in self.tripped:
            self.tripped.add(target.provider)
            self.breakers.failure(target.provider, getattr(error, "retry_after", None))
        if not retryable(error):
            self.done.add(i)
            return
        if isinstance(error, ReplicaLost):
            self.not_before.pop(i, None)  # another replica takes it at the route's next turn
            return
        backoff = min(self.policy.backoff_max_s, self.policy.backoff_base_s * 2**round_)
        after = getattr(error, "retry_after", None)
        self.not_before[i] = self.clock() + (after if after is not None else backoff * random.uniform(0.5, 1.0))


def _timed_out(target: Target, policy: Policy, answering: bool) -> UpstreamTimeout:
    if answering:
        return UpstreamTimeout(f"{target.provider}: the answer took over {policy.answer_timeout_s:g} s.")
    return UpstreamTimeout(f"{target.provider}: no answer within the request's deadline.")


def combine(failures: list[tuple[Target, OrchestratorError]], *, deadline_passed: bool = False) -> OrchestratorError:
    """One error for the client that says what happened on every route."""
    if not failures:
        return UpstreamUnavailable(
            "Every route for this model is cooling down after repeated failures; retry shortly.",
            code="all_routes_unavailable",
        )
    errors = [e for _, e in failures]
    last = errors[-1]
    if len({(t.provider, type(e)) for t, e in failures}) == 1 and not deadline_passed:
        return last
    if all(_client_error(e) for e in errors):
        return last
    if all(isinstance(e, UpstreamRateLimited) for e in errors):
        waits = [e.retry_after for e in errors if isinstance(e, UpstreamRateLimited) and e.retry_after is not None]
        return UpstreamRateLimited(
            "Every route is rate limited: " + _summary(failures), retry_after=min(waits) if waits else None
        )
    return UpstreamError(
        f"All routes failed{' before the deadline' if deadline_passed else ''}: {_summary(failures)}",
        code="all_routes_failed",
    )


def _client_error(e: OrchestratorError) -> bool:
    return isinstance(e, InvalidRequest) or (isinstance(e, UpstreamRejected) and e.status_code == 400)


def _summary(failures: list[tuple[Target, OrchestratorError]]) -> str:
    return "; ".join(f"{t.provider}/{t.model}: {e.message}" for t, e in failures)


# ------------------------------------------------------------------------ stream helpers


@dataclass
class OpenStream(Generic[T]):
    """A stream that reached its first content: what came so far (the batch with the first content
    included, whole), and the rest in batches: the chunks that came together, together, never none.

    `aclose()` releases everything behind it (the upstream connection, a
    single-flight seat) even when `rest` was never iterated, which closing an
    async generator that never started would not do. `also` holds what the
    rest wraps.
    """

    prefix: list[T]
    rest: AsyncIterator[list[T]]
    also: tuple[Any, ...] = ()

    async def aclose(self) -> None:
        await _close(self.rest)
        for inner in self.also:
            await inner.aclose()

    async def chunks(self) -> AsyncIterator[T]:
        """Every chunk, one by one."""
        try:
            for chunk in self.prefix:
                yield chunk
            async for batch in self.rest:
                for chunk in batch:
                    yield chunk
        finally:
            await self.aclose()


async def open_stream(
    stream: AsyncIterator[list[T]], *, has_content: Callable[[T], bool], policy: Policy, provider: str
) -> OpenStream[T]:
    """Read batches of chunks until one has content (within the first-token timeout).

    On failure the upstream stream is closed, which cancels the provider's work.
    """
    prefix: list[T] = []
    try:
        async with asyncio.timeout(policy.first_token_timeout_s):
            async for batch in stream:
                prefix += batch
                if any(map(has_content, batch)):
                    first_content()
                    rest = with_idle_timeout(stream, policy.idle_timeout_s, provider)
                    return OpenStream(prefix, rest, also=(stream,))
    except TimeoutError:
        await _close(stream)
        raise FirstTokenTimeout(f"{provider}: no first token within {policy.first_token_timeout_s:g} s.") from None
    except BaseException:
        await _close(stream)
        raise
    if any(map(_answers, prefix)):  # a complete stream without content (e.g. an empty answer): still an answer
        return OpenStream(prefix, _empty(), also=(stream,))
    raise UpstreamUnavailable(f"{provider}: the stream ended without any output.")


def _answers(chunk: Any) -> bool:
    """Whether a chunk holds any part of an answer: a stream of nothing but a usage chunk (`choices: []`)
    is a provider's failure, not an answer with no choices (which the SDKs can't read: `choices[0]`)."""
    return bool(getattr(chunk, "choices", True))


async def with_idle_timeout(stream: AsyncIterator[T], seconds: float, provider: str) -> AsyncIterator[T]:
    """`stream`, failing with `UpstreamTimeout` if a wait for its next item (a chunk, a batch) lasts `seconds`.

    Only waiting counts: time the consumer spends between chunks doesn't. One timer serves the
    whole stream (`_IdleWatch`), not one `asyncio.timeout` per chunk: this runs for every chunk of
    every answer, remote and local.
    """
    watch = _IdleWatch(seconds)
    try:
        while True:
            task = asyncio.current_task()
            assert task is not None
            try:
                chunk = await watch.next(stream, task, provider)
            except StopAsyncIteration:
                return
            yield chunk
    finally:
        watch.close()
        await _close(stream)


async def read_whole(
    stream: AsyncIterator[list[T]],
    add: Callable[[T], object],
    *,
    has_content: Callable[[T], bool],
    policy: Policy,
    provider: str,
    started: Callable[[], None] | None = None,
    waited: Callable[[float], None] | None = None,
) -> None:
    """Every chunk of `stream`'s batches handed to `add`, under `open_stream`'s and `with_idle_timeout`'s rules at
    once: the first content within the first-token timeout (`started` is called on it), each later wait
    within the idle timeout, the same errors, and the stream closed however it ends. `waited` is told
    the seconds spent waiting on the stream, once, however it ends.

    For an answer folded whole, which needs neither the prefix nor a stream to hand on: one loop instead
    of three generators stacked per chunk (`open_stream`, `with_idle_timeout`, `OpenStream.chunks`).
    """
    clock = time.perf_counter
    total = 0.0
    try:
        any_chunk = False
        try:
            async with asyncio.timeout(policy.first_token_timeout_s):
                while True:
                    t0 = clock()
                    try:
                        batch = await anext(stream)
                    except StopAsyncIteration:
                        if any_chunk:  # a complete stream without content (e.g. an empty answer): an answer
                            return
                        raise UpstreamUnavailable(f"{provider}: the stream ended without any output.") from None
                    finally:
                        total += clock() - t0
                    any_chunk = any_chunk or any(map(_answers, batch))
                    for chunk in batch:
                        add(chunk)
                    if any(map(has_content, batch)):
                        break
        except TimeoutError:
            raise FirstTokenTimeout(f"{provider}: no first token within {policy.first_token_timeout_s:g} s.") from None
        first_content(answering=True)
        if started is not None:
            started()
        watch = _IdleWatch(policy.idle_timeout_s)
        task = asyncio.current_task()
        assert task is not None
        try:
            while True:
                t0 = clock()
                try:
                    batch = await watch.next(stream, task, provider)
                except StopAsyncIteration:
                    return
                finally:
                    total += clock() - t0
                for chunk in batch:
                    add(chunk)
        finally:
            watch.close()
    finally:
        await _close(stream)
        if waited is not None:
            waited(total)


class _IdleWatch:
    """A timer that cancels the wait in progress once it has lasted `seconds`.

    It fires at most once per `seconds` of a stream's life: on firing, a wait that began less
    than `seconds` ago sets it again for that wait's own end, and no wait at all leaves it unset
    until the next one starts.
    """

    __slots__ = ("_handle", "_loop", "_seconds", "fired", "since", "task")

    def __init__(self, seconds: float):
        self._loop = asyncio.get_running_loop()
        self._seconds = seconds
        self._handle: asyncio.TimerHandle | None = None
        self.task: asyncio.Task[Any] | None = None  # the task waiting for a chunk now, if any
        self.since = 0.0
        self.fired = False

    def waiting(self, task: asyncio.Task[Any]) -> None:
        self.task, self.since = task, self._loop.time()
        if self._handle is None:
            self._handle = self._loop.call_at(self.since + self._seconds, self._check)

    async def next(self, stream: AsyncIterator[T], task: asyncio.Task[Any], provider: str) -> T:
        """`stream`'s next chunk, awaited by `task` under the watch: `UpstreamTimeout` if the wait lasts
        the watch's seconds (a cancel of the task by anyone else stays a cancel)."""
        cancelling = task.cancelling()
        self.waiting(task)
        try:
            return await anext(stream)
        except asyncio.CancelledError:
            if self.fired and task.uncancel() <= cancelling:  # our cancel, no one else's
                raise UpstreamTimeout(f"{provider}: the stream stalled for {self._seconds:g} s.") from None
            raise
        finally:
            self.task = None

    def _check(self) -> None:
        self._handle = None
        if self.task is None:
            return
        due = self.since + self._seconds
        if self._loop.time() >= due - 1e-3:
            self.fired = True
            self.task.cancel()
        else:
            self._handle = self._loop.call_at(due, self._check)

    def close(self) -> None:
        if self._handle is not None:
            self._handle.cancel()
            self._handle = None


async def _close(stream: AsyncIterator[T]) -> None:
    aclose = getattr(stream, "aclose", None)
    if aclose is not None:
        await aclose()


async def _empty() -> AsyncIterator[T]:
    return
    yield  # pragma: no cover
