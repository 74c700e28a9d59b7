"""The response every front door streams its events with.

Starlette's `StreamingResponse` watches for the client leaving (so that a gone client's stream
stops and its upstream work is cancelled) with an anyio task group per response, on servers that
speak ASGI spec 2.3, as Serve's uvicorn does: a cancel scope and a second task per stream, much of
what a short stream costs the gateway (benchmarks/README.md, "the third diet"). `EventStream`
watches the same way with one plain task (`until_gone`, which the edge also puts around a request's wait
for its answer where Ray Serve was told not to watch it: `api.UNWATCHED`).
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable
from typing import TypeVar

from starlette.responses import StreamingResponse
from starlette.types import Receive, Scope, Send

T = TypeVar("T")


class EventStream(StreamingResponse):
    """A `StreamingResponse` (`text/event-stream` by default) that stops when the client leaves."""

    media_type = "text/event-stream"

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        spec = scope.get("asgi", {}).get("spec_version", "2.0")
        if scope["type"] != "http" or tuple(map(int, spec.split("."))) >= (2, 4):
            await super().__call__(scope, receive, send)  # the server says so itself: no watch needed
            return
        await until_gone(self.stream_response(send), receive)
        if self.background is not None:
            await self.background()


async def until_gone(work: Awaitable[T], receive: Receive) -> T | None:
    """`work`'s result, or None once the client is gone (`receive` says so: `work` is cancelled, and with it
    whatever it waits on upstream). `receive` must have nothing more to give but the disconnect: the
    request's body read already."""
    task = asyncio.current_task()
    assert task is not None
    gone = asyncio.Event()
    watch = asyncio.create_task(_watch(receive, task, gone))
    try:
        return await work
    except asyncio.CancelledError:
        if not gone.is_set() or task.uncancel() > 0:
            raise  # someone else's cancellation
        return None
    finally:
        watch.cancel()


async def _watch(receive: Receive, streaming: asyncio.Task[object], gone: asyncio.Event) -> None:
    """Cancel `streaming` once the client is gone (what Starlette's task group does per response).
    A `receive` that fails says the connection is gone as well."""
    try:
        while (await receive())["type"] != "http.disconnect":
            pass
    except Exception:
        pass
    gone.set()
    streaming.cancel()
