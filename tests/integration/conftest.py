"""The gateway's ASGI app over fake engines, and a client that checks every answer.

Three local models, each a `FakeEngine`:

    fake-chat   chat + completions (has a chat template), context 64 words
    fake-base   completions only (no chat template)
    fake-embed  embeddings, 8 dimensions, context 32 words

`api` drives the app in-process through `httpx.ASGITransport` and holds every
answer to OpenAI's schema (`http_checks.Api`). ASGITransport buffers a
response until the app is done with it, so it can't show a client going
away; `live_server` runs the same app under uvicorn on a free local port
for that.
"""

from __future__ import annotations

import asyncio
import contextlib
import socket
from collections.abc import AsyncIterator, Iterator

import httpx
import pytest
import uvicorn
from fastapi import FastAPI

from orchestrator.api import build_app
from orchestrator.app import build_pipeline
from orchestrator.testing.engine import FakeEngine

pytest.register_assert_rewrite("http_checks")
from http_checks import BASE_MODEL, CHAT_MODEL, EMBED_MODEL, Api  # noqa: E402


@pytest.fixture
def chat_engine() -> FakeEngine:
    return FakeEngine(CHAT_MODEL, max_model_len=64)


@pytest.fixture
def base_engine() -> FakeEngine:
    return FakeEngine(BASE_MODEL, max_model_len=64, has_chat_template=False)


@pytest.fixture
def embed_engine() -> FakeEngine:
    return FakeEngine(EMBED_MODEL, task="embed", max_model_len=32, dimensions=8, has_chat_template=False)


@pytest.fixture
async def app(chat_engine: FakeEngine, base_engine: FakeEngine, embed_engine: FakeEngine) -> FastAPI:
    pipeline = await build_pipeline(
        {
            "local": (chat_engine, chat_engine.info()),
            "local-base": (base_engine, base_engine.info()),
            "local-embed": (embed_engine, embed_engine.info()),
        }
    )
    return build_app(pipeline)


@pytest.fixture
async def client(app: FastAPI) -> AsyncIterator[httpx.AsyncClient]:
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://test") as c:
        yield c


@pytest.fixture
def api(client: httpx.AsyncClient) -> Api:
    return Api(client)


class _Server(uvicorn.Server):
    @contextlib.contextmanager
    def capture_signals(self) -> Iterator[None]:
        # The test runner keeps its own signal handlers.
        yield


@pytest.fixture
async def live_server(app: FastAPI) -> AsyncIterator[str]:
    """The app under uvicorn on 127.0.0.1 (a free port); yields its base URL."""
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind(("127.0.0.1", 0))
    port = sock.getsockname()[1]
    config = uvicorn.Config(app, lifespan="off", ws="none", log_level="warning", access_log=False)
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
