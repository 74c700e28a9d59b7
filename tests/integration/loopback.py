"""Any ASGI app under uvicorn on 127.0.0.1 (a free port), on the test's own event loop.

For clients that must talk over a real socket: an SDK with its own HTTP
client, a test of what a client going away does, a WebSocket (`ws`: uvicorn's
WebSocket implementation; none by default, as a plain HTTP server).
"""

from __future__ import annotations

import asyncio
import contextlib
import socket
from collections.abc import AsyncIterator, Iterator

import uvicorn
from starlette.types import ASGIApp


class _Server(uvicorn.Server):
    @contextlib.contextmanager
    def capture_signals(self) -> Iterator[None]:
        # The test runner keeps its own signal handlers.
        yield


@contextlib.asynccontextmanager
async def serving(app: ASGIApp, ws: str = "none") -> AsyncIterator[str]:
    """`app` served on a free local port while the block runs; yields its base URL."""
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind(("127.0.0.1", 0))
    port = sock.getsockname()[1]
    config = uvicorn.Config(app, lifespan="off", ws=ws, log_level="warning", access_log=False)
    server = _Server(config)
    task = asyncio.create_task(server.serve(sockets=[sock]))
    try:
        for _ in range(500):
            if server.started or task.done():
                break
            await asyncio.sleep(0.01)
        assert server.started, "uvicorn did not start"
        yield f"http://127.0.0.1:{port}"
    finally:
        server.should_exit = True
        await asyncio.wait_for(task, 10)
        sock.close()
