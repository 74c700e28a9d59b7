"""The dashboard's ledger reads are shared: viewers at the same moment cause one read, a read is reused for
`max_age_s`, a failed read is a 503 and is not kept, and a gateway without a ledger reads nothing."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from orchestrator.accounting.accounts import Accounts
from orchestrator.accounting.book import Book, Command, InProcessOwner, Settle
from orchestrator.dashboard.reader import SharedWindows
from orchestrator.errors import LedgerUnavailable
from orchestrator.testing.clock import FakeClock

NOW = 1_800_000_030.0


class CountingOwner:
    """The book in this process, answering a moment later, counting its calls; `fail` makes it raise."""

    def __init__(self, book: Book):
        self.inner = InProcessOwner(book)
        self.calls = 0
        self.fail = False

    async def _call(self, command: Command[Any]) -> Any:
        self.calls += 1
        await asyncio.sleep(0.01)
        if self.fail:
            raise ConnectionError("the actor is restarting")
        return await self.inner.call(command)

    def call(self, command: Command[Any]) -> Any:
        return self._call(command)


@pytest.fixture
def book(tmp_path: Path) -> Iterator[Book]:
    b = Book(tmp_path / "ledger.sqlite")
    b.settle(Settle(None, {"ts": NOW - 1, "route": "local", "status": 200, "model": "auto"}))
    yield b
    b.close()


async def test_viewers_share_reads(book: Book) -> None:
    owner, clock = CountingOwner(book), FakeClock(NOW)
    windows = SharedWindows(Accounts(owner=owner), max_age_s=2.0, clock=clock)
    first, second = await asyncio.gather(windows.read(60), windows.read(60))
    assert owner.calls == 1 and first is second and first is not None
    assert sum(g.requests for g in first.groups) == 1
    clock.advance(1.5)
    assert await windows.read(60) is first and owner.calls == 1
    await windows.read(5)  # another window length: its own read
    assert owner.calls == 2
    clock.advance(1.0)
    assert await windows.read(60) is not first and owner.calls == 3


async def test_a_failed_read_is_a_503_and_is_not_kept(book: Book) -> None:
    owner, clock = CountingOwner(book), FakeClock(NOW)
    windows = SharedWindows(Accounts(owner=owner), clock=clock)
    owner.fail = True
    with pytest.raises(LedgerUnavailable):
        await windows.read(60)
    owner.fail = False
    assert await windows.read(60) is not None and owner.calls == 2


async def test_no_ledger_no_read() -> None:
    assert await SharedWindows(Accounts()).read(60) is None
