"""`/dashboard` and `GET /dashboard/data` in-process: the page and its files, the master key once keys
exist (open otherwise), clear 4xx for every bad input, and the figures after a scripted burst (the
ledger's rows, the load board's queue, the burst budget)."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from dashboard_gateway import BUDGET_USD, BURST, BURST_REASONS, MASTER_KEY, SLO_MS, TEAM_KEY, burst, dashboard_gateway

from orchestrator.accounting.accounts import Accounts
from orchestrator.accounting.book import Command
from orchestrator.api import build_app
from orchestrator.app import build_pipeline
from orchestrator.testing.engine import FakeEngine

MASTER = {"Authorization": f"Bearer {MASTER_KEY}"}


@pytest.fixture
async def gw(tmp_path: Path) -> AsyncIterator[tuple[httpx.AsyncClient, Any]]:
    async with dashboard_gateway(tmp_path) as g:
        async with httpx.AsyncClient(transport=httpx.ASGITransport(app=g.app), base_url="http://gw") as http:
            yield http, g


def openai_error(r: httpx.Response, status: int) -> dict[str, Any]:
    assert r.status_code == status, r.text
    err = r.json()["error"]
    assert set(err) == {"message", "type", "param", "code"}
    return dict(err)


async def test_the_page_and_its_files_are_public_and_fetch_nothing_elsewhere(gw: Any) -> None:
    http, _ = gw
    page = await http.get("/dashboard")
    assert page.status_code == 200 and page.headers["content-type"].startswith("text/html")
    assert 'data-key-required="true"' in page.text
    csp = page.headers["content-security-policy"]
    assert "default-src 'none'" in csp and "script-src 'self'" in csp and "unsafe" not in csp
    assert "http://" not in page.text and "https://" not in page.text
    for name, kind in [("dashboard.js", "text/javascript"), ("dashboard.css", "text/css")]:
        r = await http.get(f"/dashboard/{name}")
        assert r.status_code == 200 and r.headers["content-type"].startswith(kind)
        assert "http://" not in r.text.replace("http://www.w3.org/2000/svg", "") and "https://" not in r.text
    err = openai_error(await http.get("/dashboard/other.js"), 404)
    assert err["type"] == "invalid_request_error"
    openai_error(await http.post("/dashboard/data"), 405)


async def test_embeddings_a_remote_route_answers_are_remote_not_spilled(gw: Any) -> None:
    """The scheduler orders embedding routes as configured, never by the local model's load: an embeddings
    request answered by its remote route is a remote answer, not spill (it was counted in the spill share)."""
    http, g = gw
    await burst(g, http)
    team = {"Authorization": f"Bearer {TEAM_KEY}"}
    r = await http.post("/v1/embeddings", json={"model": "alpha/emb", "input": ["a", "b"]}, headers=team)
    assert r.status_code == 200 and r.headers["x-route-reason"] == "embedding route", r.text
    g.accounts.flush()
    d = (await http.get("/dashboard/data", headers=MASTER)).json()
    t = d["traffic"]
    assert t["spill_share"] == pytest.approx(3 / 9) and t["local_share"] == pytest.approx(3 / 9)  # was 4 / 9
    assert (t["answered"], t["remote"], t["spilled"]) == (9, 4, 3)
    assert {r["reason"]: r["requests"] for r in d["spill_reasons"]} == BURST_REASONS


@pytest.mark.parametrize(
    ("headers", "message"),
    [
        ({}, "The dashboard needs the master key"),  # was "Incorrect master key": none was given
        ({"Authorization": "Bearer sk-wrong"}, "Incorrect master key"),
        ({"Authorization": f"Bearer {TEAM_KEY}"}, "Incorrect master key"),  # a client key is not the master key
    ],
)
async def test_the_figures_take_the_master_key(gw: Any, headers: dict[str, str], message: str) -> None:
    http, _ = gw
    err = openai_error(await http.get("/dashboard/data", headers=headers), 401)
    assert err["code"] == "invalid_api_key" and message in err["message"]
    assert MASTER_KEY not in err["message"] and TEAM_KEY not in err["message"]
    assert (await http.get("/dashboard/data", headers={"x-api-key": MASTER_KEY})).status_code == 200


async def test_keys_without_a_master_key_mean_no_figures(tmp_path: Path) -> None:
    async with dashboard_gateway(tmp_path, master=False) as g:
        async with httpx.AsyncClient(transport=httpx.ASGITransport(app=g.app), base_url="http://gw") as http:
            err = openai_error(await http.get("/dashboard/data", headers=MASTER), 401)
            assert "no master key is configured" in err["message"]


@pytest.mark.parametrize(
    ("query", "param"),
    [
        ("minutes=0", "minutes"),
        ("minutes=61", "minutes"),
        ("minutes=1.5", "minutes"),
        ("minutes=abc", "minutes"),
        ("minutes=", "minutes"),
        ("minutes=%EF%BC%95", "minutes"),  # a full-width digit
        ("minutes=" + "9" * 5000, "minutes"),
        ("since=0", "since"),
    ],
)
async def test_bad_query_parameters_are_clear_400s(gw: Any, query: str, param: str) -> None:
    http, _ = gw
    err = openai_error(await http.get(f"/dashboard/data?{query}", headers=MASTER), 400)
    assert (err["type"], err["param"]) == ("invalid_request_error", param)
    assert len(err["message"]) < 200


async def test_the_figures_after_a_burst(gw: Any) -> None:
    http, g = gw
    await burst(g, http)
    r = await http.get("/dashboard/data", headers=MASTER)
    assert r.status_code == 200 and r.headers["cache-control"] == "no-store"
    d = r.json()
    assert d["window"]["source"] == "ledger" and d["window"]["slots"] == 60
    t = d["traffic"]
    assert {k: t[k] for k in BURST} == BURST
    assert t["local_share"] == pytest.approx(3 / 8) and t["spill_share"] == pytest.approx(3 / 8)
    assert sum(s[k] for s in d["timeline"] for k in ("local", "remote", "cache", "failed")) == BURST["requests"]
    assert {r["reason"]: r["requests"] for r in d["spill_reasons"]} == BURST_REASONS

    [auto] = d["ttft"]
    assert (auto["model"], auto["requests"], auto["slo_ms"]) == ("auto", 6, SLO_MS)
    assert 0 < auto["p50_ms"] <= auto["p95_ms"] and auto["p95_ms"] >= 60  # the remote route's first token: 60 ms
    assert d["cache"] == {"hits": 2, "misses": 3, "shared": 0, "bypass": 3, "lookups": 5, "hit_rate": 0.4}

    s = d["spend"]
    assert s["reference_model"] == "alpha/ref"
    keys = {row["key"]: row for row in s["by_key"]}
    assert keys["team"]["requests"] == 8 and keys["-"]["requests"] == 1
    assert keys["team"]["cost_usd"] == pytest.approx(s["cost_usd"]) and s["cost_usd"] > 0
    assert s["saved_usd"] == pytest.approx(s["reference_usd"] - s["cost_usd"]) and s["saved_usd"] > 0
    assert [row["model"] for row in s["by_model"]][0] == "auto"

    [engine] = d["local"]
    assert engine["status"] == "ok"
    assert {k: engine["load"][k] for k in ("replicas", "slots", "waiting", "running")} == {
        "replicas": 1,
        "slots": 8,
        "waiting": 2,
        "running": 5,
    }
    b = d["budget"]
    assert b["cap_usd_per_hour"] == BUDGET_USD and 0 < b["spent_usd"] < BUDGET_USD
    assert b["remaining_usd"] == pytest.approx(BUDGET_USD - b["spent_usd"]) and not b["exhausted"]
    assert d["spilling"] == ["auto"]

    short = (await http.get("/dashboard/data?minutes=1", headers=MASTER)).json()
    [slot] = short["timeline"]  # this minute only: the burst, or its part since the minute began
    assert short["traffic"]["requests"] == sum(slot[k] for k in ("local", "remote", "cache", "failed")) > 0
    assert (await http.get("/dashboard", headers=MASTER)).status_code == 200  # the page ignores the key


async def test_an_open_endpoint_is_open_and_without_a_ledger_shows_the_live_state(tmp_path: Path) -> None:
    engine = FakeEngine("fake-chat")
    pipeline = await build_pipeline({"local": (engine, engine.info())})
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=build_app(pipeline)), base_url="http://gw") as http:
        page = await http.get("/dashboard")
        assert 'data-key-required="false"' in page.text
        d = (await http.get("/dashboard/data")).json()
        assert d["window"]["source"] is None and d["timeline"] == [] and d["traffic"]["requests"] == 0
        assert d["local"][0]["status"].startswith("no load board") and d["budget"]["cap_usd_per_hour"] is None


class BrokenOwner:
    def call(self, command: Command[Any]) -> Any:
        raise ConnectionError("actor died")


async def test_a_ledger_that_does_not_answer_is_a_503_not_a_500() -> None:
    engine = FakeEngine("fake-chat")
    pipeline = await build_pipeline({"local": (engine, engine.info())})
    app = build_app(pipeline, Accounts(owner=BrokenOwner(), registry=pipeline.registry))
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://gw") as http:
        err = openai_error(await http.get("/dashboard/data"), 503)
        assert err["code"] == "ledger_unavailable"
