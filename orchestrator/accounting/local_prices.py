"""What a local token costs: the GPU's price per hour over the engine's measured throughput.

    $ per output token = price_per_hour / 3600 / max(decode tokens/s, floor)
    $ per input token  = price_per_hour / 3600 / max(prefill tokens/s, floor)

The rates are one replica's recent prefill/decode throughput (`EngineFigures`:
under Serve, the load board's sum over the replicas, per replica; in process,
the engine's own `stats()`), refreshed by `LocalStatsPoller`.
An idle engine reports no throughput; the floors stand in for it, so a
quiet GPU's tokens are priced at a sensible capacity, not at infinity. The
same snapshot feeds the local queue-depth gauges.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Awaitable, Callable
from typing import TypedDict

from orchestrator.accounting.prices import Price

log = logging.getLogger(__name__)


class EngineFigures(TypedDict):
    """What a local price and the queue gauges need of a local model (a subset of `LoadStats`)."""

    waiting: int  # requests queued, over all replicas
    running: int  # requests being decoded, over all replicas
    prefill_tokens_per_s: float  # one replica's (a GPU's) recent throughput
    decode_tokens_per_s: float


class LocalRate:
    """The current amortized price of one local model (a `ledger.PriceSource`)."""

    def __init__(self, price_per_hour: float, *, min_decode_tps: float, min_prefill_tps: float):
        self.price_per_hour = price_per_hour
        self.min_decode_tps = max(min_decode_tps, 1e-9)
        self.min_prefill_tps = max(min_prefill_tps, 1e-9)
        self.stats: EngineFigures | None = None

    def update(self, stats: EngineFigures) -> None:
        self.stats = stats

    def price(self) -> Price:
        decode = self.stats["decode_tokens_per_s"] if self.stats else 0.0
        prefill = self.stats["prefill_tokens_per_s"] if self.stats else 0.0
        per_s = self.price_per_hour / 3600
        return Price(
            input_per_mtok=per_s / max(prefill, self.min_prefill_tps) * 1e6,
            output_per_mtok=per_s / max(decode, self.min_decode_tps) * 1e6,
        )

    def output_per_mtok(self) -> float:
        return self.price().output_per_mtok

    def waiting(self) -> float:
        return float(self.stats["waiting"]) if self.stats else 0.0

    def running(self) -> float:
        return float(self.stats["running"]) if self.stats else 0.0


class LocalStatsPoller:
    """Reads each local model's stats every `interval_s` into its `LocalRate`, in the background."""

    def __init__(self, sources: dict[str, tuple[Callable[[], Awaitable[EngineFigures]], LocalRate]], interval_s: float):
        self._sources = sources
        self._interval = interval_s
        self._task: asyncio.Task[None] | None = None

    async def poll_once(self) -> None:
        for name, (read, rate) in self._sources.items():
            try:
                rate.update(await read())
            except Exception as e:  # a missed reading keeps the last one
                log.debug("stats of %s unavailable: %s", name, e)

    def start(self) -> None:
        if self._task is None and self._sources:
            self._task = asyncio.get_running_loop().create_task(self._run())

    async def _run(self) -> None:
        while True:
            await self.poll_once()
            await asyncio.sleep(self._interval)

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
            self._task = None
