"""Prices, usage and cost: what every answer cost, and what the cache saved.

`Prices` turns a backend's usage into dollars from the provider presets
(per million input, cached input and output tokens). Every answer the
pipeline hands out becomes one `UsageRecord`, given to a `Ledger`: a cache
hit records zero cost and the cost it saved (what its original route
charged for the same tokens). `LogLedger` writes each record as one JSON log
line; budgets, virtual keys and the cluster-wide ledger build on this seam.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Mapping
from dataclasses import asdict, dataclass
from typing import Protocol

from orchestrator.protocol import Usage
from orchestrator.settings import ProviderSettings

log = logging.getLogger("orchestrator.requests")


@dataclass(frozen=True)
class Price:
    input_per_mtok: float = 0.0
    output_per_mtok: float = 0.0
    cached_input_per_mtok: float | None = None
    cache_write_per_mtok: float | None = None

    def cost(self, usage: Usage) -> float:
        """The prompt (its tokens read from the provider's prompt cache and written to it at their own
        prices, where the usage says so: both are counted in `prompt_tokens`) and the output."""
        details = usage.prompt_tokens_details
        cached = details.cached_tokens if details else 0
        written = (details.cache_write_tokens or 0) if details else 0
        cached_price = self.input_per_mtok if self.cached_input_per_mtok is None else self.cached_input_per_mtok
        write_price = self.input_per_mtok if self.cache_write_per_mtok is None else self.cache_write_per_mtok
        fresh = max(0, usage.prompt_tokens - cached - written)
        return (
            fresh * self.input_per_mtok
            + cached * cached_price
            + written * write_price
            + usage.completion_tokens * self.output_per_mtok
        ) / 1e6


class PriceSource(Protocol):
    """A price that changes as it is measured (a local model's amortized cost)."""

    def price(self) -> Price: ...


class Prices:
    """Prices by (provider, the provider's model id), and live prices by provider (local models).

    A backend with neither costs nothing.
    """

    def __init__(self, prices: Mapping[tuple[str, str], Price], live: Mapping[str, PriceSource] | None = None):
        self._prices = dict(prices)
        self._live = dict(live or {})

    def add_live(self, provider: str, source: PriceSource) -> None:
        """Price `provider`'s answers from `source` from now on (set once, at start)."""
        self._live[provider] = source

    def price(self, provider: str, model: str) -> Price:
        source = self._live.get(provider)
        if source is not None:
            return source.price()
        return self._prices.get((provider, model), Price())

    @classmethod
    def from_providers(cls, providers: Mapping[str, ProviderSettings]) -> Prices:
        return cls(
            {
                (name, m.id): Price(
                    m.input_per_mtok, m.output_per_mtok, m.cached_input_per_mtok, m.cache_write_per_mtok
                )
                for name, cfg in providers.items()
                for m in cfg.models.values()
            }
        )

    def cost(self, provider: str, model: str, usage: Usage | None) -> float:
        if usage is None:
            return 0.0
        return self.price(provider, model).cost(usage)


@dataclass(frozen=True)
class UsageRecord:
    """One answer, accounted for."""

    id: str
    model: str  # the name the client asked for
    provider: str  # who served it ("cache" for a hit)
    provider_model: str
    route_reason: str
    cache: str
    stream: bool
    prompt_tokens: int
    completion_tokens: int
    cached_tokens: int
    cost_usd: float
    saved_usd: float
    complete: bool  # False: the answer broke off (the tokens received are still counted)
    estimated: bool = False  # the provider gave no usage: counted (the local tokenizer, else bytes / 4)
    # Tokens of attempts that didn't serve (`Route.discarded_tokens`; their cost is in `cost_usd`): not the
    # answer's usage, but spent by its key all the same (`budget_tokens`, `tpm`).
    discarded_tokens: int = 0


class Ledger(Protocol):
    def record(self, record: UsageRecord) -> None: ...


class LogLedger:
    """Each record as one JSON line on the `orchestrator.requests` logger."""

    def record(self, record: UsageRecord) -> None:
        log.info(json.dumps(asdict(record), separators=(",", ":")))
