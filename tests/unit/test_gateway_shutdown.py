"""A Gateway replica that Serve stops (scaled down, redeployed) sends the settlements it still batches first.

Serve's ingress wrapper stops a replica by running its ASGI app's lifespan shutdown (uvicorn's `LifespanOn`,
`ray.serve._private.http_util.ASGIAppReplicaWrapper.__del__`) and awaits it; what the class's own `__del__`
returns it drops. The Gateway's drain is that shutdown, driven here the way Serve drives it."""

from __future__ import annotations

import asyncio
from pathlib import Path

from uvicorn.config import Config
from uvicorn.lifespan.on import LifespanOn

from orchestrator.accounting.accounts import Accounts
from orchestrator.accounting.book import Book, InProcessOwner, Settle
from orchestrator.accounting.reports import usage_report
from orchestrator.app import Gateway, build_pipeline
from orchestrator.frontdoors.responses.conversations import limits
from orchestrator.settings import load_settings


async def test_a_stopping_gateway_sends_the_settlements_it_still_holds(tmp_path: Path) -> None:
    book = Book(tmp_path / "ledger.sqlite")
    accounts = Accounts(owner=InProcessOwner(book))
    gateway = Gateway.__new__(Gateway)  # the replica as Serve holds it once its constructor ran
    gateway._pipeline = await build_pipeline({}, load_settings(data_dir=str(tmp_path)), env={})
    gateway._accounts = accounts
    gateway._max_body_mb = 8
    gateway._responses = None
    gateway._conversations = None
    gateway._conversation_room = limits(10, 1)
    gateway._poller = asyncio.get_running_loop().create_task(asyncio.sleep(3600))  # the load board's poll

    lifespan = LifespanOn(Config(gateway.__serve_build_asgi_app__(), lifespan="on"))  # as Serve runs the app
    await lifespan.startup()
    for i in range(3):  # three answered requests, waiting for their batch to fill or its delay to pass
        accounts.settlements.send(Settle(None, {"ts": 1.0, "request_id": f"req_{i}", "status": 200}))
    assert usage_report(book.db)["totals"]["requests"] == 0
    await lifespan.shutdown()  # what Serve awaits on a graceful shutdown

    assert not lifespan.shutdown_failed and not lifespan.error_occurred
    assert usage_report(book.db)["totals"]["requests"] == 3
    await asyncio.sleep(0)
    assert gateway._poller.cancelled()
