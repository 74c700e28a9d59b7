"""Stored responses and conversations as two gateway replicas see them: one named Ray actor each, on disk,
per key, with a TTL.

Two apps stand for two replicas (each its own pipeline, accounts and store
handles, as each Serve replica builds them); what one stored, the other reads;
a conversation one made and grew, the other lists and continues at once, and
turns sent to both at the same time all land.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from orchestrator.accounting.keys import hash_key
from orchestrator.accounting.setup import build_accounts
from orchestrator.api import build_app
from orchestrator.app import build_pipeline
from orchestrator.frontdoors.responses.conversation_store import conversations_for
from orchestrator.frontdoors.responses.conversations import limits
from orchestrator.frontdoors.responses.store import DiskResponses, Stored, store_for
from orchestrator.settings import Settings, load_settings
from orchestrator.testing.engine import FakeEngine

TEAM = "sk-orch-team-TTTTTTTTTTTTTTTTTTTTTTTTTTTTTTTTTTTTTTTTTTTTTTT1"
OTHER = "sk-orch-other-OOOOOOOOOOOOOOOOOOOOOOOOOOOOOOOOOOOOOOOOOOOOOO2"


def settings(tmp: Path) -> Settings:
    return load_settings(
        providers={},
        models={},
        cache={"enabled": False},
        ledger={"path": str(tmp / "ledger.sqlite"), "owner": "process"},
        responses={"directory": str(tmp / "responses"), "owner": "actor"},
        conversations={"directory": str(tmp / "conversations"), "max_items": 40},
        keys={"team": {"sha256": hash_key(TEAM)}, "other": {"sha256": hash_key(OTHER)}},
    )


@pytest.fixture
async def replicas(ray_instance: None, tmp_path: Path) -> AsyncIterator[list[httpx.AsyncClient]]:
    s = settings(tmp_path)
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


async def test_what_one_replica_stored_the_other_reads_and_continues(replicas: list[httpx.AsyncClient]) -> None:
    a, b = replicas
    first = await a.post("/v1/responses", json={"model": "fake-chat", "input": "remember me"}, headers=auth(TEAM))
    assert first.status_code == 200, first.text
    rid = first.json()["id"]
    got = await b.get(f"/v1/responses/{rid}", headers=auth(TEAM))
    assert got.status_code == 200 and got.json() == first.json()
    body: dict[str, Any] = {"model": "fake-chat", "input": "go on", "previous_response_id": rid}
    second = await b.post("/v1/responses", json=body, headers=auth(TEAM))
    assert second.status_code == 200 and second.json()["previous_response_id"] == rid
    assert (await a.get(f"/v1/responses/{rid}", headers=auth(OTHER))).status_code == 404  # not the other key's
    assert (await b.delete(f"/v1/responses/{rid}", headers=auth(TEAM))).status_code == 200
    assert (await a.get(f"/v1/responses/{rid}", headers=auth(TEAM))).status_code == 404


async def test_an_item_one_replica_stored_the_other_finds_by_reference(replicas: list[httpx.AsyncClient]) -> None:
    a, b = replicas
    first = await a.post("/v1/responses", json={"model": "fake-chat", "input": "remember me"}, headers=auth(TEAM))
    [item] = first.json()["output"]
    body: dict[str, Any] = {
        "model": "fake-chat",
        "input": [{"type": "item_reference", "id": item["id"]}, {"role": "user", "content": "go on"}],
    }
    second = await b.post("/v1/responses", json=body, headers=auth(TEAM))  # through the one actor
    assert second.status_code == 200, second.text
    listed = await b.get(f"/v1/responses/{second.json()['id']}/input_items?order=asc", headers=auth(TEAM))
    assert listed.json()["data"][0]["content"][0]["text"] == item["content"][0]["text"]  # the item, not the reference
    assert (await b.post("/v1/responses", json=body, headers=auth(OTHER))).status_code == 404  # not the other key's
    # The other key stores an input item under the same id (a client names its input items' ids): the first
    # key's reference still finds its own item, and the other's finds its own.
    own = {"type": "message", "id": item["id"], "role": "user", "content": [{"type": "input_text", "text": "mine"}]}
    taken = await a.post("/v1/responses", json={"model": "fake-chat", "input": [own]}, headers=auth(OTHER))
    assert taken.status_code == 200, taken.text
    assert (await b.post("/v1/responses", json=body, headers=auth(TEAM))).status_code == 200
    theirs = await b.post("/v1/responses", json=body, headers=auth(OTHER))
    assert theirs.status_code == 200, theirs.text
    listed = await b.get(f"/v1/responses/{theirs.json()['id']}/input_items?order=asc", headers=auth(OTHER))
    assert listed.json()["data"][0]["content"][0]["text"] == "mine"


def test_an_item_is_found_while_its_response_is_kept(tmp_path: Path) -> None:
    disk = DiskResponses(tmp_path)
    output = [{"id": "rs_1", "type": "reasoning"}, {"id": "msg_2", "type": "message"}]
    disk.put([Stored("key:team", {"id": "resp_1", "output": output}, [{"id": "msg_1", "type": "message"}], [])])
    for item_id in ("msg_1", "rs_1", "msg_2"):
        found = disk.get_item("key:team", item_id)
        assert found is not None and found.id == "resp_1" and found.item(item_id) is not None
    assert disk.get_item("key:team", "msg_nope") is None
    # Another tenant naming its input item with the same id (a client may) hides nothing of this one's.
    disk.put([Stored("key:other", {"id": "resp_2", "output": []}, [{"id": "msg_1", "type": "message"}], [])])
    assert disk.get_item("key:team", "msg_1").id == "resp_1"  # type: ignore[union-attr]
    assert disk.get_item("key:other", "msg_1").id == "resp_2"  # type: ignore[union-attr]
    assert disk.get_item("key:other", "rs_1") is None
    disk.delete("resp_1")
    assert disk.get_item("key:team", "rs_1") is None


def test_entries_expire_after_their_ttl(tmp_path: Path) -> None:
    disk = DiskResponses(tmp_path, ttl_s=0.2)
    disk.put([Stored("key:team", {"id": "resp_1"}, [], [])])
    assert disk.get("resp_1") is not None
    time.sleep(0.3)
    assert disk.get("resp_1") is None


def test_entries_outlive_the_process_that_wrote_them(tmp_path: Path) -> None:
    DiskResponses(tmp_path).put([Stored("key:team", {"id": "resp_1"}, [{"id": "msg_1"}], [])])
    again = DiskResponses(tmp_path).get("resp_1")  # a restarted actor opens the same directory
    assert again is not None and again.owner == "key:team" and again.input_items == [{"id": "msg_1"}]


def test_an_unreadable_entry_is_absent_not_an_error(tmp_path: Path) -> None:
    import diskcache

    with diskcache.Cache(str(tmp_path)) as cache:
        cache.set("resp_old", '{"owner": "open", "response": {}, "context": []}')  # an older layout
        cache.set("resp_junk", "not json")
    disk = DiskResponses(tmp_path)
    assert disk.get("resp_old") is None and disk.get("resp_junk") is None


def test_a_store_written_before_the_owner_index_is_counted_when_it_opens(tmp_path: Path) -> None:
    """An upgraded deployment's stored responses (written before the disk was shared by owner) are indexed
    at the store's first open: still found, counted against the limit, and pushed out in their turn."""
    import diskcache

    from orchestrator.frontdoors.responses.store import encode, item_key

    old = diskcache.Cache(str(tmp_path), eviction_policy="least-recently-stored")  # as the store wrote them
    for i in range(3):
        stored = Stored("key:old", {"id": f"resp_{i}", "output": []}, [{"id": f"msg_{i}", "text": "x" * 3000}], [])
        old.set(stored.id, encode(stored), expire=3600)
        old.set(item_key("key:old", f"msg_{i}"), stored.id, expire=3600)
    old.close()
    disk = DiskResponses(tmp_path, size_limit_bytes=12_000)
    found = disk.get_item("key:old", "msg_1")
    assert found is not None and found.id == "resp_1"
    new = Stored("key:new", {"id": "resp_new", "output": []}, [{"id": "m", "text": "y" * 3000}], [])
    disk.put([new])  # over the limit: the old key, holding the most, gives way, its oldest first
    assert disk.get("resp_new") is not None and disk.get("resp_0") is None
    assert disk.get_item("key:old", "msg_0") is None and disk.get("resp_2") is not None


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
