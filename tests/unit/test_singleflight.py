"""Single-flight: identical requests in flight share one upstream call, its chunks and its fate.

The upstream here is a plain async function that opens a stream the way the
pipeline's routes do (`Routed(Route, OpenStream(prefix, rest))`); it counts
its calls and records how each of its streams ended.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator, Callable

import pytest

from orchestrator.caching.singleflight import Flight, SingleFlight
from orchestrator.errors import EngineError, UpstreamUnavailable
from orchestrator.failover import OpenStream
from orchestrator.routes import Route, Routed

ROUTE = Route("local", "fake-chat", "primary")
CHUNKS = [f"c{i}" for i in range(8)]
TIMEOUT = 3.0


class Upstream:
    """Opens a stream of `CHUNKS` (the first as the prefix), one every `delay` seconds."""

    def __init__(self, *, delay: float = 0.01, fail_at: int | None = None, error: Exception | None = None):
        self.delay = delay
        self.fail_at = fail_at  # 0: before the first content; k: after k chunks
        self.error = error or EngineError("the engine broke")
        self.calls = 0
        self.outcomes: list[str] = []  # how each opened stream ended

    async def __call__(self) -> Routed[OpenStream[str]]:
        self.calls += 1
        await asyncio.sleep(self.delay)
        if self.fail_at == 0:
            raise self.error
        return Routed(ROUTE, OpenStream([CHUNKS[0]], self._rest()))

    async def _rest(self) -> AsyncIterator[list[str]]:
        try:
            for i, chunk in enumerate(CHUNKS[1:], start=1):
                await asyncio.sleep(self.delay)
                if self.fail_at == i:
                    raise self.error
                yield [chunk]  # each chunk a read of its own
        except asyncio.CancelledError:
            self.outcomes.append("cancelled")
            raise
        except GeneratorExit:
            self.outcomes.append("closed")
            raise
        except Exception:
            self.outcomes.append("failed")
            raise
        self.outcomes.append("finished")


class Finished:
    """An `on_finish` that records what it was given (after `delay`, then raising `error` if set)."""

    def __init__(self, *, delay: float = 0.0, error: Exception | None = None) -> None:
        self.calls: list[list[str]] = []
        self.delay = delay
        self.error = error

    async def __call__(self, flight: Flight[str]) -> None:
        await asyncio.sleep(self.delay)
        self.calls.append(list(flight.chunks))
        if self.error is not None:
            raise self.error


async def drain(flight: Flight[str]) -> list[str]:
    routed = await flight.follow()
    assert routed.route == ROUTE
    return [c async for c in routed.result.chunks()]


async def drain_until_error(flight: Flight[str]) -> tuple[list[str], BaseException | None]:
    routed = await flight.follow()
    got: list[str] = []
    try:
        async for c in routed.result.chunks():
            got.append(c)
    except Exception as e:
        return got, e
    return got, None


async def until(condition: Callable[[], bool], timeout: float = TIMEOUT) -> None:
    async with asyncio.timeout(timeout):
        while not condition():
            await asyncio.sleep(0.005)


async def test_concurrent_followers_share_one_upstream_call() -> None:
    flights, up, done = SingleFlight(), Upstream(), Finished()
    joined = [flights.join("k", up, done) for _ in range(5)]
    assert [started for _, started in joined] == [True, False, False, False, False]
    assert len({id(f) for f, _ in joined}) == 1
    async with asyncio.timeout(TIMEOUT):
        results = await asyncio.gather(*(drain(f) for f, _ in joined))
    assert results == [CHUNKS] * 5
    assert up.calls == 1
    assert done.calls == [CHUNKS]
    assert up.outcomes == ["finished"]
    assert len(flights) == 0


async def test_the_finishing_hook_runs_before_any_follower_sees_the_end() -> None:
    # The pipeline stores the answer here: a client asking again right after must find it.
    flights, up, done = SingleFlight(), Upstream(), Finished(delay=0.05)
    joined = [flights.join("k", up, done)[0] for _ in range(3)]
    for result in asyncio.as_completed([drain(f) for f in joined], timeout=TIMEOUT):
        assert await result == CHUNKS
        assert done.calls == [CHUNKS]


async def test_a_failing_finishing_hook_does_not_fail_the_answer(caplog: pytest.LogCaptureFixture) -> None:
    flights, up, done = SingleFlight(), Upstream(), Finished(error=OSError("disk full"))
    joined = [flights.join("k", up, done)[0] for _ in range(2)]
    with caplog.at_level(logging.ERROR, logger="orchestrator.caching.singleflight"):
        async with asyncio.timeout(TIMEOUT):
            assert await asyncio.gather(*(drain(f) for f in joined)) == [CHUNKS, CHUNKS]
    assert done.calls == [CHUNKS]
    assert [r.levelno for r in caplog.records] == [logging.ERROR]
    assert len(flights) == 0


async def test_a_late_joiner_gets_the_whole_answer() -> None:
    flights, up, done = SingleFlight(), Upstream(delay=0.02), Finished()
    first, _ = flights.join("k", up, done)
    first_task = asyncio.create_task(drain(first))
    await until(lambda: len(first.chunks) >= 3)
    late, started = flights.join("k", up, done)
    assert late is first and not started
    async with asyncio.timeout(TIMEOUT):
        assert await drain(late) == CHUNKS
        assert await first_task == CHUNKS
    assert up.calls == 1


async def test_different_keys_fly_separately() -> None:
    flights, up, done = SingleFlight(), Upstream(), Finished()
    a, started_a = flights.join("a", up, done)
    b, started_b = flights.join("b", up, done)
    assert a is not b and started_a and started_b
    async with asyncio.timeout(TIMEOUT):
        assert await asyncio.gather(drain(a), drain(b)) == [CHUNKS, CHUNKS]
    assert up.calls == 2


async def test_failure_before_first_content_reaches_every_follower() -> None:
    error = UpstreamUnavailable("no route answered")
    flights, up, done = SingleFlight(), Upstream(fail_at=0, error=error), Finished()
    joined = [flights.join("k", up, done)[0] for _ in range(5)]
    async with asyncio.timeout(TIMEOUT):
        results = await asyncio.gather(*(f.follow() for f in joined), return_exceptions=True)
    assert all(r is error for r in results), results
    assert up.calls == 1
    assert done.calls == []
    assert len(flights) == 0


async def test_failure_mid_stream_reaches_every_follower_at_the_same_point() -> None:
    error = EngineError("the engine broke mid-answer")
    flights, up, done = SingleFlight(), Upstream(fail_at=4, error=error), Finished()
    first, _ = flights.join("k", up, done)
    early = [asyncio.create_task(drain_until_error(first)) for _ in range(3)]
    await until(lambda: len(first.chunks) >= 2)
    late = flights.join("k", up, done)[0]
    assert late is first
    async with asyncio.timeout(TIMEOUT):
        results = [*await asyncio.gather(*early), await drain_until_error(late)]
    assert results == [(CHUNKS[:4], error)] * 4
    assert up.calls == 1 and up.outcomes == ["failed"]
    assert done.calls == []
    assert len(flights) == 0


async def test_when_every_follower_leaves_the_upstream_is_cancelled() -> None:
    flights, up, done = SingleFlight(), Upstream(delay=0.02), Finished()
    flight, _ = flights.join("k", up, done)
    for _ in range(2):
        flights.join("k", up, done)

    async def read_two_and_leave() -> list[str]:
        routed = await flight.follow()
        got = [*routed.result.prefix, *await anext(routed.result.rest)]
        await routed.result.rest.aclose()  # type: ignore[attr-defined]
        return got

    async with asyncio.timeout(TIMEOUT):
        got = await asyncio.gather(*(read_two_and_leave() for _ in range(3)))
        assert got == [CHUNKS[:2]] * 3
        await until(lambda: bool(up.outcomes))
    assert up.outcomes == ["cancelled"]
    assert len(flight.chunks) < len(CHUNKS)
    assert len(flights) == 0  # a new request starts afresh, it doesn't join a dead flight
    await asyncio.sleep(0.05)
    assert done.calls == []


async def test_a_follower_behind_the_flight_gets_all_it_missed_in_one_batch() -> None:
    flights, up, done = SingleFlight(), Upstream(delay=0.005), Finished()
    flight, _ = flights.join("k", up, done)
    async with asyncio.timeout(TIMEOUT):
        routed = await flight.follow()
        await until(lambda: flight.finished)  # a slow client: the flight went on without it
        assert [batch async for batch in routed.result.rest] == [CHUNKS[1:]]  # one write to catch up


async def test_one_follower_leaving_does_not_stop_the_others() -> None:
    flights, up, done = SingleFlight(), Upstream(), Finished()
    flight, _ = flights.join("k", up, done)
    flights.join("k", up, done)

    async def leave_early() -> None:
        routed = await flight.follow()
        await anext(routed.result.rest)
        await routed.result.rest.aclose()  # type: ignore[attr-defined]

    async with asyncio.timeout(TIMEOUT):
        _, stayed = await asyncio.gather(leave_early(), drain(flight))
    assert stayed == CHUNKS
    assert up.outcomes == ["finished"]
    assert done.calls == [CHUNKS]


async def test_a_follower_cancelled_before_first_content_cancels_the_upstream() -> None:
    flights, up, done = SingleFlight(), Upstream(delay=0.2), Finished()
    flight, _ = flights.join("k", up, done)
    waiter = asyncio.create_task(flight.follow())
    await asyncio.sleep(0.02)
    waiter.cancel()
    with pytest.raises(asyncio.CancelledError):
        await waiter
    await until(lambda: flight.finished)
    assert flight.route is None and up.outcomes == []  # never opened
    assert len(flights) == 0
    # The next identical request starts a new call rather than joining the dead one.
    up.delay = 0.01
    again, started = flights.join("k", up, done)
    assert started and again is not flight
    async with asyncio.timeout(TIMEOUT):
        assert await drain(again) == CHUNKS
    assert up.calls == 2


async def test_a_follower_that_closes_before_reading_leaves() -> None:
    flights, up, done = SingleFlight(), Upstream(delay=0.02), Finished()
    flight, _ = flights.join("k", up, done)
    routed = await flight.follow()
    await routed.result.rest.aclose()  # type: ignore[attr-defined]
    async with asyncio.timeout(TIMEOUT):
        await until(lambda: bool(up.outcomes))
    assert up.outcomes == ["cancelled"]


async def test_after_a_flight_lands_the_next_join_calls_upstream_again() -> None:
    flights, up, done = SingleFlight(), Upstream(), Finished()
    first, _ = flights.join("k", up, done)
    async with asyncio.timeout(TIMEOUT):
        assert await drain(first) == CHUNKS
    second, started = flights.join("k", up, done)
    assert started and second is not first
    async with asyncio.timeout(TIMEOUT):
        assert await drain(second) == CHUNKS
    assert up.calls == 2
    assert done.calls == [CHUNKS, CHUNKS]


async def test_after_a_failed_flight_the_next_join_calls_upstream_again() -> None:
    flights, up, done = SingleFlight(), Upstream(fail_at=0), Finished()
    first, _ = flights.join("k", up, done)
    async with asyncio.timeout(TIMEOUT):
        with pytest.raises(EngineError):
            await first.follow()
    up.fail_at = None
    second, started = flights.join("k", up, done)
    assert started
    async with asyncio.timeout(TIMEOUT):
        assert await drain(second) == CHUNKS
    assert done.calls == [CHUNKS]
