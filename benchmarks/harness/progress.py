"""Progress for people watching a long benchmark: a bar on stderr where stderr is a terminal.

`bar(total, what)` is a tqdm bar (requests, rounds or seconds); piped to a file or run by CI, tqdm
disables itself (`disable=None`), so logs and saved results carry no progress noise. `timed(seconds,
what)` runs a bar that fills with wall time while a timed phase (a burst profile, a calibration) runs.
"""

from __future__ import annotations

import asyncio
import sys
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from tqdm import tqdm


def bar(total: float | None, what: str, unit: str = "req") -> tqdm:  # type: ignore[type-arg]
    """A bar of `total` `unit`s; update it with `.update(n)`, close it (or use it as a context manager)."""
    return tqdm(total=total, desc=what, unit=unit, disable=None, leave=False, file=sys.stderr, dynamic_ncols=True)


@asynccontextmanager
async def timed(seconds: float, what: str) -> AsyncIterator[None]:
    """A bar filling over `seconds` of wall time while the block runs."""
    progress = bar(round(seconds), what, unit="s")

    async def tick() -> None:
        start = time.perf_counter()
        while True:
            await asyncio.sleep(1.0)
            progress.n = min(round(time.perf_counter() - start), round(seconds))
            progress.refresh()

    ticker = asyncio.get_running_loop().create_task(tick())
    try:
        yield
    finally:
        ticker.cancel()
        progress.close()
