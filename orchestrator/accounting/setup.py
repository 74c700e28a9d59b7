"""Building a gateway's `Accounts` from settings: the ledger's owner, keys, prices, local rates.

owner      the named Ray actor (`ledger.owner: actor`) or a book in this
           process (`process`), on `ledger.path` (default <data_dir>/ledger.sqlite)
keys       config keys synced into the owner; with any key configured, or a
           master key set, every request needs a valid key, and /metrics the
           master key or the metrics key (`ledger.metrics_key_env`)
prices     the presets' prices, plus each local model's amortized rate, kept
           current from its engine's stats
reference  the model savings are measured against (`ledger.reference_model`)
estimator  usage for answers that came without any: the local tokenizer, else bytes / 4
"""

from __future__ import annotations

import logging
import os
from collections.abc import Awaitable, Callable, Mapping
from pathlib import Path
from typing import Protocol

from local_models.interface import ModelInfo
from orchestrator.accounting.accounts import Accounts
from orchestrator.accounting.book import Book, InProcessOwner, LedgerOwner, SyncKeys
from orchestrator.accounting.keys import KeyPolicy, hash_key
from orchestrator.accounting.local_prices import EngineFigures, LocalRate, LocalStatsPoller
from orchestrator.accounting.metrics import Metrics
from orchestrator.accounting.prices import Price, Prices
from orchestrator.scheduling.capabilities import Registry
from orchestrator.scheduling.tokens import UsageEstimator
from orchestrator.settings import Settings


class Served(Protocol):
    """What accounting needs of the flow it accounts for (the `Pipeline`): no import upward."""

    @property
    def registry(self) -> Registry: ...

    @property
    def prices(self) -> Prices: ...

    @property
    def estimator(self) -> UsageEstimator | None: ...


log = logging.getLogger(__name__)

StatsReader = Callable[[], Awaitable[EngineFigures]]


def ledger_path(settings: Settings) -> Path:
    return settings.ledger.path or settings.data_dir / "ledger.sqlite"


def owner_for(settings: Settings) -> LedgerOwner:
    path = ledger_path(settings)
    if settings.ledger.owner == "process":
        return InProcessOwner(Book(path, reservation_ttl_s=settings.ledger.reservation_ttl_s))
    from orchestrator.accounting.actor import get_or_create

    return get_or_create(path, reservation_ttl_s=settings.ledger.reservation_ttl_s)


def reference_price(settings: Settings) -> Price | None:
    """The reference model's price, from its provider preset ("provider/model")."""
    name = settings.ledger.reference_model
    if not name:
        return None
    provider, _, model = name.partition("/")
    try:
        m = settings.providers[provider].models[model]
    except KeyError:  # reports then show no savings; the gateway still serves
        log.warning("ledger.reference_model %r is not a configured provider/model: no savings figures", name)
        return None
    return Price(m.input_per_mtok, m.output_per_mtok, m.cached_input_per_mtok, m.cache_write_per_mtok)


async def build_accounts(
    settings: Settings,
    pipeline: Served,
    *,
    local: Mapping[str, tuple[StatsReader, ModelInfo]] | None = None,
    owner: LedgerOwner | None = None,
    env: Mapping[str, str] | None = None,
    stats_interval_s: float = 1.0,
) -> Accounts:
    """Accounts for `pipeline`; `local` maps each local provider to its stats and info."""
    env = os.environ if env is None else env
    owner = owner or owner_for(settings)
    await owner.call(SyncKeys(tuple(KeyPolicy.from_settings(k, s) for k, s in settings.keys.items())))
    master = env.get(settings.ledger.master_key_env)
    metrics_key = env.get(settings.ledger.metrics_key_env)
    metrics = Metrics()
    rates = _local_rates(settings, pipeline, local or {}, metrics)
    poller = LocalStatsPoller(rates, stats_interval_s)
    await poller.poll_once()
    poller.start()
    accounts = Accounts(
        owner=owner,
        metrics=metrics,
        registry=pipeline.registry,
        prices=pipeline.prices,
        reference=reference_price(settings),
        reference_model=settings.ledger.reference_model,
        require_keys=bool(settings.keys) or bool(master),
        master_key_sha256=hash_key(master) if master else None,
        metrics_key_sha256=hash_key(metrics_key) if metrics_key else None,
        local_providers=frozenset(rates) | frozenset((local or {}).keys()),
        # Usage for answers without any (a stream broken off, a provider that reports none): the pipeline's
        # tokenizer (loaded once), else its byte count; such records say `estimated`.
        estimator=pipeline.estimator,
        # A quarter of a replica's places for one key's open WebSockets: the rest stay for requests and other keys.
        sockets_per_key=max(1, settings.gateway.max_ongoing_requests // 4),
        requests_per_key=requests_per_key(settings),
    )
    accounts.background = poller
    return accounts


def requests_per_key(settings: Settings) -> int:
    """The HTTP requests a key that sets no `parallel_requests` may have in progress on one replica: the
    gateway's `parallel_requests_per_key`, by default a quarter of the replica's places (as for its open
    WebSockets): one key's flood leaves three quarters to the others. (Four keys at their caps take them all:
    with many busy tenants, a smaller share.)"""
    gateway = settings.gateway
    if gateway.parallel_requests_per_key is not None:
        return gateway.parallel_requests_per_key
    return max(1, gateway.max_ongoing_requests // 4)


def _local_rates(
    settings: Settings, pipeline: Served, local: Mapping[str, tuple[StatsReader, ModelInfo]], metrics: Metrics
) -> dict[str, tuple[StatsReader, LocalRate]]:
    """Each local generation model's amortized price, live in the pipeline's prices and the metrics."""
    rates: dict[str, tuple[StatsReader, LocalRate]] = {}
    for name, (read, info) in local.items():
        if info["task"] != "generate":
            continue
        rate = LocalRate(
            settings.ledger.gpu_price_per_hour,
            min_decode_tps=settings.ledger.min_decode_tokens_per_s,
            min_prefill_tps=settings.ledger.min_prefill_tokens_per_s,
        )
        pipeline.prices.add_live(name, rate)
        rates[name] = (read, rate)
        metrics.gauge_from(metrics.queue_depth, name, rate.waiting)
        metrics.gauge_from(metrics.local_running, name, rate.running)
        metrics.gauge_from(metrics.local_cost, name, rate.output_per_mtok)
    return rates
