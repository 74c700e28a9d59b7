"""Every request accounted for: who asked, what it may do, what it cost, how long it took.

The edge opens a `Tab` for each HTTP request (`scope.RequestScope`, a plain
ASGI middleware) and `Accounts` runs it:

    authenticate   the virtual key (401 without a valid one, once keys exist)
    admit          model allowed for the key (403); reserve the worst case with
                   the ledger's owner: refused (429) or admitted, perhaps on the
                   key's cheaper model past its soft limit
    record         the pipeline's `UsageRecord` lands on the request's tab
                   (usage counted with the tokenizer when the provider gave none)
    finish         when the response has ended: one JSON log line, the metrics,
                   and the settlement (real cost) sent to the owner

The tab travels with the request explicitly (the edge hands it to the front
door, which puts it in the `Call` the flow answers): admission, the time spent
waiting on a model (the gateway's overhead is the rest) and the usage record
all land on it.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import time
import uuid
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field
from typing import Any

from orchestrator.accounting.book import Admitted, Choice, LedgerOwner, Lookup, Reserve, Settle, SettleMany
from orchestrator.accounting.bounded import TTLMap
from orchestrator.accounting.keys import KeyPolicy, hash_key, presented, same_hash
from orchestrator.accounting.metrics import Metrics
from orchestrator.accounting.prices import Price, Prices, UsageRecord
from orchestrator.errors import (
    InvalidApiKey,
    KeyBudgetExhausted,
    KeyRateLimited,
    LedgerUnavailable,
    ModelNotAllowed,
)
from orchestrator.protocol import (
    Usage,
)
from orchestrator.scheduling.capabilities import Backend, Feature, Registry, Task
from orchestrator.scheduling.policy import spill_reason_code
from orchestrator.scheduling.tokens import UsageEstimator, output_allowance, prompt_upper_bound

log = logging.getLogger("orchestrator.requests")
_internal = logging.getLogger(__name__)

# Worst-case output when a request names no limit and a backend states no context.
DEFAULT_MAX_OUTPUT = 4096
RETRY_S = 1.0  # settlements the owner didn't take are sent again after this
MAX_UNSETTLED = 100_000  # and kept up to this many while it stays away
# Key lookups kept per replica. Known keys are few (config and admin made them); unknown ones are
# whatever clients present, so they are kept briefly, and at most this many (an LRU drops the rest).
KNOWN_KEYS_CACHED = 100_000
UNKNOWN_KEYS_CACHED = 10_000
UNKNOWN_KEY_TTL_S = 1.0
ANSWERING = frozenset({"/v1/chat/completions", "/v1/completions", "/v1/embeddings"})  # these record usage
ENDPOINTS = ANSWERING | {"/v1/models"}


# ------------------------------------------------------------------------------ the tab


@dataclass
class Tab:
    """One request's account, from its first byte in to its last byte out."""

    accounts: Accounts
    request_id: str
    method: str
    path: str
    ts: float = field(default_factory=time.time)
    started: float = field(default_factory=time.perf_counter)
    key: KeyPolicy | None = None
    reservation: str | None = None
    downgraded_from: str | None = None
    upstream_s: float = 0.0  # time spent waiting on a model (the rest is the gateway's)
    overhead_s: float | None = None  # the gateway's own time up to the response's first byte
    first_byte_s: float | None = None
    status: int = 0
    error_code: str | None = None
    answer: UsageRecord | None = None  # the pipeline's record of the answer
    response_ended: bool = False
    finished: bool = False

    @classmethod
    def detached(cls) -> Tab:
        """A tab of no request the edge opened (open endpoint, nothing settled): for direct callers."""
        return cls(Accounts(), f"req_{uuid.uuid4().hex}", "POST", "")

    @property
    def estimator(self) -> UsageEstimator | None:
        return self.accounts.estimator

    async def admit(
        self, request: Any, routes: list[Backend], downgrade: tuple[str, list[Backend]] | None = None
    ) -> str:
        """The key's limits checked for `request` on `routes` (its resolved routes); the model to serve."""
        return await self.accounts.admit(self, request, routes, downgrade)

    def record(self, record: UsageRecord) -> None:
        """The pipeline's record of this request's answer (a `Ledger`)."""
        if self.finished:  # later than the response's end allowed for: a line of its own, not lost
            late = Tab(self.accounts, self.request_id, self.method, self.path, key=self.key, status=self.status)
            late.answer, late.response_ended = record, True
            self.accounts.finish(late)
            return
        self.answer = record
        if self.response_ended:
            self.accounts.finish(self)

    def elapsed(self) -> float:
        return time.perf_counter() - self.started


# ------------------------------------------------------------------------------ accounts


class Accounts:
    """Keys, admission, settlement, the request log and the metrics of one gateway app."""

    def __init__(
        self,
        *,
        owner: LedgerOwner | None = None,
        metrics: Metrics | None = None,
        registry: Registry | None = None,
        prices: Prices | None = None,
        reference: Price | None = None,
        reference_model: str | None = None,
        require_keys: bool = False,
        master_key_sha256: str | None = None,
        metrics_key_sha256: str | None = None,
        local_providers: frozenset[str] = frozenset(),
        estimator: UsageEstimator | None = None,
        lookup_ttl_s: float = 5.0,
        unknown_key_ttl_s: float = UNKNOWN_KEY_TTL_S,
        clock: Callable[[], float] = time.monotonic,
        settle_rows: int = 64,
        settle_delay_s: float = 0.05,
    ):
        self.owner = owner
        self.metrics = metrics or Metrics()
        self._registry = registry
        self.prices = prices or Prices({})
        self.reference = reference
        self.reference_model = reference_model
        self.require_keys = require_keys
        self.master_key_sha256 = master_key_sha256
        self.metrics_key_sha256 = metrics_key_sha256
        self._local = local_providers
        self.estimator = estimator
        # By the presented key's sha256. Unknown keys apart: a flood of them can't evict known ones.
        self._known: TTLMap[str, KeyPolicy] = TTLMap(KNOWN_KEYS_CACHED, lookup_ttl_s, clock=clock)
        self._unknown: TTLMap[str, bool] = TTLMap(UNKNOWN_KEYS_CACHED, unknown_key_ttl_s, clock=clock)
        self._pending: set[asyncio.Future[Any]] = set()
        self._batch: list[Settle] = []
        self._flush_timer: asyncio.TimerHandle | None = None
        self._settle_rows = settle_rows
        self._settle_delay_s = settle_delay_s
        self.background: object | None = None  # what keeps its local rates current (kept alive here)

    # ---------------------------------------------------------------- tabs

    @contextlib.contextmanager
    def open(self, method: str, path: str) -> Iterator[Tab]:
        """A new tab, finished once the response has ended."""
        tab = Tab(self, f"req_{uuid.uuid4().hex}", method, path)
        try:
            yield tab
        finally:
            self.response_ended(tab)

    # ------------------------------------------------------- authentication

    async def authenticate(self, tab: Tab, headers: Mapping[str, str]) -> KeyPolicy | None:
        """The request's key, or None on an open endpoint; 401 for a missing or unknown key."""
        if not self.require_keys:
            return None
        key = presented(headers)
        if key is None:
            raise InvalidApiKey(
                "You didn't provide an API key. You need to provide your API key in an Authorization header "
                "using Bearer auth (i.e. Authorization: Bearer YOUR_KEY)."
            )
        policy = await self._lookup(hash_key(key))
        if policy is None:
            # OpenAI shows a redacted key here; we show nothing of it at all.
            raise InvalidApiKey("Incorrect API key provided.")
        tab.key = policy
        return policy

    async def _lookup(self, sha256: str) -> KeyPolicy | None:
        """The key's policy; a known key is asked again after `lookup_ttl_s` (revocation reaches
        every replica), an unknown one after `unknown_key_ttl_s` (a key made on another replica)."""
        known = self._known.get(sha256)
        if known is not None:
            return known
        if self._unknown.get(sha256) is not None:
            return None
        try:
            policy = await self.owner.call(Lookup(sha256)) if self.owner is not None else None
        except Exception as e:
            _internal.error("key lookup failed: %r", e)
            raise LedgerUnavailable("The gateway can't check API keys right now; try again shortly.") from None
        if policy is None:
            self._unknown.put(sha256, True)
        else:
            self._known.put(sha256, policy)
        return policy

    def forget(self, sha256: str | None = None) -> None:
        """Drop cached key lookups (after the admin API changed keys)."""
        if sha256 is None:
            self._known.clear()
            self._unknown.clear()
        else:
            self._known.pop(sha256)
            self._unknown.pop(sha256)

    def cached_lookups(self) -> int:
        """How many key lookups this replica holds (bounded: see `KNOWN_KEYS_CACHED`)."""
        return len(self._known) + len(self._unknown)

    def check_metrics_reader(self, headers: Mapping[str, str]) -> None:
        """`/metrics` shows key ids and per-key spend: once keys are required, or a metrics key is
        set, it takes the master key or the metrics key (401 otherwise); an open endpoint keeps it open."""
        allowed = [h for h in (self.master_key_sha256, self.metrics_key_sha256) if h is not None]
        if not self.require_keys and not allowed:
            return
        key = presented(headers)
        if key is None:
            raise InvalidApiKey("/metrics needs the master key or the metrics key (Authorization: Bearer ...).")
        digest = hash_key(key)
        if not any([same_hash(digest, h) for h in allowed]):  # a list: compare with each, in constant time
            raise InvalidApiKey("Incorrect API key provided for /metrics.")

    # ------------------------------------------------------------ admission

    async def admit(
        self, tab: Tab, request: Any, routes: list[Backend], downgrade: tuple[str, list[Backend]] | None = None
    ) -> str:
        """Check the key's limits for `request` and reserve its worst case at `routes` (the routes it
        resolved to, rules applied); past a soft limit, the `downgrade` model and its routes. The
        model to serve."""
        key = tab.key
        if key is None or self.owner is None:
            return str(request.model)
        if not key.allows(request.model):
            self._registry_resolve(request.model)  # an unknown model is a 404 for everyone
            raise ModelNotAllowed(f"This API key does not have access to model `{request.model}`.", param="model")
        if not key.limited:
            return str(request.model)  # nothing to reserve: no round trip (revocation: the lookup's TTL)
        primary = self._worst(request, request.model, routes)
        cheaper = self._worst(request, downgrade[0], downgrade[1]) if downgrade is not None else None
        # Settlements waiting in this replica's batch ride along: they count in this admission.
        settles = self._take_batch()
        try:
            answer = await self.owner.call(Reserve(key.id, tab.request_id, primary, cheaper, settles))
        except Exception as e:
            self._requeue(settles, e)
            raise LedgerUnavailable("The gateway can't check this key's limits now; try again shortly.") from None
        if not isinstance(answer, Admitted):
            self.metrics.refusals.labels(key=key.id, reason=answer.reason).inc()
            if answer.reason == "revoked":
                self.forget(key.sha256)
                raise InvalidApiKey("Incorrect API key provided.")
            if answer.reason in ("rpm", "tpm"):
                kind = "requests" if answer.reason == "rpm" else "tokens"
                raise KeyRateLimited(answer.message, kind=kind, retry_after=answer.retry_after)
            raise KeyBudgetExhausted(answer.message, retry_after=answer.retry_after)
        tab.reservation = answer.reservation_id
        if answer.downgraded:
            tab.downgraded_from = str(request.model)
            self.metrics.downgrades.labels(key=key.id).inc()
        return answer.model

    def _registry_resolve(self, model: str) -> Any:
        return self._registry.resolve(model) if self._registry is not None else None

    def worst_case(self, request: Any, model: str, task: Task, needs: set[Feature]) -> Choice:
        """The most `request` can cost on `model`: an upper bound on its prompt, its whole output
        allowance, at the most expensive of the model's routes."""
        backends = self._registry.resolve(model).candidates(task, needs) if self._registry is not None else []
        return self._worst(request, model, backends)

    def _worst(self, request: Any, model: str, backends: list[Backend]) -> Choice:
        prompt = prompt_upper_bound(request)
        outputs, n = output_allowance(request)
        usd, most = 0.0, 0
        for b in backends:
            out = outputs if outputs is not None else (b.context_length or DEFAULT_MAX_OUTPUT)
            out *= n
            cost = self.prices.price(b.provider, b.model).cost(
                Usage(prompt_tokens=prompt, completion_tokens=out, total_tokens=prompt + out)
            )
            usd, most = max(usd, cost), max(most, out)
        return Choice(model, usd, prompt + most)

    # ------------------------------------------------------------- records

    def response_started(self, tab: Tab, status: int) -> dict[str, str]:
        """The response's headers are going out: what the edge adds to them."""
        tab.status = status
        tab.overhead_s = max(0.0, tab.elapsed() - tab.upstream_s)
        headers = {"x-request-id": tab.request_id, "x-gateway-overhead-ms": f"{tab.overhead_s * 1000:.2f}"}
        if tab.downgraded_from is not None:
            headers["x-budget-downgrade"] = f"{tab.downgraded_from} -> {_served_model(tab)}; soft limit reached"
        return headers

    def response_ended(self, tab: Tab) -> None:
        tab.response_ended = True
        if tab.status == 0:  # the app raised past every handler: the server answered 500
            tab.status = 500
        if not tab.path.startswith("/v1/"):
            return  # /metrics, /health, /admin: not requests to account for
        if tab.answer is not None or tab.status >= 300 or tab.path not in ANSWERING:
            self.finish(tab)
            return
        # A stream whose record comes from a generator still closing: give it a moment.
        loop = asyncio.get_running_loop()
        loop.call_later(5.0, self._late, tab)

    def _late(self, tab: Tab) -> None:
        if not tab.finished:
            _internal.warning("request %s ended without a usage record", tab.request_id)
            self.finish(tab)

    def finish(self, tab: Tab) -> None:
        """Exactly once per request: the log line, the metrics, the settlement."""
        if tab.finished:
            return
        tab.finished = True
        try:
            row = self._row(tab)
            if log.isEnabledFor(logging.INFO):
                log.info(json.dumps(row, separators=(",", ":")))
            if self.owner is not None:
                self._send(Settle(tab.reservation, row))
            self._observe(tab, row)
        except Exception:  # accounting must never break an answer already given
            _internal.exception("accounting for request %s failed", tab.request_id)

    def _send(self, settle: Settle) -> None:
        """Queue a settlement; a batch goes to the owner when full, after `settle_delay_s`, or
        with this replica's next admission (one call and one transaction for many requests)."""
        self._batch.append(settle)
        if len(self._batch) >= self._settle_rows:
            self.flush()
        elif self._flush_timer is None:
            self._flush_timer = asyncio.get_running_loop().call_later(self._settle_delay_s, self.flush)

    def _take_batch(self) -> tuple[Settle, ...]:
        if self._flush_timer is not None:
            self._flush_timer.cancel()
            self._flush_timer = None
        batch, self._batch = tuple(self._batch), []
        return batch

    def flush(self) -> None:
        """Send the settlements waiting in the batch now."""
        batch = self._take_batch()
        if not batch or self.owner is None:
            return
        task = asyncio.ensure_future(self.owner.call(SettleMany(batch)))  # sent now, in order
        self._pending.add(task)
        task.add_done_callback(lambda t: self._settled(t, batch))

    def _settled(self, task: asyncio.Future[Any], batch: tuple[Settle, ...]) -> None:
        self._pending.discard(task)
        if not task.cancelled() and task.exception() is not None:
            self._requeue(batch, task.exception())

    def _requeue(self, batch: tuple[Settle, ...], error: BaseException | None) -> None:
        """The owner didn't take `batch` (it restarts, say): keep it, in order, and try again soon.
        (If it had applied the batch before failing to answer, the retry counts it twice: spend is
        overstated rather than lost.)"""
        if not batch:
            return
        _internal.error("settling %d requests failed (%r); retrying", len(batch), error)
        self._batch[:0] = batch
        if len(self._batch) > MAX_UNSETTLED:
            dropped = len(self._batch) - MAX_UNSETTLED
            _internal.error("dropping %d unsettled requests: the ledger is unreachable", dropped)
            del self._batch[: len(self._batch) - MAX_UNSETTLED]
        if self._flush_timer is None:
            self._flush_timer = asyncio.get_running_loop().call_later(RETRY_S, self.flush)

    async def drain(self) -> None:
        """Send and wait for every settlement so far (tests, shutdown); a few tries if the owner fails."""
        for _ in range(3):
            self.flush()
            while self._pending:
                await asyncio.gather(*list(self._pending), return_exceptions=True)
            if not self._batch:
                return

    def _row(self, tab: Tab) -> dict[str, Any]:
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
            "key_id": tab.key.id if tab.key else None,
            "endpoint": tab.path,
            "status": tab.status,
            "error": tab.error_code,
            **base,
            "id": rec.id if rec else None,
            "route": self._route_kind(rec.provider) if rec else "none",
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

    def _observe(self, tab: Tab, row: dict[str, Any]) -> None:
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
}


def _served_model(tab: Tab) -> str:
    return tab.answer.model if tab.answer is not None else (tab.key.downgrade_to or "") if tab.key else ""
