"""Remote routes over real sockets: the fault matrix, Anthropic, and keys that never leak.

Two OpenAI-compatible fake providers ("alpha" first, "beta" second) and an
Anthropic one ("claude") run on loopback; the gateway's ASGI app reaches
them through its real HTTP client. Every answer is held to OpenAI's schema.
"""

from __future__ import annotations

import json
import logging
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import httpx
import pytest
from openai_schema import validate

from orchestrator.accounting.book import Query
from orchestrator.accounting.keys import hash_key
from orchestrator.accounting.setup import build_accounts
from orchestrator.api import build_app
from orchestrator.app import build_pipeline
from orchestrator.settings import load_settings
from orchestrator.testing.engine import FakeEngine
from orchestrator.testing.provider import FakeProvider

KEYS = {"ALPHA_KEY": "sk-alpha-SECRET-1111", "BETA_KEY": "sk-beta-SECRET-2222", "CLAUDE_KEY": "sk-ant-SECRET-3333"}
CHAIN, SOLO, CLAUDE = "chain", "solo", "claude/haiku"
QUESTION = [{"role": "user", "content": "What is the capital of France?"}]
WEATHER_TOOL = {
    "type": "function",
    "function": {
        "name": "get_weather",
        "parameters": {"type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]},
    },
}


@pytest.fixture(scope="module")
def fakes() -> Iterator[dict[str, FakeProvider]]:
    providers = {
        "alpha": FakeProvider(api_key=KEYS["ALPHA_KEY"], reply="Paris is the capital of France."),
        "beta": FakeProvider(api_key=KEYS["BETA_KEY"], reply="Paris is the capital of France."),
        "claude": FakeProvider(api_key=KEYS["CLAUDE_KEY"], reply="Paris is the capital of France."),
    }
    for p in providers.values():
        p.start()
    yield providers
    for p in providers.values():
        p.stop()


@pytest.fixture(autouse=True)
def healthy(fakes: dict[str, FakeProvider]) -> None:
    for p in fakes.values():
        p.clear_fault()
        p.reset_stats()


@pytest.fixture
async def http(fakes: dict[str, FakeProvider]) -> AsyncIterator[httpx.AsyncClient]:
    async with gateway(fakes, breaker_threshold=1000) as client:
        yield client


@asynccontextmanager
async def gateway(fakes: dict[str, FakeProvider], *, breaker_threshold: int) -> AsyncIterator[httpx.AsyncClient]:
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
        models={CHAIN: ["alpha/m", "beta/m"], SOLO: ["alpha/m"]},
        resilience={
            "first_token_timeout_s": 1.0,
            "idle_timeout_s": 0.5,
            "deadline_s": 8.0,
            "backoff_base_s": 0.05,
            "breaker_threshold": breaker_threshold,
        },
    )
    engine = FakeEngine("local-chat")
    async with httpx.AsyncClient() as upstream:
        pipeline = await build_pipeline({"local": (engine, engine.info())}, settings, env=KEYS, client=upstream)
        app = build_app(pipeline)
        async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://gw") as c:
            yield c


def sse(text: str) -> tuple[list[dict[str, Any]], bool]:
    events = [e.removeprefix("data: ") for e in text.split("\n\n") if e.strip()]
    done = bool(events) and events[-1] == "[DONE]"
    return [json.loads(e) for e in events if e != "[DONE]"], done


async def ask(http: httpx.AsyncClient, model: str, stream: bool, **extra: Any) -> httpx.Response:
    return await http.post(
        "/v1/chat/completions", json={"model": model, "messages": QUESTION, "stream": stream, "max_tokens": 50, **extra}
    )


def answer_of(r: httpx.Response, stream: bool) -> str:
    assert r.status_code == 200, r.text
    if not stream:
        validate("CreateChatCompletionResponse", r.json())
        return str(r.json()["choices"][0]["message"]["content"])
    chunks, done = sse(r.text)
    assert done, r.text
    for c in chunks:
        validate("CreateChatCompletionStreamResponse", c)
    return "".join(c["choices"][0]["delta"].get("content") or "" for c in chunks if c["choices"])


# Faults that strike before the first content: invisible to the client in both modes.
BEFORE_FIRST_TOKEN = [
    ("rate_limit", {"retry_after": 30}),
    ("insufficient_quota", {}),
    ("server_error", {}),
    ("overloaded", {}),
    ("bad_request", {}),
    ("reset", {}),
    ("stall", {"stall_after": 0}),
    ("slow_first_token", {"slow_ttft_s": 5}),
    ("malformed", {"stall_after": 0}),
    ("stream_error", {"stall_after": 0}),
]
# Faults that strike after some content was produced.
MID_STREAM = [
    ("stall", {"stall_after": 2}),
    ("malformed", {"stall_after": 2}),
    ("drop", {"stall_after": 2}),
    ("stream_error", {"stall_after": 2}),
]


@pytest.mark.parametrize("stream", [False, True], ids=["json", "sse"])
@pytest.mark.parametrize(("fault", "options"), BEFORE_FIRST_TOKEN, ids=[f for f, _ in BEFORE_FIRST_TOKEN])
async def test_a_failing_first_route_is_invisible(
    http: httpx.AsyncClient, fakes: dict[str, FakeProvider], fault: str, options: dict[str, Any], stream: bool
) -> None:
    fakes["alpha"].set_fault(fault, **options)
    r = await ask(http, CHAIN, stream)
    assert "Paris" in answer_of(r, stream)
    assert r.headers["x-served-by"] == "beta/beta-model"
    assert "fallback after alpha" in r.headers["x-route-reason"]
    assert fakes["alpha"].faults_applied.get(fault) == 1


@pytest.mark.parametrize(("fault", "options"), MID_STREAM, ids=[f for f, _ in MID_STREAM])
async def test_mid_answer_failure_falls_over_when_the_client_waits_for_a_whole_answer(
    http: httpx.AsyncClient, fakes: dict[str, FakeProvider], fault: str, options: dict[str, Any]
) -> None:
    fakes["alpha"].set_fault(fault, **options)
    r = await ask(http, CHAIN, stream=False)
    assert answer_of(r, False) == "Paris is the capital of France."
    assert r.headers["x-served-by"] == "beta/beta-model"


@pytest.mark.parametrize(("fault", "options"), MID_STREAM, ids=[f for f, _ in MID_STREAM])
async def test_mid_stream_failure_ends_with_an_explicit_error_event(
    http: httpx.AsyncClient, fakes: dict[str, FakeProvider], fault: str, options: dict[str, Any]
) -> None:
    fakes["alpha"].set_fault(fault, **options)
    r = await ask(http, CHAIN, stream=True)
    assert r.status_code == 200
    chunks, done = sse(r.text)
    assert not done, "a broken stream must not end with [DONE]"
    *content, last = chunks
    for c in content:
        validate("CreateChatCompletionStreamResponse", c)
    validate("ErrorResponse", last)
    assert last["error"]["type"] == "api_error" and "alpha" in last["error"]["message"]


async def test_streams_broken_off_by_a_route_open_its_circuit(fakes: dict[str, FakeProvider]) -> None:
    """A route whose streams always broke after their first content was never counted (its first content was
    its success): every stream went to it and broke. Broken off, they count as failures before it would."""
    fakes["alpha"].set_fault("drop", stall_after=2)
    async with gateway(fakes, breaker_threshold=2) as http:
        served = []
        for _ in range(4):
            r = await ask(http, CHAIN, stream=True)
            served.append((r.headers["x-served-by"], sse(r.text)[1]))
    assert served == [("alpha/alpha-model", False)] * 2 + [("beta/beta-model", True)] * 2


async def test_a_rate_limited_route_is_retried_after_retry_after_when_it_is_the_only_one(
    http: httpx.AsyncClient, fakes: dict[str, FakeProvider]
) -> None:
    fakes["alpha"].set_fault("rate_limit", fail_times=1, retry_after=0.2)
    r = await ask(http, SOLO, stream=False)
    assert "Paris" in answer_of(r, False)
    assert fakes["alpha"].counts["/v1/chat/completions"] == 2


@pytest.mark.parametrize("stream", [False, True], ids=["json", "sse"])
async def test_with_no_healthy_route_the_client_gets_one_clean_error(
    http: httpx.AsyncClient, fakes: dict[str, FakeProvider], stream: bool
) -> None:
    fakes["alpha"].set_fault("server_error")
    fakes["beta"].set_fault("reset")
    r = await ask(http, CHAIN, stream)
    assert r.status_code == 502
    validate("ErrorResponse", r.json())
    assert r.json()["error"]["code"] == "all_routes_failed"
    assert "alpha/alpha-model" in r.json()["error"]["message"] and "beta/beta-model" in r.json()["error"]["message"]


async def test_all_rate_limited_is_a_429_with_retry_after(
    http: httpx.AsyncClient, fakes: dict[str, FakeProvider]
) -> None:
    fakes["alpha"].set_fault("rate_limit", retry_after=60)
    fakes["beta"].set_fault("rate_limit", retry_after=45)
    r = await ask(http, CHAIN, stream=False)
    assert r.status_code == 429 and r.headers["retry-after"] == "45"
    validate("ErrorResponse", r.json())


async def test_unknown_fields_pass_through_and_the_upstream_gets_its_own_model_id(
    http: httpx.AsyncClient, fakes: dict[str, FakeProvider]
) -> None:
    r = await ask(http, CHAIN, stream=False, provider={"order": ["x"]}, transforms=["middle-out"], service_tier="auto")
    answer_of(r, False)
    body = fakes["alpha"].requests[-1].body
    assert body["provider"] == {"order": ["x"]} and body["transforms"] == ["middle-out"]
    assert body["model"] == "alpha-model" and body["stream"] is True


@pytest.mark.parametrize(
    "field",
    [
        {"service_tier": "priority"},  # OpenAI: priority processing, at its own prices
        {"modalities": ["text", "audio"], "audio": {"voice": "alloy", "format": "wav"}},
        {"web_search_options": {}},  # OpenAI's search models: billed per search
        {"plugins": [{"id": "web"}]},  # OpenRouter's web plugin: billed per result
        {"models": ["openai/o1-pro"]},  # OpenRouter's fallback models: another model at its own prices
    ],
)
async def test_fields_that_change_the_price_are_a_400_not_passed_through(
    http: httpx.AsyncClient, fakes: dict[str, FakeProvider], field: dict[str, Any]
) -> None:
    """The ledger prices an answer at its route's rates: these made the provider bill more than any key
    was charged (a helper's run: priority tier, audio, web search, OpenRouter's plugins and models)."""
    r = await ask(http, CHAIN, stream=False, **field)
    assert r.status_code == 400, r.text
    error = r.json()["error"]
    assert error["code"] == "unsupported_parameter" and error["param"] == next(iter(field))
    assert fakes["alpha"].counts.total() == 0


@pytest.mark.parametrize("stream", [False, True], ids=["json", "sse"])
async def test_tools_round_trip_through_an_openai_compatible_route(http: httpx.AsyncClient, stream: bool) -> None:
    r = await ask(http, CHAIN, stream, tools=[WEATHER_TOOL], tool_choice="auto")
    assert r.status_code == 200
    if stream:
        chunks, done = sse(r.text)
        assert done
        for c in chunks:
            validate("CreateChatCompletionStreamResponse", c)
        args = "".join(
            tc["function"].get("arguments") or ""
            for c in chunks
            if c["choices"]
            for tc in c["choices"][0]["delta"].get("tool_calls") or []
        )
        names = [
            tc["function"]["name"]
            for c in chunks
            if c["choices"]
            for tc in c["choices"][0]["delta"].get("tool_calls") or []
            if tc.get("id")
        ]
        finish = [c["choices"][0]["finish_reason"] for c in chunks if c["choices"] and c["choices"][0]["finish_reason"]]
    else:
        validate("CreateChatCompletionResponse", r.json())
        choice = r.json()["choices"][0]
        call = choice["message"]["tool_calls"][0]
        args, names, finish = call["function"]["arguments"], [call["function"]["name"]], [choice["finish_reason"]]
    assert names == ["get_weather"] and json.loads(args) == {"city": "x"} and finish == ["tool_calls"]


@pytest.mark.parametrize("stream", [False, True], ids=["json", "sse"])
async def test_anthropic_route_answers_with_tools(
    http: httpx.AsyncClient, fakes: dict[str, FakeProvider], stream: bool
) -> None:
    r = await ask(http, CLAUDE, stream, tools=[WEATHER_TOOL], tool_choice="required")
    assert r.status_code == 200, r.text
    sent = fakes["claude"].requests[-1]
    assert sent.path == "/v1/messages" and sent.body["tool_choice"] == {"type": "any"}
    assert sent.body["tools"][0]["input_schema"]["required"] == ["city"]
    if stream:
        chunks, done = sse(r.text)
        assert done
        for c in chunks:
            validate("CreateChatCompletionStreamResponse", c)
        calls = [tc for c in chunks if c["choices"] for tc in c["choices"][0]["delta"].get("tool_calls") or []]
        assert calls[0]["function"]["name"] == "get_weather"
        assert json.loads("".join(tc["function"].get("arguments") or "" for tc in calls)) == {"city": "x"}
    else:
        validate("CreateChatCompletionResponse", r.json())
        call = r.json()["choices"][0]["message"]["tool_calls"][0]
        assert call["function"]["name"] == "get_weather" and json.loads(call["function"]["arguments"]) == {"city": "x"}
        assert r.json()["choices"][0]["finish_reason"] == "tool_calls"
    # ...then the tool's result goes back, and the model answers with text.
    follow = QUESTION + [
        {
            "role": "assistant",
            "content": None,
            "tool_calls": [
                {"id": "toolu_1", "type": "function", "function": {"name": "get_weather", "arguments": '{"city": "x"}'}}
            ],
        },
        {"role": "tool", "tool_call_id": "toolu_1", "content": "sunny, 21C"},
    ]
    r = await http.post(
        "/v1/chat/completions", json={"model": CLAUDE, "messages": follow, "tools": [WEATHER_TOOL], "max_tokens": 50}
    )
    assert r.status_code == 200 and "sunny, 21C" in r.json()["choices"][0]["message"]["content"]
    assert fakes["claude"].requests[-1].body["messages"][-1]["content"][0]["type"] == "tool_result"


async def test_a_tool_request_skips_the_local_model_without_tools(http: httpx.AsyncClient) -> None:
    r = await ask(http, "local-chat", stream=False, tools=[WEATHER_TOOL])
    assert r.status_code == 400 and r.json()["error"]["code"] == "unsupported_tools"


async def test_client_disconnect_cancels_the_upstream_request(fakes: dict[str, FakeProvider]) -> None:
    # Through the pipeline directly: closing the stream the edge holds closes the upstream one.
    from orchestrator.calls import CHAT, Call
    from orchestrator.protocol import ChatCompletionRequest

    fakes["alpha"].tokens_per_s = 20
    settings = load_settings(
        providers={
            "alpha": {
                "base_url": fakes["alpha"].base_url + "/v1",
                "api_key_env": "ALPHA_KEY",
                "models": {"m": {"id": "a"}},
            }
        },
        models={SOLO: ["alpha/m"]},
    )
    try:
        async with httpx.AsyncClient() as upstream:
            pipeline = await build_pipeline({}, settings, env=KEYS, client=upstream)
            body = ChatCompletionRequest.model_validate({"model": SOLO, "messages": QUESTION, "stream": True})
            routed = await pipeline.serve(Call(CHAT, body))
            await anext(aiter(routed.result.rest))
            await routed.result.rest.aclose()  # type: ignore[attr-defined]
            assert await fakes["alpha"].wait_for_async(lambda p: p.disconnects == 1, timeout=5)
    finally:
        fakes["alpha"].tokens_per_s = 0


async def test_keys_never_appear_in_responses_errors_or_logs(
    http: httpx.AsyncClient, fakes: dict[str, FakeProvider], caplog: pytest.LogCaptureFixture, tmp_path: Path
) -> None:
    caplog.set_level(logging.DEBUG)
    seen: list[str] = []
    for fault in ("server_error", "bad_request", "rate_limit", "reset"):
        fakes["alpha"].set_fault(fault)
        fakes["beta"].set_fault(fault)
        for stream in (False, True):
            r = await ask(http, CHAIN, stream)
            seen.append(r.text + json.dumps(dict(r.headers)))
    fakes["alpha"].clear_fault()
    fakes["beta"].clear_fault()
    seen.append((await ask(http, CHAIN, stream=True)).text)
    seen.append((await ask(http, CLAUDE, stream=False)).text)
    # A provider that rejects the key: its 401 must not echo it either.
    wrong = FakeProvider(api_key="something-else").start()
    try:
        settings = load_settings(
            providers={
                "alpha": {"base_url": wrong.base_url + "/v1", "api_key_env": "ALPHA_KEY", "models": {"m": {"id": "a"}}}
            },
            models={SOLO: ["alpha/m"]},
        )
        async with httpx.AsyncClient() as upstream:
            app = build_app(await build_pipeline({}, settings, env=KEYS, client=upstream))
            async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://gw") as c:
                r = await ask(c, SOLO, stream=False)
                assert r.status_code == 502
                seen.append(r.text)
    finally:
        wrong.stop()
    seen += await _virtual_key_traffic(fakes["alpha"], tmp_path)
    everything = "\n".join(seen) + "\n" + caplog.text
    for key in (*KEYS.values(), *VIRTUAL_KEYS.values()):
        assert key not in everything
        assert key[-8:] not in everything


VIRTUAL_KEYS = {
    "client": "sk-orch-client-SECRET-4444",
    "wrong": "sk-orch-wrong-SECRET-5555",
    "master": "sk-orch-master-SECRET-6666",
}


async def _virtual_key_traffic(provider: FakeProvider, tmp_path: Path) -> list[str]:
    """Requests with virtual keys (valid, wrong, a key the admin API made, the master key):
    what the client sees, except the one answer that hands a new key out."""
    settings = load_settings(
        providers={
            "alpha": {"base_url": provider.base_url + "/v1", "api_key_env": "ALPHA_KEY", "models": {"m": {"id": "a"}}}
        },
        models={SOLO: ["alpha/m"]},
        cache={"enabled": False},
        ledger={"path": str(tmp_path / "ledger.sqlite"), "owner": "process", "master_key_env": "MASTER"},
        keys={"client": {"sha256": hash_key(VIRTUAL_KEYS["client"]), "rpm": 2}},
    )
    env = {**KEYS, "MASTER": VIRTUAL_KEYS["master"]}
    seen: list[str] = []
    async with httpx.AsyncClient() as upstream:
        pipeline = await build_pipeline({}, settings, env=env, client=upstream)
        accounts = await build_accounts(settings, pipeline, env=env)
        app = build_app(pipeline, accounts)
        async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://gw") as c:
            made = await c.post("/admin/keys", json={"id": "made"}, headers=_bearer(VIRTUAL_KEYS["master"]))
            assert made.status_code == 201
            VIRTUAL_KEYS["made"] = made.json()["key"]  # shown once, in that answer only
            for key in ("client", "wrong", "made", "client", "client"):  # the last is over its rpm
                for stream in (False, True):
                    body = {"model": SOLO, "messages": QUESTION, "stream": stream}
                    r = await c.post("/v1/chat/completions", json=body, headers=_bearer(VIRTUAL_KEYS[key]))
                    seen.append(r.text + json.dumps(dict(r.headers)))
            for path in ("/admin/keys", "/admin/usage", "/metrics"):
                r = await c.get(path, headers=_bearer(VIRTUAL_KEYS["master"]))
                seen.append(r.text + json.dumps(dict(r.headers)))
            r = await c.get("/admin/keys", headers=_bearer(VIRTUAL_KEYS["client"]))  # not the master key
            seen.append(r.text)
        await accounts.drain()
        await accounts.background.stop()  # type: ignore[attr-defined]
        seen.append(json.dumps(await accounts.owner.call(Query(_all_rows))))  # type: ignore[union-attr]
    return seen


def _bearer(key: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {key}"}


def _all_rows(db: Any) -> list[Any]:
    return [list(row) for table in ("requests", "keys", "spend") for row in db.execute(f"SELECT * FROM {table}")]


async def test_embeddings_go_to_a_remote_embedding_model(
    http: httpx.AsyncClient, fakes: dict[str, FakeProvider]
) -> None:
    r = await http.post("/v1/embeddings", json={"model": "alpha/e", "input": ["a", "b"]})
    assert r.status_code == 200, r.text
    validate("CreateEmbeddingResponse", r.json())
    assert len(r.json()["data"]) == 2 and r.headers["x-served-by"] == "alpha/alpha-embed"
    assert fakes["alpha"].requests[-1].body["model"] == "alpha-embed"
    r = await http.post("/v1/chat/completions", json={"model": "alpha/e", "messages": QUESTION})
    assert r.status_code == 400 and r.json()["error"]["code"] == "unsupported_task"


@pytest.mark.parametrize("kind", ["openai", "anthropic"])
async def test_upstream_connections_are_reused_after_a_stream(fakes: dict[str, FakeProvider], kind: str) -> None:
    from orchestrator.protocol import ChatCompletionRequest
    from orchestrator.providers.anthropic import AnthropicProvider
    from orchestrator.providers.openai_compat import OpenAICompatProvider

    request = ChatCompletionRequest.model_validate({"model": "x", "messages": QUESTION, "max_tokens": 20})
    async with httpx.AsyncClient() as client:
        if kind == "openai":
            provider: Any = OpenAICompatProvider("alpha", client, fakes["alpha"].base_url + "/v1", KEYS["ALPHA_KEY"])
        else:
            provider = AnthropicProvider("claude", client, fakes["claude"].base_url, KEYS["CLAUDE_KEY"])
        for _ in range(3):
            assert [c async for c in provider.chat(request, "m")]
        pool = client._transport._pool  # type: ignore[attr-defined]  # inspected, not patched
        # One connection, idle and back in the pool: no new TCP (and TLS) handshake per request.
        assert len(pool.connections) == 1 and pool.connections[0].is_idle()
