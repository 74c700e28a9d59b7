"""Stored conversations as two gateway replicas see them: one named Ray actor, on disk, per key.

Two apps stand for two replicas (each its own pipeline, accounts and store
handles, as each Serve replica builds them): a conversation one made and grew,
the other lists and continues at once; turns sent to both at the same time all land.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from pathlib import Path

import httpx
import pytest

from orchestrator.accounting.keys import hash_key
from orchestrator.accounting.setup import build_accounts
from orchestrator.api import build_app
from orchestrator.app import build_pipeline
from orchestrator.frontdoors.responses.conversation_store import conversations_for
from orchestrator.frontdoors.responses.conversations import limits
from orchestrator.frontdoors.responses.store import store_for
from orchestrator.settings import load_settings
from orchestrator.testing.engine import FakeEngine

TEAM = "sk-orch-team-TTTTTTTTTTTTTTTTTTTTTTTTTTTTTTTTTTTTTTTTTTTTTTT1"
OTHER = "sk-orch-other-OOOOOOOOOOOOOOOOOOOOOOOOOOOOOOOOOOOOOOOOOOOOOO2"


@pytest.fixture
async def replicas(ray_instance: None, tmp_path: Path) -> AsyncIterator[list[httpx.AsyncClient]]:
    s = load_settings(
        providers={},
        models={},
        cache={"enabled": False},
        ledger={"path": str(tmp_path / "ledger.sqlite"), "owner": "process"},
        responses={"directory": str(tmp_path / "responses"), "owner": "actor"},
        conversations={"directory": str(tmp_path / "conversations"), "max_items": 40},
        keys={"team": {"sha256": hash_key(TEAM)}, "other": {"sha256": hash_key(OTHER)}},
    )
    clients, accounts = [], []
    for _ in range(2):
        engine = FakeEngine("fake-chat", max_model_len=4096)
        pipeline = await build_pipeline({"local": (engine, engine.info())}, s, env={})
        acct = await build_accounts(s, pipeline, env={})
        room = limits(s.conversations.max_items, s.conversations.max_mb)
        app = build_app(
            pipeline, acct, responses=store_for(s), conversations=conversations_for(s), conversation_room=room
        )
        clients.append(httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://gw"))
        accounts.append(acct)
    yield clients
    for c, a in zip(clients, accounts, strict=True):
        await c.aclose()
        await a.drain()
        await a.background.stop()


def auth(key: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {key}"}


async def test_what_one_replica_made_the_other_lists_and_continues(replicas: list[httpx.AsyncClient]) -> None:
    a, b = replicas
    made = await a.post("/v1/conversations", json={"items": [{"role": "user", "content": "hi"}]}, headers=auth(TEAM))
    assert made.status_code == 200, made.text
    cid = made.json()["id"]
    turn = {"model": "fake-chat", "input": "remember me", "conversation": cid}
    first = await a.post("/v1/responses", json=turn, headers=auth(TEAM))
    assert first.status_code == 200 and first.json()["conversation"] == {"id": cid}, first.text
    listed = await b.get(f"/v1/conversations/{cid}/items?order=asc", headers=auth(TEAM))  # at once, the other replica
    assert [i["id"] for i in listed.json()["data"]][-1] == first.json()["output"][0]["id"]
    assert (await b.get(f"/v1/conversations/{cid}", headers=auth(OTHER))).status_code == 404  # not the other key's

    # Turns sent to both replicas at once all land, none over another.
    turns = [(a if i % 2 else b).post("/v1/responses", json=turn, headers=auth(TEAM)) for i in range(8)]
    assert all(r.status_code == 200 for r in await asyncio.gather(*turns))
    listed = await a.get(f"/v1/conversations/{cid}/items?limit=100", headers=auth(TEAM))
    assert len(listed.json()["data"]) == 3 + 8 * 2

    assert (await b.delete(f"/v1/conversations/{cid}", headers=auth(TEAM))).status_code == 200
    assert (await a.get(f"/v1/conversations/{cid}", headers=auth(TEAM))).status_code == 404
