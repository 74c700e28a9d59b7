"""Who served a request, and why: what the edge turns into response headers."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Generic, Literal, TypeVar

T = TypeVar("T")

CacheOutcome = Literal["HIT", "MISS", "BYPASS"]


@dataclass(frozen=True)
class Route:
    provider: str
    model: str
    reason: str
    cache: CacheOutcome = "BYPASS"
    overflow: bool = False  # a remote route serving because the local model was too busy (burst budget)
    called_off_usd: float = 0.0  # the prompts of hedges started and called off (a provider may bill them)


@dataclass(frozen=True)
class Routed(Generic[T]):
    route: Route
    result: T
