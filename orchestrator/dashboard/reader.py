"""Reading the ledger's window for the dashboard, shared: one read serves every viewer for a moment.

Reading an hour of the request log occupies the ledger's owner for a while
(about 4 µs per request in the window on this project's 2-core machine: see
`benchmarks/dashboard_window.py`), and admissions wait behind it. So a
gateway replica reads it at most once per `max_age_s` for each window
length: a viewer asking while a read is in flight awaits that read, and one
asking just after it gets its result. A failed read is not kept.
"""

from __future__ import annotations

import asyncio
import functools
import logging
import time
from collections.abc import Callable

from orchestrator.accounting.accounts import Accounts
from orchestrator.accounting.book import Query
from orchestrator.dashboard.window import Bounds, Window, read_window
from orchestrator.errors import LedgerUnavailable

log = logging.getLogger(__name__)


class SharedWindows:
    """The window of the last `minutes` from the ledger's owner (every replica's rows), shared for `max_age_s`."""

    def __init__(self, accounts: Accounts, *, max_age_s: float = 2.0, clock: Callable[[], float] = time.time):
        self._accounts = accounts
        self._max_age_s = max_age_s
        self._clock = clock
        self._reads: dict[int, tuple[float, asyncio.Future[Window]]] = {}

    async def read(self, minutes: int) -> Window | None:
        """The window (None without a ledger); `LedgerUnavailable` when the owner doesn't answer."""
        if self._accounts.owner is None:
            return None
        now = self._clock()
        held = self._reads.get(minutes)
        if held is None or now - held[0] > self._max_age_s:
            task = asyncio.ensure_future(self._read(Bounds.last(now, minutes)))
            held = self._reads[minutes] = (now, task)
            task.add_done_callback(functools.partial(self._forget_failed, minutes, held))
        return await asyncio.shield(held[1])  # a viewer going away doesn't cancel the others' read

    def _forget_failed(
        self, minutes: int, held: tuple[float, asyncio.Future[Window]], done: asyncio.Future[Window]
    ) -> None:
        if (done.cancelled() or done.exception() is not None) and self._reads.get(minutes) is held:
            del self._reads[minutes]

    async def _read(self, bounds: Bounds) -> Window:
        accounts = self._accounts
        assert accounts.owner is not None
        accounts.flush()  # this replica's settlements first: what it answered counts in what it shows
        query = functools.partial(read_window, bounds=bounds, reference_model=accounts.reference_model)
        try:
            window: Window = await accounts.owner.call(Query(query))
        except Exception as e:
            log.warning("dashboard: reading the ledger's window failed (%s: %s)", type(e).__name__, e)
            raise LedgerUnavailable(
                f"The ledger didn't answer ({type(e).__name__}); the dashboard's figures will be back shortly."
            ) from None
        return window
