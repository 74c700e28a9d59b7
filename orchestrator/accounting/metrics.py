"""Prometheus metrics for one gateway app, on its own `CollectorRegistry` (no globals).

Each gateway replica serves its own `/metrics` (with direct ingress, on its
own port), so a scrape config lists every replica; counters add up across
them. Labels stay bounded: `route` is local | remote | cache | none,
`provider` a configured provider, `key` a key id (never a key).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest
from prometheus_client.exposition import CONTENT_TYPE_LATEST

__all__ = ["CONTENT_TYPE_LATEST", "Metrics"]

_LATENCY_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 120.0)
_OVERHEAD_BUCKETS = (0.0005, 0.001, 0.002, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 1.0)


class Metrics:
    """Every metric the gateway exports."""

    def __init__(self) -> None:
        self.registry = r = CollectorRegistry(auto_describe=True)
        self._children: dict[tuple[Any, tuple[str, ...]], Any] = {}
        self.requests = Counter(
            "orchestrator_requests", "Requests answered", ["endpoint", "route", "provider", "status"], registry=r
        )
        self.ttft = Histogram(
            "orchestrator_ttft_seconds",
            "Time to the first byte of the answer (whole answers: the whole answer)",
            ["route", "provider"],
            buckets=_LATENCY_BUCKETS,
            registry=r,
        )
        self.latency = Histogram(
            "orchestrator_request_duration_seconds",
            "Time from request to the end of the answer",
            ["route", "provider"],
            buckets=_LATENCY_BUCKETS,
            registry=r,
        )
        self.overhead = Histogram(
            "orchestrator_gateway_overhead_seconds",
            "Time the gateway itself spent before the first byte (not waiting on a model)",
            ["route"],
            buckets=_OVERHEAD_BUCKETS,
            registry=r,
        )
        self.tokens = Counter(
            "orchestrator_tokens", "Tokens served", ["provider", "model", "kind", "estimated"], registry=r
        )
        self.cost = Counter("orchestrator_cost_usd", "Spend in dollars", ["provider", "model", "key"], registry=r)
        # Savings = reference - cost (either can be the larger one; counters only go up).
        self.reference_cost = Counter(
            "orchestrator_reference_cost_usd",
            "What the reference remote model would have charged for the same tokens",
            ["route"],
            registry=r,
        )
        self.cache = Counter("orchestrator_cache_lookups", "Cache outcomes", ["outcome"], registry=r)
        self.decisions = Counter(
            "orchestrator_route_decisions", "Why each answer took its route", ["reason"], registry=r
        )
        self.refusals = Counter(
            "orchestrator_key_refusals", "Requests refused for a key's limits", ["key", "reason"], registry=r
        )
        self.downgrades = Counter(
            "orchestrator_budget_downgrades", "Requests downgraded past a soft limit", ["key"], registry=r
        )
        self.queue_depth = Gauge(
            "orchestrator_local_queue_depth", "Requests waiting in the local engine", ["provider"], registry=r
        )
        self.local_running = Gauge(
            "orchestrator_local_running", "Requests being decoded by the local engine", ["provider"], registry=r
        )
        self.local_cost = Gauge(
            "orchestrator_local_cost_per_mtok_usd",
            "The local model's amortized price per million output tokens",
            ["provider"],
            registry=r,
        )

    def child(self, metric: Any, *values: str) -> Any:
        """`metric.labels(*values)` (in the order of its label names), looked up once: prometheus_client
        checks and locks on every `labels` call, and a request touches about ten children."""
        key = (metric, values)
        found = self._children.get(key)
        if found is None:
            found = self._children[key] = metric.labels(*values)
        return found

    def gauge_from(self, gauge: Gauge, provider: str, read: Callable[[], float]) -> None:
        gauge.labels(provider=provider).set_function(read)

    def exposition(self) -> bytes:
        return generate_latest(self.registry)
