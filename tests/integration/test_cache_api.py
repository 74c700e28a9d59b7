"""The response cache as a client sees it: `x-cache`, replayed answers, and what is never stored.

The app is the real one over `FakeEngine`s, with the cache enabled in a
temporary directory through settings (`cache.directory`), driven in-process
through `httpx.ASGITransport`. Every successful body and every stream chunk
is held to OpenAI's schema; `FakeEngine.generations` tells how many times the
model actually ran.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import diskcache
import httpx
import pytest
from fastapi import FastAPI
from http_checks import BASE_MODEL, CHAT_MODEL, SCHEMAS, sse_data, user
from openai_schema import validate

from orchestrator.api import build_app
from orchestrator.app import build_pipeline
from orchestrator.caching.cache import Entry, ResponseCache, cache_key
from orchestrator.protocol import ChatCompletionRequest
from orchestrator.settings import Settings, load_settings
from orchestrator.testing.engine import FakeEngine

CHAT, TEXT = "/v1/chat/completions", "/v1/completions"
QUESTION = "please say back these twenty words one after another so that the stream has many small chunks in it"
Answer = tuple[str, str, dict[str, Any]]  # x-cache, the answer's text, and its id and usage


def chat_body(**fields: Any) -> dict[str, Any]:
    return {"model": CHAT_MODEL, "messages": user(QUESTION), "temperature": 0, **fields}


def text_body(**fields: Any) -> dict[str, Any]:
    return {"model": BASE_MODEL, "prompt": QUESTION, "max_tokens": 30, "temperature": 0, **fields}


def cache_settings(tmp_path: Path, **overrides: Any) -> Settings:
    return load_settings(
        **{
            "data_dir": str(tmp_path),
            "cache": {"directory": str(tmp_path / "response-cache")},
            "resilience": {"backoff_base_s": 0.01},
            **overrides,
        }
    )


@pytest.fixture
def cache_dir(tmp_path: Path) -> Path:
    return tmp_path / "response-cache"


@pytest.fixture
async def app(chat_engine: FakeEngine, base_engine: FakeEngine, tmp_path: Path) -> FastAPI:
    """The gateway with the response cache on (overrides the conftest's cacheless app)."""
    pipeline = await build_pipeline(
        {"local": (chat_engine, chat_engine.info()), "local-base": (base_engine, base_engine.info())},
        cache_settings(tmp_path),
        env={},
    )
    return build_app(pipeline)


# --------------------------------------------------------------------------- helpers


def check_route(r: httpx.Response, model: str) -> str:
    """The `x-cache` outcome, after checking who the headers say served the answer."""
    outcome = r.headers["x-cache"]
    if outcome == "HIT":
        assert r.headers["x-served-by"] == f"cache/local{'-base' if model == BASE_MODEL else ''}/{model}"
        assert r.headers["x-route-reason"] == "cache-hit"
    else:
        assert outcome in ("MISS", "BYPASS")
        assert r.headers["x-served-by"].startswith("local")
        assert r.headers["x-route-reason"] in (
            "local: the only route",
            "local: the only route; shared with an identical request in flight",
        )
    return outcome


def text_of(path: str, data: dict[str, Any]) -> str:
    choice = data["choices"][0]
    return str(choice["message"]["content"] if path == CHAT else choice["text"])


async def whole(
    client: httpx.AsyncClient, path: str, body: dict[str, Any], headers: dict[str, str] | None = None
) -> Answer:
    r = await client.post(path, json=body, headers=headers or {})
    assert r.status_code == 200, r.text
    assert r.headers["content-type"] == "application/json"
    data = r.json()
    validate(SCHEMAS[path][0], data)
    return check_route(r, body["model"]), text_of(path, data), {"id": data["id"], "usage": data.get("usage")}


async def streamed(
    client: httpx.AsyncClient, path: str, body: dict[str, Any], headers: dict[str, str] | None = None
) -> tuple[str, str, list[dict[str, Any]]]:
    r = await client.post(path, json={**body, "stream": True}, headers=headers or {})
    assert r.status_code == 200, r.text
    assert r.headers["content-type"].startswith("text/event-stream")
    events = sse_data(r.text)
    assert events[-1] == "[DONE]" and "[DONE]" not in events[:-1], events[-3:]
    chunks = [json.loads(e) for e in events[:-1]]
    for chunk in chunks:
        assert "error" not in chunk, chunk
        validate(SCHEMAS[path][1], chunk, completion_stream=path == TEXT)  # type: ignore[arg-type]
    assert len({c["id"] for c in chunks}) == 1
    if path == CHAT:
        text = "".join(ch["delta"].get("content") or "" for c in chunks for ch in c["choices"])
    else:
        text = "".join(ch["text"] for c in chunks for ch in c["choices"])
    return check_route(r, body["model"]), text, chunks


def stored_keys(cache_dir: Path) -> int:
    with diskcache.Cache(str(cache_dir)) as raw:
        return len(raw)


def nothing_stored(cache_dir: Path) -> None:
    # A flight stores its answer before the answer ends, so there is nothing to wait for.
    assert stored_keys(cache_dir) == 0


# ---------------------------------------------------------------------- hits, misses


async def test_the_same_request_twice_is_a_hit(client: httpx.AsyncClient, chat_engine: FakeEngine) -> None:
    first = await whole(client, CHAT, chat_body())
    second = await whole(client, CHAT, chat_body())
    assert first[0] == "MISS" and second[0] == "HIT"
    assert second[1] == first[1] == QUESTION
    assert second[2]["id"] != first[2]["id"]
    assert second[2]["usage"] == first[2]["usage"]
    assert len(chat_engine.generations) == 1


async def test_a_stored_stream_serves_a_whole_answer(client: httpx.AsyncClient, chat_engine: FakeEngine) -> None:
    outcome, text, chunks = await streamed(client, CHAT, chat_body())
    assert outcome == "MISS" and text == QUESTION
    hit = await whole(client, CHAT, chat_body())
    assert hit[0] == "HIT" and hit[1] == QUESTION
    assert hit[2]["id"] != chunks[0]["id"]
    assert len(chat_engine.generations) == 1


async def test_a_stored_whole_answer_replays_as_a_real_stream(
    client: httpx.AsyncClient, chat_engine: FakeEngine
) -> None:
    miss = await whole(client, CHAT, chat_body())
    assert miss[0] == "MISS"
    outcome, text, chunks = await streamed(client, CHAT, chat_body())
    assert outcome == "HIT" and text == QUESTION
    assert len(chunks) > 10
    assert chunks[0]["choices"][0]["delta"]["role"] == "assistant"
    assert chunks[0]["id"] != miss[2]["id"]
    assert chunks[-1]["choices"][0]["finish_reason"] == "stop"
    assert all("usage" not in c or c["usage"] is None for c in chunks)  # not asked for
    _, _, with_usage = await streamed(client, CHAT, chat_body(stream_options={"include_usage": True}))
    assert with_usage[-1]["choices"] == [] and with_usage[-1]["usage"] == miss[2]["usage"]
    assert len(chat_engine.generations) == 1


async def test_text_completions_are_cached(client: httpx.AsyncClient, base_engine: FakeEngine) -> None:
    miss = await whole(client, TEXT, text_body())
    hit = await whole(client, TEXT, text_body())
    outcome, text, chunks = await streamed(client, TEXT, text_body())
    assert (miss[0], hit[0], outcome) == ("MISS", "HIT", "HIT")
    assert miss[1] == hit[1] == text == QUESTION
    assert hit[2]["id"] != miss[2]["id"] and hit[2]["usage"] == miss[2]["usage"]
    assert len(chunks) > 10
    assert len(base_engine.generations) == 1


async def test_a_seed_makes_a_sampled_request_cacheable(client: httpx.AsyncClient, chat_engine: FakeEngine) -> None:
    body = chat_body(temperature=0.8, seed=11)
    assert (await whole(client, CHAT, body))[0] == "MISS"
    assert (await whole(client, CHAT, body))[0] == "HIT"
    assert len(chat_engine.generations) == 1


# ------------------------------------------------------------------------ bypassing


@pytest.mark.parametrize("fields", [{"temperature": 1}, {"temperature": None}], ids=["temperature-1", "unset"])
async def test_sampled_requests_bypass_and_are_never_stored(
    client: httpx.AsyncClient, chat_engine: FakeEngine, cache_dir: Path, fields: dict[str, Any]
) -> None:
    body = {k: v for k, v in chat_body(**fields).items() if v is not None}
    outcomes = [(await whole(client, CHAT, body))[0], (await streamed(client, CHAT, body))[0]]
    assert outcomes == ["BYPASS", "BYPASS"]
    assert len(chat_engine.generations) == 2
    nothing_stored(cache_dir)


async def test_no_cache_skips_the_lookup(client: httpx.AsyncClient, chat_engine: FakeEngine) -> None:
    assert (await whole(client, CHAT, chat_body()))[0] == "MISS"
    assert (await whole(client, CHAT, chat_body(), {"Cache-Control": "no-cache"}))[0] == "BYPASS"
    assert (await streamed(client, CHAT, chat_body(), {"Cache-Control": "no-cache"}))[0] == "BYPASS"
    assert (await whole(client, CHAT, chat_body(cache={"no_cache": True})))[0] == "BYPASS"
    assert len(chat_engine.generations) == 4
    assert (await whole(client, CHAT, chat_body()))[0] == "HIT"
    assert len(chat_engine.generations) == 4


@pytest.mark.parametrize(
    ("fields", "headers"),
    [({}, {"Cache-Control": "no-store"}), ({"cache": {"no_store": True}}, {})],
    ids=["header", "body"],
)
async def test_no_store_answers_but_stores_nothing(
    client: httpx.AsyncClient,
    chat_engine: FakeEngine,
    cache_dir: Path,
    fields: dict[str, Any],
    headers: dict[str, str],
) -> None:
    assert (await whole(client, CHAT, chat_body(**fields), headers))[0] == "MISS"
    assert (await streamed(client, CHAT, chat_body(**fields), headers))[0] == "MISS"
    nothing_stored(cache_dir)
    assert (await whole(client, CHAT, chat_body()))[0] == "MISS"  # still nothing to hit
    assert (await whole(client, CHAT, chat_body()))[0] == "HIT"
    assert len(chat_engine.generations) == 3


@pytest.mark.parametrize(
    ("path", "body", "headers"),
    [
        (CHAT, chat_body(cache={"ttl": 0.3}), {}),
        (CHAT, chat_body(), {"Cache-Control": "max-age=0.3"}),
        (TEXT, text_body(cache={"ttl": 0.3}), {}),
    ],
    ids=["chat-body-ttl", "chat-max-age", "text-body-ttl"],
)
async def test_an_answer_expires_after_its_ttl(
    client: httpx.AsyncClient, path: str, body: dict[str, Any], headers: dict[str, str]
) -> None:
    plain = {k: v for k, v in body.items() if k != "cache"}
    assert (await whole(client, path, body, headers))[0] == "MISS"
    assert (await whole(client, path, plain))[0] == "HIT"
    await asyncio.sleep(0.4)
    assert (await whole(client, path, plain))[0] == "MISS"


async def test_max_age_zero_is_not_stored(client: httpx.AsyncClient, cache_dir: Path) -> None:
    assert (await whole(client, CHAT, chat_body(), {"Cache-Control": "max-age=0"}))[0] == "MISS"
    nothing_stored(cache_dir)


# ----------------------------------------------------------------- errors and races


async def test_a_stream_that_breaks_is_never_stored(
    client: httpx.AsyncClient, chat_engine: FakeEngine, cache_dir: Path
) -> None:
    chat_engine.fail_after = 3
    r = await client.post(CHAT, json=chat_body(stream=True))
    assert r.status_code == 200 and r.headers["x-cache"] == "MISS"
    events = sse_data(r.text)
    assert "[DONE]" not in events
    validate("ErrorResponse", json.loads(events[-1]))
    chat_engine.fail_after = None
    nothing_stored(cache_dir)
    outcome, text, _ = await streamed(client, CHAT, chat_body())
    assert outcome == "MISS" and text == QUESTION  # not a hit of the truncated answer


@pytest.mark.parametrize("stream", [False, True], ids=["whole", "stream"])
async def test_a_failed_request_is_never_stored(
    client: httpx.AsyncClient, chat_engine: FakeEngine, cache_dir: Path, stream: bool
) -> None:
    chat_engine.fail_after = 0
    r = await client.post(CHAT, json=chat_body(stream=stream))
    assert r.status_code == 500, r.text
    validate("ErrorResponse", r.json())
    chat_engine.fail_after = None
    nothing_stored(cache_dir)
    assert (await whole(client, CHAT, chat_body()))[0] == "MISS"
    assert (await whole(client, CHAT, chat_body()))[0] == "HIT"


async def test_a_whole_answer_whose_engine_fails_at_the_end_is_never_stored(
    client: httpx.AsyncClient, chat_engine: FakeEngine, cache_dir: Path
) -> None:
    chat_engine.fail_after = 1  # a whole answer is one batch: it fails after the text is out
    r = await client.post(CHAT, json=chat_body())
    assert r.status_code == 500, r.text
    chat_engine.fail_after = None
    nothing_stored(cache_dir)
    assert (await whole(client, CHAT, chat_body()))[0] == "MISS"


async def test_identical_requests_at_once_run_the_model_once(
    client: httpx.AsyncClient, chat_engine: FakeEngine
) -> None:
    chat_engine.token_delay = 0.01
    answers = await asyncio.gather(
        *(streamed(client, CHAT, chat_body()) if i % 2 else whole(client, CHAT, chat_body()) for i in range(8))
    )
    assert len(chat_engine.generations) == 1
    assert [a[1] for a in answers] == [QUESTION] * 8
    assert {a[0] for a in answers} == {"MISS"}
    assert (await whole(client, CHAT, chat_body()))[0] == "HIT"
    assert len(chat_engine.generations) == 1


async def test_an_answer_is_stored_before_it_ends(client: httpx.AsyncClient, chat_engine: FakeEngine) -> None:
    # Back to back, with no waiting: the answer must be in the cache by the time its last byte is out.
    for i in range(12):
        body = chat_body(messages=user(f"{QUESTION} {i}"))
        first = await (streamed if i % 2 else whole)(client, CHAT, body)
        second = await (whole if i % 2 else streamed)(client, CHAT, body)
        assert (first[0], second[0]) == ("MISS", "HIT"), i
        assert first[1] == second[1]
    assert len(chat_engine.generations) == 12


# ------------------------------------------------------------------- a broken cache


def corrupt(cache_dir: Path) -> None:
    for f in cache_dir.iterdir():
        if f.is_file():
            f.write_bytes(b"\x00not a database\xff" * 4096)


async def test_a_cache_database_corrupted_under_the_gateway_is_only_a_miss(
    client: httpx.AsyncClient, chat_engine: FakeEngine, cache_dir: Path
) -> None:
    assert (await whole(client, CHAT, chat_body()))[0] == "MISS"
    corrupt(cache_dir)
    for _ in range(2):
        assert (await whole(client, CHAT, chat_body()))[:2] == ("MISS", QUESTION)
        assert (await streamed(client, CHAT, chat_body()))[:2] == ("MISS", QUESTION)
        assert (await whole(client, TEXT, text_body()))[:2] == ("MISS", QUESTION)
    assert len(chat_engine.generations) == 5


@pytest.mark.parametrize("broken", ["corrupt-db", "path-is-a-file"])
async def test_a_broken_cache_at_start_still_serves(tmp_path: Path, chat_engine: FakeEngine, broken: str) -> None:
    cache_dir = tmp_path / "response-cache"
    if broken == "corrupt-db":
        cache_dir.mkdir()
        (cache_dir / "cache.db").write_bytes(b"\x00not a database\xff" * 4096)
    else:
        cache_dir.write_bytes(b"a file where the directory should be")
    pipeline = await build_pipeline({"local": (chat_engine, chat_engine.info())}, cache_settings(tmp_path), env={})
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=build_app(pipeline)), base_url="http://t") as c:
        assert (await whole(c, CHAT, chat_body()))[1] == QUESTION


@pytest.mark.parametrize("stream", [False, True], ids=["whole", "stream"])
async def test_an_entry_that_is_not_an_answer_is_only_a_miss(
    client: httpx.AsyncClient, cache_dir: Path, stream: bool
) -> None:
    # The key the gateway looks up: tenant, data class and alias (a bare "default" was never looked up).
    key = cache_key(ChatCompletionRequest.model_validate(chat_body()), f"open|default|{CHAT_MODEL}")
    poisoned = Entry(kind="chat", body={"id": "x", "choices": "not a list"}, provider="local", model=CHAT_MODEL)
    cache = ResponseCache(cache_dir, size_limit_bytes=1 << 30)
    assert cache.set(key, poisoned, 600)
    cache.close()
    answer = await (streamed if stream else whole)(client, CHAT, chat_body())
    assert answer[:2] == ("MISS", QUESTION)


# --------------------------------------------------------------------- remote routes


# What OpenAI's chat endpoint accepts; it answers anything else with a 400.
OPENAI_CHAT_FIELDS = frozenset(
    "model messages temperature top_p n stream stream_options stop max_tokens max_completion_tokens "
    "presence_penalty frequency_penalty logit_bias seed user tools tool_choice parallel_tool_calls "
    "response_format logprobs top_logprobs metadata store service_tier".split()
)


class StrictUpstream:
    """An OpenAI-like provider behind `httpx.MockTransport` that rejects body fields it doesn't know."""

    def __init__(self) -> None:
        self.bodies: list[dict[str, Any]] = []

    def __call__(self, request: httpx.Request) -> httpx.Response:
        body = json.loads(request.content)
        self.bodies.append(body)
        if unknown := sorted(set(body) - OPENAI_CHAT_FIELDS):
            message = f"Unrecognized request argument supplied: {unknown[0]}"
            error = {"message": message, "type": "invalid_request_error", "param": None, "code": None}
            return httpx.Response(400, json={"error": error})
        head = {"id": "chatcmpl-up", "object": "chat.completion.chunk", "created": 1, "model": body["model"]}
        chunks = [
            {**head, "choices": [{"index": 0, "delta": {"role": "assistant", "content": "Paris is the capital."}}]},
            {**head, "choices": [{"index": 0, "delta": {}, "finish_reason": "stop"}]},
            {**head, "choices": [], "usage": {"prompt_tokens": 5, "completion_tokens": 4, "total_tokens": 9}},
        ]
        sse = "".join(f"data: {json.dumps(c)}\n\n" for c in chunks) + "data: [DONE]\n\n"
        return httpx.Response(200, headers={"content-type": "text/event-stream"}, content=sse.encode())


@pytest.fixture
def upstream() -> StrictUpstream:
    return StrictUpstream()


@pytest.fixture
async def remote(tmp_path: Path, upstream: StrictUpstream) -> AsyncIterator[httpx.AsyncClient]:
    """The gateway with one remote route ("remote" -> up/m) and the cache on."""
    settings = cache_settings(
        tmp_path,
        providers={"up": {"base_url": "http://up.test/v1", "api_key_env": "UP_KEY", "models": {"m": {"id": "up-m"}}}},
        models={"remote": ["up/m"]},
    )
    async with httpx.AsyncClient(transport=httpx.MockTransport(upstream)) as http:
        pipeline = await build_pipeline({}, settings, env={"UP_KEY": "sk-test"}, client=http)
        transport = httpx.ASGITransport(app=build_app(pipeline))
        async with httpx.AsyncClient(transport=transport, base_url="http://t") as client:
            yield client


REMOTE_BODY = {"model": "remote", "messages": user("capital of France?"), "temperature": 0}


async def remote_answer(client: httpx.AsyncClient, body: dict[str, Any]) -> tuple[str, str]:
    r = await client.post(CHAT, json=body)
    assert r.status_code == 200, r.text
    validate("CreateChatCompletionResponse", r.json())
    return r.headers["x-cache"], r.headers["x-served-by"]


async def test_remote_answers_are_cached(remote: httpx.AsyncClient, upstream: StrictUpstream) -> None:
    assert await remote_answer(remote, REMOTE_BODY) == ("MISS", "up/up-m")
    assert await remote_answer(remote, REMOTE_BODY) == ("HIT", "cache/up/up-m")
    assert len(upstream.bodies) == 1


async def test_the_body_cache_directive_stays_in_the_gateway(
    remote: httpx.AsyncClient, upstream: StrictUpstream
) -> None:
    body = {**REMOTE_BODY, "cache": {"no_store": True}}
    assert (await remote_answer(remote, body))[0] == "MISS"
    assert all("cache" not in b for b in upstream.bodies), upstream.bodies


@pytest.mark.parametrize("temperature", [0, 1], ids=["shared-flight", "alone"])
async def test_a_whole_answer_runs_past_the_deadline_up_to_the_answers_time(tmp_path: Path, temperature: int) -> None:
    """The deadline runs up to the first token, as documented; a whole answer then has `answer_timeout_s`.
    On a CPU engine a default request (no max_tokens) took longer than the deadline and was a 504 every time
    (and the SDK retried it twice); a cacheable one (a flight shared by identical requests) was folded with no
    limit at all: a stream that never ended held the client, the gateway's memory and the upstream call."""
    from orchestrator.testing.provider import FakeProvider

    with FakeProvider(reply_tokens=5_000, tokens_per_s=200) as slow:  # 25 s of answer
        settings = cache_settings(
            tmp_path,
            providers={"up": {"base_url": f"{slow.base_url}/v1", "api_key_env": "K", "models": {"m": {"id": "m"}}}},
            models={"remote": ["up/m"]},
            resilience={"deadline_s": 1.0, "answer_timeout_s": 2.0, "backoff_base_s": 0.01, "attempts": 1},
        )
        async with httpx.AsyncClient() as http:
            pipeline = await build_pipeline({}, settings, env={"K": "sk-test"}, client=http)
            transport = httpx.ASGITransport(app=build_app(pipeline))
            async with httpx.AsyncClient(transport=transport, base_url="http://t", timeout=20) as client:
                longer = {**REMOTE_BODY, "temperature": temperature, "max_tokens": 300}  # 1.5 s: past the deadline
                assert (await client.post(CHAT, json=longer)).status_code == 200
                body = {**REMOTE_BODY, "temperature": temperature}
                async with asyncio.timeout(10):  # (an in-process client has no timeout of its own)
                    answers = await asyncio.gather(*(client.post(CHAT, json=body) for _ in range(2)))
                assert [r.status_code for r in answers] == [504, 504], [r.text for r in answers]
                assert all("took over 2 s" in r.json()["error"]["message"] for r in answers), answers[0].text
                assert await slow.wait_for_async(lambda p: p.in_flight == 0, timeout=5)  # the upstream calls ended


async def test_a_route_whose_answer_never_ends_fails_over_at_the_answers_time(tmp_path: Path) -> None:
    """A provider streaming past the request's max_tokens, without end: at the answer's time the answer is the
    route's failure and the next route serves (the deadline, which stops at the first token, is not spent)."""
    from aiohttp import web

    from orchestrator.testing.provider import FakeProvider

    async def endless(request: web.Request) -> web.StreamResponse:
        response = web.StreamResponse(headers={"content-type": "text/event-stream"})
        await response.prepare(request)
        head = {"id": "c", "object": "chat.completion.chunk", "created": 1, "model": "m"}
        chunk = {**head, "choices": [{"index": 0, "delta": {"content": "la "}, "finish_reason": None}]}
        with contextlib.suppress(ConnectionError):  # until the gateway gives up on it
            while True:
                await response.write(f"data: {json.dumps(chunk)}\n\n".encode())
                await asyncio.sleep(0.001)
        return response

    app = web.Application()
    app.router.add_post("/v1/chat/completions", endless)
    runner = web.AppRunner(app, access_log=None, shutdown_timeout=0.1)
    await runner.setup()
    await web.TCPSite(runner, "127.0.0.1", 0).start()
    port = runner.addresses[0][1]
    try:
        with FakeProvider(reply="It is sunny.") as good:
            providers = {
                "bad": {"base_url": f"http://127.0.0.1:{port}/v1", "api_key_env": "K", "models": {"m": {"id": "m"}}},
                "good": {"base_url": f"{good.base_url}/v1", "api_key_env": "K", "models": {"m": {"id": "m"}}},
            }
            settings = cache_settings(
                tmp_path, providers=providers, models={"chain": ["bad/m", "good/m"]},
                resilience={"answer_timeout_s": 1.0, "backoff_base_s": 0.01},
            )  # fmt: skip
            async with httpx.AsyncClient() as http:
                pipeline = await build_pipeline({}, settings, env={"K": "sk-test"}, client=http)
                transport = httpx.ASGITransport(app=build_app(pipeline))
                async with httpx.AsyncClient(transport=transport, base_url="http://t") as client:
                    body = {"model": "chain", "messages": user("hi"), "max_tokens": 5, "temperature": 1}
                    async with asyncio.timeout(10):
                        r = await client.post(CHAT, json=body)
                    assert r.status_code == 200 and r.headers["x-served-by"] == "good/m", r.text
                    # The alias has no local route: its second provider answers for the plan's reason (no spill).
                    assert r.headers["x-route-reason"] == "remote: no local route; fallback after bad upstream_timeout"
    finally:
        await runner.cleanup()
