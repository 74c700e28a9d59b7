"""A hedge: the route behind a slow local one tried beside it, the first to its first content serving."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from contextlib import aclosing
from typing import Any

import pytest

from orchestrator.errors import UpstreamRateLimited, UpstreamUnavailable
from orchestrator.failover import Breakers, OpenStream, Policy, Target, open_stream, read_whole, run_with_failover
from orchestrator.hedging import lost_race

LOCAL = Target("local", "m", "local: predicted TTFT 300 ms within 600 ms", hedge_after_s=0.05)
REMOTE = Target("remote", "r", "fallback")


class Route:
    """A scripted route: its first content after `first_s` (or a failure), then two more chunks; whether
    its stream was closed before its end (cancelled), and how often it was called."""

    def __init__(self, first_s: float, error: Exception | None = None, after_s: float = 0.0):
        self.first_s, self.error, self.after_s = first_s, error, after_s
        self.calls = 0
        self.closed_early = False

    async def chunks(self) -> AsyncIterator[str]:
        self.calls += 1
        done = False
        try:
            yield ""  # the role chunk, no content
            await asyncio.sleep(self.first_s)
            if self.error is not None:
                raise self.error
            yield "first"
            await asyncio.sleep(self.after_s)
            yield "rest"
            done = True
        finally:
            self.closed_early = not done


async def one_a_read(chunks: AsyncIterator[str]) -> AsyncIterator[list[str]]:
    """`chunks` as a provider passes them on, each read's chunks a batch: here each chunk its own read."""
    async with aclosing(chunks):  # type: ignore[type-var]
        async for chunk in chunks:
            yield [chunk]


def streaming(routes: dict[str, Route]) -> Any:
    async def attempt(target: Target) -> OpenStream[str]:
        return await open_stream(
            one_a_read(routes[target.provider].chunks()), has_content=bool, policy=Policy(), provider=target.provider
        )

    return attempt


def whole(routes: dict[str, Route]) -> Any:
    async def attempt(target: Target) -> list[str]:
        got: list[str] = []
        await read_whole(
            one_a_read(routes[target.provider].chunks()), got.append, has_content=bool, policy=Policy(),
            provider=target.provider,
        )  # fmt: skip
        return got

    return attempt


async def race(attempt: Any, **kw: Any) -> tuple[Any, list[tuple[Target, float]]]:
    gave_up: list[tuple[Target, float]] = []
    done = await run_with_failover(
        [LOCAL, REMOTE], attempt, policy=Policy(), breakers=Breakers(), gave_up=lambda t, ms: gave_up.append((t, ms))
    )
    return done, gave_up


async def test_a_slow_local_route_is_hedged_and_the_remote_answer_serves() -> None:
    routes = {"local": Route(first_s=1.0), "remote": Route(first_s=0.02)}
    done, gave_up = await race(streaming(routes))
    assert done.target == REMOTE and done.hedged == LOCAL and done.failures == ()
    assert done.reason().startswith("hedge: local had no first token after 50 ms (local: predicted")
    assert [c async for c in done.result.chunks()] == ["", "first", "rest"]
    assert routes["local"].closed_early  # cancelled: the engine's request is aborted with its stream
    assert [t for t, _ in gave_up] == [LOCAL] and 50 <= gave_up[0][1] < 500


async def test_the_local_answer_serves_when_it_comes_first_and_the_hedge_is_called_off() -> None:
    routes = {"local": Route(first_s=0.1), "remote": Route(first_s=1.0)}
    done, gave_up = await race(streaming(routes))
    assert done.target == LOCAL and done.hedged is None
    assert routes["remote"].calls == 1 and routes["remote"].closed_early
    # The hedge's prompt went out: the request's record says so (the pipeline charges it).
    assert done.called_off == (REMOTE,) and done.reason() == f"{LOCAL.reason}; hedge to remote/r called off"
    assert gave_up == []
    await done.result.aclose()


async def test_no_hedge_when_the_local_route_answers_in_time() -> None:
    routes = {"local": Route(first_s=0.0), "remote": Route(first_s=0.0)}
    done, _ = await race(streaming(routes))
    assert done.target == LOCAL and routes["remote"].calls == 0
    assert done.called_off == () and done.reason() == LOCAL.reason
    await done.result.aclose()


async def test_a_failed_hedge_leaves_the_local_attempt_running() -> None:
    routes = {"local": Route(first_s=0.15), "remote": Route(first_s=0.0, error=UpstreamRateLimited("429"))}
    done, _ = await race(streaming(routes))
    assert done.target == LOCAL and [(t, type(e)) for t, e in done.failures] == [(REMOTE, UpstreamRateLimited)]
    await done.result.aclose()


async def test_a_local_failure_during_the_race_leaves_the_hedge_serving_as_a_fallback() -> None:
    routes = {"local": Route(first_s=0.1, error=UpstreamUnavailable("engine died")), "remote": Route(first_s=0.2)}
    done, gave_up = await race(streaming(routes))
    assert done.target == REMOTE and done.hedged is None and gave_up == []
    assert done.reason() == "fallback after local upstream_unavailable"
    await done.result.aclose()


async def test_whole_answers_race_on_their_first_content_too() -> None:
    # The local route's first token comes after the remote's, its whole answer long after: the remote serves.
    routes = {"local": Route(first_s=0.3, after_s=1.0), "remote": Route(first_s=0.02, after_s=0.05)}
    done, gave_up = await race(whole(routes))
    assert done.target == REMOTE and done.result == ["", "first", "rest"] and routes["local"].closed_early
    assert [t for t, _ in gave_up] == [LOCAL]
    # The local route's first token first, then a slow rest: the local answer serves, the remote is called off.
    routes = {"local": Route(first_s=0.08, after_s=0.3), "remote": Route(first_s=0.2)}
    done, gave_up = await race(whole(routes))
    assert done.target == LOCAL and done.result == ["", "first", "rest"] and routes["remote"].closed_early
    assert done.called_off == (REMOTE,)


async def test_the_deadline_ends_both_and_a_cancel_from_outside_cancels_both() -> None:
    routes = {"local": Route(first_s=5.0), "remote": Route(first_s=5.0)}
    with pytest.raises(Exception, match="deadline"):
        await run_with_failover(
            [LOCAL, REMOTE], streaming(routes), policy=Policy(deadline_s=0.2, attempts=1), breakers=Breakers()
        )
    assert routes["local"].closed_early and routes["remote"].closed_early
    routes = {"local": Route(first_s=5.0), "remote": Route(first_s=5.0)}
    task = asyncio.create_task(
        run_with_failover([LOCAL, REMOTE], streaming(routes), policy=Policy(), breakers=Breakers())
    )
    await asyncio.sleep(0.15)
    assert routes["remote"].calls == 1
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    assert routes["local"].closed_early and routes["remote"].closed_early


async def test_an_attempt_can_tell_a_race_it_lost_from_its_request_ending() -> None:
    """A race's loser was sent and cancelled by the race (billed as the race says: a hedge called off, a local
    attempt given up); an attempt still running when its request ends (its client gone) is cut off, and may be
    billed its prompt (`Pipeline._attempt`). The attempt tells them apart by the cancel it got."""
    cancels: dict[str, bool] = {}

    def telling(routes: dict[str, Route]) -> Any:
        async def attempt(target: Target) -> OpenStream[str]:
            try:
                return await streaming(routes)(target)
            except asyncio.CancelledError as e:
                cancels[target.provider] = lost_race(e)
                raise

        return attempt

    # The hedge answers first: the local attempt lost its race.
    await race(telling({"local": Route(first_s=1.0), "remote": Route(first_s=0.02)}))
    assert cancels == {"local": True}
    # Both still waiting when the request is cancelled (its client left): neither lost a race.
    cancels.clear()
    request = asyncio.create_task(race(telling({"local": Route(first_s=5.0), "remote": Route(first_s=5.0)})))
    await asyncio.sleep(0.2)  # the hedge has started beside the local attempt
    request.cancel()
    with pytest.raises(asyncio.CancelledError):
        await request
    assert cancels == {"local": False, "remote": False}
