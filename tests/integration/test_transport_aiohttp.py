"""The gateway's own upstream client (`factory.http_client`: httpx's interface on aiohttp) over real sockets.

test_remote_failover gives the providers a plain `httpx.AsyncClient`; here its fault matrix runs again
through the client the gateway really uses, and the transport's own duties are checked: streams arrive as
they are written, connections go back to the pool, a client that leaves closes the upstream request, and
every failure (aiohttp's, through httpx-aiohttp) becomes the gateway's error: a timeout only when something
was slow, a failed connection or a response that is not HTTP as "unavailable", never an aiohttp exception.
"""

from __future__ import annotations

import asyncio
import socket
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

import httpx
import pytest
import test_remote_failover as matrix
from httpx_aiohttp import AiohttpTransport
from test_remote_failover import KEYS, QUESTION

from orchestrator.api import build_app
from orchestrator.app import build_pipeline
from orchestrator.errors import UpstreamError, UpstreamTimeout, UpstreamUnavailable
from orchestrator.protocol import ChatCompletionRequest
from orchestrator.providers.anthropic import AnthropicProvider
from orchestrator.providers.factory import http_client
from orchestrator.providers.openai_compat import OpenAICompatProvider
from orchestrator.settings import ResilienceSettings, load_settings
from orchestrator.testing.engine import FakeEngine
from orchestrator.testing.provider import FakeProvider

# test_remote_failover's fixtures and its remote-route tests, the fault matrix among them: collected again in this
# module, where they get the `http` fixture below.
fakes = matrix.fakes
healthy = matrix.healthy
test_a_failing_first_route_is_invisible = matrix.test_a_failing_first_route_is_invisible
test_a_rate_limited_route_is_retried_after_retry_after_when_it_is_the_only_one = (
    matrix.test_a_rate_limited_route_is_retried_after_retry_after_when_it_is_the_only_one
)
test_all_rate_limited_is_a_429_with_retry_after = matrix.test_all_rate_limited_is_a_429_with_retry_after
test_anthropic_route_answers_with_tools = matrix.test_anthropic_route_answers_with_tools
test_embeddings_go_to_a_remote_embedding_model = matrix.test_embeddings_go_to_a_remote_embedding_model
test_mid_answer_failure_falls_over_when_the_client_waits_for_a_whole_answer = (
    matrix.test_mid_answer_failure_falls_over_when_the_client_waits_for_a_whole_answer
)
test_mid_stream_failure_ends_with_an_explicit_error_event = (
    matrix.test_mid_stream_failure_ends_with_an_explicit_error_event
)
test_tools_round_trip_through_an_openai_compatible_route = (
    matrix.test_tools_round_trip_through_an_openai_compatible_route
)
test_unknown_fields_pass_through_and_the_upstream_gets_its_own_model_id = (
    matrix.test_unknown_fields_pass_through_and_the_upstream_gets_its_own_model_id
)
test_with_no_healthy_route_the_client_gets_one_clean_error = (
    matrix.test_with_no_healthy_route_the_client_gets_one_clean_error
)

RESILIENCE = {
    "first_token_timeout_s": 1.0,
    "idle_timeout_s": 0.5,
    "deadline_s": 8.0,
    "backoff_base_s": 0.05,
    "breaker_threshold": 1000,
}


@pytest.fixture
async def http(fakes: dict[str, FakeProvider]) -> AsyncIterator[httpx.AsyncClient]:
    """test_remote_failover's gateway, its providers on `http_client` instead of a plain httpx client."""
    settings = load_settings(
        providers={
            "alpha": {
                "base_url": fakes["alpha"].base_url + "/v1",
                "api_key_env": "ALPHA_KEY",
                "models": {"m": {"id": "alpha-model"}, "e": {"id": "alpha-embed", "kind": "embedding"}},
            },
            "beta": {
                "base_url": fakes["beta"].base_url + "/v1",
                "api_key_env": "BETA_KEY",
                "models": {"m": {"id": "beta-model"}},
            },
            "claude": {
                "kind": "anthropic",
                "base_url": fakes["claude"].base_url,
                "api_key_env": "CLAUDE_KEY",
                "models": {"haiku": {"id": "claude-test", "json_schema": False}},
            },
        },
        models={"chain": ["alpha/m", "beta/m"], "solo": ["alpha/m"]},
        resilience=RESILIENCE,
        cache={"enabled": False},  # never the user's own cache directory
    )
    engine = FakeEngine("local-chat")
    async with http_client(settings.resilience) as upstream:
        assert isinstance(upstream._transport, AiohttpTransport)  # the transport under test
        pipeline = await build_pipeline({"local": (engine, engine.info())}, settings, env=KEYS, client=upstream)
        app = build_app(pipeline)
        async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://gw") as c:
            yield c


REQUEST = ChatCompletionRequest.model_validate({"model": "x", "messages": QUESTION, "max_tokens": 20})


def provider(kind: str, client: httpx.AsyncClient, fakes: dict[str, FakeProvider]) -> Any:
    if kind == "openai":
        return OpenAICompatProvider("alpha", client, fakes["alpha"].base_url + "/v1", KEYS["ALPHA_KEY"])
    return AnthropicProvider("claude", client, fakes["claude"].base_url, KEYS["CLAUDE_KEY"])


def fast_failing_client() -> httpx.AsyncClient:
    return http_client(ResilienceSettings(connect_timeout_s=2.0, idle_timeout_s=0.3))


async def test_http_client_is_an_httpx_client_on_aiohttp_with_the_configured_timeouts() -> None:
    r = ResilienceSettings(connect_timeout_s=3.0, idle_timeout_s=7.0)
    async with http_client(r) as client:
        assert isinstance(client, httpx.AsyncClient)
        assert isinstance(client._transport, AiohttpTransport)
        assert client.timeout == httpx.Timeout(connect=3.0, read=7.0, write=3.0, pool=3.0)
        assert client._transport.limits.max_connections == 512


async def test_a_stream_arrives_as_the_provider_writes_it(fakes: dict[str, FakeProvider]) -> None:
    fakes["alpha"].tokens_per_s = 20  # one token every 50 ms
    try:
        async with http_client(ResilienceSettings()) as client:
            arrived = []
            t0 = time.perf_counter()
            async for chunk in provider("openai", client, fakes).chat(REQUEST, "m"):
                if chunk.choices and chunk.choices[0].delta.content:
                    arrived.append(time.perf_counter() - t0)
    finally:
        fakes["alpha"].tokens_per_s = 0
    assert len(arrived) >= 5
    # Not buffered to the end: the first token is in hand long before the last one is written.
    assert arrived[-1] - arrived[0] >= 0.05 * (len(arrived) - 1) * 0.8


@pytest.mark.parametrize("kind", ["openai", "anthropic"])
async def test_upstream_connections_are_reused_after_a_stream(fakes: dict[str, FakeProvider], kind: str) -> None:
    async with http_client(ResilienceSettings()) as client:
        p = provider(kind, client, fakes)
        for _ in range(3):
            assert [c async for c in p.chat(REQUEST, "m")]
        connector = client._transport.client.connector  # type: ignore[attr-defined]  # inspected, not patched
        # One connection, idle and back in the pool: no new TCP (and TLS) handshake per request.
        assert [len(idle) for idle in connector._conns.values()] == [1] and not connector._acquired


async def test_client_disconnect_closes_the_upstream_request(fakes: dict[str, FakeProvider]) -> None:
    fakes["alpha"].tokens_per_s = 20
    try:
        async with http_client(ResilienceSettings()) as client:
            stream = provider("openai", client, fakes).chat(REQUEST, "m")
            await anext(aiter(stream))
            await stream.aclose()  # type: ignore[attr-defined]
            assert await fakes["alpha"].wait_for_async(lambda p: p.disconnects == 1, timeout=5)
            # The half-read connection was closed, not pooled: the next request gets a clean one.
            assert [c async for c in provider("openai", client, fakes).chat(REQUEST, "m")]
    finally:
        fakes["alpha"].tokens_per_s = 0


async def test_a_providers_cookies_are_never_sent_back() -> None:
    """Cookies a provider sets (a load balancer's, say) are not kept: one user's request must not
    carry what another's answer set, and the gateway doesn't parse them at all."""
    seen: list[bytes] = []

    async def sets_cookies(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        while head := await reader.readuntil(b"\r\n\r\n"):
            seen.append(head)
            headers = dict(h.lower().partition(b": ")[::2] for h in head.split(b"\r\n")[1:] if h)
            length = int(headers.get(b"content-length", b"0"))
            await reader.readexactly(length)
            body = b'{"object": "list", "data": [], "model": "e", "usage": {"prompt_tokens": 1, "total_tokens": 1}}'
            writer.write(
                b"HTTP/1.1 200 OK\r\ncontent-type: application/json\r\nset-cookie: __cf_bm=secret; Path=/\r\n"
                b"content-length: " + str(len(body)).encode() + b"\r\n\r\n" + body
            )
            await writer.drain()

    server = await _serve(sets_cookies)
    port = server.sockets[0].getsockname()[1]
    client = http_client(ResilienceSettings())
    try:
        for _ in range(2):
            response = await client.post(f"http://127.0.0.1:{port}/v1/embeddings", json={"input": "x"})
            assert response.status_code == 200
        assert len(seen) == 2 and all(b"cookie" not in head.lower().replace(b"set-cookie", b"") for head in seen)
        assert not client.cookies
    finally:
        await client.aclose()
        server.close()


# ------------------------------------------------------------------------------- failures, as the gateway's errors


async def _serve(handler: Callable[[asyncio.StreamReader, asyncio.StreamWriter], Awaitable[None]]) -> Any:
    return await asyncio.start_server(handler, "127.0.0.1", 0)


async def _not_http(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    await reader.read(65536)
    writer.write(b"SSH-2.0-OpenSSH_9.6\r\n\r\n")
    await writer.drain()
    writer.close()


async def _bad_chunk(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    await reader.read(65536)
    writer.write(b"HTTP/1.1 200 OK\r\ncontent-type: text/event-stream\r\ntransfer-encoding: chunked\r\n\r\nZZ\r\n")
    await writer.drain()
    writer.close()


async def _hang_up(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    await reader.read(65536)
    writer.close()


def _refused_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])  # closed again: nothing listens there


@pytest.mark.parametrize("kind", ["openai", "anthropic"])
@pytest.mark.parametrize(
    ("case", "expected"),
    [
        ("refused", UpstreamUnavailable),
        ("not_http", UpstreamUnavailable),
        ("bad_chunk", UpstreamUnavailable),
        ("hang_up", UpstreamUnavailable),
        ("reset", UpstreamUnavailable),
        ("drop", UpstreamUnavailable),
        ("stall", UpstreamTimeout),
        ("slow_first_token", UpstreamTimeout),
    ],
)
async def test_transport_failures_become_the_gateways_errors(
    fakes: dict[str, FakeProvider], kind: str, case: str, expected: type[UpstreamError]
) -> None:
    handlers = {"not_http": _not_http, "bad_chunk": _bad_chunk, "hang_up": _hang_up}
    server = None
    if case == "refused":
        base = f"http://127.0.0.1:{_refused_port()}"
    elif case in handlers:
        server = await _serve(handlers[case])
        base = f"http://127.0.0.1:{server.sockets[0].getsockname()[1]}"
    else:
        target = fakes["alpha" if kind == "openai" else "claude"]
        target.set_fault(case, stall_after=2, slow_ttft_s=5)
        base = target.base_url
    try:
        async with fast_failing_client() as client:
            if kind == "openai":
                p: Any = OpenAICompatProvider("alpha", client, base + "/v1", KEYS["ALPHA_KEY"])
            else:
                p = AnthropicProvider("claude", client, base, KEYS["CLAUDE_KEY"])
            with pytest.raises(UpstreamError) as caught:
                async for _ in p.chat(REQUEST, "m"):
                    pass
    finally:
        if server is not None:
            server.close()
            await server.wait_closed()
    # Exactly the gateway's class (UpstreamTimeout is no UpstreamUnavailable, nor the reverse), said plainly.
    assert type(caught.value) is expected, caught.value
    assert "aiohttp" not in str(caught.value) and KEYS["ALPHA_KEY"] not in str(caught.value)


@pytest.mark.parametrize("kind", ["openai", "anthropic"])
async def test_a_proxy_from_the_environment_carries_the_providers_requests(
    fakes: dict[str, FakeProvider], kind: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Providers send straight to the aiohttp session only where no proxy is mounted for their URL: with
    HTTP_PROXY set, a host that doesn't resolve is still reached, through the proxy (here the fake itself,
    which takes the absolute-form request a proxy gets)."""
    fake = fakes["alpha" if kind == "openai" else "claude"]
    monkeypatch.setenv("HTTP_PROXY", fake.base_url)
    monkeypatch.delenv("NO_PROXY", raising=False)
    monkeypatch.delenv("no_proxy", raising=False)
    async with http_client(ResilienceSettings(connect_timeout_s=2.0)) as client:
        if kind == "openai":
            routed = OpenAICompatProvider("alpha", client, "http://api.acme.invalid/v1", KEYS["ALPHA_KEY"])
        else:
            routed = AnthropicProvider("claude", client, "http://api.acme.invalid", KEYS["CLAUDE_KEY"])
        chunks = [c async for c in routed.chat(REQUEST, "m")]
    assert "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
