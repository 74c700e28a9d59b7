"""A request's scope at the edge: its tab opened and closed, its headers, its time spent waiting.

`RequestScope` is plain ASGI middleware: it opens a `Tab` for every HTTP
request (`Accounts.open`), adds `x-request-id` and `x-gateway-overhead-ms`
when the response starts, notes the first byte out, and tells `Accounts`
when the response has ended. `timed` wraps providers so the time spent
waiting on a model lands on the request's tab; the gateway's overhead is
the rest. (Not Starlette's BaseHTTPMiddleware: that runs the app in another
task, which a request's context must not leave.)
"""

from __future__ import annotations

import time
from collections.abc import AsyncIterator, Callable, Mapping
from contextlib import aclosing
from typing import Any

from orchestrator.accounting import Accounts, current_tab
from orchestrator.protocol import (
    ChatCompletionChunk,
    ChatCompletionRequest,
    CompletionChunk,
    CompletionRequest,
    EmbeddingRequest,
    EmbeddingResponse,
)
from orchestrator.providers.base import Provider

# ------------------------------------------------------------------------------ upstream time


class TimedProvider:
    """A provider whose waits are counted on the request's tab (time not spent in the gateway)."""

    def __init__(self, inner: Provider):
        self._inner = inner
        self.name = inner.name

    def chat(self, request: ChatCompletionRequest, model: str) -> AsyncIterator[ChatCompletionChunk]:
        return _timed(self._inner.chat(request, model))

    def complete(self, request: CompletionRequest, model: str) -> AsyncIterator[CompletionChunk]:
        return _timed(self._inner.complete(request, model))

    async def embed(self, request: EmbeddingRequest, model: str) -> EmbeddingResponse:
        tab, t0 = current_tab(), time.perf_counter()
        try:
            return await self._inner.embed(request, model)
        finally:
            if tab is not None:
                tab.upstream_s += time.perf_counter() - t0


async def _timed(stream: AsyncIterator[Any]) -> AsyncIterator[Any]:
    tab = current_tab()
    async with aclosing(stream) as inner:  # type: ignore[type-var]
        iterator = aiter(inner)
        while True:
            t0 = time.perf_counter()
            try:
                chunk = await anext(iterator)
            except StopAsyncIteration:
                return
            finally:
                if tab is not None:
                    tab.upstream_s += time.perf_counter() - t0
            yield chunk


def timed(providers: Mapping[str, Provider]) -> dict[str, Provider]:
    return {name: TimedProvider(p) for name, p in providers.items()}


# ------------------------------------------------------------------------------ the middleware


class RequestScope:
    """Plain ASGI middleware: a tab per HTTP request, its headers, and its end."""

    def __init__(self, app: Callable[..., Any], accounts: Accounts):
        self.app = app
        self.accounts = accounts

    async def __call__(self, scope: dict[str, Any], receive: Callable[..., Any], send: Callable[..., Any]) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        with self.accounts.open(scope["method"], scope["path"]) as tab:
            scope.setdefault("state", {})["tab"] = tab

            async def tracking_send(message: dict[str, Any]) -> None:
                if message["type"] == "http.response.start":
                    extra = self.accounts.response_started(tab, message["status"])
                    headers = list(message.get("headers", []))
                    headers.extend((k.encode(), v.encode()) for k, v in extra.items())
                    message = {**message, "headers": headers}
                elif message["type"] == "http.response.body" and tab.first_byte_s is None and message.get("body"):
                    tab.first_byte_s = tab.elapsed()
                await send(message)

            await self.app(scope, receive, tracking_send)
