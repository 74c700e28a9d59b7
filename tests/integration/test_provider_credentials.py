"""A provider that refuses the operator's key: the client learns which provider and which variable,
never what the provider said (OpenAI's 401 quotes the key's last four characters), nor do the logs.

The gateway's ASGI app reaches real fake providers (OpenAI and Anthropic wire formats) on loopback
through its real HTTP client; each fake expects another key than the one the gateway sends.
"""

from __future__ import annotations

import json
import logging
from collections.abc import AsyncIterator, Iterator

import httpx
import pytest
from aiohttp import web
from openai_schema import validate

from orchestrator.api import build_app
from orchestrator.app import build_pipeline
from orchestrator.settings import load_settings
from orchestrator.testing.engine import FakeEngine
from orchestrator.testing.provider import FakeProvider

# The operator's keys; their last characters are what a provider's 401 quotes back.
ENV = {"TOGETHER_API_KEY": "sk-together-SECRET-Zq9w", "ANTHROPIC_API_KEY": "sk-ant-SECRET-Xk7v"}
QUESTION = [{"role": "user", "content": "What is the capital of France?"}]


@pytest.fixture(scope="module")
def strict() -> Iterator[FakeProvider]:
    with FakeProvider(api_key="sk-the-provider-expects-another") as p:
        yield p


@pytest.fixture
async def http(strict: FakeProvider) -> AsyncIterator[httpx.AsyncClient]:
    settings = load_settings(
        providers={
            "together": {
                "base_url": strict.base_url + "/v1",
                "api_key_env": "TOGETHER_API_KEY",
                "models": {"m": {"id": "llama"}, "e": {"id": "embed", "kind": "embedding"}},
            },
            "anthropic": {
                "kind": "anthropic",
                "base_url": strict.base_url,
                "api_key_env": "ANTHROPIC_API_KEY",
                "models": {"haiku": {"id": "claude-test"}},
            },
        },
        cache={"enabled": False},
        resilience={"backoff_base_s": 0.01, "breaker_threshold": 1000},
    )
    engine = FakeEngine("local-chat")
    async with httpx.AsyncClient() as upstream:
        pipeline = await build_pipeline({"local": (engine, engine.info())}, settings, env=ENV, client=upstream)
        transport = httpx.ASGITransport(app=build_app(pipeline))
        async with httpx.AsyncClient(transport=transport, base_url="http://gw") as c:
            yield c


async def test_the_fake_quotes_the_key_it_refuses(strict: FakeProvider) -> None:
    # What makes the test below mean something: the provider's body carries a fragment of the key.
    async with httpx.AsyncClient() as c:
        r = await c.post(
            strict.base_url + "/v1/chat/completions",
            json={"model": "llama", "messages": QUESTION},
            headers={"Authorization": f"Bearer {ENV['TOGETHER_API_KEY']}"},
        )
    assert r.status_code == 401 and "Zq9w" in r.text


@pytest.mark.parametrize(
    ("provider", "model", "path", "stream"),
    [
        ("together", "together/m", "/v1/chat/completions", False),
        ("together", "together/m", "/v1/chat/completions", True),
        ("together", "together/m", "/v1/completions", False),
        ("together", "together/m", "/v1/completions", True),
        ("together", "together/e", "/v1/embeddings", False),
        ("anthropic", "anthropic/haiku", "/v1/chat/completions", False),
        ("anthropic", "anthropic/haiku", "/v1/chat/completions", True),
    ],
)
async def test_a_refused_key_names_the_provider_and_the_variable_and_nothing_else(
    http: httpx.AsyncClient, caplog: pytest.LogCaptureFixture, provider: str, model: str, path: str, stream: bool
) -> None:
    caplog.set_level(logging.DEBUG)
    body: dict[str, object] = {"model": model, "max_tokens": 5}
    if path == "/v1/chat/completions":
        body |= {"messages": QUESTION, "stream": stream}
    elif path == "/v1/completions":
        body |= {"prompt": "The capital of France is", "stream": stream}
    else:
        body = {"model": model, "input": "Paris"}
    r = await http.post(path, json=body)
    assert r.status_code == 502, r.text
    validate("ErrorResponse", r.json())
    error = r.json()["error"]
    variable = f"{provider.upper()}_API_KEY"
    assert error["message"] == (
        f"{provider} rejected the gateway's credentials (401); the operator must check {variable}."
    )
    assert error["code"] == "provider_auth_failed"
    key = ENV[variable]
    seen = r.text + str(dict(r.headers)) + caplog.text
    for fragment in (key, key[-4:], key[:6]):
        assert fragment not in seen
    assert "Incorrect API key" not in seen and "invalid x-api-key" not in seen


# A proxy before a provider (or a provider) that quotes the request's headers in its errors: whatever the status,
# and in an error event after the stream began. The text reaches the client; the key must not.
async def _quoting(request: web.Request) -> web.StreamResponse:
    key = request.headers.get("authorization") or request.headers.get("x-api-key") or ""
    body = await request.json()
    mode = body["messages"][-1]["content"]
    if mode == "400":
        return web.json_response({"error": {"message": f"Invalid header: Authorization={key}"}}, status=400)
    if mode == "429":
        return web.json_response({"error": {"message": f"Rate limit reached for key {key[7:]}"}}, status=429)
    if mode == "502":
        return web.Response(status=502, text=f"proxy: upstream refused; headers={dict(request.headers)}")
    response = web.StreamResponse(headers={"content-type": "text/event-stream"})
    await response.prepare(request)
    choice = {"index": 0, "delta": {"role": "assistant", "content": "hello "}, "finish_reason": None}
    first = {"id": "c", "object": "chat.completion.chunk", "created": 1, "model": "m", "choices": [choice]}
    await response.write(f"data: {json.dumps(first)}\n\n".encode())
    await response.write(f"data: {json.dumps({'error': {'message': f'quota exceeded for {key}'}})}\n\n".encode())
    return response


@pytest.fixture
async def quoting() -> AsyncIterator[httpx.AsyncClient]:
    app = web.Application()
    app.router.add_post("/v1/chat/completions", _quoting)
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = runner.addresses[0][1]
    settings = load_settings(
        providers={"together": {"base_url": f"http://127.0.0.1:{port}/v1", "api_key_env": "TOGETHER_API_KEY",
                                "models": {"m": {"id": "llama"}}}},
        cache={"enabled": False},
        resilience={"backoff_base_s": 0.01, "attempts": 1},
    )  # fmt: skip
    engine = FakeEngine("local-chat")
    try:
        async with httpx.AsyncClient() as upstream:
            pipeline = await build_pipeline({"local": (engine, engine.info())}, settings, env=ENV, client=upstream)
            transport = httpx.ASGITransport(app=build_app(pipeline))
            async with httpx.AsyncClient(transport=transport, base_url="http://gw") as c:
                yield c
    finally:
        await runner.cleanup()


@pytest.mark.parametrize("mode", ["400", "429", "502", "mid-stream"])
async def test_a_key_quoted_in_a_providers_error_never_reaches_the_client(
    quoting: httpx.AsyncClient, mode: str, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    body = {"model": "together/m", "messages": [{"role": "user", "content": mode}], "stream": mode == "mid-stream"}
    r = await quoting.post("/v1/chat/completions", json=body)
    assert r.status_code == {"400": 400, "429": 429, "502": 503, "mid-stream": 200}[mode]
    assert "[redacted]" in r.text  # the provider's words are kept, the key taken out
    secret = ENV["TOGETHER_API_KEY"]
    assert secret not in r.text and secret[:12] not in r.text and secret not in caplog.text
