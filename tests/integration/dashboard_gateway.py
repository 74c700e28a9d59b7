"""A gateway for the dashboard's tests, and a scripted burst through it.

The local model is a `FakeEngine` whose load reaches the scheduler through a real `LoadBoard` and
`LoadView`, as in production; the test reports the load itself (`Dashboarded.load`), so a request spills
exactly when the test makes the engine look busy. "alpha" is a fake OpenAI-compatible provider on a real
socket (`alpha/m`, `alpha/ref`, the reference model savings are measured against, and `alpha/emb`, an
embedding model). Keys are required (`TEAM_KEY`; `MASTER_KEY` for the dashboard), the cache is on, the ledger
in this process; the burst budget is capped.

`burst` sends: three local answers (cache misses), two repeats of them (cache hits), one tool call (spilled
for a capability the local model lacks), two answers while the engine is busy (spilled for load), and one
request with an unknown key (refused: no answer). What the dashboard must then show is `BURST`.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Mapping
from contextlib import asynccontextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
from fastapi import FastAPI

from local_models.interface import LoadStats
from orchestrator.accounting.accounts import Accounts
from orchestrator.accounting.book import Book, InProcessOwner
from orchestrator.accounting.keys import hash_key
from orchestrator.accounting.setup import build_accounts
from orchestrator.api import build_app
from orchestrator.app import build_pipeline
from orchestrator.scheduling.load import BoardState, LoadBoard, LoadView
from orchestrator.settings import load_settings
from orchestrator.testing.engine import FakeEngine
from orchestrator.testing.provider import FakeProvider

ALPHA_KEY = "sk-alpha-dash-SECRET"
TEAM_KEY = "sk-orch-team-DDDDDDDDDDDDDDDDDDDDDDDDDDDDDDDDDDDDDDDDDDDDDDDDDDD1"
MASTER_KEY = "sk-orch-master-EEEEEEEEEEEEEEEEEEEEEEEEEEEEEEEEEEEEEEEEEEEEEEEE2"
ENV = {"ALPHA_KEY": ALPHA_KEY, "ORCHESTRATOR_MASTER_KEY": MASTER_KEY}
LOCAL = "local-chat"
SLO_MS = 400.0
BUDGET_USD = 0.05
# The burst's requests by route, and its spill reasons.
BURST = {"local": 3, "remote": 3, "cache": 2, "failed": 1, "requests": 9}
BURST_REASONS = {"spill": 2, "capability": 1}
TOOL = {"type": "function", "function": {"name": "weather", "parameters": {"type": "object", "properties": {}}}}


@dataclass
class Dashboarded:
    app: FastAPI
    accounts: Accounts
    engine: FakeEngine
    board: LoadBoard
    view: LoadView

    async def load(self, **stats: Any) -> None:
        """The engine reports `stats` over its own (as vLLM's stats would say) and the gateway reads the board."""
        self.board.report(LOCAL, "replica-1", LoadStats(**{**self.engine.stats(), **stats}))  # type: ignore[typeddict-item]
        await self.view.poll_once()


@asynccontextmanager
async def dashboard_gateway(tmp: Path, *, master: bool = True) -> AsyncIterator[Dashboarded]:
    """The gateway over the fake engine and the fake provider (started on this loop); without `master`,
    keys are required but no master key is configured."""
    async with FakeProvider(api_key=ALPHA_KEY, reply="It is sunny in Paris.", ttft_ms=60) as alpha:
        settings = load_settings(
            providers={
                "alpha": {
                    "base_url": alpha.base_url + "/v1",
                    "api_key_env": "ALPHA_KEY",
                    "models": {
                        "m": {"id": "alpha-model", "input_per_mtok": 3.0, "output_per_mtok": 15.0},
                        "ref": {"id": "alpha-ref", "input_per_mtok": 5.0, "output_per_mtok": 25.0},
                        "emb": {"id": "alpha-embed", "kind": "embedding", "input_per_mtok": 0.1},
                    },
                }
            },
            models={"auto": {"routes": [LOCAL, "alpha/m"], "ttft_slo_ms": SLO_MS}},
            scheduler={"overflow_budget_usd_per_hour": BUDGET_USD, "prefill_tokens_per_s": 10_000},
            cache={"directory": str(tmp / "cache")},
            ledger={"path": str(tmp / "ledger.sqlite"), "owner": "process", "reference_model": "alpha/ref"},
            keys={"team": {"sha256": hash_key(TEAM_KEY)}},
            data_dir=tmp,
        )
        engine = FakeEngine(LOCAL, max_num_seqs=8, token_delay=0.005)
        board = LoadBoard(max_age_s=3600.0)

        async def read(overflow: Mapping[str, int]) -> BoardState:
            return board.read("dashboard-gateway", overflow)

        async def report(usd: float) -> None:
            board.spent(usd)

        view = LoadView(read, report=report, max_staleness_s=3600.0)
        env = ENV if master else {"ALPHA_KEY": ALPHA_KEY}
        async with httpx.AsyncClient() as upstream:
            pipeline = await build_pipeline(
                {"local": (engine, engine.info())}, settings, env=env, client=upstream, load=view
            )
            book = Book(tmp / "ledger.sqlite")

            async def stats() -> LoadStats:
                return engine.stats()

            local = {"local": (stats, engine.info())}  # the local route, as the Serve app names it
            accounts = await build_accounts(settings, pipeline, local=local, owner=InProcessOwner(book), env=env)
            gw = Dashboarded(build_app(pipeline, accounts), accounts, engine, board, view)
            await gw.load()
            try:
                yield gw
            finally:
                await accounts.drain()
                await accounts.background.stop()  # type: ignore[attr-defined]
                book.close()


async def burst(gw: Dashboarded, http: httpx.AsyncClient) -> None:
    """The scripted burst (see the module docstring); `http` talks to `gw.app`."""
    team = {"Authorization": f"Bearer {TEAM_KEY}"}

    async def chat(text: str, headers: dict[str, str] | None = None, **body: Any) -> httpx.Response:
        payload = {"model": "auto", "messages": [{"role": "user", "content": text}], "max_tokens": 8, **body}
        return await http.post("/v1/chat/completions", json=payload, headers=headers or team)

    questions = ["What is the capital of France?", "And of Italy?", "And of Spain?"]
    for q in questions:
        r = await chat(q, temperature=0)
        assert r.headers["x-served-by"] == f"local/{LOCAL}", r.text
    for q in questions[:2]:
        r = await chat(q, temperature=0)
        assert r.headers["x-cache"] == "HIT", r.text
    r = await chat("Weather in Paris?", tools=[TOOL])
    assert r.headers["x-route-reason"].startswith("capability"), r.text
    await gw.load(waiting=40, running=8, queued_prompt_tokens=40_000, step_ms=50.0)  # busy: the next ones spill
    for q in ["Summarise the news.", "Write a haiku."]:
        r = await chat(q, temperature=0.7)
        assert r.headers["x-route-reason"].startswith("spill"), r.text
    r = await chat("Who am I?", headers={"Authorization": "Bearer sk-orch-nobody"})
    assert r.status_code == 401
    # What the gateway sees once the burst has passed: the spend reported, the engine half busy.
    await gw.load(waiting=2, running=5, kv_cache_usage=0.35)
    gw.accounts.flush()
