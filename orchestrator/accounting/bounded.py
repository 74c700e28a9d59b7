"""A map bounded in size and age: what the gateway keeps per client-controlled value.

Anything keyed by what a request presents (a key, a user, a model name, a tag)
grows with whatever clients send unless it is bounded twice: entries expire
after their TTL, and past `max_size` the least recently used go first. An
expired entry is a miss and is dropped when seen; `put` also sweeps a few
expired entries from the old end, so a map that stops being read still empties.
"""

from __future__ import annotations

import time
from collections import OrderedDict
from collections.abc import Callable
from typing import Generic, TypeVar

K = TypeVar("K")
V = TypeVar("V")

_SWEEP = 8  # expired entries dropped from the old end per put


class TTLMap(Generic[K, V]):
    """At most `max_size` entries, each for at most `ttl_s` seconds (or its own TTL); values are never None."""

    def __init__(self, max_size: int, ttl_s: float, *, clock: Callable[[], float] = time.monotonic):
        if max_size < 1:
            raise ValueError("max_size must be at least 1")
        self.max_size = max_size
        self.ttl_s = ttl_s
        self._clock = clock
        self._entries: OrderedDict[K, tuple[V, float]] = OrderedDict()  # oldest use first

    def __len__(self) -> int:
        return len(self._entries)

    def get(self, key: K) -> V | None:
        """The live value under `key` (now the most recently used), or None."""
        found = self._entries.get(key)
        if found is None:
            return None
        value, expires = found
        if expires <= self._clock():
            del self._entries[key]
            return None
        self._entries.move_to_end(key)
        return value

    def put(self, key: K, value: V, ttl_s: float | None = None) -> None:
        now = self._clock()
        self._entries[key] = (value, now + (self.ttl_s if ttl_s is None else ttl_s))
        self._entries.move_to_end(key)
        self._sweep(now)
        while len(self._entries) > self.max_size:
            self._entries.popitem(last=False)

    def pop(self, key: K) -> V | None:
        found = self._entries.pop(key, None)
        return found[0] if found is not None else None

    def clear(self) -> None:
        self._entries.clear()

    def _sweep(self, now: float) -> None:
        # The least recently used end holds the likeliest expired entries (TTLs may differ).
        for _ in range(_SWEEP):
            oldest = next(iter(self._entries.items()), None)
            if oldest is None or oldest[1][1] > now:
                return
            del self._entries[oldest[0]]
