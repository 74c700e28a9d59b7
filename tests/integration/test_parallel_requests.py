"""A key's cap on HTTP requests in progress (`parallel_requests`), through real HTTP on a loopback socket.

The gateway over two fake providers (`two_fakes`; keys "team" and "other", and here a master key), served
by uvicorn so that a client can hold a stream open, or leave in the middle of one. "alpha" is made slow
(`slow`): its streams take seconds, and hold their places while they run. Every refusal is held to the
shared OpenAI spec (Anthropic's routes: Anthropic's shape).
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
from loopback import serving
from openai_schema import validate
from prometheus_client.parser import text_string_to_metric_families
from two_fakes import OTHER_KEY, TEAM_KEY, gateway, heal
from two_fakes import fakes_fixture as fakes_fixture

from orchestrator.testing.provider import FakeProvider

MASTER = "sk-orch-master-MMMMMMMMMMMMMMMMMMMMMMMMMMMMMMMMMMMMMMMMMMMM9"
WORDS = 30  # a slow stream's words: at 10 a second, 3 s of stream
ASK = [{"role": "user", "content": "hi"}]
CHAT = {"model": "alpha/m", "messages": ASK, "stream": True}
ANTHROPIC = {"anthropic-version": "2023-06-01"}


@contextlib.contextmanager
def slow(fake: FakeProvider, words_per_s: float = 10.0) -> Iterator[None]:
    """`fake` answers `WORDS` words at `words_per_s` (fast enough for the gateway's idle timeout)."""
    reply, pace = fake.reply, fake.tokens_per_s
    fake.reply, fake.tokens_per_s = " ".join(["tick"] * WORDS), words_per_s
    try:
        yield
    finally:
        fake.reply, fake.tokens_per_s = reply, pace


@contextlib.asynccontextmanager
async def served(fakes: dict[str, FakeProvider], tmp: Path, **options: Any) -> AsyncIterator[httpx.AsyncClient]:
    """A client of the gateway (`two_fakes.gateway`'s `options`, a master key) on a loopback socket."""
    heal(fakes)
    async with (
        gateway(fakes, tmp, env={"ORCHESTRATOR_MASTER_KEY": MASTER}, **options) as app,
        serving(app) as url,
        httpx.AsyncClient(base_url=url, timeout=20) as client,
    ):
        yield client


def auth(key: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {key}"}


@dataclass
class Stream:
    """A stream in progress: its response started and its first event read."""

    response: httpx.Response
    lines: AsyncIterator[str]

    async def finish(self) -> str:
        """The rest of it, to its end."""
        return "\n".join([line async for line in self.lines]).strip()


async def start(
    stack: contextlib.AsyncExitStack, c: httpx.AsyncClient, key: str, path: str = "/v1/chat/completions", **body: Any
) -> Stream:
    """A stream of `key`'s, open until `stack` closes (or it is read to its end)."""
    r = await stack.enter_async_context(c.stream("POST", path, json=body or CHAT, headers=auth(key)))
    assert r.status_code == 200, await r.aread()
    lines = r.aiter_lines()
    async for line in lines:
        if line.startswith("data: "):
            break
    return Stream(r, lines)


def openai_error(r: httpx.Response, status: int = 429) -> dict[str, Any]:
    assert r.status_code == status, r.text
    validate("ErrorResponse", r.json())
    error: dict[str, Any] = r.json()["error"]
    return error


def over_cap(r: httpx.Response, cap: int) -> None:
    """`r` is the refusal of a key at its cap: a 429 that says which limit, with `Retry-After`."""
    error = openai_error(r)
    assert (error["type"], error["code"], error["param"]) == ("requests", "rate_limit_exceeded", None)
    assert f"parallel_requests: {cap}" in error["message"]
    assert r.headers["retry-after"] == "1"


async def counted(c: httpx.AsyncClient, metric: str, *labels: str) -> dict[tuple[str, ...], float]:
    """The counter `metric` from `/metrics`, by the values of `labels`."""
    text = (await c.get("/metrics", headers=auth(MASTER))).text
    return {
        tuple(s.labels[name] for name in labels): s.value
        for family in text_string_to_metric_families(text)
        if family.name == metric
        for s in family.samples
        if s.name.endswith("_total")
    }


async def refusals(c: httpx.AsyncClient) -> dict[tuple[str, ...], float]:
    """`orchestrator_key_refusals_total` by key and reason."""
    return await counted(c, "orchestrator_key_refusals", "key", "reason")


async def served_again(c: httpx.AsyncClient, key: str, within_s: float = 5.0) -> httpx.Response:
    """`key`'s next request, once its places have come back (a client's leaving is seen a moment later)."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + within_s
    while True:
        r = await c.post("/v1/chat/completions", json={**CHAT, "stream": False}, headers=auth(key))
        if r.status_code != 429 or loop.time() > deadline:
            return r
        await asyncio.sleep(0.05)


# ------------------------------------------------------------------------------ the cap


async def test_a_key_at_its_cap_is_refused_while_another_key_is_served(
    fakes: dict[str, FakeProvider], tmp_path: Path
) -> None:
    """Key A with a cap of 2 holds 2 slow streams: its next request is a 429 that says so, at once; key B
    is served as ever meanwhile; once A's streams have ended, A is served again, as many at once as before."""
    async with (
        served(fakes, tmp_path, limits={"team": {"parallel_requests": 2}}) as c,
        contextlib.AsyncExitStack() as stack,
    ):
        with slow(fakes["alpha"]):
            held = [await start(stack, c, TEAM_KEY) for _ in range(2)]
            over_cap(await c.post("/v1/chat/completions", json=CHAT, headers=auth(TEAM_KEY)), 2)
            other = await c.post(
                "/v1/chat/completions", json={**CHAT, "model": "claude/haiku"}, headers=auth(OTHER_KEY)
            )
            assert other.status_code == 200 and other.text.endswith("data: [DONE]\n\n")
            also = [await start(stack, c, OTHER_KEY) for _ in range(3)]  # B's cap is the gateway's (128)
            for stream in held:
                assert (await stream.finish()).endswith("data: [DONE]")
            again = [await start(stack, c, TEAM_KEY) for _ in range(2)]
            for stream in [*also, *again]:
                assert (await stream.finish()).endswith("data: [DONE]")
        assert await refusals(c) == {("team", "parallel_requests"): 1.0}
        requests = await counted(c, "orchestrator_requests", "status", "route", "provider")
        assert requests[("429", "none", "none")] == 1  # counted against no route


async def test_requests_at_once_past_the_cap_take_exactly_its_places(
    fakes: dict[str, FakeProvider], tmp_path: Path
) -> None:
    """Twenty requests at once race for a key's three places: three are answered, the rest refused at once."""
    async with served(fakes, tmp_path, limits={"team": {"parallel_requests": 3}}) as c:
        with slow(fakes["alpha"], words_per_s=30.0):
            answers = await asyncio.gather(
                *(c.post("/v1/chat/completions", json=CHAT, headers=auth(TEAM_KEY)) for _ in range(20))
            )
        assert sorted(r.status_code for r in answers) == [200] * 3 + [429] * 17
        for r in answers:
            if r.status_code == 429:
                over_cap(r, 3)
        assert (await served_again(c, TEAM_KEY, within_s=0)).status_code == 200


DOORS: list[tuple[str, str, dict[str, Any]]] = [
    ("POST", "/v1/chat/completions", {"model": "alpha/m", "messages": ASK}),
    ("POST", "/v1/completions", {"model": "alpha/m", "prompt": "hi"}),
    ("POST", "/v1/embeddings", {"model": "alpha/m", "input": "hi"}),
    ("POST", "/v1/responses", {"model": "alpha/m", "input": "hi"}),
    ("POST", "/v1/responses/compact", {"model": "alpha/m", "input": "hi"}),
    ("POST", "/v1/responses/input_tokens", {"model": "alpha/m", "input": "hi"}),
    ("POST", "/v1/conversations", {}),
    ("GET", "/v1/models", {}),
    ("GET", "/v1/responses/resp_0", {}),
]
ANTHROPIC_DOORS = [
    ("/v1/messages", {"model": "claude/haiku", "max_tokens": 5, "messages": ASK}),
    ("/v1/messages/count_tokens", {"model": "claude/haiku", "messages": ASK}),
]


async def test_every_door_refuses_a_key_at_its_cap_in_its_own_shape(
    fakes: dict[str, FakeProvider], tmp_path: Path
) -> None:
    async with (
        served(fakes, tmp_path, limits={"team": {"parallel_requests": 1}}) as c,
        contextlib.AsyncExitStack() as stack,
    ):
        with slow(fakes["alpha"]):
            held = await start(
                stack, c, TEAM_KEY, "/v1/messages", model="alpha/m", max_tokens=50, messages=ASK, stream=True
            )
            for method, path, body in DOORS:
                r = await c.request(method, path, json=body or None, headers=auth(TEAM_KEY))
                over_cap(r, 1)
            for path, body in ANTHROPIC_DOORS:
                r = await c.post(path, json=body, headers={"x-api-key": TEAM_KEY, **ANTHROPIC})
                assert r.status_code == 429 and r.headers["retry-after"] == "1", r.text
                assert r.json()["type"] == "error" and r.json()["error"]["type"] == "rate_limit_error"
                assert "parallel_requests: 1" in r.json()["error"]["message"]
            for path, body in ANTHROPIC_DOORS:  # another key, at the same moment
                r = await c.post(path, json=body, headers={"x-api-key": OTHER_KEY, **ANTHROPIC})
                assert r.status_code == 200, r.text
            assert "event: message_stop" in await held.finish()
        count = await c.post("/v1/responses/input_tokens", json=DOORS[5][2], headers=auth(TEAM_KEY))
        assert count.status_code == 200 and count.json()["input_tokens"] > 0
        assert await refusals(c) == {("team", "parallel_requests"): len(DOORS) + len(ANTHROPIC_DOORS)}


# ------------------------------------------------------------------------------ every way out gives the place back


async def test_a_refused_or_failed_request_gives_its_place_back(fakes: dict[str, FakeProvider], tmp_path: Path) -> None:
    """With one place, each request after another finds it free, however the one before it ended: refused
    after it took its place (a bad body, an unknown model, a model the key may not use, its minute's requests),
    failed upstream before its answer, or broken off in the middle of a stream."""
    limits = {"team": {"parallel_requests": 1, "models": ["alpha/m"], "rpm": 9}}
    async with served(fakes, tmp_path, limits=limits) as c:

        async def ask(**body: Any) -> httpx.Response:
            return await c.post("/v1/chat/completions", json={**CHAT, "stream": False, **body}, headers=auth(TEAM_KEY))

        bad = await c.post("/v1/chat/completions", content=b"{", headers=auth(TEAM_KEY))
        assert openai_error(bad, 400)["message"].startswith("We could not parse the JSON body")
        assert openai_error(await ask(model="no-such-model"), 404)["code"] == "model_not_found"
        assert openai_error(await ask(model="claude/haiku"), 403)["code"] == "model_not_found"
        fakes["alpha"].set_fault("server_error")
        assert (await ask()).status_code >= 500
        fakes["alpha"].set_fault("stream_error", stall_after=1)
        broken = await ask(stream=True)
        assert broken.status_code == 200 and '"error"' in broken.text  # it ended with an error event
        fakes["alpha"].clear_fault()
        assert (await ask()).status_code == 200
        # Its minute's requests: the rest of them, then a refusal in the flow, after the place was taken.
        used = 3  # the failed, the broken and the answered one (the 400, 404 and 403 came before admission)
        for _ in range(9 - used):
            assert (await ask()).status_code == 200
        assert openai_error(await ask(), 429)["message"].startswith("Rate limit reached for requests per min")
        assert openai_error(await ask(), 429)["message"].startswith("Rate limit reached for requests per min")
        # The other key is at none of these limits, and the refusals were the rpm's, never the cap's.
        assert (await c.post("/v1/chat/completions", json=CHAT, headers=auth(OTHER_KEY))).status_code == 200
        assert ("team", "parallel_requests") not in await refusals(c)


async def test_a_client_that_leaves_gives_its_place_back(fakes: dict[str, FakeProvider], tmp_path: Path) -> None:
    """A client that leaves mid-stream frees its place (and stops its upstream call); so do many that ask
    and leave at once, before any answer has begun: once they are gone, the key has all its places again."""
    async with served(fakes, tmp_path, limits={"team": {"parallel_requests": 2}}) as c:
        alpha = fakes["alpha"]
        with slow(alpha):
            async with contextlib.AsyncExitStack() as stack:
                left = [await start(stack, c, TEAM_KEY) for _ in range(2)]
                over_cap(await c.post("/v1/chat/completions", json=CHAT, headers=auth(TEAM_KEY)), 2)
            # Both clients left with their streams half read.
            assert all(stream.response.is_closed for stream in left)
            assert await alpha.wait_for_async(lambda p: p.disconnects >= 2)
            assert (await served_again(c, TEAM_KEY)).status_code == 200

            alpha.ttft_ms = 300.0  # no answer begins before they leave
            try:
                asked = [
                    asyncio.create_task(c.post("/v1/chat/completions", json=CHAT, headers=auth(TEAM_KEY)))
                    for _ in range(20)
                ]
                await asyncio.sleep(0.1)
                for task in asked:
                    task.cancel()
                await asyncio.gather(*asked, return_exceptions=True)
            finally:
                alpha.ttft_ms = 0.0
            assert (await served_again(c, TEAM_KEY)).status_code == 200
            async with contextlib.AsyncExitStack() as stack:  # both places are free
                both = [await start(stack, c, TEAM_KEY) for _ in range(2)]
                for stream in both:
                    assert (await stream.finish()).endswith("data: [DONE]")


# ------------------------------------------------------------------------------ the admin API


async def test_a_cap_made_with_the_admin_api_takes_effect(fakes: dict[str, FakeProvider], tmp_path: Path) -> None:
    async with served(fakes, tmp_path) as c, contextlib.AsyncExitStack() as stack:
        made = await c.post("/admin/keys", json={"id": "capped", "parallel_requests": 1}, headers=auth(MASTER))
        assert made.status_code == 201, made.text
        key = made.json()["key"]
        assert made.json()["parallel_requests"] == 1
        listed = (await c.get("/admin/keys", headers=auth(MASTER))).json()["data"]
        assert {k["id"]: k["parallel_requests"] for k in listed} == {"capped": 1, "team": None, "other": None}
        with slow(fakes["alpha"]):
            held = await start(stack, c, key)
            over_cap(await c.post("/v1/chat/completions", json=CHAT, headers=auth(key)), 1)
            await held.finish()
        assert (await served_again(c, key, within_s=0)).status_code == 200


async def test_the_admin_api_refuses_a_cap_that_is_no_count_of_requests(
    fakes: dict[str, FakeProvider], tmp_path: Path
) -> None:
    """A cap is a whole number from 1 (0 would lock the key out; none: the gateway's default) to a million."""
    async with served(fakes, tmp_path) as c:
        for value in (0, -1, 10**30, 1_000_001, 1.5, "2", True, [1], {}):
            r = await c.post("/admin/keys", json={"id": "bad", "parallel_requests": value}, headers=auth(MASTER))
            error = openai_error(r, 400)
            assert error["param"] == "parallel_requests", (value, error)
        huge = await c.post("/admin/keys", content=b'{"id": "bad", "parallel_requests": 1e400}', headers=auth(MASTER))
        assert openai_error(huge, 400)["message"]
        listed = (await c.get("/admin/keys", headers=auth(MASTER))).json()["data"]
        assert [k["id"] for k in listed] == ["other", "team"]  # none of them was made
        made = await c.post("/admin/keys", json={"id": "most", "parallel_requests": 1_000_000}, headers=auth(MASTER))
        assert made.status_code == 201 and made.json()["parallel_requests"] == 1_000_000


# ------------------------------------------------------------------------------ requests no model answers


async def test_a_token_count_is_one_of_the_keys_requests_per_minute(
    fakes: dict[str, FakeProvider], tmp_path: Path
) -> None:
    """`POST /v1/responses/input_tokens` tokenizes on the gateway's CPU: it counts in its key's rpm and is
    refused past it as any request is, but uses no tokens of the minute and spends nothing."""
    async with served(fakes, tmp_path, limits={"team": {"rpm": 2, "tpm": 10**6, "budget_usd": 1.0}}) as c:
        body = {"model": "alpha/m", "input": "What is the capital of France?"}
        for _ in range(2):
            r = await c.post("/v1/responses/input_tokens", json=body, headers=auth(TEAM_KEY))
            assert r.status_code == 200 and r.json()["input_tokens"] > 0, r.text
        r = await c.post("/v1/responses/input_tokens", json=body, headers=auth(TEAM_KEY))
        error = openai_error(r)
        assert (error["type"], error["code"]) == ("requests", "rate_limit_exceeded")
        assert error["message"].startswith("Rate limit reached for requests per min (RPM): Limit 2, Used 2")
        assert 50 <= int(r.headers["retry-after"]) <= 60
        assert openai_error(await c.post("/v1/chat/completions", json=CHAT, headers=auth(TEAM_KEY)))["type"] == (
            "requests"  # the same minute's requests
        )
        other = await c.post("/v1/responses/input_tokens", json=body, headers=auth(OTHER_KEY))
        assert other.status_code == 200
        [team] = [k for k in (await c.get("/admin/keys", headers=auth(MASTER))).json()["data"] if k["id"] == "team"]
        spend = team["spend"]
        assert (spend["usd"], spend["tokens"], spend["reserved_usd"], spend["reserved_tokens"]) == (0, 0, 0, 0)
        assert (await refusals(c))[("team", "rpm")] == 2
