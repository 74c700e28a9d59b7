"""The request log: one flat row per request (the JSON log line and the settlement), and its metrics."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from orchestrator.accounting.metrics import Metrics
from orchestrator.accounting.prices import Price
from orchestrator.protocol import Usage
from orchestrator.scheduling.policy import spill_reason_code

if TYPE_CHECKING:  # the tab is built by accounts.py, which builds this too
    from orchestrator.accounting.accounts import Tab

# The front doors' paths: these record usage (and get a metrics label of their own, as do /v1/models
# and the token counts, which record none).
ANSWERING = frozenset(
    {
        "/v1/chat/completions",
        "/v1/completions",
        "/v1/embeddings",
        "/v1/messages",
        "/v1/responses",
        "/v1/responses/compact",
    }
)
ENDPOINTS = ANSWERING | {"/v1/models", "/v1/messages/count_tokens", "/v1/responses/input_tokens"}
# Of a path, what a row keeps: any client (no key needed for a 404) chooses it, up to the server's header limit.
ENDPOINT_CHARS = 200


class RequestLog:
    """Rows and metrics for finished requests."""

    def __init__(self, metrics: Metrics, reference: Price | None, local_providers: frozenset[str]):
        self.metrics = metrics
        self.reference = reference
        self._local = local_providers

    def row(self, tab: Tab) -> dict[str, Any]:
        rec = tab.answer
        base: dict[str, Any] = dict(vars(rec)) if rec is not None else dict(_NO_ANSWER)  # flat: no asdict copy
        ttft = tab.first_byte_s
        usage = Usage(
            prompt_tokens=rec.prompt_tokens if rec else 0,
            completion_tokens=rec.completion_tokens if rec else 0,
            total_tokens=(rec.prompt_tokens + rec.completion_tokens) if rec else 0,
        )
        reference = self.reference.cost(usage) if self.reference is not None and rec is not None else 0.0
        return {
            "ts": round(tab.ts, 6),
            "request_id": tab.request_id,
            "ingress_request_id": tab.ingress_id,
            "key_id": tab.key.id if tab.key else None,
            "endpoint": tab.path[:ENDPOINT_CHARS],
            "status": tab.status,
            "error": tab.error_code,
            **base,
            "id": rec.id if rec else None,
            # A failed request's record is what its broken attempts may be billed: no route answered it.
            "route": self._route_kind(rec.provider) if rec and tab.status < 400 else "none",
            "downgraded_from": tab.downgraded_from,
            "reference_usd": reference,
            "latency_ms": round(tab.elapsed() * 1000, 3),
            "ttft_ms": round(ttft * 1000, 3) if ttft is not None else None,
            "overhead_ms": round(tab.overhead_s * 1000, 3) if tab.overhead_s is not None else None,
        }

    def _route_kind(self, provider: str) -> str:
        if provider == "cache":
            return "cache"
        return "local" if provider in self._local else "remote"

    def observe(self, tab: Tab, row: dict[str, Any]) -> None:
        m, rec = self.metrics, tab.answer
        route, provider = row["route"], rec.provider if rec else "none"
        endpoint = tab.path if tab.path in ENDPOINTS else "other"
        m.child(m.requests, endpoint, route, provider, str(tab.status)).inc()
        m.child(m.latency, route, provider).observe(tab.elapsed())
        if tab.first_byte_s is not None:
            m.child(m.ttft, route, provider).observe(tab.first_byte_s)
        if tab.overhead_s is not None:
            m.child(m.overhead, route).observe(tab.overhead_s)
        if rec is None:
            return
        estimated = "true" if rec.estimated else "false"
        m.child(m.tokens, provider, rec.provider_model, "prompt", estimated).inc(rec.prompt_tokens)
        m.child(m.tokens, provider, rec.provider_model, "completion", estimated).inc(rec.completion_tokens)
        key = tab.key.id if tab.key else "none"
        m.child(m.cost, provider, rec.provider_model, key).inc(rec.cost_usd)
        if self.reference is not None:
            m.child(m.reference_cost, route).inc(row["reference_usd"])
        m.child(m.cache, rec.cache).inc()
        m.child(m.decisions, spill_reason_code(rec.route_reason)).inc()  # bounded: "local", "spill", ...


# The log line of a request that got no answer (refused, failed): the same fields, empty.
_NO_ANSWER: dict[str, Any] = {
    "model": None,
    "provider": None,
    "provider_model": None,
    "route_reason": None,
    "cache": None,
    "stream": None,
    "prompt_tokens": 0,
    "completion_tokens": 0,
    "cached_tokens": 0,
    "cost_usd": 0.0,
    "saved_usd": 0.0,
    "complete": False,
    "estimated": False,
    "discarded_tokens": 0,
}
