"""Single-flight: identical requests in flight at the same time share one upstream call.

A `Flight` runs the upstream stream in its own task and records every chunk;
each request following it (the first one included) replays what was
recorded, then follows live, so a follower that arrives late still gets the
whole answer from its first chunk. If the upstream fails, every follower
gets the same error at the same point; nobody hangs. When the last follower
goes away before the end, the upstream call is cancelled. `when_ended` hears of
the upstream call's end, however it ends (what it made is in `chunks`).
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable
from typing import Generic, TypeVar

from orchestrator.failover import OpenStream
from orchestrator.routes import Route, Routed

T = TypeVar("T")
log = logging.getLogger(__name__)


class Flight(Generic[T]):
    """One upstream stream, recorded and fanned out."""

    def __init__(self, on_empty: Callable[[], None]):
        self.chunks: list[T] = []
        self.route: Route | None = None
        self.error: BaseException | None = None
        self.finished = False
        self._opened = asyncio.Event()
        self._changed = asyncio.Event()
        self._followers = 0
        self._on_empty = on_empty
        self._task: asyncio.Task[None] | None = None
        self._ended: list[Callable[[], None]] = []

    def start(
        self,
        upstream: Callable[[], Awaitable[Routed[OpenStream[T]]]],
        on_finish: Callable[[Flight[T]], Awaitable[None]],
    ) -> None:
        self._task = asyncio.create_task(self._pump(upstream, on_finish))

    def when_ended(self, then: Callable[[], None]) -> None:
        """Call `then` once the upstream call has ended (at once if it has): to its end, failed or cancelled."""
        if self.finished:
            then()
        else:
            self._ended.append(then)

    async def follow(self) -> Routed[OpenStream[T]]:
        """Join: wait until the upstream reached its first content (or failed)."""
        self._followers += 1
        try:
            await self._opened.wait()
        except BaseException:
            self._leave()
            raise
        if self.route is None:
            self._leave()
            assert self.error is not None
            raise self.error
        seen = len(self.chunks)
        return Routed(self.route, OpenStream(list(self.chunks), _Tail(self, seen)))

    def _leave(self) -> None:
        self._followers -= 1
        if self._followers == 0 and not self.finished:
            self._on_empty()  # no new follower can join this flight from now on
            if self._task is not None:
                self._task.cancel()  # nobody listens: stop the upstream work

    def _notify(self) -> None:
        self._changed.set()
        self._changed = asyncio.Event()

    async def _pump(
        self,
        upstream: Callable[[], Awaitable[Routed[OpenStream[T]]]],
        on_finish: Callable[[Flight[T]], Awaitable[None]],
    ) -> None:
        try:
            routed = await upstream()
            self.chunks.extend(routed.result.prefix)
            self.route = routed.route
            self._opened.set()
            self._notify()
            async for batch in routed.result.rest:
                self.chunks += batch
                self._notify()
            # Before anyone sees the end: a client that asks again right after gets the stored answer.
            try:
                await on_finish(self)
            except Exception:
                log.exception("single-flight: finishing hook failed")
        except asyncio.CancelledError:
            self.error = asyncio.CancelledError()
        except Exception as e:
            self.error = e
        finally:
            self.finished = True
            self._opened.set()
            self._notify()
            self._on_empty()
            ended, self._ended = self._ended, []
            for then in ended:
                try:
                    then()
                except Exception:
                    log.exception("single-flight: an end hook failed")


class _Tail(Generic[T]):
    """A follower's view of the flight from chunk `i` on, in batches (all that came since its last one);
    leaving is idempotent and happens on exhaustion, failure, cancellation or `aclose()`, started or not."""

    def __init__(self, flight: Flight[T], i: int):
        self._flight = flight
        self._i = i
        self._left = False

    def __aiter__(self) -> _Tail[T]:
        return self

    async def __anext__(self) -> list[T]:
        flight = self._flight
        try:
            while not self._left:
                changed = flight._changed
                if self._i < len(flight.chunks):
                    start, self._i = self._i, len(flight.chunks)
                    return flight.chunks[start:]  # all that came since: one batch
                if flight.finished:
                    self._leave()
                    if flight.error is not None:
                        raise flight.error
                    break
                await changed.wait()
        except asyncio.CancelledError:
            self._leave()
            raise
        raise StopAsyncIteration

    async def aclose(self) -> None:
        self._leave()

    def _leave(self) -> None:
        if not self._left:
            self._left = True
            self._flight._leave()


class SingleFlight:
    """Flights by key: the first identical request starts one, the others join it."""

    def __init__(self) -> None:
        self._flights: dict[str, Flight[object]] = {}

    def __len__(self) -> int:
        return len(self._flights)

    def join(
        self,
        key: str,
        upstream: Callable[[], Awaitable[Routed[OpenStream[T]]]],
        on_finish: Callable[[Flight[T]], Awaitable[None]],
    ) -> tuple[Flight[T], bool]:
        """(the flight for `key`, whether this call started it)."""
        flight = self._flights.get(key)
        if flight is not None:
            return flight, False  # type: ignore[return-value]
        new: Flight[T] = Flight(lambda: self._drop(key, new))
        self._flights[key] = new  # type: ignore[assignment]
        new.start(upstream, on_finish)
        return new, True

    def _drop(self, key: str, flight: Flight[T]) -> None:
        if self._flights.get(key) is flight:
            del self._flights[key]
