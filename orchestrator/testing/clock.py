"""A fake clock: the seam every time-dependent policy takes (`Callable[[], float]`)."""

from __future__ import annotations


class FakeClock:
    """A clock (`Callable[[], float]`) that moves only when told to."""

    def __init__(self, now: float = 1_000.0):
        self.now = now

    def __call__(self) -> float:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += seconds
