"""Every answer becomes one JSON usage line; a cache hit costs nothing and says what it saved."""

from __future__ import annotations

import json
import logging
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from orchestrator.accounting.prices import Price, Prices
from orchestrator.api import build_app
from orchestrator.app import build_pipeline
from orchestrator.protocol import PromptTokensDetails, Usage
from orchestrator.settings import load_settings
from orchestrator.testing.provider import FakeProvider

PRICE = {"input_per_mtok": 2.0, "output_per_mtok": 10.0}
QUESTION = [{"role": "user", "content": "What is the capital of France?"}]


def test_price_counts_fresh_cached_and_output_tokens() -> None:
    usage = Usage(
        prompt_tokens=1000,
        completion_tokens=500,
        total_tokens=1500,
        prompt_tokens_details=PromptTokensDetails(cached_tokens=400),
    )
    assert Price(2.0, 10.0, 0.5).cost(usage) == pytest.approx((600 * 2 + 400 * 0.5 + 500 * 10) / 1e6)
    assert Price(2.0, 10.0).cost(usage) == pytest.approx((1000 * 2 + 500 * 10) / 1e6)


def test_price_counts_prompt_cache_writes_at_their_own_price() -> None:
    """Anthropic bills the prompt tokens written to its cache at 1.25 x its input price (its usage names them,
    `cache_creation_input_tokens`, and the gateway passes them on as `cache_write_tokens`): they were priced
    as plain input, a quarter of each written token unrecorded."""
    details = PromptTokensDetails(cached_tokens=1000, cache_write_tokens=100)
    usage = Usage(prompt_tokens=1 + 1000 + 100, completion_tokens=10, total_tokens=1111, prompt_tokens_details=details)
    assert Price(1.0, 5.0, 0.1, 1.25).cost(usage) == pytest.approx((1 * 1.0 + 1000 * 0.1 + 100 * 1.25 + 10 * 5) / 1e6)
    assert Price(1.0, 5.0, 0.1).cost(usage) == pytest.approx((101 * 1.0 + 1000 * 0.1 + 10 * 5) / 1e6)  # unset: input's
    presets = Prices.from_providers(load_settings().providers)
    for model in ("claude-3-5-haiku-latest", "claude-sonnet-4-20250514"):
        price = presets.price("anthropic", model)
        assert price.cache_write_per_mtok == pytest.approx(1.25 * price.input_per_mtok)


@pytest.fixture(scope="module")
def fake() -> Iterator[FakeProvider]:
    with FakeProvider(reply="Paris is the capital of France, a city on the Seine.") as p:
        yield p


@pytest.fixture
async def http(fake: FakeProvider, tmp_path: Path) -> AsyncIterator[httpx.AsyncClient]:
    settings = load_settings(
        providers={
            "paid": {
                "base_url": fake.base_url + "/v1",
                "api_key_env": "PAID_KEY",
                "models": {"m": {"id": "paid-model", **PRICE}},
            }
        },
        models={},
        cache={"directory": str(tmp_path / "cache")},
    )
    async with httpx.AsyncClient() as upstream:
        app = build_app(await build_pipeline({}, settings, env={"PAID_KEY": "k"}, client=upstream))
        async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://gw") as c:
            yield c


def records(caplog: pytest.LogCaptureFixture) -> list[dict[str, Any]]:
    return [json.loads(r.getMessage()) for r in caplog.records if r.name == "orchestrator.requests"]


@pytest.mark.parametrize("stream", [False, True], ids=["json", "sse"])
async def test_a_paid_answer_then_its_cache_hit(
    http: httpx.AsyncClient, caplog: pytest.LogCaptureFixture, stream: bool
) -> None:
    caplog.set_level(logging.INFO, logger="orchestrator.requests")
    body = {"model": "paid/m", "messages": QUESTION, "temperature": 0, "stream": stream}
    first = await http.post("/v1/chat/completions", json=body)
    second = await http.post("/v1/chat/completions", json=body)
    assert (first.headers["x-cache"], second.headers["x-cache"]) == ("MISS", "HIT")
    paid, hit = records(caplog)
    expected = (
        paid["prompt_tokens"] * PRICE["input_per_mtok"] + paid["completion_tokens"] * PRICE["output_per_mtok"]
    ) / 1e6
    assert paid["completion_tokens"] > 0 and paid["cost_usd"] == pytest.approx(expected) and expected > 0
    assert (paid["provider"], paid["provider_model"], paid["cache"], paid["stream"], paid["complete"]) == (
        "paid",
        "paid-model",
        "MISS",
        stream,
        True,
    )
    assert (hit["provider"], hit["cache"], hit["cost_usd"]) == ("cache", "HIT", 0.0)
    assert hit["saved_usd"] == pytest.approx(paid["cost_usd"])
    assert hit["completion_tokens"] == paid["completion_tokens"]


async def test_a_broken_stream_is_still_recorded_as_incomplete(
    http: httpx.AsyncClient, fake: FakeProvider, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger="orchestrator.requests")
    fake.set_fault("drop", stall_after=2)
    try:
        r = await http.post("/v1/chat/completions", json={"model": "paid/m", "messages": QUESTION, "stream": True})
    finally:
        fake.clear_fault()
    assert '"error"' in r.text and "[DONE]" not in r.text
    [record] = records(caplog)
    assert record["complete"] is False and record["cache"] == "BYPASS"
