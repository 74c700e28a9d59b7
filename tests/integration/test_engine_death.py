"""A local engine that dies mid-burst (its vLLM engine-core process killed): nothing hangs, nothing is lost.

The real vLLM engine (CPU build, `tiny-random`, an engine of this module's own) behind the gateway's app,
with a fake remote provider (OpenAI's wire format on loopback) after it in the alias's chain. Once the
engine-core process is SIGKILLed: the stream in flight past its first token ends with an error (which the
gateway sends as an error event: tests/integration/test_disconnect.py and the fault tests), never with a
finish_reason and never hanging; the engine's stats raise, which is the replica's Serve health check (so
Serve replaces the replica); and requests answered after it are the remote route's, as if nothing
happened.
"""

from __future__ import annotations

import asyncio
import json
import signal
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import httpx
import psutil
import pytest

from local_models.catalog import prepare
from local_models.engine import EngineConfig, VllmEngine
from local_models.errors import EngineFailure
from orchestrator.api import build_app
from orchestrator.app import build_pipeline
from orchestrator.protocol import ChatCompletionRequest
from orchestrator.providers.local import LocalProvider
from orchestrator.settings import load_settings
from orchestrator.testing.provider import FakeProvider

pytestmark = pytest.mark.engine

MODEL = "tiny-random"
KEY = {"REMOTE_KEY": "sk-remote-death"}


@pytest.fixture(scope="module")
async def engine() -> AsyncIterator[VllmEngine]:
    data = load_settings().data_dir
    path = prepare(MODEL, data, progress=False).path
    engine = await VllmEngine.start(
        EngineConfig(
            model_path=str(path),
            served_name=MODEL,
            max_model_len=2048,  # the model's most: streams long enough to be cut mid-way
            kv_cache_bytes=512 << 20,
            cache_dir=str(data / "vllm-cache"),
            dtype="float32",
            extra_engine_args={"enforce_eager": True},
        )
    )
    yield engine
    engine.shutdown()


@pytest.fixture
async def gateway(engine: VllmEngine, tmp_path: Path) -> AsyncIterator[tuple[httpx.AsyncClient, FakeProvider]]:
    remote = FakeProvider(api_key=KEY["REMOTE_KEY"], reply="The remote route answered.")
    remote.start()
    settings = load_settings(
        providers={
            "remote": {"base_url": remote.base_url + "/v1", "api_key_env": "REMOTE_KEY", "models": {"m": {"id": "m"}}}
        },
        models={"chain": [MODEL, "remote/m"]},
        resilience={"attempts": 1, "backoff_base_s": 0.01, "breaker_threshold": 1000},
        cache={"enabled": False},
        data_dir=tmp_path,
    )
    async with httpx.AsyncClient() as upstream:
        pipeline = await build_pipeline({"local": (engine, engine.info())}, settings, env=KEY, client=upstream)
        transport = httpx.ASGITransport(app=build_app(pipeline))
        async with httpx.AsyncClient(transport=transport, base_url="http://gw", timeout=60) as client:
            yield client, remote
    remote.stop()


def _engine_core(engine: VllmEngine) -> psutil.Process:
    """This engine's engine-core process (other engines of the session may still have theirs)."""
    manager = engine._llm.engine_core.resources.engine_manager  # vLLM's own record of the process it started
    [process] = manager.processes
    return psutil.Process(process.pid)


def _body(**kw: Any) -> dict[str, Any]:
    return {"model": "chain", "messages": [{"role": "user", "content": "Tell me about the river."}], **kw}


async def test_a_killed_engine_core_loses_no_request_and_fails_its_health_check(
    engine: VllmEngine, gateway: tuple[httpx.AsyncClient, FakeProvider]
) -> None:
    client, remote = gateway
    engine.stats()  # healthy

    # A stream past its first tokens (read from the provider: httpx's ASGI transport hands the client a
    # response only once it is whole).
    request = ChatCompletionRequest.model_validate(
        {**_body(max_tokens=2000, temperature=0, stream=True), "model": MODEL}
    )
    chunks: list[Any] = []
    stream = LocalProvider(engine).chat(request, MODEL)
    while not any(c.delta.content for chunk in chunks for c in chunk.choices):
        chunks.append(await asyncio.wait_for(anext(stream), 60))
    _engine_core(engine).send_signal(signal.SIGKILL)

    # It ends with an error, never silently (no finish_reason) and never hanging.
    with pytest.raises(Exception) as failed:
        async with asyncio.timeout(60):
            async for chunk in stream:
                chunks.append(chunk)
    assert not isinstance(failed.value, TimeoutError)
    assert all(c.finish_reason is None for chunk in chunks for c in chunk.choices)

    # The engine says it is dead: the replica's health check (stats) raises, within seconds.
    for _ in range(100):
        try:
            engine.stats()
        except EngineFailure:
            break
        await asyncio.sleep(0.1)
    else:
        pytest.fail("the dead engine still reports stats")

    # Requests with no token yet fall over to the remote route: answered, as if nothing happened.
    answers = await asyncio.wait_for(
        asyncio.gather(*(client.post("/v1/chat/completions", json=_body(max_tokens=8)) for _ in range(5))), 60
    )
    assert [r.status_code for r in answers] == [200] * 5
    assert all(r.json()["choices"][0]["message"]["content"] == "The remote route answered." for r in answers)
    streamed = await client.post("/v1/chat/completions", json=_body(max_tokens=8, stream=True))
    assert streamed.status_code == 200 and streamed.text.endswith("data: [DONE]\n\n")
    events = [json.loads(e.removeprefix("data: ")) for e in streamed.text.split("\n\n") if e and "[DONE]" not in e]
    text = "".join(c["delta"].get("content") or "" for e in events for c in e["choices"])
    assert text == "The remote route answered."
