"""`WriteBehind`: stored responses leave the answer's path, and no reader is the worse for it."""

from __future__ import annotations

import asyncio
import logging

import pytest

from orchestrator.frontdoors.responses.store import Stored, WriteBehind


class SlowStore:
    """A shared store whose writes take `delay_s` (an actor's round trip, a disk under load)."""

    def __init__(self, delay_s: float, fail: bool = False):
        self.delay_s = delay_s
        self.fail = fail
        self.entries: dict[str, Stored] = {}
        self.batches: list[int] = []

    async def get(self, response_id: str) -> Stored | None:
        return self.entries.get(response_id)

    async def put(self, entries: list[Stored]) -> None:
        self.batches.append(len(entries))
        await asyncio.sleep(self.delay_s)
        if self.fail:
            raise OSError("disk full")
        self.entries.update((s.id, s) for s in entries)

    async def delete(self, response_id: str) -> bool:
        return self.entries.pop(response_id, None) is not None


def entry(rid: str = "resp_1") -> Stored:
    return Stored("key:team", {"id": rid}, [], [])


async def test_the_answer_does_not_wait_and_its_replica_reads_it_at_once() -> None:
    shared = SlowStore(delay_s=0.5)
    mine = WriteBehind(shared)
    loop = asyncio.get_running_loop()
    t0 = loop.time()
    await mine.put([entry()])
    assert loop.time() - t0 < 0.1
    assert await mine.get("resp_1") == entry()  # before the write landed
    assert "resp_1" not in shared.entries


async def test_another_replica_waits_out_a_write_on_its_way() -> None:
    shared = SlowStore(delay_s=0.02)
    one, other = WriteBehind(shared), WriteBehind(shared, settle_s=0.1)
    await one.put([entry()])
    assert await other.get("resp_1") == entry()  # a miss at first, found once the write landed
    assert await other.get("resp_nope") is None


async def test_a_delete_waits_for_the_entrys_write() -> None:
    shared = SlowStore(delay_s=0.05)
    store = WriteBehind(shared)
    await store.put([entry()])
    assert await store.delete("resp_1")
    await asyncio.sleep(0.1)
    assert await store.get("resp_1") is None and not shared.entries  # not brought back by the late write


async def test_a_failed_write_is_logged_not_raised(caplog: pytest.LogCaptureFixture) -> None:
    store = WriteBehind(SlowStore(delay_s=0, fail=True), settle_s=0)
    await store.put([entry()])
    await asyncio.sleep(0.01)
    assert await store.get("resp_1") is None
    assert any(
        "could not store 1 response(s): resp_1" in r.getMessage() for r in caplog.records if r.levelno == logging.ERROR
    )


async def test_writes_that_arrive_together_go_in_one_batch() -> None:
    shared = SlowStore(delay_s=0.05)
    store = WriteBehind(shared)
    await store.put([entry("resp_0")])
    await asyncio.sleep(0.01)  # its write is on its way
    for i in range(1, 10):
        await store.put([entry(f"resp_{i}")])
    await asyncio.sleep(0.2)
    assert shared.batches == [1, 9] and len(shared.entries) == 10  # the first, then all that came meanwhile
