"""Fair queueing between tenants on one engine: a vLLM priority per request.

vLLM's `priority` scheduling takes waiting requests in (priority, arrival)
order. Left first-come-first-served, one key's burst of a hundred requests
queues every other key's request behind all of them. Here each request gets
a start tag, as in start-time fair queueing with a unit cost per request:
a tenant's next request is tagged one after its previous one, but never
before the tag of the latest request the engine has started (`start`), so
a tenant that was idle joins at the head of the queue, not behind a busy
one's backlog, and two busy tenants alternate. One tenant alone keeps its
own order (its tags only grow). The requests not yet started are counted
per tenant (`waiting`): the engine reports them, and the scheduler predicts
a tenant's wait from the queue ahead of it (`ahead`), not the whole queue.
Pure bookkeeping, per engine replica.
"""

from __future__ import annotations

from collections.abc import Mapping

MAX_TENANTS = 4096  # tags kept at most; past it the ones not ahead of the engine's progress are dropped
MAX_REPORTED = 64  # tenants in a load report at most: those with the most requests waiting


class FairQueue:
    """Start tags per tenant; smaller goes first (vLLM's `priority`)."""

    __slots__ = ("_last", "_now", "_waiting")

    def __init__(self) -> None:
        self._last: dict[str, int] = {}  # each tenant's latest tag
        self._now = 0  # the latest tag the engine started serving
        self._waiting: dict[str, int] = {}  # requests entered and not yet started, by tenant

    def enter(self, tenant: str) -> int:
        """The tag of `tenant`'s next request, counted as waiting until it starts or leaves."""
        last = self._last.get(tenant)
        tag = self._now if last is None or last < self._now else last + 1
        if last is None and len(self._last) >= MAX_TENANTS:
            # A tenant whose tags are not ahead of the engine's progress gets `_now` forgotten too (ties
            # go by arrival, so its own order holds).
            self._last = {t: v for t, v in self._last.items() if v > self._now}
        self._last[tenant] = tag
        self._waiting[tenant] = self._waiting.get(tenant, 0) + 1
        return tag

    def start(self, tenant: str, tag: int) -> None:
        """The engine started serving `tenant`'s request of `tag` (its first output came)."""
        if tag > self._now:
            self._now = tag
        self.leave(tenant)

    def leave(self, tenant: str) -> None:
        """A request of `tenant` stopped waiting (started, or gone before it did)."""
        left = self._waiting.get(tenant, 0) - 1
        if left > 0:
            self._waiting[tenant] = left
        else:
            self._waiting.pop(tenant, None)

    def waiting(self) -> dict[str, int]:
        """Requests not yet started, by tenant (the `MAX_REPORTED` with the most)."""
        if len(self._waiting) <= MAX_REPORTED:
            return dict(self._waiting)
        return dict(sorted(self._waiting.items(), key=lambda kv: -kv[1])[:MAX_REPORTED])


def ahead(waiting: Mapping[str, int], tenant: str) -> int:
    """How many of the `waiting` requests go before `tenant`'s next one: its own, and of every other
    tenant's at most one more than it has waiting (two busy tenants alternate; an idle one goes after
    at most one of each)."""
    own = waiting.get(tenant, 0)
    return own + sum(min(n, own + 1) for t, n in waiting.items() if t != tenant)
