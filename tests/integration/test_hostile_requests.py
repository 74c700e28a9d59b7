"""A careless or hostile client at the front door: a clear 4xx, never a 5xx, never an effect on others.

Each test here names the defect it keeps fixed (issue 11). The app is the real one over
fake engines (`conftest`), or, for tenants, the keyed app of `test_keys_budgets`.
"""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import AsyncIterator, Callable, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from http_checks import CHAT_MODEL, EMBED_MODEL
from openai_schema import validate
from test_keys_budgets import ENV, KEY_A, KEY_B, auth, gateway, records, settings_for

from orchestrator.accounting.keys import hash_key
from orchestrator.api import LargeBodies, build_app
from orchestrator.app import build_pipeline
from orchestrator.errors import EngineError
from orchestrator.testing.engine import FakeEngine
from orchestrator.testing.provider import FakeProvider

CHAT = "/v1/chat/completions"
TOOL = {"type": "function", "function": {"name": "a", "parameters": {"type": "object"}}}


@pytest.fixture(scope="module")
def paid() -> Iterator[FakeProvider]:
    with FakeProvider(reply="Paris is the capital of France.") as p:
        yield p


def error_of(r: httpx.Response, status: int) -> dict[str, Any]:
    assert r.status_code == status, r.text
    validate("ErrorResponse", r.json())
    error: dict[str, Any] = r.json()["error"]
    return error


def chat_body(**extra: Any) -> dict[str, Any]:
    return {"model": CHAT_MODEL, "messages": [{"role": "user", "content": "hello there"}], **extra}


# ------------------------------------------------------------- bodies that used to be 500s


@pytest.mark.parametrize(
    ("raw", "param"),
    [
        # A lone surrogate: the fallback JSON parser took it, the cache key and the tokenizer crashed.
        (b'{"model": "fake-chat", "temperature": 0, "messages": [{"role": "user", "content": "a\\ud800b"}]}', None),
        # Nested far past any parser's recursion limit.
        (
            b'{"model": "fake-chat", "messages": [{"role": "user", "content": "x"}], "x": '
            + b"[" * 5000
            + b"]" * 5000
            + b"}",
            None,
        ),
        (json.dumps(chat_body(seed=2**63)).encode(), "seed"),
        (json.dumps(chat_body(seed=-(2**63) - 1)).encode(), "seed"),
        (json.dumps(chat_body(max_tokens=10**30)).encode(), "max_tokens"),
        (json.dumps(chat_body(metadata="not an object")).encode(), "metadata"),
        # A named tool that isn't among the tools: a remote route answered as if it were.
        (
            json.dumps(chat_body(tools=[TOOL], tool_choice={"type": "function", "function": {"name": "b"}})).encode(),
            "tool_choice",
        ),
        # Types OpenAI refuses, which the lax validation coerced: "5" as 5, true as 1, "yes" as true, 2.0 as 2.
        (json.dumps(chat_body(max_tokens="5")).encode(), "max_tokens"),
        (json.dumps(chat_body(max_tokens=True)).encode(), "max_tokens"),
        (json.dumps(chat_body(stream="yes")).encode(), "stream"),
        (json.dumps(chat_body(n=2.0)).encode(), "n"),
        # A tool call required with no tool to call: the choice silently dropped, a 200 with plain text.
        (json.dumps(chat_body(tool_choice="required")).encode(), "tool_choice"),
        # Legacy function calling on the local model, which has no such fields: a 200 with plain text before.
        (json.dumps(chat_body(functions=[TOOL["function"]], function_call="auto")).encode(), "functions"),
        (json.dumps(chat_body(metadata={str(i): "v" for i in range(17)})).encode(), "metadata"),
        (
            b'{"model": "fake-chat", "temperature": 0, "messages": [{"role": "user", "content": "x"}], '
            b'"cache": {"ttl": 1e400}}',
            "cache.ttl",
        ),
    ],
)
async def test_malformed_bodies_are_a_400_naming_the_field(client: httpx.AsyncClient, raw: bytes, param: str) -> None:
    error = error_of(await client.post(CHAT, content=raw, headers={"content-type": "application/json"}), 400)
    assert error["type"] == "invalid_request_error"
    if param is not None:
        assert error["param"] == param


async def test_completions_with_a_metadata_that_is_not_an_object(client: httpx.AsyncClient) -> None:
    body = {"model": CHAT_MODEL, "prompt": "hi", "metadata": ["a", "b"]}
    assert error_of(await client.post("/v1/completions", json=body), 400)["param"] == "metadata"
    body = {"model": CHAT_MODEL, "prompt": [2**40]}  # a token id no vocabulary has
    assert error_of(await client.post("/v1/completions", json=body), 400)["param"].startswith("prompt")


async def test_content_parts_and_null_content_are_served_by_a_text_only_model(
    client: httpx.AsyncClient, chat_engine: FakeEngine
) -> None:
    messages = [
        {"role": "system", "content": [{"type": "text", "text": "Be brief."}]},
        {"role": "user", "content": [{"type": "text", "text": "first"}, {"type": "text", "text": "second"}]},
        {"role": "assistant", "content": None},
        {"role": "user", "content": [{"type": "text", "text": "again"}]},
    ]
    r = await client.post(CHAT, json={"model": CHAT_MODEL, "messages": messages, "seed": 2**63 - 1})
    assert r.status_code == 200, r.text
    sent = chat_engine.generations[-1].request["messages"]
    # What reaches a chat template is text: parts joined, null as "".
    assert [m["content"] for m in sent] == ["Be brief.", "first\nsecond", "", "again"]
    image = {"type": "image_url", "image_url": {"url": "data:image/png;base64,AAAA"}}
    vision = {"model": CHAT_MODEL, "messages": [{"role": "user", "content": [image]}]}
    assert error_of(await client.post(CHAT, json=vision), 400)["code"] == "unsupported_vision"


# --------------------------------------------------------------------------- size limits


@pytest.mark.parametrize("path", [CHAT, "/v1/responses", "/v1/messages"])
async def test_a_compressed_body_is_a_415_that_says_so_not_a_json_error(chat_engine: FakeEngine, path: str) -> None:
    """A gzip body was "could not parse the JSON body", which sends a client looking at its JSON."""
    import gzip

    app = build_app(await build_pipeline({"local": (chat_engine, chat_engine.info())}))
    body = gzip.compress(json.dumps(chat_body()).encode())
    headers = {"content-type": "application/json", "content-encoding": "gzip"}
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://t") as c:
        r = await c.post(path, content=body, headers=headers)
        plain = await c.post(path, json=chat_body(), headers={"content-encoding": "identity"})
    assert r.status_code == 415, r.text
    error = r.json()["error"]
    assert "Content-Encoding" in error["message"] and "gzip" in error["message"]
    if path != "/v1/messages":
        validate("ErrorResponse", r.json())
        assert error["code"] == "unsupported_content_encoding"
    else:
        assert r.json()["type"] == "error"
    assert plain.status_code != 415


async def test_a_body_over_the_limit_is_a_413_before_it_is_read_whole(chat_engine: FakeEngine) -> None:
    app = build_app(await build_pipeline({"local": (chat_engine, chat_engine.info())}), max_body_bytes=1 << 20)
    sent = 0

    async def body() -> AsyncIterator[bytes]:  # no Content-Length: the limit must hold while it arrives
        nonlocal sent
        yield b'{"model": "fake-chat", "messages": [{"role": "user", "content": "'
        for _ in range(50):  # 50 MB if it were read to the end
            sent += 1
            yield b"x" * (1 << 20)
        yield b'"}]}'

    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://t") as c:
        r = await c.post(CHAT, content=body(), headers={"content-type": "application/json"})
        error = error_of(r, 413)
        assert error["code"] == "request_too_large" and "server.max_body_mb" in error["message"]
        assert sent < 5
        declared = await c.post(CHAT, content=b"x" * (2 << 20), headers={"content-type": "application/json"})
        assert error_of(declared, 413)["code"] == "request_too_large"
        assert (await c.post(CHAT, json=chat_body(max_tokens=3))).status_code == 200


async def test_a_prompt_far_over_every_context_is_refused_without_tokenizing(client: httpx.AsyncClient) -> None:
    # fake-chat's context is 64 tokens; 256 bytes per token is more than any tokenizer's longest token.
    body = chat_body(messages=[{"role": "user", "content": "y" * (64 * 256 * 4)}])
    error = error_of(await client.post(CHAT, json=body), 400)
    assert (error["code"], error["param"]) == ("context_length_exceeded", "messages")


# ----------------------------------------------------- one client never shuts out the others


async def test_a_failing_engine_that_is_alive_still_serves_its_only_alias(
    client: httpx.AsyncClient, chat_engine: FakeEngine
) -> None:
    chat_engine.fail_after = 0
    for _ in range(6):  # enough failures to open the local circuit
        assert (await client.post(CHAT, json=chat_body())).status_code == 500
    chat_engine.fail_after = None
    started = time.monotonic()
    r = await client.post(CHAT, json=chat_body())
    assert r.status_code == 200, r.text  # not 503 all_routes_unavailable for the cooldown
    assert time.monotonic() - started < 1.0


async def test_bad_requests_from_one_client_never_open_a_circuit(client: httpx.AsyncClient) -> None:
    bad = [
        chat_body(seed=2**64),
        chat_body(messages=[{"role": "user", "content": "z " * 5000}]),  # over the context
        chat_body(logprobs=False, top_logprobs=3),
        {"model": CHAT_MODEL, "prompt": [10**12]},
    ]
    for i in range(200):
        body = bad[i % len(bad)]
        path = "/v1/completions" if "prompt" in body else CHAT
        assert (await client.post(path, json=body)).status_code == 400
    started = time.monotonic()
    assert (await client.post(CHAT, json=chat_body())).status_code == 200
    assert time.monotonic() - started < 1.0


# ------------------------------------------------------------------------------- tenants


async def test_one_keys_cached_answer_is_never_anothers(paid: FakeProvider, tmp_path: Path) -> None:
    engine = FakeEngine("fake-chat")
    async with gateway(settings_for(paid, tmp_path), engine, ENV) as (c, _):
        body = {"model": "fake-chat", "messages": [{"role": "user", "content": "A's secret"}], "temperature": 0}
        a = await c.post(CHAT, json=body, headers=auth(KEY_A))
        again = await c.post(CHAT, json=body, headers=auth(KEY_A))
        b = await c.post(CHAT, json=body, headers=auth(KEY_B))
        assert (a.headers["x-cache"], again.headers["x-cache"], b.headers["x-cache"]) == ("MISS", "HIT", "MISS")
        assert len(engine.generations) == 2


async def test_a_shared_cache_is_one_the_config_asks_for(paid: FakeProvider, tmp_path: Path) -> None:
    engine = FakeEngine("fake-chat")
    cache = {"directory": str(tmp_path / "cache"), "shared": True}
    async with gateway(settings_for(paid, tmp_path, cache=cache), engine, ENV) as (c, _):
        body = {"model": "fake-chat", "messages": [{"role": "user", "content": "common"}], "temperature": 0}
        assert (await c.post(CHAT, json=body, headers=auth(KEY_A))).headers["x-cache"] == "MISS"
        assert (await c.post(CHAT, json=body, headers=auth(KEY_B))).headers["x-cache"] == "HIT"


@pytest.mark.parametrize("tagged", ["x-tags", "metadata"])
async def test_a_rules_tags_choose_the_model_of_a_cached_answer_too(
    paid: FakeProvider, tmp_path: Path, tagged: str
) -> None:
    """A rule sends `tier=premium` requests for `auto` to the paid model. The cache key left the tags out (the
    body's metadata, the x-tags header), so whichever tier asked first chose the answer every other got: a
    free-tier request the paid model's (free of charge), a premium one the local model's."""
    engine = FakeEngine("fake-chat")
    rule = {"use": "paid/big", "tags": {"tier": "premium"}}
    settings = settings_for(paid, tmp_path, models={"auto": {"routes": ["fake-chat"], "rules": [rule]}})
    async with gateway(settings, engine, ENV) as (c, _):
        body = {"model": "auto", "messages": [{"role": "user", "content": "capital?"}], "temperature": 0}
        tags = {"x-tags": "tier=premium"} if tagged == "x-tags" else {}
        premium = {**body, "metadata": {"tier": "premium"}} if tagged == "metadata" else body
        first = await c.post(CHAT, json=premium, headers={**tags, **auth(KEY_A)})
        free = await c.post(CHAT, json=body, headers=auth(KEY_A))
        again = await c.post(CHAT, json=premium, headers={**tags, **auth(KEY_A)})
        assert [r.status_code for r in (first, free, again)] == [200, 200, 200]
        assert (first.headers["x-served-by"], first.headers["x-cache"]) == ("paid/paid-big", "MISS")
        assert (free.headers["x-served-by"], free.headers["x-cache"]) == ("local/fake-chat", "MISS")
        assert (again.headers["x-served-by"], again.headers["x-cache"]) == ("cache/paid/paid-big", "HIT")


async def test_flights_are_per_key_and_shared_answers_are_billed_once(
    paid: FakeProvider, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level("INFO", logger="orchestrator.requests")
    engine = FakeEngine("fake-chat", token_delay=0.02)
    async with gateway(settings_for(paid, tmp_path), engine, ENV) as (c, accounts):
        question = [{"role": "user", "content": "shared"}]
        body = {"model": "paid/big", "messages": question, "temperature": 0, "max_tokens": 20}
        calls = len(paid.requests)
        same_key = await asyncio.gather(*(c.post(CHAT, json=body, headers=auth(KEY_B)) for _ in range(10)))
        assert all(r.status_code == 200 for r in same_key)
        assert len(paid.requests) - calls == 1  # one upstream call for the ten
        await accounts.drain()
        rows = [r for r in records(caplog) if r.get("model") == "paid/big"]
        assert len(rows) == 10
        paying = [r for r in rows if r["cost_usd"] > 0]
        shared = [r for r in rows if r["cache"] == "SHARED"]
        assert len(paying) == 1 and len(shared) == 9
        assert all(r["cost_usd"] == 0 and r["saved_usd"] == pytest.approx(paying[0]["cost_usd"]) for r in shared)
        # Another key's identical request never rides this key's flight.
        other = {**body, "messages": [{"role": "user", "content": "shared too"}]}
        calls = len(paid.requests)
        both = await asyncio.gather(
            c.post(CHAT, json=other, headers=auth(KEY_A)), c.post(CHAT, json=other, headers=auth(KEY_B))
        )
        assert [r.status_code for r in both] == [200, 200]
        assert len(paid.requests) - calls == 2


async def test_a_request_that_joins_a_flight_is_validated_like_any_other(
    client: httpx.AsyncClient, chat_engine: FakeEngine
) -> None:
    chat_engine.token_delay = 0.05
    body = chat_body(temperature=0)
    leader = asyncio.create_task(client.post(CHAT, json=body))
    await asyncio.sleep(0.02)
    joiner = await client.post(CHAT, json=body, headers={"x-data-class": "top-secret"})
    assert error_of(joiner, 400)["param"] == "x-data-class"
    slo = await client.post(CHAT, json=body, headers={"x-ttft-slo-ms": "-1"})
    assert error_of(slo, 400)["param"] == "x-ttft-slo-ms"
    assert (await leader).status_code == 200


# ----------------------------------------------------------------------------- embeddings


async def test_sensitive_embeddings_never_leave_the_machine(
    paid: FakeProvider, tmp_path: Path, embed_engine: FakeEngine
) -> None:
    settings = settings_for(paid, tmp_path, models={"emb": [EMBED_MODEL, "paid/embed"]})
    chat = FakeEngine("fake-chat")
    async with httpx.AsyncClient() as upstream:
        pipeline = await build_pipeline(
            {"local": (chat, chat.info()), "local-embed": (embed_engine, embed_engine.info())},
            settings,
            env={"PAID_KEY": "sk-upstream-paid"},
            client=upstream,
        )
        app = build_app(pipeline)
        async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://t") as c:
            body = {"model": "emb", "input": "my medical record"}
            bad = await c.post("/v1/embeddings", json=body, headers={"x-data-class": "secret"})
            assert error_of(bad, 400)["param"] == "x-data-class"
            ok = await c.post("/v1/embeddings", json=body, headers={"x-data-class": "sensitive"})
            assert ok.status_code == 200 and ok.headers["x-served-by"] == f"local-embed/{EMBED_MODEL}"
            embed_engine.fail_after, embed_engine.error = 0, EngineError("the embedder died")
            before = len(paid.requests)
            failed = await c.post("/v1/embeddings", json=body, headers={"x-data-class": "sensitive"})
            assert failed.status_code >= 500  # the local embedder's failure, not a remote answer
            assert len(paid.requests) == before
            assert all("my medical record" not in json.dumps(r.body) for r in paid.requests)
            only_remote = await c.post(
                "/v1/embeddings", json={**body, "model": "paid/embed"}, headers={"x-data-class": "sensitive"}
            )
            assert error_of(only_remote, 400)["code"] == "data_class_unroutable"
            # Without the header, a failing local embedder falls over to the remote one.
            assert (await c.post("/v1/embeddings", json=body)).headers["x-served-by"] == "paid/paid-embed"


# ------------------------------------------------------------------------------ admission


async def test_admission_reserves_at_the_routes_a_rule_sends_the_request_to(paid: FakeProvider, tmp_path: Path) -> None:
    key = "sk-orch-mid-MMMMMMMMMMMMMMMMMMMMMMMMMMMMMMMMMMMMMMMMMMMMMMM7"
    settings = settings_for(
        paid,
        tmp_path,
        models={"cheap": {"routes": ["paid/small"], "rules": [{"use": "paid/big", "pattern": "think hard"}]}},
        keys={"mid": {"sha256": hash_key(key), "budget_usd": 0.005}},
    )
    body = {"model": "cheap", "max_tokens": 1000}
    hard = {**body, "messages": [{"role": "user", "content": "think hard about it"}]}
    easy = {**body, "messages": [{"role": "user", "content": "hello"}]}
    async with gateway(settings, FakeEngine("fake-chat"), ENV) as (c, _):
        paid.tokens_per_s = 10
        try:
            # The rule sends `hard` to paid/big: while it runs, its reservation is paid/big's worst case
            # ($0.01, over the key's $0.005), not cheap's ($0.0002): the next request must wait for it.
            running = asyncio.create_task(c.post(CHAT, json=hard, headers=auth(key)))
            await asyncio.sleep(0.3)
            refused = await c.post(CHAT, json=easy, headers=auth(key))
            assert error_of(refused, 429)["code"] == "insufficient_quota"
            assert (await running).status_code == 200
        finally:
            paid.tokens_per_s = 0


# ---------------------------------------------------------------------- the admin API and paths


async def test_admin_inputs_that_are_not_finite_numbers_are_a_400(paid: FakeProvider, tmp_path: Path) -> None:
    master = auth(ENV["ORCHESTRATOR_MASTER_KEY"])
    async with gateway(settings_for(paid, tmp_path), FakeEngine("fake-chat"), ENV) as (c, _):
        for query in ("since=nan", "until=inf", "since=1e400", "since=-inf&until=inf"):
            r = await c.get(f"/admin/usage?{query}", headers=master)
            assert error_of(r, 400)["param"] in ("since", "until")
        for limit in ({"budget_usd": 1e400}, {"soft_limit_usd": float("inf")}, {"rpm": 2**64}):
            r = await c.post("/admin/keys", content=json.dumps({"id": "k0", **limit}), headers=master)
            assert r.status_code == 400, r.text
        assert (await c.get("/admin/keys", headers=master)).status_code == 200  # nothing broken was stored


async def test_a_trailing_slash_is_a_404_in_openais_shape(client: httpx.AsyncClient) -> None:
    for path in ("/v1/chat/completions/", "/v1/models/"):
        r = await client.post(path, json=chat_body()) if "chat" in path else await client.get(path)
        assert error_of(r, 404)["code"] == "not_found"


async def test_huge_bodies_are_read_a_few_at_a_time_and_never_hold_up_the_rest(chat_engine: FakeEngine) -> None:
    app = build_app(await build_pipeline({"local": (chat_engine, chat_engine.info())}))
    sent = [0, 0, 0]
    finish = asyncio.Event()

    def body(i: int) -> AsyncIterator[bytes]:
        async def slowly() -> AsyncIterator[bytes]:  # 3 MB in 256 kB pieces; the end held back until `finish`
            yield b'{"model": "fake-chat", "messages": [{"role": "user", "content": "'
            for _ in range(12):
                sent[i] += 1
                yield b"x" * (256 << 10)
                await asyncio.sleep(0.001)
            await finish.wait()
            yield b'"}]}'

        return slowly()

    async def until(condition: Callable[[], bool]) -> None:
        for _ in range(500):
            if condition():
                return
            await asyncio.sleep(0.01)

    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://t") as c:
        posts = [asyncio.create_task(c.post(CHAT, content=body(i))) for i in range(3)]
        await until(lambda: sorted(sent)[1] == 12)
        await asyncio.sleep(0.1)
        # Two large bodies are being read; the third waits for a slot just past the threshold (1 MB).
        assert sorted(sent)[0] <= 5 and sorted(sent)[1:] == [12, 12]
        started = time.monotonic()
        assert (await c.post(CHAT, json=chat_body(max_tokens=2))).status_code == 200  # small ones go at once
        assert time.monotonic() - started < 0.5
        finish.set()
        assert [(await p).status_code for p in posts] == [400, 400, 400]  # each one over the context, in the end


@pytest.mark.parametrize("literal", [b"NaN", b"-Infinity", b"Infinity"])
async def test_nan_and_infinity_are_not_json_on_any_route(client: httpx.AsyncClient, literal: bytes) -> None:
    for path, body in (
        ("/v1/embeddings", b'{"model": "fake-embed", "input": "hi", "x": %s}'),
        (CHAT, b'{"model": "fake-chat", "messages": [{"role": "user", "content": "hi"}], "x": [%s]}'),
    ):
        r = await client.post(path, content=body % literal, headers={"content-type": "application/json"})
        error_of(r, 400)


@pytest.mark.parametrize("number", [b"1e400", b"-1E+999"])
async def test_a_number_too_large_to_send_on_is_a_400_not_a_failed_route(
    paid: FakeProvider, tmp_path: Path, number: bytes
) -> None:
    # It parses as infinity; sent on upstream it could not be encoded as JSON (an embeddings
    # provider answered 500 here: fuzz finding F4).
    async with gateway(settings_for(paid, tmp_path), FakeEngine("fake-chat"), ENV) as (c, _):
        before = len(paid.requests)
        key = {**auth(KEY_B), "content-type": "application/json"}
        for path, body in (
            ("/v1/embeddings", b'{"model": "paid/embed", "input": "hi", "x": %s}'),
            (CHAT, b'{"model": "paid/big", "max_tokens": 5, "messages": [{"role": "user", "content": "hi"}], "x": %s}'),
        ):
            for stream in (b"", b', "stream": true') if path == CHAT else (b"",):
                r = await c.post(path, content=body[:-1] % number + stream + b"}", headers=key)
                assert error_of(r, 400)["code"] == "invalid_value"
        assert len(paid.requests) == before


async def test_stalled_large_bodies_lose_their_slot_and_never_shut_out_another_key(
    paid: FakeProvider, tmp_path: Path
) -> None:
    """Bodies over 1 MB are read two at a time. One key's clients that sent 1.2 MB and then stalled held
    both slots for as long as they liked, and every other key's large request hung behind them: now a
    key holds at most one slot, and a body holding one must keep arriving (here 0.5 s plus its size at
    1 MB/s) or it gets a 408 and the slot goes to the next."""
    stalled = asyncio.Event()

    async def stalling() -> AsyncIterator[bytes]:
        yield b'{"model": "fake-chat", "messages": [{"role": "user", "content": "' + b"a" * 1_200_000
        stalled.set()
        await asyncio.sleep(60)  # and never the rest
        yield b'"}]}'

    large = LargeBodies(grace_s=0.5, min_bytes_per_s=1 << 20)
    async with gateway(settings_for(paid, tmp_path), FakeEngine("fake-chat"), ENV, large_bodies=large) as (c, _):
        headers = {**auth(KEY_A), "content-type": "application/json", "content-length": "3000000"}
        attacks = [asyncio.create_task(c.post(CHAT, content=stalling(), headers=headers)) for _ in range(2)]
        await asyncio.wait_for(stalled.wait(), 5)
        started = time.monotonic()
        # ~1.25 MB, counted (Anthropic's count_tokens reads bodies as the doors do; the fakes take no 1 MB body).
        big = {"model": "paid/big", "messages": [{"role": "user", "content": "word " * 250_000}]}
        count = "/v1/messages/count_tokens"
        r = await c.post(count, json=big, headers={**auth(KEY_B), "anthropic-version": "2023-06-01"})
        assert r.status_code == 200 and r.json()["input_tokens"] > 250_000, r.text
        assert time.monotonic() - started < 1.0  # the second slot: key A can't hold it too
        for attack in attacks:  # each in turn: 0.5 s + 1.2 MB at 1 MB/s, then the next takes key A's slot
            error = error_of(await asyncio.wait_for(attack, 10), 408)
            assert error["code"] == "request_timeout" and "too slowly" in error["message"]
        r = await c.post(count, json=big, headers={**auth(KEY_A), "anthropic-version": "2023-06-01"})
        assert r.status_code == 200, r.text  # key A's own next large body is read as ever
    assert not large._keys  # no key's claim outlives its requests


async def test_a_small_body_that_never_finishes_is_a_408_and_a_slow_one_still_arrives(
    paid: FakeProvider, tmp_path: Path
) -> None:
    """A client that sent its headers and part of a small body, then nothing, held its request (and a place
    among the replica's ongoing ones) for as long as it liked: a small body must now be whole within the time
    a body of the large-body threshold's size gets (here 0.4 s), on every route that reads one."""

    async def stalling() -> AsyncIterator[bytes]:
        yield b'{"model": "fake-chat", "messages": [{"role": "user", "content": "hi'
        await asyncio.sleep(60)  # and never the rest
        yield b'"}]}'

    async def slow() -> AsyncIterator[bytes]:
        body = json.dumps(chat_body(max_tokens=2)).encode()
        for i in range(0, len(body), 20):
            yield body[i : i + 20]
            await asyncio.sleep(0.02)

    large = LargeBodies(grace_s=0.3, min_bytes_per_s=10 << 20)  # 0.3 s + 1 MB at 10 MB/s
    async with gateway(settings_for(paid, tmp_path), FakeEngine("fake-chat"), ENV, large_bodies=large) as (c, _):
        headers = {**auth(KEY_A), "content-type": "application/json"}
        for path in (CHAT, "/v1/conversations", "/v1/messages/count_tokens"):
            started = time.monotonic()
            r = await asyncio.wait_for(c.post(path, content=stalling(), headers=headers), 5)
            assert r.status_code == 408 and "too slowly" in r.text, r.text  # in each door's own error shape
            assert 0.3 < time.monotonic() - started < 2.0
            if path == CHAT:
                assert error_of(r, 408)["code"] == "request_timeout"
        assert (await c.post(CHAT, content=slow(), headers=headers)).status_code == 200  # ~0.2 s: in time
        assert (await c.post(CHAT, json=chat_body(max_tokens=2), headers=headers)).status_code == 200


# ------------------------------------------------------------------ one request, the whole local engine


async def test_one_request_cant_ask_the_local_engine_for_every_slot(paid: FakeProvider, tmp_path: Path) -> None:
    """n = 128 at 1,900 tokens each held a 32-slot engine from every other client for the whole deadline (and
    500 prompts to /v1/completions likewise). A request asking more answers at once than a quarter of the
    engine's slots goes where there is no such limit, or is a 400 naming the field."""
    settings = settings_for(paid, tmp_path, models={"spills": ["fake-chat", "paid/small"]})
    async with gateway(settings, FakeEngine("fake-chat", max_num_seqs=32), ENV) as (c, _):
        question = [{"role": "user", "content": "hi"}]
        ok = await c.post(CHAT, json={"model": "fake-chat", "messages": question, "n": 8}, headers=auth(KEY_A))
        assert ok.status_code == 200 and len(ok.json()["choices"]) == 8
        too_many = {"model": "fake-chat", "messages": question, "n": 9}
        error = error_of(await c.post(CHAT, json=too_many, headers=auth(KEY_A)), 400)
        assert (error["param"], error["code"]) == ("n", "too_many_answers") and "at most 8" in error["message"]
        prompts = {"model": "fake-chat", "prompt": ["a", "b", "c"], "n": 3, "max_tokens": 2}
        error = error_of(await c.post("/v1/completions", json=prompts, headers=auth(KEY_A)), 400)
        assert error["param"] == "prompt" and "9 answers" in error["message"]
        spilled = await c.post(CHAT, json={"model": "spills", "messages": question, "n": 9}, headers=auth(KEY_A))
        assert spilled.status_code == 200 and spilled.headers["x-served-by"] == "paid/paid-small"
