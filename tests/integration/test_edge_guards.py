"""What the edge keeps and shows about keys: key lookups bounded, `/metrics` behind a key.

The app is the real one (`build_pipeline` + `build_accounts` + `build_app`) over a
fake local engine, driven through `httpx.ASGITransport`; the ledger's owner is an
in-process book on a temporary sqlite file.
"""

from __future__ import annotations

import json
import logging
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import httpx
import pytest
from openai_schema import validate

from orchestrator.accounting import accounts as accounting
from orchestrator.accounting.accounts import Accounts, Tab
from orchestrator.accounting.book import Book, CreateKey, InProcessOwner
from orchestrator.accounting.keys import KeyPolicy, hash_key
from orchestrator.accounting.setup import build_accounts
from orchestrator.api import build_app
from orchestrator.app import build_pipeline
from orchestrator.errors import InvalidApiKey
from orchestrator.settings import load_settings
from orchestrator.testing.engine import FakeEngine

KEY = "sk-orch-edge-AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA1"
LATE = "sk-orch-late-BBBBBBBBBBBBBBBBBBBBBBBBBBBBBBBBBBBBBBBBBBBBBB2"
MASTER = "sk-orch-master-MMMMMMMMMMMMMMMMMMMMMMMMMMMMMMMMMMMMMMMMMMM9"
SCRAPER = "sk-orch-scraper-SSSSSSSSSSSSSSSSSSSSSSSSSSSSSSSSSSSSSSSSSSSS8"
QUESTION = [{"role": "user", "content": "What is the capital of France?"}]


def auth(key: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {key}"}


@asynccontextmanager
async def gateway(
    tmp: Path, env: dict[str, str], *, keys: bool = True
) -> AsyncIterator[tuple[httpx.AsyncClient, Accounts]]:
    settings = load_settings(
        cache={"enabled": False},
        ledger={"path": str(tmp / "ledger.sqlite"), "owner": "process", "metrics_key_env": "SCRAPER_KEY"},
        keys={"edge": {"sha256": hash_key(KEY)}} if keys else {},
    )
    engine = FakeEngine("fake-chat")
    book = Book(tmp / "ledger.sqlite")
    pipeline = await build_pipeline({"local": (engine, engine.info())}, settings, env=env)
    accounts = await build_accounts(settings, pipeline, owner=InProcessOwner(book), env=env)
    try:
        async with httpx.AsyncClient(
            transport=httpx.ASGITransport(app=build_app(pipeline, accounts)), base_url="http://gw"
        ) as c:
            yield c, accounts
    finally:
        await accounts.drain()
        await accounts.background.stop()  # type: ignore[attr-defined]
        book.close()


async def chat(c: httpx.AsyncClient, key: str) -> httpx.Response:
    body = {"model": "fake-chat", "messages": QUESTION, "max_tokens": 5}
    return await c.post("/v1/chat/completions", json=body, headers=auth(key))


def bearer(key: str) -> httpx.Headers:
    return httpx.Headers(auth(key))  # case-insensitive, as a request's headers are


def unauthorized(r: httpx.Response) -> dict[str, Any]:
    assert r.status_code == 401, r.text
    validate("ErrorResponse", r.json())
    error: dict[str, Any] = r.json()["error"]
    assert (error["type"], error["code"]) == ("invalid_request_error", "invalid_api_key")
    return error


# ------------------------------------------------------------------------ key lookups


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


async def test_invalid_keys_leave_the_lookup_cache_bounded_in_size_and_age(tmp_path: Path) -> None:
    clock = Clock()
    book = Book(tmp_path / "ledger.sqlite")
    book.create_key(KeyPolicy("edge", hash_key(KEY)))
    accounts = Accounts(owner=InProcessOwner(book), require_keys=True, clock=clock)
    tab = Tab(accounts, "req", "POST", "/v1/chat/completions")
    assert await accounts.authenticate(tab, bearer(KEY)) is not None
    many = accounting.UNKNOWN_KEYS_CACHED + 2_000
    t0 = time.perf_counter()
    for i in range(many):
        with pytest.raises(InvalidApiKey):
            await accounts.authenticate(tab, bearer(f"sk-orch-guess-{i}"))
    assert time.perf_counter() - t0 < 10
    assert accounts.cached_lookups() == accounting.UNKNOWN_KEYS_CACHED + 1  # the known key kept its place
    clock.now += accounting.UNKNOWN_KEY_TTL_S + 0.01
    for i in range(2_000):  # later traffic sheds the expired ones, a few per miss
        with pytest.raises(InvalidApiKey):
            await accounts.authenticate(tab, bearer(f"sk-orch-other-{i}"))
    assert accounts.cached_lookups() == 2_000 + 1
    book.close()


async def test_a_key_created_after_a_miss_works(tmp_path: Path) -> None:
    clock = Clock()
    book = Book(tmp_path / "ledger.sqlite")
    owner = InProcessOwner(book)
    accounts = Accounts(owner=owner, require_keys=True, clock=clock)
    tab = Tab(accounts, "req", "POST", "/v1/chat/completions")
    with pytest.raises(InvalidApiKey):
        await accounts.authenticate(tab, bearer(LATE))
    # Made through another replica's admin API: this one learns of it once its miss expires.
    assert await owner.call(CreateKey(KeyPolicy("late", hash_key(LATE), source="admin"))) is not None
    clock.now += accounting.UNKNOWN_KEY_TTL_S + 0.01
    policy = await accounts.authenticate(tab, bearer(LATE))
    assert policy is not None and policy.id == "late"
    book.close()


# ------------------------------------------------------------------------- /metrics


async def test_with_keys_required_metrics_take_the_master_or_the_metrics_key(tmp_path: Path) -> None:
    env = {"ORCHESTRATOR_MASTER_KEY": MASTER, "SCRAPER_KEY": SCRAPER}
    async with gateway(tmp_path, env) as (c, _):
        assert (await chat(c, KEY)).status_code == 200
        unauthorized(await c.get("/metrics"))
        unauthorized(await c.get("/metrics", headers=auth(KEY)))  # a client's key: not its business
        unauthorized(await c.get("/metrics", headers=auth("sk-orch-wrong")))
        for key in (MASTER, SCRAPER):
            r = await c.get("/metrics", headers=auth(key))
            assert r.status_code == 200 and 'key="edge"' in r.text
        r = await c.get("/metrics", headers={"x-api-key": SCRAPER})
        assert r.status_code == 200


async def test_keys_in_config_and_no_master_key_close_metrics(tmp_path: Path) -> None:
    async with gateway(tmp_path, {}) as (c, _):
        unauthorized(await c.get("/metrics"))
        unauthorized(await c.get("/metrics", headers=auth(KEY)))
        assert (await c.get("/health")).status_code == 200  # health stays open


async def test_an_open_endpoint_keeps_metrics_open_unless_a_metrics_key_is_set(tmp_path: Path) -> None:
    async with gateway(tmp_path, {}, keys=False) as (c, _):
        assert (await c.get("/metrics")).status_code == 200
    async with gateway(tmp_path, {"SCRAPER_KEY": SCRAPER}, keys=False) as (c, _):
        assert (await chat(c, "anything")).status_code == 200  # the endpoint itself is still open
        unauthorized(await c.get("/metrics"))
        assert (await c.get("/metrics", headers=auth(SCRAPER))).status_code == 200


async def test_behind_an_ingress_that_ids_requests_the_client_gets_one_request_id(
    caplog: pytest.LogCaptureFixture,
) -> None:
    # Ray Serve puts its x-request-id on the request and answers with it: the gateway adds none of its own,
    # and the request's log line carries Serve's id beside the gateway's.
    engine = FakeEngine("fake-chat")
    app = build_app(await build_pipeline({"local": (engine, engine.info())}), ingress_request_ids=True)
    caplog.set_level(logging.INFO, logger="orchestrator.requests")
    body = {"model": "fake-chat", "messages": [{"role": "user", "content": "hi"}]}
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://t") as c:
        behind = await c.post("/v1/chat/completions", json=body, headers={"x-request-id": "serve-123\x7f"})
        bare = await c.post("/v1/chat/completions", json=body)
    assert behind.status_code == 200 and "x-request-id" not in behind.headers
    assert bare.headers["x-request-id"].startswith("req_")  # no ingress id: the gateway's own
    lines = [json.loads(r.getMessage()) for r in caplog.records if r.name == "orchestrator.requests"]
    assert lines[0]["ingress_request_id"] == "serve-123" and lines[0]["request_id"].startswith("req_")
    assert lines[1]["ingress_request_id"] is None
