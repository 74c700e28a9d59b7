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

import os
from collections.abc import AsyncIterator, Iterator

import httpx
import pytest
from fastapi import FastAPI
from loopback import serving

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


@pytest.fixture
async def live_server(app: FastAPI) -> AsyncIterator[str]:
    """The app under uvicorn on 127.0.0.1 (a free port); yields its base URL."""
    async with serving(app) as url:
        yield url


@pytest.fixture(scope="session")
def ray_instance(tmp_path_factory: pytest.TempPathFactory) -> Iterator[None]:
    """A small local Ray (one CPU), once per session, for the named actors (ledger, stored responses)."""
    import ray

    if ray.is_initialized():  # the end-to-end session's Ray, in a whole-suite run: use it, leave it
        yield
        return
    before = os.environ.get("RAY_TMPDIR")
    os.environ["RAY_TMPDIR"] = str(tmp_path_factory.mktemp("ray"))
    ray.init(num_cpus=1, include_dashboard=False, log_to_driver=False)
    try:
        yield
    finally:
        ray.shutdown()
        if before is None:
            os.environ.pop("RAY_TMPDIR", None)
        else:
            os.environ["RAY_TMPDIR"] = before
