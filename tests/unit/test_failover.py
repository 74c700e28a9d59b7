"""Failover rules: order, retries, Retry-After, breakers, deadline, and the error the client gets."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator
from contextlib import aclosing

import pytest

from orchestrator.errors import (
    ContextLengthExceeded,
    FirstTokenTimeout,
    OrchestratorError,
    Overloaded,
    ReplicaLost,
    UpstreamError,
    UpstreamRateLimited,
    UpstreamRejected,
    UpstreamTimeout,
    UpstreamUnavailable,
)
from orchestrator.failover import (
    Breakers,
    Policy,
    Target,
    combine,
    open_stream,
    read_whole,
    run_with_failover,
    with_idle_timeout,
)

A, B, C = Target("a", "m1"), Target("b", "m2", "fallback-1"), Target("c", "m3", "fallback-2")


class Clock:
    def __init__(self) -> None:
        self.now = 0.0
        self.slept: list[float] = []

    def __call__(self) -> float:
        return self.now

    async def sleep(self, s: float) -> None:
        self.slept.append(s)
        self.now += s


class Script:
    """Per-provider scripted outcomes: an exception to raise, or a value to return."""

    def __init__(self, **outcomes: list[object]):
        self.outcomes = {k: list(v) for k, v in outcomes.items()}
        self.calls: list[str] = []

    async def __call__(self, target: Target) -> str:
        self.calls.append(target.provider)
        outcome = self.outcomes[target.provider].pop(0)
        if isinstance(outcome, BaseException):
            raise outcome
        return str(outcome)


async def run(
    script: Script, targets: list[Target], clock: Clock, policy: Policy | None = None, breakers: Breakers | None = None
) -> object:
    return await run_with_failover(
        targets,
        script,
        policy=policy or Policy(),
        breakers=breakers or Breakers(clock=clock),
        clock=clock,
        sleep=clock.sleep,
    )


async def test_first_success_wins_and_names_itself() -> None:
    clock = Clock()
    done = await run(Script(a=["ok-a"]), [A, B], clock)
    assert (done.target, done.result, done.reason()) == (A, "ok-a", "primary")  # type: ignore[attr-defined]


async def test_a_retryable_failure_falls_over_at_once_without_waiting() -> None:
    clock, script = Clock(), Script(a=[UpstreamRateLimited("slow down", retry_after=30)], b=["ok-b"])
    done = await run(script, [A, B], clock)
    assert done.result == "ok-b" and clock.slept == []  # type: ignore[attr-defined]
    assert done.reason() == "fallback-1; fallback after a rate_limit_exceeded"  # type: ignore[attr-defined]


async def test_retry_on_the_same_route_honours_retry_after() -> None:
    clock, script = Clock(), Script(a=[UpstreamRateLimited("slow down", retry_after=2.5), "ok-a"])
    done = await run(script, [A], clock)
    assert done.result == "ok-a" and clock.slept == [2.5] and script.calls == ["a", "a"]  # type: ignore[attr-defined]


async def test_retry_without_retry_after_backs_off_exponentially() -> None:
    clock = Clock()
    script = Script(a=[UpstreamUnavailable("500"), UpstreamUnavailable("500"), "ok"])
    await run(script, [A], clock, Policy(attempts=3, backoff_base_s=1.0, backoff_max_s=10))
    assert 0.5 <= clock.slept[0] <= 1.0 and 1.0 <= clock.slept[1] <= 2.0


@pytest.mark.parametrize(
    "error",
    [
        UpstreamRejected("bad request", upstream_status=400),
        UpstreamRejected("bad key", upstream_status=401),
        UpstreamRejected("no money", upstream_status=429, code="insufficient_quota"),
        ContextLengthExceeded("too long"),
    ],
)
async def test_non_retryable_failures_are_never_retried_on_the_same_route(error: OrchestratorError) -> None:
    clock, script = Clock(), Script(a=[error, "never"], b=[UpstreamUnavailable("down"), "ok-b"])
    done = await run(script, [A, B], clock)
    assert done.result == "ok-b" and script.calls == ["a", "b", "b"]  # type: ignore[attr-defined]


async def test_a_retry_after_beyond_the_deadline_gives_the_route_up() -> None:
    clock, script = Clock(), Script(a=[UpstreamRateLimited("later", retry_after=500)])
    with pytest.raises(UpstreamRateLimited) as info:
        await run(script, [A], clock, Policy(deadline_s=10))
    assert clock.slept == [] and info.value.retry_after == 500


async def test_the_deadline_bounds_a_slow_attempt() -> None:
    async def slow(target: Target) -> str:
        await asyncio.sleep(5)
        return "late"

    with pytest.raises(UpstreamTimeout):
        await run_with_failover([A], slow, policy=Policy(deadline_s=0.05, attempts=1), breakers=Breakers())


async def test_breaker_opens_after_repeated_failures_then_probes_once() -> None:
    clock = Clock()
    breakers = Breakers(threshold=2, cooldown_s=10, clock=clock)
    for _ in range(2):
        with pytest.raises(UpstreamUnavailable):
            await run(Script(a=[UpstreamUnavailable("down")]), [A], clock, Policy(attempts=1), breakers)
    assert breakers.state("a") == "open"
    # Open: the provider is skipped, the next route serves without calling it.
    script = Script(a=["never"], b=["ok-b"])
    assert (await run(script, [A, B], clock, Policy(attempts=1), breakers)).result == "ok-b"  # type: ignore[attr-defined]
    assert script.calls == ["b"]
    clock.now += 10
    assert breakers.state("a") == "half-open"
    assert breakers.allow("a") and not breakers.allow("a")  # exactly one probe at a time
    clock.now += 10  # a probe never heard of again (its stream closed unread) doesn't shut the route for good
    assert breakers.allow("a") and not breakers.allow("a")
    breakers.success("a")
    assert breakers.state("a") == "closed"


async def test_a_client_mistake_does_not_trip_the_breaker() -> None:
    clock = Clock()
    breakers = Breakers(threshold=1, clock=clock)
    with pytest.raises(UpstreamRejected):
        await run(Script(a=[UpstreamRejected("bad", upstream_status=400)]), [A], clock, Policy(), breakers)
    assert breakers.state("a") == "closed"


async def test_every_route_cooling_down_is_a_503() -> None:
    clock = Clock()
    breakers = Breakers(threshold=1, cooldown_s=60, clock=clock)
    breakers.failure("a")
    with pytest.raises(UpstreamUnavailable) as info:
        await run(Script(a=["never"]), [A], clock, Policy(), breakers)
    assert info.value.status_code == 503 and info.value.code == "all_routes_unavailable"


async def test_one_request_counts_once_however_often_it_retried() -> None:
    clock = Clock()
    breakers = Breakers(threshold=2, clock=clock)
    down = [UpstreamUnavailable("down")] * 3
    with pytest.raises(UpstreamUnavailable):
        await run(Script(a=list(down)), [A], clock, Policy(attempts=3), breakers)
    assert breakers.state("a") == "closed"  # three failed attempts, one request
    with pytest.raises(UpstreamUnavailable):
        await run(Script(a=list(down)), [A], clock, Policy(attempts=3), breakers)
    assert breakers.state("a") == "open"


async def test_a_first_token_timeout_while_the_route_answers_others_is_the_requests_own() -> None:
    """A request waiting long for its first token (a huge prompt, a long think) while the route gives other
    requests theirs says nothing about the route: however many, its circuit stays closed for everyone. A
    route that answered no one meanwhile is down: then the timeouts count."""
    clock = Clock()
    breakers = Breakers(threshold=2, clock=clock)
    slow = FirstTokenTimeout("a: no first token within 30 s.")

    async def waits_while_others_are_answered(target: Target) -> str:
        clock.now += 30
        breakers.answered("a")  # another request's first token, meanwhile
        raise slow

    for _ in range(3):
        with pytest.raises(UpstreamTimeout):
            await run_with_failover(
                [A], waits_while_others_are_answered, policy=Policy(attempts=1), breakers=breakers, clock=clock
            )
    assert breakers.state("a") == "closed"
    clock.now += 1
    for _ in range(2):  # no one answered while these waited
        with pytest.raises(UpstreamTimeout):
            await run(Script(a=[slow]), [A], clock, Policy(attempts=1), breakers)
    assert breakers.state("a") == "open"


async def test_a_plans_patience_running_out_never_counts_against_the_route() -> None:
    """A local attempt's patience (from the SLO, maybe the request's own) is shorter than the route's first-token
    timeout: giving up at it is the plan's call on a wrong prediction, not the route failing."""
    clock = Clock()
    breakers = Breakers(threshold=1, clock=clock)
    patient = Target("local", "m", first_token_timeout_s=0.3)
    script = Script(local=[FirstTokenTimeout("local: no first token within 0.3 s.")], b=["ok-b"])
    assert (await run(script, [patient, B], clock, Policy(attempts=1), breakers)).result == "ok-b"  # type: ignore[attr-defined]
    assert breakers.state("local") == "closed"
    script = Script(local=[FirstTokenTimeout("local: no first token within 30 s.")], b=["ok-b"])
    await run(script, [Target("local", "m"), B], clock, Policy(attempts=1), breakers)
    assert breakers.state("local") == "open"  # its own timeout, and no one answered: it counts


async def test_failures_far_apart_never_add_up_to_an_open_circuit() -> None:
    clock = Clock()
    breakers = Breakers(threshold=3, window_s=60, clock=clock)
    for _ in range(10):
        breakers.failure("a")
        clock.now += 61
    assert breakers.state("a") == "closed"


async def test_an_alive_route_with_nothing_else_left_is_tried_despite_its_open_circuit() -> None:
    clock = Clock()
    breakers = Breakers(threshold=1, cooldown_s=60, clock=clock)
    breakers.failure("a")
    local = Target("a", "m1", alive=True)
    done = await run(Script(a=["ok-a"]), [local], clock, Policy(), breakers)
    assert done.result == "ok-a"  # type: ignore[attr-defined]
    assert breakers.state("a") == "closed"
    # With another route able to serve, the open circuit still spares the alive route.
    breakers.failure("a")
    script = Script(a=["never"], b=["ok-b"])
    assert (await run(script, [local, B], clock, Policy(), breakers)).result == "ok-b"  # type: ignore[attr-defined]
    assert script.calls == ["b"]
    # And when that route fails too, the alive one gets its one attempt.
    script = Script(a=["ok-a"], b=[UpstreamUnavailable("down")] * 2)
    assert (await run(script, [local, B], clock, Policy(), breakers)).result == "ok-a"  # type: ignore[attr-defined]


def test_combine_prefers_the_clients_own_mistake() -> None:
    e = combine([(A, ContextLengthExceeded("too long")), (B, UpstreamRejected("bad", upstream_status=400))])
    assert e.status_code == 400


def test_combine_rate_limits_into_a_429_with_the_shortest_wait() -> None:
    e = combine([(A, UpstreamRateLimited("x", retry_after=9)), (B, UpstreamRateLimited("y", retry_after=3))])
    assert isinstance(e, UpstreamRateLimited) and e.retry_after == 3 and e.status_code == 429


def test_combine_mixed_failures_name_every_route() -> None:
    e = combine([(A, UpstreamUnavailable("a broke")), (B, Overloaded("queue full")), (C, UpstreamTimeout("stall"))])
    assert type(e) is UpstreamError and e.status_code == 502 and e.code == "all_routes_failed"
    assert "a/m1: a broke" in e.message and "b/m2: queue full" in e.message and "c/m3: stall" in e.message


async def chunks(items: list[object], fail: BaseException | None = None, delay: float = 0) -> AsyncIterator[object]:
    for item in items:
        await asyncio.sleep(delay)
        yield item
    if fail is not None:
        raise fail


async def reads(
    batches: list[list[object]], fail: BaseException | None = None, delay: float = 0
) -> AsyncIterator[list[object]]:
    """A provider's stream: the chunks of each network read together."""
    for batch in batches:
        await asyncio.sleep(delay)
        yield batch
    if fail is not None:
        raise fail


async def test_open_stream_buffers_until_the_first_content() -> None:
    opened = await open_stream(
        reads([["role"], [""], ["Hello"], [" world"]]),
        has_content=lambda c: c not in ("role", ""),
        policy=Policy(),
        provider="a",
    )
    assert opened.prefix == ["role", "", "Hello"]
    assert [c async for c in opened.chunks()] == ["role", "", "Hello", " world"]


async def test_open_stream_keeps_the_read_with_the_first_content_whole_and_the_rest_as_it_came() -> None:
    # What arrived together goes on together: the first write holds all of the first content's read.
    opened = await open_stream(
        reads([["role", ""], ["Hello", " wor"], ["ld", "!", "usage"], ["[end]"]]),
        has_content=lambda c: c not in ("role", ""),
        policy=Policy(),
        provider="a",
    )
    assert opened.prefix == ["role", "", "Hello", " wor"]
    assert [batch async for batch in opened.rest] == [["ld", "!", "usage"], ["[end]"]]


async def test_open_stream_failure_before_content_is_raised() -> None:
    with pytest.raises(UpstreamUnavailable):
        await open_stream(reads([[""]], UpstreamUnavailable("reset")), has_content=bool, policy=Policy(), provider="a")


async def test_open_stream_first_token_timeout() -> None:
    with pytest.raises(UpstreamTimeout, match="no first token"):
        await open_stream(
            reads([["x"]], delay=1), has_content=bool, policy=Policy(first_token_timeout_s=0.05), provider="a"
        )


async def test_idle_timeout_turns_a_stall_into_an_error() -> None:
    with pytest.raises(UpstreamTimeout, match="stalled"):
        async for _ in with_idle_timeout(chunks(["a", "b"], delay=0.2), 0.05, "a"):
            pass


async def test_idle_timeout_counts_each_wait_not_the_whole_stream() -> None:
    # 8 chunks 60 ms apart take 480 ms in all; no single wait comes near 300 ms (room for a loaded host).
    got = [c async for c in with_idle_timeout(chunks(list("abcdefgh"), delay=0.06), 0.3, "a")]
    assert got == list("abcdefgh")


async def test_idle_timeout_stall_after_some_chunks_and_the_time_it_takes() -> None:
    async def stalls() -> AsyncIterator[str]:
        yield "a"
        yield "b"
        await asyncio.sleep(10)
        yield "never"

    got: list[str] = []
    start = time.monotonic()
    with pytest.raises(UpstreamTimeout, match="stalled for 0.1 s"):
        async for c in with_idle_timeout(stalls(), 0.1, "a"):
            got.append(c)
    assert got == ["a", "b"] and 0.09 <= time.monotonic() - start < 0.5


async def test_idle_timeout_ignores_a_slow_consumer() -> None:
    seen = []
    async for c in with_idle_timeout(chunks(["a", "b", "c"]), 0.05, "a"):
        seen.append(c)
        await asyncio.sleep(0.12)  # the client is slow, not the provider
    assert seen == ["a", "b", "c"]


async def test_idle_timeout_leaves_an_outside_cancel_a_cancel() -> None:
    async def forever() -> AsyncIterator[str]:
        yield "a"
        await asyncio.sleep(10)
        yield "b"

    async def consume() -> list[str]:
        return [c async for c in with_idle_timeout(forever(), 5.0, "a")]

    task = asyncio.ensure_future(consume())
    await asyncio.sleep(0.05)
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task


async def test_idle_timeout_follows_the_stream_across_tasks() -> None:
    # A stream opened in one task and read in another (a response's own task, a shared flight).
    async def late_second() -> AsyncIterator[str]:
        yield "a"
        await asyncio.sleep(10)
        yield "b"

    stream = with_idle_timeout(late_second(), 0.05, "a")
    assert await asyncio.ensure_future(anext(stream)) == "a"
    await asyncio.sleep(0.1)  # between reads, in no task: not a wait
    with pytest.raises(UpstreamTimeout):
        await asyncio.ensure_future(anext(stream))


class Closing:
    """A stream that records whether it was closed (the upstream connection released)."""

    def __init__(self, source: AsyncIterator[object]):
        self.source, self.closed = source, False

    def __aiter__(self) -> Closing:
        return self

    async def __anext__(self) -> object:
        return await anext(self.source)

    async def aclose(self) -> None:
        self.closed = True


async def one_a_read(stream: AsyncIterator[object]) -> AsyncIterator[list[object]]:
    """`stream`'s chunks as a provider passes them on when each came in a network read of its own."""
    async with aclosing(stream):  # type: ignore[type-var]
        async for chunk in stream:
            yield [chunk]


async def whole(stream: AsyncIterator[object], policy: Policy | None = None) -> tuple[list[object], list[str]]:
    got: list[object] = []
    events: list[str] = []
    await read_whole(
        one_a_read(stream), got.append, has_content=lambda c: c not in ("role", ""), policy=policy or Policy(),
        provider="a", started=lambda: events.append(f"started after {len(got)}"),
        waited=lambda s: events.append("waited"),
    )  # fmt: skip
    return got, events


async def test_read_whole_hands_every_chunk_on_and_says_when_the_content_started() -> None:
    stream = Closing(chunks(["role", "", "Hello", " world"]))
    got, events = await whole(stream)
    assert got == ["role", "", "Hello", " world"] and events == ["started after 3", "waited"] and stream.closed


async def test_read_whole_hands_on_every_chunk_of_a_read_and_starts_at_the_read_with_content() -> None:
    got: list[object] = []
    events: list[str] = []
    await read_whole(
        reads([["role", ""], ["Hello", " wor"], ["ld", "usage"]]), got.append,
        has_content=lambda c: c not in ("role", ""), policy=Policy(), provider="a",
        started=lambda: events.append(f"started after {len(got)}"),
    )  # fmt: skip
    assert got == ["role", "", "Hello", " wor", "ld", "usage"] and events == ["started after 4"]


async def test_read_whole_an_answer_without_content_is_an_answer_and_nothing_is_an_error() -> None:
    assert (await whole(chunks(["role", ""])))[0] == ["role", ""]
    with pytest.raises(UpstreamUnavailable, match="without any output"):
        await whole(chunks([]))


@pytest.mark.parametrize("before", [[], ["role", "Hi"]], ids=["before-content", "mid-answer"])
async def test_read_whole_a_failure_is_raised_the_stream_closed_and_the_wait_counted(before: list[object]) -> None:
    stream = Closing(chunks(before, UpstreamUnavailable("reset")))
    events: list[str] = []
    with pytest.raises(UpstreamUnavailable, match="reset"):
        await read_whole(
            one_a_read(stream), lambda c: None, has_content=bool, policy=Policy(), provider="a",
            waited=lambda s: events.append("w"),
        )  # fmt: skip
    assert stream.closed and events == ["w"]


async def test_read_whole_first_token_timeout_counts_from_the_start() -> None:
    # Chunks without content keep coming, 30 ms apart, but no content within 100 ms.
    stream = Closing(chunks(["role", "", "", "", "", "", "", "late"], delay=0.03))
    with pytest.raises(UpstreamTimeout, match="no first token within 0.1 s"):
        await whole(stream, Policy(first_token_timeout_s=0.1))
    assert stream.closed


async def test_read_whole_idle_timeout_counts_each_wait_after_the_content() -> None:
    async def stalls() -> AsyncIterator[str]:
        yield "Hi"
        yield "b"
        await asyncio.sleep(10)
        yield "never"

    start = time.monotonic()
    with pytest.raises(UpstreamTimeout, match="stalled for 0.1 s"):
        await whole(Closing(stalls()), Policy(idle_timeout_s=0.1))
    assert 0.09 <= time.monotonic() - start < 0.5
    # 8 chunks 60 ms apart take 480 ms in all; no single wait comes near 300 ms.
    got, _ = await whole(chunks(list("abcdefgh"), delay=0.06), Policy(idle_timeout_s=0.3, first_token_timeout_s=0.3))
    assert got == list("abcdefgh")


async def test_read_whole_leaves_an_outside_cancel_a_cancel() -> None:
    async def forever() -> AsyncIterator[str]:
        yield "a"
        await asyncio.sleep(10)
        yield "b"

    stream = Closing(forever())
    task = asyncio.ensure_future(whole(stream, Policy(idle_timeout_s=5.0)))
    await asyncio.sleep(0.05)
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    assert stream.closed


async def test_a_lost_replica_is_retried_at_once_and_never_opens_the_routes_circuit() -> None:
    """A local replica that died under the request: the route's other replicas serve it, with no backoff, and
    the route stays closed for everyone else however many requests lost their replica."""
    clock = Clock()
    breakers = Breakers(threshold=1, cooldown_s=60, clock=clock)
    local = Target("a", "m1", alive=True)
    for _ in range(3):
        script = Script(a=[ReplicaLost("gone"), "ok-a"], b=["remote"])
        done = await run(script, [local, B], clock, Policy(), breakers)
        assert done.result == "ok-a" and script.calls == ["a", "a"] and clock.slept == []  # type: ignore[attr-defined]
    assert breakers.state("a") == "closed"
    # Lost twice in a row (a second replica going too): on to the next route, at once.
    script = Script(a=[ReplicaLost("gone"), ReplicaLost("gone too")], b=["remote"])
    done = await run(script, [local, B], clock, Policy(), breakers)
    assert done.result == "remote" and script.calls == ["a", "a", "b"] and clock.slept == []  # type: ignore[attr-defined]


async def test_an_alive_route_gets_this_requests_retry_though_others_opened_its_circuit_meanwhile() -> None:
    """Many requests time out together on a node that died: the first failures open the circuit while the
    rest still wait. Each of those still gets its own second attempt on the alive route, the only one."""
    clock = Clock()
    breakers = Breakers(threshold=1, cooldown_s=60, clock=clock)
    local = Target("a", "m1", alive=True)

    async def attempt(target: Target) -> str:
        if not calls:
            calls.append(target.provider)
            breakers.failure("a")  # another request's failure, reported while this one waited
            raise UpstreamTimeout("no first token")
        calls.append(target.provider)
        return "ok-a"

    calls: list[str] = []
    done = await run_with_failover([local], attempt, policy=Policy(), breakers=breakers, clock=clock, sleep=clock.sleep)
    assert done.result == "ok-a" and calls == ["a", "a"]
    # A route not known to be alive stays shut out: the circuit protects the time of its clients.
    calls.clear()
    breakers.success("a")
    with pytest.raises(UpstreamTimeout):
        await run_with_failover(
            [Target("a", "m1")], attempt, policy=Policy(), breakers=breakers, clock=clock, sleep=clock.sleep
        )
    assert calls == ["a"]


async def test_a_stream_of_nothing_but_usage_is_a_failure_whole_or_streamed() -> None:
    """A provider's 200 with only a usage chunk was an answer with `choices: []` (the SDK's `choices[0]`
    raised IndexError), billed, and the next route never tried."""
    from orchestrator.protocol import ChatCompletionChunk, Usage

    usage_only = ChatCompletionChunk(id="c", created=1, model="m", choices=[], usage=Usage(prompt_tokens=3))
    with pytest.raises(UpstreamUnavailable, match="without any output"):
        await read_whole(reads([[usage_only]]), [].append, has_content=lambda c: False, policy=Policy(), provider="a")
    with pytest.raises(UpstreamUnavailable, match="without any output"):
        await open_stream(reads([[usage_only]]), has_content=lambda c: False, policy=Policy(), provider="a")
