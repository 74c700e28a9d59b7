"""The simulated clock and its event heap.

One `EventLoop` per simulation. An event is a tuple `(time, seq, handler, arg)` on a binary heap;
`seq` keeps ties in the order they were scheduled. Handlers are bound methods taken once by their
owners (an attribute lookup per event would allocate a new bound method each time), and the
arrivals are not on the heap at all: the run loop (`benchmarks.simulate.fleet`) merges the sorted
arrival arrays with the heap, which halves the heap's traffic.
"""

from __future__ import annotations

import heapq
from collections.abc import Callable
from typing import Any

Handler = Callable[[Any], None]


class EventLoop:
    """Simulated time (seconds) and what happens next."""

    __slots__ = ("now", "heap", "_seq")

    def __init__(self) -> None:
        self.now = 0.0
        self.heap: list[tuple[float, int, Handler, Any]] = []
        self._seq = 0

    def time(self) -> float:
        """The clock the real scheduler objects read (`LoadView`, `LoadBoard`, `Calibration`, `LoadTracker`)."""
        return self.now

    def at(self, t: float, handler: Handler, arg: Any = None) -> None:
        self._seq += 1
        heapq.heappush(self.heap, (t, self._seq, handler, arg))

    def next_time(self) -> float:
        return self.heap[0][0] if self.heap else float("inf")

    def step(self) -> None:
        """Run the earliest event."""
        t, _, handler, arg = heapq.heappop(self.heap)
        self.now = t
        handler(arg)
