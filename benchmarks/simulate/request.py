"""One simulated request, as it moves through gateway, engine and remote routes."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

# A route a gateway policy chose: (local?, remote index (-1 for local), first-token timeout in s or 0)
Route = tuple[bool, int, float]


class SimRequest:
    """Plain slots (no dataclass machinery): hundreds of thousands are made per second."""

    __slots__ = (
        "index",
        "arrival",
        "prompt",
        "output",
        "gateway",
        "routes",
        "attempt",
        "handle",
        "spill",
        "engine",
        "left",
        "aborted",
        "first_at",
        "done",
        "local",
        "cost",
        "attempt_started",
        "hedge_s",
        "hedge_at",
    )

    def __init__(self, index: int, arrival: float, prompt: int, output: int, gateway: int):
        self.index = index
        self.arrival = arrival
        self.prompt = prompt
        self.output = output
        self.gateway = gateway
        self.routes: list[Route] = []
        self.attempt = -1
        self.handle: Any = None  # the policy's own record of its decision (ours: the RoutePlan)
        self.spill = False
        self.engine: Any = None
        self.left = prompt  # prompt tokens not yet computed
        self.aborted = False
        self.first_at = -1.0  # engine time of the first token
        self.done: Callable[[], None] | None = None  # tells the policy a local attempt ended
        self.local = False
        self.cost = 0.0
        self.attempt_started = 0.0
        self.hedge_s = 0.0  # the plan's hedge: a remote attempt beside the local one after this long (0: none)
        self.hedge_at = -1.0  # a hedge in flight: when its first token comes (-1: none, or called off)
