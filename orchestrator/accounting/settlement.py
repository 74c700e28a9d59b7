"""Settlement: each finished request's real cost sent to the ledger's owner, in batches.

A batch goes when it is full, after a short delay, or with this replica's next
admission (one call and one transaction for many requests). What the owner
doesn't take (it restarts, say) is kept in order and sent again, bounded, so
no usage is lost while it is away.
"""

from __future__ import annotations

import asyncio
import logging
from typing import Any

from orchestrator.accounting.book import LedgerOwner, Settle, SettleMany

_internal = logging.getLogger(__name__)

RETRY_S = 1.0  # settlements the owner didn't take are sent again after this
# A batch goes when this many wait, or this long after the first of them. Every call to the owner (a Ray
# actor) costs a few ms of CPU between the two processes whatever it carries, a row little on top: at 50 ms
# and 64 rows a busy replica made 20 calls a second (benchmarks/README.md, "Remote overhead").
ROWS = 256
DELAY_S = 0.25
MAX_UNSETTLED = 100_000  # and kept up to this many while it stays away


class Settlements:
    """This replica's settlements on their way to the owner."""

    def __init__(self, owner: LedgerOwner | None, *, rows: int = ROWS, delay_s: float = DELAY_S):
        self.owner = owner
        self._rows = rows
        self._delay_s = delay_s
        self._pending: set[asyncio.Future[Any]] = set()
        self._batch: list[Settle] = []
        self._flush_timer: asyncio.TimerHandle | None = None

    def send(self, settle: Settle) -> None:
        """Queue a settlement; a batch goes to the owner when full, after `delay_s`, or
        with this replica's next admission (one call and one transaction for many requests)."""
        self._batch.append(settle)
        if len(self._batch) >= self._rows:
            self.flush()
        elif self._flush_timer is None:
            self._flush_timer = asyncio.get_running_loop().call_later(self._delay_s, self.flush)

    def take_batch(self) -> tuple[Settle, ...]:
        if self._flush_timer is not None:
            self._flush_timer.cancel()
            self._flush_timer = None
        batch, self._batch = tuple(self._batch), []
        return batch

    def flush(self) -> None:
        """Send the settlements waiting in the batch now."""
        batch = self.take_batch()
        if not batch or self.owner is None:
            return
        task = asyncio.ensure_future(self.owner.call(SettleMany(batch)))  # sent now, in order
        self._pending.add(task)
        task.add_done_callback(lambda t: self._settled(t, batch))

    def _settled(self, task: asyncio.Future[Any], batch: tuple[Settle, ...]) -> None:
        self._pending.discard(task)
        if not task.cancelled() and task.exception() is not None:
            self.requeue(batch, task.exception())

    def requeue(self, batch: tuple[Settle, ...], error: BaseException | None) -> None:
        """The owner didn't take `batch` (it restarts, say): keep it, in order, and try again soon.
        (If it had applied the batch before failing to answer, the retry counts it twice: spend is
        overstated rather than lost.)"""
        if not batch:
            return
        _internal.error("settling %d requests failed (%r); retrying", len(batch), error)
        self._batch[:0] = batch
        if len(self._batch) > MAX_UNSETTLED:
            dropped = len(self._batch) - MAX_UNSETTLED
            _internal.error("dropping %d unsettled requests: the ledger is unreachable", dropped)
            del self._batch[: len(self._batch) - MAX_UNSETTLED]
        if self._flush_timer is None:
            self._flush_timer = asyncio.get_running_loop().call_later(RETRY_S, self.flush)

    async def drain(self) -> None:
        """Send and wait for every settlement so far (tests, shutdown); a few tries if the owner fails."""
        for _ in range(3):
            self.flush()
            while self._pending:
                await asyncio.gather(*list(self._pending), return_exceptions=True)
            if not self._batch:
                return
