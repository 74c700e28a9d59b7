"""Spill and return through the gateway: a busy local engine sends traffic to the remote route.

The local model is a `FakeEngine` that runs one request at a time (the rest
wait, as in vLLM's scheduler); the remote route is a fake provider on a
real socket. The scheduler reads the engine's load through a real
`LoadBoard` and `LoadView`, polled by the test at the moments that matter.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
from collections.abc import AsyncIterator, Iterator, Mapping
from pathlib import Path
from typing import Any

import httpx
import pytest
from openai_schema import validate

from orchestrator.api import build_app
from orchestrator.app import build_pipeline
from orchestrator.scheduling.load import BoardState, LoadBoard, LoadView
from orchestrator.scheduling.router import RoutePlan
from orchestrator.settings import load_settings
from orchestrator.testing.engine import FakeEngine
from orchestrator.testing.provider import FakeProvider

KEYS = {"REMOTE_KEY": "sk-remote-test"}
QUESTION = [{"role": "user", "content": "What is the capital of France?"}]
HOSTED = "remote/small-hosted"


@pytest.fixture(scope="module")
def remote() -> Iterator[FakeProvider]:
    fake = FakeProvider(api_key=KEYS["REMOTE_KEY"], reply="Paris is the capital of France.")
    fake.start()
    yield fake
    fake.stop()


class Env:
    def __init__(self, engine: FakeEngine, board: LoadBoard, view: LoadView, http: httpx.AsyncClient):
        self.engine, self.board, self.view, self.http = engine, board, view, http

    async def poll(self) -> None:
        """One report from the engine and one read by the gateway (each every 100 ms in production)."""
        self.board.report("local-chat", "replica-1", self.engine.stats())
        await self.view.poll_once()

    async def chat(self, headers: dict[str, str] | None = None, **body: Any) -> httpx.Response:
        payload = {"model": "auto", "messages": QUESTION, "max_tokens": 8, **body}
        r = await self.http.post("/v1/chat/completions", json=payload, headers=headers or {})
        assert r.status_code == 200, r.text
        validate("CreateChatCompletionResponse", r.json())
        return r


@contextlib.asynccontextmanager
async def gateway(remote: FakeProvider, cache_dir: Path | None = None, **scheduler: Any) -> AsyncIterator[Env]:
    """The gateway over a one-slot fake engine and the fake remote, its scheduler configured by `scheduler`
    (and its response cache in `cache_dir`, if given)."""
    settings = load_settings(
        providers={
            "remote": {
                "base_url": remote.base_url + "/v1",
                "api_key_env": "REMOTE_KEY",
                "models": {
                    "small-hosted": {"id": "small-hosted", "same_weights_as": "local-chat", "input_per_mtok": 1.0},
                    "other": {"id": "other", "input_per_mtok": 0.1},
                },
            }
        },
        models={"auto": {"routes": ["local-chat", "remote/other", HOSTED], "ttft_slo_ms": 500}},
        # No hedge unless a test asks for one: the fake engine's first word comes after ~0.3 s.
        scheduler={"prefill_tokens_per_s": 10_000, "hedge_at": None, **scheduler},
        cache={"directory": str(cache_dir)} if cache_dir is not None else {"enabled": False},
    )
    engine = FakeEngine("local-chat", max_num_seqs=1, token_delay=0.05)
    board = LoadBoard(max_age_s=5.0)

    async def read(overflow: Mapping[str, int]) -> BoardState:
        return board.read("test-gateway", overflow)

    async def report(by_tenant: Mapping[str, float]) -> None:
        board.spent(by_tenant)

    view = LoadView(read, report=report, max_staleness_s=5.0)
    async with httpx.AsyncClient() as upstream:
        pipeline = await build_pipeline(
            {"local": (engine, engine.info())}, settings, env=KEYS, client=upstream, load=view
        )
        app = build_app(pipeline)
        async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://gw") as http:
            e = Env(engine, board, view, http)
            await e.poll()
            yield e


@pytest.fixture
async def env(remote: FakeProvider) -> AsyncIterator[Env]:
    async with gateway(remote) as e:
        yield e


async def test_spills_to_the_same_weights_host_while_busy_and_comes_back(env: Env) -> None:
    r = await env.chat()
    assert r.headers["x-served-by"] == "local/local-chat"
    assert r.headers["x-route-reason"].startswith("local: predicted TTFT")

    # Three long generations: one runs, two wait behind it.
    env.engine.enqueue(["word " * 60] * 3)
    busy = [asyncio.create_task(env.chat(max_tokens=60)) for _ in range(3)]
    await asyncio.sleep(0.2)
    await env.poll()
    r = await env.chat()
    assert r.headers["x-served-by"] == f"{HOSTED}"  # hosts of the same weights first
    assert r.headers["x-route-reason"].startswith("spill: predicted local TTFT")
    assert r.json()["choices"][0]["message"]["content"] == "Paris is the capital of France."

    await asyncio.gather(*busy)
    await env.poll()
    r = await env.chat()
    assert r.headers["x-served-by"] == "local/local-chat"


async def test_sends_between_two_polls_count_toward_the_load(env: Env) -> None:
    """A burst inside one poll interval is not planned against the empty queue of the last snapshot."""
    env.engine.enqueue(["word " * 40] * 4)
    first = [asyncio.create_task(env.chat(max_tokens=40)) for _ in range(4)]
    await asyncio.sleep(0.05)  # no poll: the snapshot still says idle
    r = await env.chat()
    assert r.headers["x-served-by"] == HOSTED
    await asyncio.gather(*first)


async def test_a_tight_slo_header_spills_and_a_loose_one_waits(env: Env) -> None:
    env.engine.enqueue(["word " * 30] * 2)
    busy = [asyncio.create_task(env.chat(max_tokens=30)) for _ in range(2)]
    await asyncio.sleep(0.1)
    await env.poll()
    tight = await env.chat(headers={"x-ttft-slo-ms": "50"})
    loose = await env.chat(headers={"x-ttft-slo-ms": "60000"})
    assert tight.headers["x-served-by"] == HOSTED
    assert loose.headers["x-served-by"] == "local/local-chat"
    await asyncio.gather(*busy)


async def test_sensitive_requests_stay_local_under_load(env: Env) -> None:
    env.engine.enqueue(["word " * 30] * 2)
    busy = [asyncio.create_task(env.chat(max_tokens=30)) for _ in range(2)]
    await asyncio.sleep(0.1)
    await env.poll()
    r = await env.chat(headers={"x-data-class": "sensitive"})
    assert r.headers["x-served-by"] == "local/local-chat"
    assert r.headers["x-route-reason"] == "data-class: sensitive stays local"
    await asyncio.gather(*busy)


async def test_a_sensitive_request_never_reads_an_answer_a_remote_route_made(
    remote: FakeProvider, tmp_path: Path
) -> None:
    """The same reproducible request, spilled to the remote while the engine was busy and cached: the
    identical sensitive request got that remote answer from the cache (`cache/remote/...`, HIT)."""
    async with gateway(remote, cache_dir=tmp_path / "cache") as env:
        env.engine.enqueue(["word " * 30] * 2)
        busy = [asyncio.create_task(env.chat(max_tokens=30, temperature=0.7)) for _ in range(2)]
        await asyncio.sleep(0.1)
        await env.poll()
        spilled = await env.chat(temperature=0)
        assert spilled.headers["x-served-by"] == HOSTED and spilled.headers["x-cache"] == "MISS"
        assert (await env.chat(temperature=0)).headers["x-cache"] == "HIT"  # the cache works for its class
        r = await env.chat(temperature=0, headers={"x-data-class": "sensitive"})
        assert r.headers["x-served-by"] == "local/local-chat" and r.headers["x-cache"] == "MISS"
        await asyncio.gather(*busy)


async def test_tools_go_to_a_remote_route_that_has_them(env: Env) -> None:
    tool = {"type": "function", "function": {"name": "f", "parameters": {"type": "object", "properties": {}}}}
    r = await env.chat(tools=[tool])
    assert r.headers["x-served-by"].startswith("remote/")
    assert r.headers["x-route-reason"] == "capability: the local model lacks tools"


@pytest.mark.parametrize(
    ("header", "value"),
    [("x-ttft-slo-ms", "fast"), ("x-ttft-slo-ms", "-5"), ("x-data-class", "secret"), ("x-tags", "novalue")],
)
async def test_bad_routing_headers_are_clear_400s(env: Env, header: str, value: str) -> None:
    r = await env.http.post(
        "/v1/chat/completions", json={"model": "auto", "messages": QUESTION}, headers={header: value}
    )
    assert r.status_code == 400
    err = r.json()["error"]
    assert (err["type"], err["param"], err["code"]) == ("invalid_request_error", header, "invalid_header")
    assert value in err["message"]


async def test_a_wrong_prediction_costs_a_fall_over_not_the_budget(remote: FakeProvider) -> None:
    """Without a hedge: the engine looks idle but answers slowly; after 3 x the SLO the remote route serves."""
    async with gateway(remote, hedge_at=None) as env:
        env.engine.token_delay = 2.0  # first token after 2 s; the SLO is 0.2 s, patience 0.6 s
        r = await env.chat(headers={"x-ttft-slo-ms": "200"})
        assert r.headers["x-served-by"] == HOSTED
        assert r.headers["x-route-reason"] == "fallback after local upstream_timeout"


async def test_wrong_predictions_never_shut_the_local_model_out_for_everyone(remote: FakeProvider) -> None:
    """A local attempt given up at its patience is the plan's call (a prediction that was wrong, under an SLO
    the client may have set itself), not the local model failing: however many there are, its circuit stays
    closed, and the next request it can answer in time is served locally. (Counted as failures, three within
    a minute shut the local model out of every plan for 30 s.)"""
    async with gateway(remote, hedge_at=None) as env:
        env.engine.token_delay = 1.0
        for _ in range(4):  # more than the breaker's threshold (3)
            r = await env.chat(headers={"x-ttft-slo-ms": "100"})  # patience 0.3 s
            assert r.headers["x-served-by"] == HOSTED
            assert r.headers["x-route-reason"] == "fallback after local upstream_timeout"
        env.engine.token_delay = 0.0
        r = await env.chat()
        assert r.headers["x-served-by"] == "local/local-chat"
        assert r.headers["x-route-reason"].startswith("local: predicted TTFT")


@pytest.mark.parametrize("stream", [False, True])
async def test_a_local_attempt_without_a_first_token_is_hedged_and_aborted(
    remote: FakeProvider, stream: bool, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The engine looks idle but stalls: at the hedge time (0.4 x the 500 ms SLO) the remote route is
    tried beside it, its answer serves, and the engine's request is cancelled (its slot freed), long
    before the local attempt's patience (3 x the SLO) would have run out. The plan hears how long the
    given-up attempt waited (what the calibration learns from: tests/unit/test_router.py)."""
    given_up: list[tuple[str, float]] = []
    monkeypatch.setattr(RoutePlan, "gave_up", lambda plan, target, ms: given_up.append((target.provider, ms)))
    async with gateway(remote, hedge_at=0.4) as env:
        env.engine.token_delay = 5.0
        body = {"model": "auto", "messages": QUESTION, "max_tokens": 8, "stream": stream}
        r = await env.http.post("/v1/chat/completions", json=body)
        assert r.status_code == 200, r.text
        assert r.headers["x-served-by"] == HOSTED
        assert r.headers["x-route-reason"].startswith("hedge: local had no first token after 200 ms (local: predicted")
        if stream:
            events = [json.loads(line[6:]) for line in r.text.splitlines() if line.startswith("data: {")]
            text = "".join(e["choices"][0]["delta"].get("content") or "" for e in events if e["choices"])
        else:
            text = r.json()["choices"][0]["message"]["content"]
        assert "Paris is the capital of France." in text
        generation = env.engine.generations[-1]
        await asyncio.wait_for(generation.done.wait(), 2.0)
        assert generation.stopped_early
        assert [p for p, _ in given_up] == ["local"] and 200 <= given_up[0][1] < 1500
        # A local answer in time is not hedged: the remote is not asked.
        env.engine.token_delay = 0.0
        asked = remote.counts.total()
        r = await env.chat()
        assert r.headers["x-served-by"] == "local/local-chat" and remote.counts.total() == asked


async def test_a_hedge_called_off_is_charged_to_the_request_and_the_burst_budget(
    remote: FakeProvider, caplog: pytest.LogCaptureFixture
) -> None:
    """The local answer's first token comes after the hedge started (at 0.2 x the SLO) but before the
    remote's: the local answer serves and the hedge is called off, its prompt already sent. What the
    provider may bill for that prompt is in the request's cost and the burst budget, and its reason says so."""
    caplog.set_level(logging.INFO, logger="orchestrator.requests")
    remote.ttft_ms = 3000.0
    try:
        async with gateway(remote, hedge_at=0.2) as env:
            asked = remote.counts.total()
            r = await env.chat()
            assert r.headers["x-served-by"] == "local/local-chat"
            assert r.headers["x-route-reason"].endswith(f"; hedge to {HOSTED} called off")
            assert remote.counts.total() == asked + 1  # the hedge went out
            rows = [json.loads(m.getMessage()) for m in caplog.records if m.name == "orchestrator.requests"]
            row = next(x for x in rows if x["request_id"] == r.headers["x-request-id"])
            # The local model is free here: the cost is the hedge's prompt (as the plan counted it, an upper
            # bound without the local tokenizer) at the hosted route's 1 $ per million input tokens.
            assert row["provider"] == "local" and 0 < row["cost_usd"] <= 200 / 1e6
            await asyncio.sleep(0.05)  # the spend report reaches the board
            assert env.board.read()["overflow_spent_usd"] == pytest.approx(row["cost_usd"])
    finally:
        remote.ttft_ms = 0.0


@pytest.mark.parametrize("max_wait_ms", [60_000, 1])
async def test_a_spent_burst_budget_stops_the_spill(remote: FakeProvider, max_wait_ms: int) -> None:
    """One spill spends the hour's overflow budget (as the board counts it); then requests wait for the
    local model when it can answer within `budget_max_wait_ms`, or get a 429 that says why."""
    async with gateway(remote, overflow_budget_usd_per_hour=1e-6, budget_max_wait_ms=max_wait_ms) as env:
        env.engine.enqueue(["word " * 30] * 3)
        local = {"x-data-class": "sensitive"}  # the busy work itself never spills, never spends
        busy = [asyncio.create_task(env.chat(headers=local, max_tokens=30)) for _ in range(3)]
        await asyncio.sleep(0.1)
        await env.poll()
        spilled = await env.chat()
        assert spilled.headers["x-served-by"] == HOSTED  # the budget isn't spent yet: this one pays
        await asyncio.sleep(0.05)  # the spend report reaches the board
        assert env.board.read()["overflow_spent_usd"] > 1e-6
        await env.poll()
        if max_wait_ms > 1:
            waited = await env.chat()
            assert waited.headers["x-served-by"] == "local/local-chat"
            assert waited.headers["x-route-reason"].startswith("budget: overflow budget spent, waiting locally")
        else:
            r = await env.http.post("/v1/chat/completions", json={"model": "auto", "messages": QUESTION})
            assert r.status_code == 429 and int(r.headers["retry-after"]) > 0
            err = r.json()["error"]
            assert err["code"] == "overflow_budget_exhausted" and "overflow budget" in err["message"]
            assert err["type"] and "param" in err
        await asyncio.gather(*busy)


async def test_a_spill_whose_client_left_before_its_first_token_spends_the_burst_budget(
    remote: FakeProvider, caplog: pytest.LogCaptureFixture
) -> None:
    """A spilled request whose client left while the remote route was still reading its prompt: what the provider
    may bill for that prompt is load spill, on the burst budget as on the request's row."""
    caplog.set_level(logging.INFO, logger="orchestrator.requests")
    remote.ttft_ms = 3000.0
    try:
        async with gateway(remote) as env:
            env.engine.enqueue(["word " * 30] * 3)
            local = {"x-data-class": "sensitive"}  # the busy work itself never spills, never spends
            busy = [asyncio.create_task(env.chat(headers=local, max_tokens=30)) for _ in range(3)]
            await asyncio.sleep(0.1)
            await env.poll()
            payload = {"model": "auto", "messages": QUESTION, "max_tokens": 8}
            with pytest.raises(TimeoutError):  # the client gives up before the remote's first word
                await asyncio.wait_for(env.http.post("/v1/chat/completions", json=payload), 0.5)
            await asyncio.sleep(0.1)  # the tab is closed and the spend reported
            rows = [json.loads(m.getMessage()) for m in caplog.records if m.name == "orchestrator.requests"]
            [row] = [x for x in rows if x["status"] == 499]
            assert row["provider"] == "remote" and "client left before the first token" in row["route_reason"]
            assert row["cost_usd"] > 0
            assert env.board.read()["overflow_spent_usd"] == pytest.approx(row["cost_usd"])
            await asyncio.gather(*busy)
    finally:
        remote.ttft_ms = 0.0
