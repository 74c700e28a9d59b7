"""Fair queueing between tenants on one engine: a vLLM priority per request.

vLLM's `priority` scheduling takes waiting requests in (priority, arrival)
order. Left first-come-first-served, one key's burst of a hundred requests
queues every other key's request behind all of them. Here each request gets
a start tag, as in start-time fair queueing with a unit cost per request:
a tenant's next request is tagged one after its previous one, but never
before the tag of the latest request the engine has started (`started`), so
a tenant that was idle joins at the head of the queue, not behind a busy
one's backlog, and two busy tenants alternate. One tenant alone keeps its
own order (its tags only grow). Pure bookkeeping, per engine replica.
"""

from __future__ import annotations

MAX_TENANTS = 4096  # tags kept at most; past it the ones behind the engine's progress are dropped


class FairQueue:
    """Start tags per tenant; smaller goes first (vLLM's `priority`)."""

    __slots__ = ("_last", "_now")

    def __init__(self) -> None:
        self._last: dict[str, int] = {}  # each tenant's latest tag
        self._now = 0  # the latest tag the engine started serving

    def tag(self, tenant: str) -> int:
        """The tag of `tenant`'s next request."""
        last = self._last.get(tenant)
        tag = self._now if last is None or last < self._now else last + 1
        if last is None and len(self._last) >= MAX_TENANTS:
            # A tenant whose tags are not ahead of the engine's progress gets `_now` forgotten too (ties
            # go by arrival, so its own order holds).
            self._last = {t: v for t, v in self._last.items() if v > self._now}
        self._last[tenant] = tag
        return tag

    def started(self, tag: int) -> None:
        """The engine started serving a request of `tag` (its first output came)."""
        if tag > self._now:
            self._now = tag
