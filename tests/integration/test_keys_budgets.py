"""Virtual keys, budgets, the admin API, reports, metrics and the request log, through HTTP.

The app is the real one (`build_pipeline` + `build_accounts` + `build_app`) over a
fake local engine and a fake paid provider on a real socket; the ledger's owner
is an in-process book on a temporary sqlite file (the Ray actor has its own test).
"""

from __future__ import annotations

import asyncio
import json
import logging
import time
from collections.abc import AsyncIterator, Iterator, Mapping
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import httpx
import pytest
from loopback import serving
from openai_schema import validate
from prometheus_client.parser import text_string_to_metric_families

from local_models.catalog import prepare
from local_models.interface import LoadStats, ModelInfo
from orchestrator.accounting.book import Book, InProcessOwner, Query
from orchestrator.accounting.keys import hash_key
from orchestrator.accounting.reports import usage_report
from orchestrator.accounting.setup import build_accounts
from orchestrator.api import build_app
from orchestrator.app import build_pipeline
from orchestrator.scheduling.load import BoardState, LoadBoard, LoadView
from orchestrator.settings import Settings, load_settings
from orchestrator.testing.engine import FakeEngine
from orchestrator.testing.provider import FakeProvider

KEY_A = "sk-orch-team-a-AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA1"
KEY_B = "sk-orch-team-b-BBBBBBBBBBBBBBBBBBBBBBBBBBBBBBBBBBBBBBBBBBB2"
KEY_SOFT = "sk-orch-soft-CCCCCCCCCCCCCCCCCCCCCCCCCCCCCCCCCCCCCCCCCCCCC3"
KEY_RPM = "sk-orch-rpm-DDDDDDDDDDDDDDDDDDDDDDDDDDDDDDDDDDDDDDDDDDDDDD4"
MASTER = "sk-orch-master-MMMMMMMMMMMMMMMMMMMMMMMMMMMMMMMMMMMMMMMMMMM9"
SECRETS = (KEY_A, KEY_B, KEY_SOFT, KEY_RPM, MASTER)

BIG = {"input_per_mtok": 2.0, "output_per_mtok": 10.0}
SMALL = {"input_per_mtok": 0.1, "output_per_mtok": 0.2}
REF = {"input_per_mtok": 1.0, "output_per_mtok": 4.0}
GPU_PER_HOUR = 3.6  # with the floors below: $1e-6 per prompt token, $1e-5 per output token
QUESTION = [{"role": "user", "content": "What is the capital of France?"}]


def auth(key: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {key}"}


@pytest.fixture(scope="module")
def paid() -> Iterator[FakeProvider]:
    with FakeProvider(reply="Paris is the capital of France, a city on the Seine.") as p:
        yield p


@pytest.fixture(scope="module")
def tokenizer_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return prepare("tiny-random", tmp_path_factory.mktemp("models"), progress=False).path


def settings_for(paid: FakeProvider, tmp: Path, **overrides: Any) -> Settings:
    base: dict[str, Any] = {
        "providers": {
            "paid": {
                "base_url": paid.base_url + "/v1",
                "api_key_env": "PAID_KEY",
                "models": {
                    "big": {"id": "paid-big", **BIG},
                    "small": {"id": "paid-small", **SMALL},
                    "ref": {"id": "paid-ref", **REF},
                    "embed": {"id": "paid-embed", "kind": "embedding", "input_per_mtok": 0.5},
                },
            },
            "quiet": {  # never reports usage in streams
                "base_url": paid.base_url + "/v1",
                "api_key_env": "PAID_KEY",
                "quirks": {"stream_usage": False},
                "models": {"m": {"id": "quiet-model", **BIG}},
            },
        },
        "models": {},
        "cache": {"directory": str(tmp / "cache")},
        "ledger": {
            "path": str(tmp / "ledger.sqlite"),
            "owner": "process",
            "reference_model": "paid/ref",
            "gpu_price_per_hour": GPU_PER_HOUR,
            "min_decode_tokens_per_s": 100,
            "min_prefill_tokens_per_s": 1000,
        },
        "keys": {
            "team-a": {"sha256": hash_key(KEY_A), "budget_usd": 0.0005, "period": "day"},
            "team-b": {"sha256": hash_key(KEY_B), "budget_usd": 10.0},
            "soft": {
                "sha256": hash_key(KEY_SOFT),
                "soft_limit_usd": 0.0001,
                "downgrade_to": "paid/small",
                "models": ["paid/big"],
            },
            "rpm": {"sha256": hash_key(KEY_RPM), "rpm": 2, "models": ["fake-chat", "paid/big"]},
        },
    }
    base.update(overrides)
    return load_settings(local={"model": "fake-chat"}, **base)  # the FakeEngine's name, which a key names


@asynccontextmanager
async def gateway(
    settings: Settings,
    engine: FakeEngine,
    env: dict[str, str],
    info: ModelInfo | None = None,
    *,
    live: bool = False,
    load: LoadView | None = None,
    **app_options: Any,
) -> AsyncIterator[tuple[httpx.AsyncClient, Any]]:
    """The app and its accounts; `live`: served on a loopback socket (a client can leave mid-answer),
    else in-process through `ASGITransport`; `load`: the gateway's view of a load board."""

    async def stats() -> LoadStats:
        return engine.stats()

    info = info or engine.info()
    async with httpx.AsyncClient() as upstream:
        pipeline = await build_pipeline({"local": (engine, info)}, settings, env=env, client=upstream, load=load)
        path = settings.ledger.path
        assert path is not None
        book = Book(path)
        accounts = await build_accounts(
            settings, pipeline, local={"local": (stats, info)}, owner=InProcessOwner(book), env=env
        )
        app = build_app(pipeline, accounts, **app_options)
        try:
            if live:
                async with serving(app) as url, httpx.AsyncClient(base_url=url, timeout=30) as c:
                    yield c, accounts
            else:
                async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://gw") as c:
                    yield c, accounts
        finally:
            await accounts.drain()
            await accounts.background.stop()
            book.close()


ENV = {"PAID_KEY": "sk-upstream-paid", "ORCHESTRATOR_MASTER_KEY": MASTER}


@pytest.fixture
async def gw(paid: FakeProvider, tmp_path: Path) -> AsyncIterator[tuple[httpx.AsyncClient, Any]]:
    async with gateway(settings_for(paid, tmp_path), FakeEngine("fake-chat"), ENV) as g:
        yield g


def records(caplog: pytest.LogCaptureFixture) -> list[dict[str, Any]]:
    return [json.loads(r.getMessage()) for r in caplog.records if r.name == "orchestrator.requests"]


async def chat(c: httpx.AsyncClient, key: str | None, model: str = "paid/big", **extra: Any) -> httpx.Response:
    body = {"model": model, "messages": QUESTION, "max_tokens": 20, **extra}
    return await c.post("/v1/chat/completions", json=body, headers=auth(key) if key else {})


def error_of(r: httpx.Response, status: int) -> dict[str, Any]:
    assert r.status_code == status, r.text
    validate("ErrorResponse", r.json())
    error: dict[str, Any] = r.json()["error"]
    return error


# ------------------------------------------------------------------------------ keys


@pytest.mark.parametrize("stream", [False, True], ids=["whole", "stream"])
async def test_the_local_engine_is_told_whose_request_it_queues(
    paid: FakeProvider, tmp_path: Path, stream: bool
) -> None:
    """The engine queues tenants fairly (local_models/fairness.py): each request carries its key's id, never
    the key; on an open endpoint everyone is one tenant."""
    engine = FakeEngine("fake-chat")
    async with gateway(settings_for(paid, tmp_path), engine, ENV) as (c, _):
        for key in (KEY_A, KEY_B, KEY_A):
            assert (await chat(c, key, model="fake-chat", stream=stream)).status_code == 200
    assert [g.request["tenant"] for g in engine.generations] == ["key:team-a", "key:team-b", "key:team-a"]
    engine = FakeEngine("fake-chat")
    async with gateway(settings_for(paid, tmp_path / "open", keys={}), engine, {"PAID_KEY": "x"}) as (c, _):
        assert (await chat(c, None, model="fake-chat", stream=stream)).status_code == 200
    assert [g.request["tenant"] for g in engine.generations] == ["open"]


async def test_one_key_spends_at_most_its_share_of_the_burst_budget(paid: FakeProvider, tmp_path: Path) -> None:
    """A key that asks for a first token no local model gives (`x-ttft-slo-ms: 1e-300`) on every request spills
    each one and spends the hour's overflow budget; past its share (half), its requests wait for the local
    model, and the other key's requests still spill with the rest of the budget. Spend is counted across
    gateways by the load board, by key; spills asked at once count what they may cost while they run."""
    engine = FakeEngine("fake-chat")
    board = LoadBoard(max_age_s=5.0)

    async def read(overflow: Mapping[str, int]) -> BoardState:
        board.report("fake-chat", "replica-1", engine.stats())
        return board.read("gateway-1", overflow)

    async def report(by_tenant: Mapping[str, float]) -> None:
        board.spent(by_tenant)

    view = LoadView(read, report=report, max_staleness_s=5.0)
    await view.poll_once()
    # A spilled answer here costs ~$0.00012 (its prompt and 12 words at paid/big's prices): two of them
    # pass a key's half of $0.0004, and two of the other key's.
    settings = settings_for(
        paid,
        tmp_path,
        models={"auto": {"routes": ["fake-chat", "paid/big"]}},
        scheduler={"overflow_budget_usd_per_hour": 0.0004, "hedge_at": None},
    )
    tight = {"x-ttft-slo-ms": "1e-300"}

    asked = iter(range(100))

    async def ask(c: httpx.AsyncClient, key: str) -> str:
        question = [{"role": "user", "content": f"Question {next(asked)}: what is the capital of France?"}]
        r = await c.post(
            "/v1/chat/completions",
            json={"model": "auto", "messages": question, "max_tokens": 20},
            headers={**auth(key), **tight},
        )
        assert r.status_code == 200, r.text
        await asyncio.sleep(0.05)  # the spend report reaches the board
        await view.poll_once()
        return f"{r.headers['x-served-by']}: {r.headers['x-route-reason'].split(':')[0]}"

    async with gateway(settings, engine, ENV, load=view) as (c, _):
        paid.ttft_ms = 300.0  # three asked at once: each spill's cost is known only as it ends
        try:
            at_once = sorted(await asyncio.gather(*(ask(c, KEY_B) for _ in range(3))))
        finally:
            paid.ttft_ms = 0.0
        # What the first may cost counted while it ran: the others waited for the local model.
        assert at_once == ["local/fake-chat: budget", "local/fake-chat: budget", "paid/paid-big: spill"]
        assert [await ask(c, KEY_B) for _ in range(2)] == [
            "paid/paid-big: spill",
            "local/fake-chat: budget",  # team-b's share is spent
        ]
        assert [await ask(c, KEY_A) for _ in range(3)] == [
            "paid/paid-big: spill",  # the rest of the budget is team-a's
            "paid/paid-big: spill",
            "local/fake-chat: budget",  # its share (and the hour's budget) spent
        ]
    spent = board.read().get("overflow_spent_by_tenant", {})
    assert set(spent) == {"key:team-a", "key:team-b"} and spent["key:team-a"] == pytest.approx(spent["key:team-b"])


async def test_with_keys_configured_a_request_needs_a_valid_key(gw: tuple[httpx.AsyncClient, Any]) -> None:
    c, _ = gw
    missing = error_of(await chat(c, None), 401)
    assert (missing["type"], missing["code"]) == ("invalid_request_error", "invalid_api_key")
    wrong = error_of(await chat(c, "sk-orch-not-a-key"), 401)
    assert wrong["code"] == "invalid_api_key" and "sk-orch-not-a-key" not in json.dumps(wrong)
    # The master key asks no model; the answer says so (an operator's first try), not "incorrect".
    master = error_of(await chat(c, MASTER), 401)
    assert master["code"] == "invalid_api_key" and "POST /admin/keys" in master["message"]
    assert MASTER not in json.dumps(master)
    ok = await chat(c, KEY_B)
    assert ok.status_code == 200, ok.text
    validate("CreateChatCompletionResponse", ok.json())
    assert ok.headers["x-request-id"].startswith("req_")
    assert float(ok.headers["x-gateway-overhead-ms"]) >= 0
    # x-api-key works too (Anthropic's SDK sends it), and /v1/models needs a key as well.
    assert (await c.get("/v1/models")).status_code == 401
    listed = await c.get("/v1/models", headers={"x-api-key": KEY_RPM})
    assert sorted(m["id"] for m in listed.json()["data"]) == ["fake-chat", "paid/big"]
    # One model: a key sees its own; one it may not use is as unknown as one that doesn't exist.
    assert (await c.get("/v1/models/paid/big", headers={"x-api-key": KEY_RPM})).json()["id"] == "paid/big"
    hidden = await c.get("/v1/models/paid/small", headers={"x-api-key": KEY_RPM})
    assert error_of(hidden, 404)["code"] == "model_not_found"
    assert (await c.get("/v1/models/paid/small")).status_code == 401


async def test_models_a_key_may_not_use(gw: tuple[httpx.AsyncClient, Any]) -> None:
    c, _ = gw
    denied = error_of(await chat(c, KEY_RPM, model="paid/small"), 403)
    assert (denied["code"], denied["param"]) == ("model_not_found", "model")
    unknown = error_of(await chat(c, KEY_RPM, model="no-such-model"), 404)
    assert unknown["code"] == "model_not_found"


async def test_rpm_limit_is_a_429_with_retry_after(gw: tuple[httpx.AsyncClient, Any]) -> None:
    c, _ = gw
    for _ in range(3):  # a client mistake the edge refuses is no request of the minute's (a bad cache ttl was)
        assert error_of(await chat(c, KEY_RPM, model="fake-chat", cache={"ttl": -1}), 400)["param"] == "cache.ttl"
    assert (await chat(c, KEY_RPM, model="fake-chat")).status_code == 200
    assert (await chat(c, KEY_RPM, model="fake-chat")).status_code == 200
    r = await chat(c, KEY_RPM, model="fake-chat")
    error = error_of(r, 429)
    assert (error["type"], error["code"]) == ("requests", "rate_limit_exceeded")
    assert 50 <= int(r.headers["retry-after"]) <= 60
    assert (await chat(c, KEY_B, model="fake-chat")).status_code == 200  # other keys are not limited


async def test_two_keys_one_refused_at_its_budget_the_other_working_and_spend_survives_a_restart(
    paid: FakeProvider, tmp_path: Path
) -> None:
    settings = settings_for(paid, tmp_path)
    async with gateway(settings, FakeEngine("fake-chat"), ENV) as (c, _):
        statuses = []
        for _ in range(20):
            r = await chat(c, KEY_A)
            statuses.append(r.status_code)
            if r.status_code != 200:
                break
        assert statuses[0] == 200 and statuses[-1] == 429, statuses
        error = error_of(r, 429)
        assert (error["type"], error["code"]) == ("insufficient_quota", "insufficient_quota")
        assert int(r.headers["retry-after"]) > 0  # until the day's period ends
        assert (await chat(c, KEY_B)).status_code == 200
        listed = (await c.get("/admin/keys", headers=auth(MASTER))).json()["data"]
        spent = {k["id"]: k["spend"]["usd"] for k in listed}
        assert spent["team-a"] >= 0.0005

    # A new app on the same ledger file (what a restart is): the spend is still there.
    async with gateway(settings, FakeEngine("fake-chat"), ENV) as (c, _):
        assert error_of(await chat(c, KEY_A), 429)["code"] == "insufficient_quota"
        assert (await chat(c, KEY_B)).status_code == 200
        listed = (await c.get("/admin/keys", headers=auth(MASTER))).json()["data"]
        assert {k["id"]: k["spend"]["usd"] for k in listed}["team-a"] == pytest.approx(spent["team-a"])


async def test_a_config_keys_spend_follows_it_into_the_period_a_new_config_gives_it(
    paid: FakeProvider, tmp_path: Path
) -> None:
    settings = settings_for(paid, tmp_path)
    async with gateway(settings, FakeEngine("fake-chat"), ENV) as (c, _):
        while (r := await chat(c, KEY_A)).status_code == 200:
            pass
        assert error_of(r, 429)["code"] == "insufficient_quota"  # its day's budget spent
        spent = (await c.get("/admin/keys/team-a", headers=auth(MASTER))).json()["spend"]

    keys = settings.model_dump()["keys"]
    keys["team-a"]["period"] = "month"  # the config changed, the ledger the same: the month holds today
    async with gateway(settings_for(paid, tmp_path, keys=keys), FakeEngine("fake-chat"), ENV) as (c, _):
        assert error_of(await chat(c, KEY_A), 429)["code"] == "insufficient_quota"
        moved = (await c.get("/admin/keys/team-a", headers=auth(MASTER))).json()["spend"]
        assert (moved["usd"], moved["tokens"]) == (pytest.approx(spent["usd"]), spent["tokens"])


@pytest.mark.parametrize("stream", [False, True], ids=["json", "sse"])
async def test_past_the_soft_limit_requests_downgrade_and_say_so(
    gw: tuple[httpx.AsyncClient, Any], stream: bool
) -> None:
    c, _ = gw
    first = await chat(c, KEY_SOFT, stream=stream)
    assert first.status_code == 200 and "x-budget-downgrade" not in first.headers
    second = await chat(c, KEY_SOFT, stream=stream)
    assert second.status_code == 200, second.text
    assert second.headers["x-budget-downgrade"].startswith("paid/big -> paid/small")
    assert second.headers["x-served-by"] == "paid/paid-small"


async def test_a_requests_tools_are_reserved_as_the_prompt_they_are(gw: tuple[httpx.AsyncClient, Any]) -> None:
    """A provider bills tool definitions as prompt; the reservation counted only the messages, so more
    concurrent requests with 100 KB of tools each got in than the budget holds one of (a helper's run, 30
    requests under a $0.01 budget against an upstream that bills tools: $3.91 spent). Now the first one's
    reservation covers its tools, and the rest are refused in OpenAI's shape."""
    c, _ = gw
    tools = [
        {"type": "function", "function": {"name": f"tool_{i}", "description": "x" * 1000, "parameters": {}}}
        for i in range(100)
    ]
    answers = await asyncio.gather(*(chat(c, KEY_A, tools=tools, tool_choice="none") for _ in range(20)))
    assert sum(r.status_code == 200 for r in answers) == 1
    assert all(error_of(r, 429)["code"] == "insufficient_quota" for r in answers if r.status_code != 200)


# ------------------------------------------------------------------------------ admin


async def test_admin_creates_lists_and_deletes_keys(gw: tuple[httpx.AsyncClient, Any]) -> None:
    c, _ = gw
    assert error_of(await c.get("/admin/keys"), 401)["code"] == "invalid_api_key"
    assert error_of(await c.get("/admin/keys", headers=auth(KEY_B)), 401)["code"] == "invalid_api_key"
    made = await c.post("/admin/keys", json={"id": "new-team", "budget_usd": 1, "rpm": 100}, headers=auth(MASTER))
    assert made.status_code == 201, made.text
    key = made.json()["key"]
    assert key.startswith("sk-orch-") and "sha256" not in made.json()
    assert (await chat(c, key, model="fake-chat")).status_code == 200
    listed = (await c.get("/admin/keys", headers=auth(MASTER))).json()["data"]
    new = next(k for k in listed if k["id"] == "new-team")
    assert new["source"] == "admin" and new["spend"]["tokens"] > 0 and key not in json.dumps(listed)
    again = await c.post("/admin/keys", json={"id": "new-team"}, headers=auth(MASTER))
    assert error_of(again, 400)["code"] == "key_exists"
    # A typo in a model name is a 400 naming the field, not a key that can never be used.
    typos = [
        ({"id": "t", "models": ["fake-chat", "nope"]}, "models[1]"),
        ({"id": "t", "downgrade_to": "nope"}, "downgrade_to"),
    ]
    for body, param in typos:
        typo = error_of(await c.post("/admin/keys", json=body, headers=auth(MASTER)), 400)
        assert (typo["param"], typo["code"]) == (param, "invalid_value") and "'nope'" in typo["message"]
    garbled = error_of(await c.post("/admin/keys", content=b"{", headers=auth(MASTER)), 400)
    assert garbled["message"].startswith("We could not parse the JSON body") and "None" not in garbled["message"]
    assert (await c.delete("/admin/keys/new-team", headers=auth(MASTER))).json()["deleted"] is True
    assert error_of(await chat(c, key, model="fake-chat"), 401)["code"] == "invalid_api_key"
    assert error_of(await c.delete("/admin/keys/new-team", headers=auth(MASTER)), 404)["code"] == "not_found"
    # Its id is not given to another key: that key would see its stored responses, cache entries and spend.
    reused = error_of(await c.post("/admin/keys", json={"id": "new-team"}, headers=auth(MASTER)), 400)
    assert reused["code"] == "key_exists" and "was deleted" in reused["message"] and reused["param"] == "id"


async def test_admin_changes_a_keys_limits_and_the_gateway_holds_it_to_them(
    gw: tuple[httpx.AsyncClient, Any],
) -> None:
    c, _ = gw
    made = (await c.post("/admin/keys", json={"id": "growing", "rpm": 1000}, headers=auth(MASTER))).json()
    key = made["key"]
    assert (await chat(c, key, model="fake-chat")).status_code == 200
    changed = await c.patch("/admin/keys/growing", json={"rpm": 2, "models": ["fake-chat"]}, headers=auth(MASTER))
    assert changed.status_code == 200, changed.text
    assert (changed.json()["rpm"], changed.json()["models"]) == (2, ["fake-chat"]) and key not in changed.text
    # At once on this replica: the minute's second request is its last, another model is not its own.
    assert error_of(await chat(c, key, model="paid/big"), 403)["code"] == "model_not_found"
    assert (await chat(c, key, model="fake-chat")).status_code == 200
    assert error_of(await chat(c, key, model="fake-chat"), 429)["code"] == "rate_limit_exceeded"
    # A null lifts a limit; the fields not given stay; the spend is the key's still.
    lifted = (await c.patch("/admin/keys/growing", json={"rpm": None}, headers=auth(MASTER))).json()
    assert lifted["rpm"] is None and lifted["models"] == ["fake-chat"]
    assert (await chat(c, key, model="fake-chat")).status_code == 200
    shown = (await c.get("/admin/keys/growing", headers=auth(MASTER))).json()
    assert shown["id"] == "growing" and shown["spend"]["tokens"] > 0 and "key" not in shown
    # Wrong fields, values and models are 400s naming the field; the key is unchanged by them.
    for body, param in [
        ({"rpm": 0}, "rpm"),
        ({"period": None}, "period"),
        ({"id": "other"}, "id"),
        ({"budget_usd": "lots"}, "budget_usd"),
        ({"models": ["nope"]}, "models[0]"),
        ({"downgrade_to": "x" * 100_000}, "downgrade_to"),
    ]:
        error = error_of(await c.patch("/admin/keys/growing", json=body, headers=auth(MASTER)), 400)
        assert error["param"] == param and len(error["message"]) < 300  # a long value is not echoed whole
    assert (await c.get("/admin/keys/growing", headers=auth(MASTER))).json()["models"] == ["fake-chat"]


async def test_a_keys_spend_follows_it_into_a_new_period(gw: tuple[httpx.AsyncClient, Any]) -> None:
    """A key moved to another period (month to week, to its whole life, to a day and back) still has what it spent
    in the new period's time: its budget holds it to that, and it never starts again from nothing."""
    c, _ = gw
    key = (await c.post("/admin/keys", json={"id": "moved", "budget_usd": 5}, headers=auth(MASTER))).json()["key"]
    for _ in range(2):
        assert (await chat(c, key)).status_code == 200
    month = (await c.get("/admin/keys/moved", headers=auth(MASTER))).json()["spend"]
    assert month["usd"] > 0 and month["tokens"] > 0
    for period in ("week", "total", "day", "month"):
        moved = await c.patch("/admin/keys/moved", json={"period": period}, headers=auth(MASTER))
        assert moved.status_code == 200, moved.text
        spend = (await c.get("/admin/keys/moved", headers=auth(MASTER))).json()["spend"]
        assert (spend["usd"], spend["tokens"]) == (pytest.approx(month["usd"]), month["tokens"]), period
    # Spent now counts in the period the key has now, and a budget under it is spent.
    assert (await chat(c, key)).status_code == 200
    again = (await c.get("/admin/keys/moved", headers=auth(MASTER))).json()["spend"]
    assert again["usd"] > month["usd"] and again["tokens"] > month["tokens"]
    await c.patch("/admin/keys/moved", json={"period": "total", "budget_usd": again["usd"]}, headers=auth(MASTER))
    assert error_of(await chat(c, key), 429)["code"] == "insufficient_quota"


async def test_admin_rotates_a_key_its_spend_and_data_kept_the_old_secret_refused(
    gw: tuple[httpx.AsyncClient, Any],
) -> None:
    c, _ = gw
    old = (await c.post("/admin/keys", json={"id": "leaked", "budget_usd": 5}, headers=auth(MASTER))).json()["key"]
    stored = await c.post("/v1/responses", json={"model": "fake-chat", "input": "hi"}, headers=auth(old))
    assert stored.status_code == 200, stored.text
    spent = (await c.get("/admin/keys/leaked", headers=auth(MASTER))).json()["spend"]
    rotated = await c.post("/admin/keys/leaked/rotate", headers=auth(MASTER))
    assert rotated.status_code == 200, rotated.text
    new = rotated.json()["key"]
    assert new.startswith("sk-orch-") and new != old and rotated.json()["budget_usd"] == 5
    assert error_of(await chat(c, old, model="fake-chat"), 401)["code"] == "invalid_api_key"
    # The same tenant under its new secret: its stored response and its spend.
    again = await c.get(f"/v1/responses/{stored.json()['id']}", headers=auth(new))
    assert again.status_code == 200 and again.json()["id"] == stored.json()["id"]
    assert (await c.get("/admin/keys/leaked", headers=auth(MASTER))).json()["spend"] == spent
    assert (await chat(c, new, model="fake-chat")).status_code == 200


async def test_the_admin_api_changes_only_the_keys_it_made(gw: tuple[httpx.AsyncClient, Any]) -> None:
    c, _ = gw
    for call in (
        c.patch("/admin/keys/team-b", json={"rpm": 1}, headers=auth(MASTER)),
        c.post("/admin/keys/team-b/rotate", headers=auth(MASTER)),
    ):
        error = error_of(await call, 400)
        assert (error["code"], error["param"]) == ("key_from_config", "id") and "config" in error["message"]
    assert (await chat(c, KEY_B, model="fake-chat")).status_code == 200  # unchanged, its secret too
    for call in (
        c.get("/admin/keys/nobody", headers=auth(MASTER)),
        c.patch("/admin/keys/nobody", json={}, headers=auth(MASTER)),
        c.post("/admin/keys/nobody/rotate", headers=auth(MASTER)),
    ):
        assert error_of(await call, 404)["code"] == "not_found"
    for call in (c.patch("/admin/keys/team-b", json={}, headers=auth(KEY_B)), c.get("/admin/keys/team-b")):
        assert error_of(await call, 401)["code"] == "invalid_api_key"


async def test_without_a_master_key_there_is_no_admin_api(paid: FakeProvider, tmp_path: Path) -> None:
    async with gateway(settings_for(paid, tmp_path), FakeEngine("fake-chat"), {"PAID_KEY": "k"}) as (c, _):
        assert error_of(await c.get("/admin/keys", headers=auth(MASTER)), 401)["code"] == "invalid_api_key"


# ------------------------------------------------------------------------------ reports


async def test_savings_report_reproduces_from_the_request_log(
    gw: tuple[httpx.AsyncClient, Any], caplog: pytest.LogCaptureFixture
) -> None:
    c, accounts = gw
    caplog.set_level(logging.INFO, logger="orchestrator.requests")
    for i in range(3):
        for model in ("fake-chat", "paid/big", "paid/small"):
            for stream in (False, True):
                r = await chat(c, KEY_B, model=model, stream=stream, temperature=0, seed=i % 2)
                assert r.status_code == 200, r.text
    await chat(c, None)  # a 401: in the log, costs nothing
    await accounts.drain()
    report = (await c.get("/admin/usage", headers=auth(MASTER))).json()

    lines = records(caplog)
    assert len(lines) == 19 and {line["cache"] for line in lines if line["status"] == 200} == {"HIT", "MISS"}
    reference = sum(
        (line["prompt_tokens"] or 0) * REF["input_per_mtok"] / 1e6
        + (line["completion_tokens"] or 0) * REF["output_per_mtok"] / 1e6
        for line in lines
    )
    actual = sum(line["cost_usd"] or 0.0 for line in lines)
    assert reference - actual > 0
    assert report["savings"]["saved_usd"] == pytest.approx(reference - actual, rel=0.01)
    assert report["savings"]["reference_model"] == "paid/ref"
    assert set(report["by_route"]) == {"local", "remote", "cache", "none"}
    assert report["by_key"]["team-b"]["requests"] == 18
    assert set(report["by_provider"]) >= {"local", "paid", "cache"}
    # Local answers cost the GPU's amortized price, to the token.
    local = next(line for line in lines if line["provider"] == "local")
    assert local["cost_usd"] == pytest.approx(local["prompt_tokens"] * 1e-6 + local["completion_tokens"] * 1e-5)


async def test_every_request_is_one_json_line_with_its_id_and_key_id(
    gw: tuple[httpx.AsyncClient, Any], caplog: pytest.LogCaptureFixture
) -> None:
    c, _ = gw
    caplog.set_level(logging.INFO, logger="orchestrator.requests")
    ok = await chat(c, KEY_B, stream=True)
    denied = await chat(c, KEY_RPM, model="paid/small")
    [first, second] = records(caplog)
    assert first["request_id"] == ok.headers["x-request-id"] and second["request_id"] == denied.headers["x-request-id"]
    assert (first["key_id"], first["status"], first["route"], first["provider"]) == ("team-b", 200, "remote", "paid")
    assert first["latency_ms"] >= first["ttft_ms"] > 0 and first["overhead_ms"] >= 0
    assert first["route_reason"] and first["completion_tokens"] > 0 and first["cost_usd"] > 0
    assert (second["status"], second["error"], second["key_id"]) == (403, "model_not_found", "rpm")


async def test_a_long_unknown_path_is_logged_by_its_first_200_characters(
    gw: tuple[httpx.AsyncClient, Any], caplog: pytest.LogCaptureFixture
) -> None:
    """A 404 needs no key: each GET of a 60 kB path wrote 60 kB into the ledger's request log (and the log
    line), so anyone could grow the shared ledger, and slow every reader of it, at will."""
    c, accounts = gw
    caplog.set_level(logging.INFO, logger="orchestrator.requests")
    path = "/v1/" + "A" * 60_000
    assert (await c.get(path)).status_code == 404
    await accounts.drain()
    [row] = records(caplog)
    assert row["endpoint"] == path[:200]
    logged = await accounts.owner.call(Query(lambda db: db.execute("SELECT endpoint FROM requests").fetchall()))
    assert logged == [(path[:200],)]


async def test_streams_without_usage_are_counted_with_the_tokenizer(
    paid: FakeProvider, tmp_path: Path, tokenizer_dir: Path, caplog: pytest.LogCaptureFixture
) -> None:
    from transformers import AutoTokenizer

    engine = FakeEngine("fake-chat")
    info = ModelInfo(**engine.info(), tokenizer_path=str(tokenizer_dir))  # type: ignore[typeddict-item]
    caplog.set_level(logging.INFO, logger="orchestrator.requests")
    async with gateway(settings_for(paid, tmp_path, keys={}), engine, {"PAID_KEY": "k"}, info) as (c, _):
        r = await c.post("/v1/chat/completions", json={"model": "quiet/m", "messages": QUESTION, "stream": True})
        assert r.status_code == 200 and "[DONE]" in r.text
        told = await c.post("/v1/chat/completions", json={"model": "paid/big", "messages": QUESTION, "stream": True})
        assert told.status_code == 200
    quiet, reported = records(caplog)
    tok = AutoTokenizer.from_pretrained(str(tokenizer_dir))
    reply = "Paris is the capital of France, a city on the Seine."
    prompt = len(tok.encode(tok.apply_chat_template(QUESTION, add_generation_prompt=True, tokenize=False)))
    assert prompt > 10  # the template's tokens and the question's
    assert quiet["estimated"] is True and reported["estimated"] is False
    completion = len(tok.encode(reply, add_special_tokens=False))
    assert (quiet["prompt_tokens"], quiet["completion_tokens"]) == (prompt, completion)
    assert quiet["cost_usd"] == pytest.approx((prompt * 2.0 + quiet["completion_tokens"] * 10.0) / 1e6)


async def test_without_a_tokenizer_streams_without_usage_are_estimated_from_bytes_not_free(
    paid: FakeProvider, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """A gateway whose node has no tokenizer (the engine's directory on another node): a stream that
    reported no usage, or that broke off before its usage came, was recorded at 0 tokens and $0, so a
    key's budget never saw it. Now it is estimated at 4 bytes a token, and says so."""
    caplog.set_level(logging.INFO, logger="orchestrator.requests")
    async with gateway(settings_for(paid, tmp_path), FakeEngine("fake-chat"), ENV) as (c, _):
        body = {"model": "quiet/m", "messages": QUESTION, "stream": True}
        r = await c.post("/v1/chat/completions", json=body, headers=auth(KEY_B))
        assert r.status_code == 200 and "[DONE]" in r.text
        paid.set_fault("drop", stall_after=3, fail_times=1)  # the provider's stream breaks off
        broken = await c.post("/v1/chat/completions", json={**body, "model": "paid/big"}, headers=auth(KEY_B))
        assert broken.status_code == 200 and '"error"' in broken.text and "[DONE]" not in broken.text
    quiet, cut = records(caplog)[-2:]
    reply = "Paris is the capital of France, a city on the Seine."
    prompt = -(-(len(QUESTION[0]["content"].encode()) + 8) // 4)  # the question's bytes and a message's markers
    estimate = (True, prompt, -(-len(reply) // 4))
    assert (quiet["estimated"], quiet["prompt_tokens"], quiet["completion_tokens"]) == estimate
    assert quiet["cost_usd"] == pytest.approx((prompt * 2.0 + quiet["completion_tokens"] * 10.0) / 1e6)
    assert (cut["estimated"], cut["complete"], cut["prompt_tokens"]) == (True, False, prompt)
    assert 0 < cut["completion_tokens"] < quiet["completion_tokens"] and cut["cost_usd"] > prompt * 2.0 / 1e6


async def test_a_stream_broken_off_on_an_anthropic_route_counts_the_prompt_its_route_said(
    paid: FakeProvider, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """Anthropic says at a stream's start what it read of the prompt, its prompt cache's reads and writes
    too (`message_start`). A stream that broke off before its end was counted from bytes instead, prompt
    and all: the cache's tokens, billed at their own prices, were lost. Now only its output is counted."""
    caplog.set_level(logging.INFO, logger="orchestrator.requests")
    claude = {"kind": "anthropic", "base_url": paid.base_url, "api_key_env": "PAID_KEY"}
    price = {**BIG, "cached_input_per_mtok": 0.2, "cache_write_per_mtok": 2.5}
    settings = settings_for(paid, tmp_path)
    settings = settings_for(
        paid, tmp_path,
        providers={
            **settings.model_dump()["providers"],
            "claude": {**claude, "models": {"c": {"id": "claude-test", **price}}},
        },
    )  # fmt: skip
    paid.prompt_cache = (30, 200)  # written, read
    try:
        async with gateway(settings, FakeEngine("fake-chat"), ENV) as (c, _):
            body = {"model": "claude/c", "messages": QUESTION, "stream": True}
            whole = await c.post("/v1/chat/completions", json=body, headers=auth(KEY_B))
            assert whole.status_code == 200 and "[DONE]" in whole.text
            paid.set_fault("drop", stall_after=3, fail_times=1)  # the provider's stream breaks off
            broken = await c.post("/v1/chat/completions", json=body, headers=auth(KEY_B))
            assert broken.status_code == 200 and '"error"' in broken.text and "[DONE]" not in broken.text
    finally:
        paid.prompt_cache = (0, 0)
    told, cut = records(caplog)[-2:]
    assert (told["estimated"], cut["estimated"], cut["complete"]) == (False, True, False)
    assert cut["prompt_tokens"] == told["prompt_tokens"] and cut["cached_tokens"] == told["cached_tokens"] == 200
    assert 0 < cut["completion_tokens"] < told["completion_tokens"]
    fresh = told["prompt_tokens"] - 200 - 30
    prompt_usd = (fresh * BIG["input_per_mtok"] + 200 * 0.2 + 30 * 2.5) / 1e6
    assert cut["cost_usd"] == pytest.approx(prompt_usd + cut["completion_tokens"] * BIG["output_per_mtok"] / 1e6)


async def test_a_whole_answer_broken_off_before_a_fallback_is_part_of_the_cost(
    paid: FakeProvider, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """The first route's answer broke off mid-way and the second served: the first had read the prompt
    and made output, which its provider bills, and only the second's answer was in the ledger. Now the
    first's part (its usage, or the estimate) is in the request's cost."""
    caplog.set_level(logging.INFO, logger="orchestrator.requests")
    settings = settings_for(paid, tmp_path, models={"chain": ["paid/big", "paid/small"]})
    async with gateway(settings, FakeEngine("fake-chat"), ENV) as (c, _):
        paid.set_fault("drop", stall_after=4, fail_times=1)
        r = await chat(c, KEY_B, model="chain")
        assert r.status_code == 200 and r.headers["x-served-by"] == "paid/paid-small", r.text
        assert "fallback after paid" in r.headers["x-route-reason"]
    row = next(x for x in records(caplog) if x["request_id"] == r.headers["x-request-id"])
    p, o = row["prompt_tokens"], row["completion_tokens"]
    served = (p * SMALL["input_per_mtok"] + o * SMALL["output_per_mtok"]) / 1e6
    broken = row["cost_usd"] - served  # paid/big's prompt and first words, estimated at 4 bytes a token
    prompt = -(-(len(QUESTION[0]["content"].encode()) + 8) // 4)
    assert broken >= prompt * BIG["input_per_mtok"] / 1e6 + BIG["output_per_mtok"] / 1e6


async def test_the_tokens_of_an_answer_broken_off_before_a_fallback_count_in_the_keys_tokens(
    paid: FakeProvider, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """The first route's answer broke off mid-way and the second served: the first's prompt and output
    were in the request's cost but not in its key's `budget_tokens` nor its `tpm` window, so a key held to
    tokens spent them unseen. Now they count in both, as their cost counts in `budget_usd`."""
    caplog.set_level(logging.INFO, logger="orchestrator.requests")
    budget, tpm = (
        "sk-orch-tokens-EEEEEEEEEEEEEEEEEEEEEEEEEEEEEEEEEEEEEEEEEEE5",
        "sk-orch-tpm-FFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFF6",
    )
    # The served answer alone is 17 tokens (6 + 11); with the broken one's prompt and first words, over 25.
    keys = {
        "tokens": {"sha256": hash_key(budget), "budget_tokens": 25, "period": "day"},
        "tpm": {"sha256": hash_key(tpm), "tpm": 25},
    }
    settings = settings_for(paid, tmp_path, models={"chain": ["paid/big", "paid/small"]}, keys=keys)
    async with gateway(settings, FakeEngine("fake-chat"), ENV) as (c, accounts):
        for key in (budget, tpm):
            paid.set_fault("drop", stall_after=4, fail_times=1)
            r = await chat(c, key, model="chain")
            assert r.status_code == 200 and "fallback after paid" in r.headers["x-route-reason"], r.text
            assert r.json()["usage"]["total_tokens"] == 17
            await accounts.drain()
        spent = await chat(c, budget, model="chain")
        assert error_of(spent, 429)["code"] == "insufficient_quota"
        limited = await chat(c, tpm, model="chain")
        assert error_of(limited, 429)["code"] == "rate_limit_exceeded"
    row = next(x for x in records(caplog) if x["request_id"] == r.headers["x-request-id"])
    assert (row["prompt_tokens"], row["completion_tokens"]) == (6, 11)  # the served answer's, as the client saw
    assert row["discarded_tokens"] >= 10 + 4  # the broken one's prompt (bytes / 4) and its first words


def cost_of(usage: dict[str, Any], price: dict[str, float]) -> float:
    return (
        usage["prompt_tokens"] * price["input_per_mtok"] + usage["completion_tokens"] * price["output_per_mtok"]
    ) / 1e6


async def test_a_whole_answer_that_broke_off_on_every_route_is_still_billed(
    paid: FakeProvider, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """Every attempt's answer broke off mid-way and the client got a 5xx: each had its prompt read and
    output made, which the provider bills, and the request's row said $0 (no budget saw it). Now the
    failed request's row carries what they may cost, and no route is said to have answered it."""
    caplog.set_level(logging.INFO, logger="orchestrator.requests")
    async with gateway(settings_for(paid, tmp_path), FakeEngine("fake-chat"), ENV) as (c, _):
        paid.set_fault("drop", stall_after=4)
        try:
            r = await chat(c, KEY_B)
        finally:
            paid.clear_fault()
        assert r.status_code >= 500, r.text
        served = await chat(c, KEY_B)
    row = next(x for x in records(caplog) if x["request_id"] == r.headers["x-request-id"])
    assert (row["status"], row["route"], row["complete"], row["estimated"]) == (r.status_code, "none", False, True)
    # Two attempts (`resilience.attempts`), each its prompt and 4 words at least, at paid/big's prices.
    prompt = -(-(len(QUESTION[0]["content"].encode()) + 8) // 4)
    assert row["cost_usd"] >= 2 * (prompt * BIG["input_per_mtok"] + 4 * BIG["output_per_mtok"]) / 1e6
    assert row["cost_usd"] < 2 * cost_of(served.json()["usage"], BIG) * 4  # an estimate, not a wild one


async def test_a_whole_answer_cut_at_the_answers_time_before_a_fallback_is_part_of_the_cost(
    paid: FakeProvider, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """The first route streamed for longer than the answer's time (`answer_timeout_s`) and was given up,
    the next one served: the first's prompt and output so far were left out of the cost (a timeout, unlike
    an error, cancels the attempt before it can say what it made)."""
    caplog.set_level(logging.INFO, logger="orchestrator.requests")
    with FakeProvider(reply="Paris.") as fast:
        providers = {name: p.model_dump() for name, p in settings_for(paid, tmp_path).providers.items()}
        models = {"s": {"id": "s", **SMALL}}
        providers["fast"] = {"base_url": fast.base_url + "/v1", "api_key_env": "PAID_KEY", "models": models}
        settings = settings_for(
            paid,
            tmp_path,
            providers=providers,
            models={"chain": ["paid/big", "fast/s"]},
            resilience={"answer_timeout_s": 0.5},
        )
        paid.tokens_per_s = 5.0  # 11 words: about 2 s
        try:
            async with gateway(settings, FakeEngine("fake-chat"), ENV) as (c, _):
                r = await chat(c, KEY_B, model="chain")
        finally:
            paid.tokens_per_s = 0.0
        assert r.status_code == 200 and r.headers["x-served-by"] == "fast/s", r.text
        assert "fallback after paid upstream_timeout" in r.headers["x-route-reason"]
    row = next(x for x in records(caplog) if x["request_id"] == r.headers["x-request-id"])
    served = cost_of(r.json()["usage"], SMALL)
    prompt = -(-(len(QUESTION[0]["content"].encode()) + 8) // 4)
    assert row["cost_usd"] - served >= (prompt * BIG["input_per_mtok"] + BIG["output_per_mtok"]) / 1e6


async def test_a_shared_whole_answer_that_broke_off_is_paid_by_its_leader_with_its_retry(
    paid: FakeProvider, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """A reproducible whole answer leads a flight; the flight's call broke off mid-answer and the request
    retried on its own: only the retry was in the ledger, not the broken call's prompt and output."""
    caplog.set_level(logging.INFO, logger="orchestrator.requests")
    async with gateway(settings_for(paid, tmp_path), FakeEngine("fake-chat"), ENV) as (c, _):
        paid.set_fault("drop", stall_after=4, fail_times=1)
        r = await chat(c, KEY_B, temperature=0)
        assert r.status_code == 200 and r.headers["x-cache"] == "MISS", r.text
    row = next(x for x in records(caplog) if x["request_id"] == r.headers["x-request-id"])
    prompt = -(-(len(QUESTION[0]["content"].encode()) + 8) // 4)
    broken = row["cost_usd"] - cost_of(r.json()["usage"], BIG)
    assert broken >= (prompt * BIG["input_per_mtok"] + 4 * BIG["output_per_mtok"]) / 1e6


async def test_the_leader_of_a_shared_stream_pays_for_all_of_it_when_its_client_leaves(
    paid: FakeProvider, tmp_path: Path
) -> None:
    """Two identical reproducible streams share one upstream call: the first leads and pays, the other is
    recorded as shared ($0). The leader's client left after a few chunks and the call went on to its end
    for the other one: the leader was charged for what its client had seen, and the rest of what the
    provider billed was nobody's. Now the leader is charged, once the call has ended, for all of it."""
    settings = settings_for(paid, tmp_path)
    body = {"model": "paid/big", "messages": QUESTION, "max_tokens": 20, "temperature": 0, "stream": True}
    paid.ttft_ms, paid.tokens_per_s = 500.0, 20.0  # the first word after 0.5 s, the 11th after 1 s
    before = len(paid.requests)
    try:
        async with gateway(settings, FakeEngine("fake-chat"), ENV, live=True) as (c, accounts):

            async def lead() -> None:
                async with c.stream("POST", "/v1/chat/completions", json=body, headers=auth(KEY_B)) as r:
                    assert r.status_code == 200
                    async for line in r.aiter_lines():
                        if line.startswith("data: {") and '"content":"' in line:
                            return  # its first content: the client leaves

            async def follow() -> str:
                await asyncio.sleep(0.1)  # the leader's flight is in the air, before its first word
                r = await c.post("/v1/chat/completions", json=body, headers=auth(KEY_B))
                return r.text

            _, followed = await asyncio.gather(lead(), follow())
            assert "[DONE]" in followed
            await asyncio.sleep(0.3)  # the flight's end is heard after the leader's response ended
            await accounts.drain()
            report = (await c.get("/admin/usage", headers=auth(MASTER))).json()
    finally:
        paid.ttft_ms, paid.tokens_per_s = 0.0, 0.0
    asked = [x for x in paid.requests[before:] if x.path == "/v1/chat/completions"]
    assert [(x.outcome, x.events_sent) for x in asked] == [("completed", 11)]  # one call (shared), to its end
    full = cost_of({"prompt_tokens": 6, "completion_tokens": 11}, BIG)  # the provider's own usage
    assert report["by_key"]["team-b"]["cost_usd"] == pytest.approx(full)


async def _leave_before_the_first_word(
    paid: FakeProvider, tmp_path: Path, path: str, body: dict[str, Any]
) -> tuple[list[Any], dict[str, Any]]:
    """Post `body` to `path` on key B and leave after 0.5 s, while the provider still reads it (its first word
    after 5 s): the provider's record of the call (once it has ended) and the usage report after it."""
    # Plain uvicorn never cancels a request whose client left; with this header the edge watches it (as Serve does).
    headers = {**auth(KEY_B), "x-request-disconnect-disabled": "?1"}
    paid.ttft_ms = 5000.0  # the first word after 5 s: the client has left by then
    before = len(paid.requests)
    try:
        async with gateway(settings_for(paid, tmp_path), FakeEngine("fake-chat"), ENV, live=True) as (c, accounts):
            with pytest.raises(httpx.ReadTimeout):
                await c.post(path, json=body, headers=headers, timeout=0.5)
            for _ in range(200):
                asked = [x for x in paid.requests[before:] if x.path == path]
                if asked and asked[-1].outcome != "in_flight":
                    break
                await asyncio.sleep(0.02)
            await asyncio.sleep(0.1)  # the tab is closed as the request's task ends
            await accounts.drain()
            report = (await c.get("/admin/usage", headers=auth(MASTER))).json()
    finally:
        paid.ttft_ms = 0.0
    return asked, report


@pytest.mark.parametrize(
    "extra",
    [{"stream": False}, {"stream": True}, {"stream": True, "temperature": 0}],
    ids=["whole", "stream", "stream-leading-a-flight"],
)
async def test_a_client_that_leaves_before_the_first_token_pays_for_the_prompt_it_sent(
    paid: FakeProvider, tmp_path: Path, caplog: pytest.LogCaptureFixture, extra: dict[str, Any]
) -> None:
    """A client that left while the provider was still reading its prompt (no token yet) left that prompt, which
    the provider may bill, to nobody: its row said 0 tokens and $0, though a hedge called off in the same state
    is billed its prompt. Now the prompt is on its key, as the hedge's is (once: a reproducible request leads a
    flight, which nobody else joined and which ends with it)."""
    caplog.set_level(logging.INFO, logger="orchestrator.requests")
    body = {"model": "paid/big", "messages": QUESTION, "max_tokens": 20, **extra}
    asked, report = await _leave_before_the_first_word(paid, tmp_path, "/v1/chat/completions", body)
    assert [(x.outcome, x.events_sent) for x in asked] == [("disconnected", 0)]  # one call, cut before a word
    [row] = [r for r in records(caplog) if r["endpoint"] == "/v1/chat/completions"]
    assert row["status"] == 499 and row["complete"] is False and row["key_id"] == "team-b"
    assert row["provider"] == "paid" and "client left before the first token" in row["route_reason"]
    # No usage came: the prompt as routing counted it, among the tokens of calls that didn't answer (as a hedge's).
    assert row["discarded_tokens"] > 0 and row["prompt_tokens"] == row["completion_tokens"] == 0
    prompt = row["discarded_tokens"] * BIG["input_per_mtok"] / 1e6
    assert row["cost_usd"] == pytest.approx(prompt)
    assert report["by_key"]["team-b"]["cost_usd"] == pytest.approx(prompt)


async def test_a_client_that_leaves_before_its_embeddings_come_pays_for_the_input_it_sent(
    paid: FakeProvider, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """The same for an embeddings call: the provider read the input, the client left before the vectors came."""
    caplog.set_level(logging.INFO, logger="orchestrator.requests")
    body = {"model": "paid/embed", "input": ["a sentence to embed"] * 4}
    asked, report = await _leave_before_the_first_word(paid, tmp_path, "/v1/embeddings", body)
    assert [x.outcome for x in asked] == ["disconnected"]
    [row] = [r for r in records(caplog) if r["endpoint"] == "/v1/embeddings"]
    assert row["status"] == 499 and row["complete"] is False and row["key_id"] == "team-b"
    assert row["provider"] == "paid" and "client left before the answer" in row["route_reason"]
    assert row["discarded_tokens"] > 0 and row["prompt_tokens"] == 0
    cost = row["discarded_tokens"] * 0.5 / 1e6
    assert row["cost_usd"] == pytest.approx(cost)
    assert report["by_key"]["team-b"]["cost_usd"] == pytest.approx(cost)


# ------------------------------------------------------------------------------ metrics


async def test_metrics_scrape_in_prometheus_text_format(gw: tuple[httpx.AsyncClient, Any]) -> None:
    c, _ = gw
    await chat(c, KEY_B, model="fake-chat", temperature=0)
    await chat(c, KEY_B, model="fake-chat", temperature=0)  # a cache hit
    await chat(c, KEY_B, stream=True)
    await chat(c, None)
    r = await c.get("/metrics", headers=auth(MASTER))  # it shows key ids: keys required, so is a key here
    assert r.status_code == 200 and r.headers["content-type"].startswith("text/plain; version=")
    families = {f.name: f for f in text_string_to_metric_families(r.text)}
    samples = {(s.name, tuple(sorted(s.labels.items()))): s.value for f in families.values() for s in f.samples}

    def value(name: str, **labels: str) -> float:
        return sum(v for (n, ls), v in samples.items() if n == name and set(labels.items()) <= set(ls))

    assert value("orchestrator_requests_total", route="local", provider="local", status="200") == 1
    assert value("orchestrator_requests_total", route="cache", status="200") == 1
    assert value("orchestrator_requests_total", route="remote", provider="paid", status="200") == 1
    assert value("orchestrator_requests_total", status="401") == 1
    assert value("orchestrator_ttft_seconds_count", route="remote") == 1
    assert value("orchestrator_request_duration_seconds_count") == 4
    assert value("orchestrator_gateway_overhead_seconds_count") == 4
    assert value("orchestrator_tokens_total", provider="paid", kind="completion") > 0
    assert value("orchestrator_cost_usd_total", provider="paid", key="team-b") > 0
    assert value("orchestrator_cache_lookups_total", outcome="HIT") == 1
    assert value("orchestrator_route_decisions_total") == 3
    reasons = {dict(ls).get("reason") for (n, ls) in samples if n == "orchestrator_route_decisions_total"}
    assert all(r and " " not in r and ":" not in r for r in reasons), reasons  # bounded codes, not free text
    assert ("orchestrator_local_queue_depth", (("provider", "local"),)) in samples
    assert value("orchestrator_reference_cost_usd_total") > 0


async def test_the_default_app_stays_open_and_still_says_who_and_how_long(api: Any) -> None:
    r = await api.client.post("/v1/chat/completions", json={"model": "fake-chat", "messages": QUESTION})
    assert r.status_code == 200
    assert r.headers["x-request-id"] and float(r.headers["x-gateway-overhead-ms"]) >= 0
    assert (await api.client.get("/metrics")).status_code == 200


async def test_embeddings_are_admitted_and_accounted_like_the_rest(
    gw: tuple[httpx.AsyncClient, Any], caplog: pytest.LogCaptureFixture
) -> None:
    c, _ = gw
    caplog.set_level(logging.INFO, logger="orchestrator.requests")
    r = await c.post("/v1/embeddings", json={"model": "paid/embed", "input": ["a b c", "d e"]}, headers=auth(KEY_B))
    assert r.status_code == 200, r.text
    validate("CreateEmbeddingResponse", r.json())
    assert error_of(await c.post("/v1/embeddings", json={"model": "paid/embed", "input": "x"}), 401)
    [line, refused] = records(caplog)
    assert (line["key_id"], line["provider"], line["prompt_tokens"]) == ("team-b", "paid", 5)
    assert line["cost_usd"] == pytest.approx(5 * 0.5 / 1e6) and refused["status"] == 401


async def test_the_overhead_header_leaves_out_the_time_spent_waiting_on_the_model(
    paid: FakeProvider, tmp_path: Path
) -> None:
    slow = FakeEngine("fake-chat", token_delay=0.05)  # ~0.4 s of "model" time per answer
    async with gateway(settings_for(paid, tmp_path, keys={}), slow, {"PAID_KEY": "k"}) as (c, _):
        for stream in (False, True):
            started = time.perf_counter()
            r = await chat(c, None, model="fake-chat", stream=stream)
            total_ms = (time.perf_counter() - started) * 1000
            assert r.status_code == 200 and total_ms > 250
            assert float(r.headers["x-gateway-overhead-ms"]) < 50  # the model's time isn't the gateway's


class FlakyOwner:
    """A `LedgerOwner` whose owner can be away (an actor restarting), over a real book."""

    def __init__(self, inner: InProcessOwner):
        self.inner = inner
        self.away = False

    def call(self, command: Any) -> Any:
        if self.away:
            failed: asyncio.Future[Any] = asyncio.get_running_loop().create_future()
            failed.set_exception(RuntimeError("the ledger actor died"))
            return failed
        return self.inner.call(command)


async def test_while_the_ledger_is_away_keyed_requests_wait_and_no_usage_is_lost(
    paid: FakeProvider, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    settings = settings_for(paid, tmp_path)
    engine = FakeEngine("fake-chat")
    book = Book(tmp_path / "ledger.sqlite")
    owner = FlakyOwner(InProcessOwner(book))
    async with httpx.AsyncClient() as upstream:
        pipeline = await build_pipeline({"local": (engine, engine.info())}, settings, env=ENV, client=upstream)
        accounts = await build_accounts(settings, pipeline, owner=owner, env=ENV)  # type: ignore[arg-type]
        app = build_app(pipeline, accounts)
        async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://gw") as c:
            assert (await chat(c, KEY_B, model="fake-chat")).status_code == 200  # its settlement waits in the batch
            owner.away = True
            r = await chat(c, KEY_B, model="fake-chat")
            error = error_of(r, 503)
            assert error["code"] == "ledger_unavailable" and r.headers["retry-after"] == "1"
            owner.away = False
            assert (await chat(c, KEY_B, model="fake-chat")).status_code == 200
            await accounts.drain()
            await accounts.background.stop()
    logged = usage_report(book.db)["by_key"]["team-b"]
    assert (logged["requests"], logged["errors"]) == (3, 1)  # both answers and the refusal, none lost
    book.close()
