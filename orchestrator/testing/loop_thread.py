"""An async server served from a thread: for synchronous tests, and for processes that only call it."""

from __future__ import annotations

import asyncio
import contextlib
import threading
from collections.abc import Awaitable, Callable


class LoopThread:
    """Runs an async server (its start and stop coroutines) on an event loop of its own, in a daemon thread."""

    def __init__(
        self, start: Callable[[], Awaitable[None]], stop: Callable[[], Awaitable[None]], name: str = "loop-thread"
    ) -> None:
        self._start, self._stop, self._name = start, stop, name
        self._thread: threading.Thread | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._stop_event: asyncio.Event | None = None

    def start(self, timeout: float) -> None:
        """Returns once `start` has finished on the thread's loop; raises what it raised."""
        ready = threading.Event()
        failure: list[BaseException] = []

        async def serve() -> None:
            self._loop, self._stop_event = asyncio.get_running_loop(), asyncio.Event()
            try:
                await self._start()
            except BaseException as exc:
                failure.append(exc)
                raise
            finally:
                ready.set()
            try:
                await self._stop_event.wait()
            finally:
                await self._stop()

        def run() -> None:
            with contextlib.suppress(BaseException):
                asyncio.run(serve())

        self._thread = threading.Thread(target=run, name=self._name, daemon=True)
        self._thread.start()
        if not ready.wait(timeout) or failure:
            self._thread.join(timeout)
            raise RuntimeError(f"{self._name} failed to start") from (failure[0] if failure else None)

    def stop(self, timeout: float) -> None:
        if self._thread is None:
            return
        if self._thread.is_alive() and self._loop is not None and self._stop_event is not None:
            self._loop.call_soon_threadsafe(self._stop_event.set)
        self._thread.join(timeout)
        self._thread = self._loop = self._stop_event = None
