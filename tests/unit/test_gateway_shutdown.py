"""A Gateway replica that Serve stops (scaled down, redeployed) sends the settlements it still batches first."""

from __future__ import annotations

import asyncio
from pathlib import Path

from orchestrator.accounting.accounts import Accounts
from orchestrator.accounting.book import Book, InProcessOwner, Settle
from orchestrator.accounting.reports import usage_report
from orchestrator.app import Gateway


async def test_a_stopping_gateway_sends_the_settlements_it_still_holds(tmp_path: Path) -> None:
    book = Book(tmp_path / "ledger.sqlite")
    accounts = Accounts(owner=InProcessOwner(book))
    for i in range(3):  # three answered requests, waiting for their batch to fill or its delay to pass
        accounts.settlements.send(Settle(None, {"ts": 1.0, "request_id": f"req_{i}", "status": 200}))
    assert usage_report(book.db)["totals"]["requests"] == 0

    gateway = Gateway.__new__(Gateway)  # the replica as Serve holds it once its constructor ran
    gateway._accounts = accounts
    gateway._poller = asyncio.get_running_loop().create_task(asyncio.sleep(3600))  # the load board's poll
    stopping = gateway.__del__()  # what Serve calls on a graceful shutdown, and awaits
    assert stopping is not None
    await stopping
    assert gateway.__del__() is None  # Python's finalizer, later: nothing more to do

    assert usage_report(book.db)["totals"]["requests"] == 3
    await asyncio.sleep(0)
    assert gateway._poller.cancelled()
