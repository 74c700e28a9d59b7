"""The ledger's owner as the real named Ray actor: budgets hold under 1,000 concurrent requests.

Ray starts once for the session (`conftest.ray_instance`: a small local instance, one CPU); the gateway
app is in-process, its accounts talk to the actor exactly as a Serve replica's do.
"""

from __future__ import annotations

import asyncio
import logging
import math
import random
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from local_models.interface import LoadStats
from orchestrator.accounting.actor import get_or_create
from orchestrator.accounting.book import ListKeys
from orchestrator.accounting.keys import hash_key
from orchestrator.accounting.setup import build_accounts
from orchestrator.api import build_app
from orchestrator.app import build_pipeline
from orchestrator.settings import Settings, load_settings
from orchestrator.testing.engine import FakeEngine

KEY = "sk-orch-concurrent-KKKKKKKKKKKKKKKKKKKKKKKKKKKKKKKKKKKKKKKKKK1"
OTHER = "sk-orch-other-OOOOOOOOOOOOOOOOOOOOOOOOOOOOOOOOOOOOOOOOOOOOOO2"
BUDGET = 0.1
MAX_TOKENS = 16
MESSAGES = [{"role": "user", "content": "Say many words."}]


def settings(tmp: Path) -> Settings:
    return load_settings(
        providers={},
        models={},
        cache={"enabled": False},
        ledger={
            "path": str(tmp / "ledger.sqlite"),
            "owner": "actor",
            "gpu_price_per_hour": 36.0,  # $1e-5 per prompt token, $1e-4 per output token (floors below)
            "min_decode_tokens_per_s": 100,
            "min_prefill_tokens_per_s": 1000,
        },
        keys={
            # All 1,000 in progress at once: past the gateway's default share of a replica (`parallel_requests`).
            "busy": {"sha256": hash_key(KEY), "budget_usd": BUDGET, "parallel_requests": 1000},
            "other": {"sha256": hash_key(OTHER), "budget_usd": 100.0},
        },
    )


async def app_on(s: Settings) -> tuple[Any, Any]:
    engine = FakeEngine("fake-chat", max_model_len=4096, token_delay=0.005)  # ~80 ms an answer, streamed or not
    engine.enqueue(["word " * 100] * 2000)  # every answer uses its whole allowance

    async def stats() -> LoadStats:
        return engine.stats()

    pipeline = await build_pipeline({"local": (engine, engine.info())}, s, env={})
    accounts = await build_accounts(s, pipeline, local={"local": (stats, engine.info())}, env={})
    return build_app(pipeline, accounts), accounts


@pytest.fixture
async def gateway(ray_instance: None, tmp_path: Path) -> AsyncIterator[tuple[httpx.AsyncClient, Any, Settings]]:
    s = settings(tmp_path)
    app, accounts = await app_on(s)
    limits = httpx.Limits(max_connections=2000)
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://gw", limits=limits) as c:
        yield c, accounts, s
    await accounts.drain()
    await accounts.background.stop()


def ask(c: httpx.AsyncClient, key: str) -> Any:
    body = {"model": "fake-chat", "messages": MESSAGES, "max_tokens": MAX_TOKENS}
    return c.post("/v1/chat/completions", json=body, headers={"Authorization": f"Bearer {key}"})


async def test_1000_concurrent_requests_overspend_by_at_most_one_reservation(
    gateway: tuple[httpx.AsyncClient, Any, Settings], caplog: pytest.LogCaptureFixture
) -> None:
    c, accounts, s = gateway
    caplog.set_level(logging.INFO, logger="orchestrator.requests")
    jitter = random.Random(6)

    async def one() -> httpx.Response:
        # All in flight together, arriving over a second: admissions interleave with settlements,
        # so the budget is approached and crossed the way real traffic crosses it.
        await asyncio.sleep(jitter.uniform(0, 1.0))
        response: httpx.Response = await ask(c, KEY)
        return response

    responses = await asyncio.gather(*(one() for _ in range(1000)))
    statuses = [r.status_code for r in responses]
    assert set(statuses) == {200, 429}, set(statuses)
    assert all(r.json()["error"]["code"] == "insufficient_quota" for r in responses if r.status_code == 429)
    await accounts.drain()

    owner = get_or_create(s.ledger.path)  # type: ignore[arg-type]
    spend = {k.id: sp for k, sp in await owner.call(ListKeys())}
    reservation = accounts.worst_case(_request(), "fake-chat", "chat", set()).usd  # what each admission reserved
    served = statuses.count(200)
    assert spend["busy"].reserved_usd == pytest.approx(0, abs=1e-12)
    assert spend["busy"].spent_usd <= BUDGET + reservation
    # Nobody was refused before the reservations alone reached the budget.
    assert served >= math.ceil(BUDGET / reservation)
    # The book agrees with what the answers cost, request by request.
    logged = [r for r in _lines(caplog) if r["status"] == 200]
    assert len(logged) == served
    assert spend["busy"].spent_usd == pytest.approx(sum(r["cost_usd"] for r in logged))
    # The other key keeps working.
    assert (await ask(c, OTHER)).status_code == 200


async def test_spend_survives_a_restart_of_the_actor(gateway: tuple[httpx.AsyncClient, Any, Settings]) -> None:
    import ray

    from orchestrator.accounting.actor import LEDGER
    from orchestrator.actors import NAMESPACE, actor_name

    c, accounts, s = gateway
    for _ in range(3):
        assert (await ask(c, OTHER)).status_code == 200
    await accounts.drain()
    path = s.ledger.path
    assert path is not None
    before = {k.id: sp.spent_usd for k, sp in await get_or_create(path).call(ListKeys())}
    assert before["other"] > 0
    ray.kill(ray.get_actor(actor_name(LEDGER, path), namespace=NAMESPACE), no_restart=True)
    # A new application (what a restart is) gets a new actor, which reads the book from disk.
    _, fresh = await app_on(s)
    after = {k.id: sp.spent_usd for k, sp in await fresh.owner.call(ListKeys())}
    assert after["other"] == pytest.approx(before["other"])
    await fresh.background.stop()


def _request() -> Any:
    from orchestrator.protocol import ChatCompletionRequest

    return ChatCompletionRequest.model_validate({"model": "fake-chat", "messages": MESSAGES, "max_tokens": MAX_TOKENS})


def _lines(caplog: pytest.LogCaptureFixture) -> list[dict[str, Any]]:
    import json

    return [json.loads(r.getMessage()) for r in caplog.records if r.name == "orchestrator.requests"]
