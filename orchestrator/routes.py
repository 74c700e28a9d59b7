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
    # What attempts that didn't serve may be billed: hedges called off (their prompts), whole answers
    # broken off before a fallback (their prompts and the output that came). Part of the request's cost,
    # and their tokens part of what its key spends (`budget_tokens`, `tpm`).
    discarded_usd: float = 0.0
    discarded_tokens: int = 0


@dataclass(frozen=True)
class Routed(Generic[T]):
    route: Route
    result: T
