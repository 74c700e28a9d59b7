"""Every request accounted for: who asked, what it may do, what it cost, how long it took.

The edge opens a `Tab` for each HTTP request (`scope.RequestScope`, a plain
ASGI middleware) and `Accounts` runs it:

    authenticate   the virtual key (401 without a valid one, once keys exist)
    hold           a place among the key's requests in progress on this replica (429 past its
                   `parallel_requests`), given back when the response has ended (`places`)
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

from orchestrator.accounting import settlement
from orchestrator.accounting.book import (
    Admitted,
    AdmitUnasked,
    Choice,
    LedgerOwner,
    Lookup,
    Refused,
    Reserve,
    Settle,
)
from orchestrator.accounting.bounded import TTLMap
from orchestrator.accounting.keys import KeyPolicy, hash_key, presented, same_hash
from orchestrator.accounting.metrics import Metrics
from orchestrator.accounting.places import Places
from orchestrator.accounting.prices import Price, Prices, UsageRecord
from orchestrator.accounting.request_log import ANSWERING, RequestLog
from orchestrator.accounting.settlement import Settlements
from orchestrator.errors import (
    InvalidApiKey,
    KeyBudgetExhausted,
    KeyRateLimited,
    LedgerUnavailable,
    ModelNotAllowed,
    OrchestratorError,
)
from orchestrator.protocol import (
    Usage,
)
from orchestrator.scheduling.capabilities import Backend, Feature, Registry, Task
from orchestrator.scheduling.tokens import UsageEstimator, output_allowance, prompt_upper_bound

log = logging.getLogger("orchestrator.requests")
_internal = logging.getLogger(__name__)

# Worst-case output when a request names no limit and a backend states no context.
DEFAULT_MAX_OUTPUT = 4096
# Key lookups kept per replica. Known keys are few (config and admin made them); unknown ones are
# whatever clients present, so they are kept briefly, and at most this many (an LRU drops the rest).
KNOWN_KEYS_CACHED = 100_000
UNKNOWN_KEYS_CACHED = 10_000
UNKNOWN_KEY_TTL_S = 1.0
CLIENT_GONE = 499  # the status a request's row says when its client left before its response began


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
    # Its record comes after its response, whenever that is (`expect_record`): an upstream call it pays
    # for still runs for others (a flight it led, its client gone). Until then it isn't finished.
    record_pending: bool = False
    finished: bool = False
    ingress_id: str | None = None  # the request id the ingress in front (Ray Serve) gave it and answers with
    # The places it holds one of (its key's requests in progress here, or a WebSocket's: its key's open sockets)
    # and whose, until its response ends or its socket closes (`Accounts.release`).
    place: tuple[Places, str] | None = None

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

    async def admit_unasked(self) -> None:
        """The key's requests per minute checked for a request no model answers (`Accounts.admit_unasked`)."""
        await self.accounts.admit_unasked(self)

    def check_model(self, model: str) -> None:
        """`ModelNotAllowed` (403) where the request's key may not use `model` (a 404 if it doesn't exist)."""
        self.accounts.check_model(self, model)

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

    def expect_record(self) -> None:
        """Its record will come, later than its response's end may be (`record`, or `no_record`)."""
        self.record_pending = True

    def no_record(self) -> None:
        """The record it expected won't come: finished as it is (once its response has ended)."""
        self.record_pending = False
        if self.response_ended and self.answer is None:
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
        settle_rows: int = settlement.ROWS,
        settle_delay_s: float = settlement.DELAY_S,
        sockets_per_key: int | None = None,
        requests_per_key: int | None = None,
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
        self.estimator = estimator
        # By the presented key's sha256. Unknown keys apart: a flood of them can't evict known ones.
        self._known: TTLMap[str, KeyPolicy] = TTLMap(KNOWN_KEYS_CACHED, lookup_ttl_s, clock=clock)
        self._unknown: TTLMap[str, bool] = TTLMap(UNKNOWN_KEYS_CACHED, unknown_key_ttl_s, clock=clock)
        self.settlements = Settlements(owner, rows=settle_rows, delay_s=settle_delay_s)
        self.request_log = RequestLog(self.metrics, reference, local_providers)
        self.background: object | None = None  # what keeps its local rates current (kept alive here)
        # At most this many open WebSockets of one key on this replica: each holds one of the places Serve gives
        # the replica for as long as it is open (up to an hour), working or idle, so one key's idle sockets could
        # take every place from every other key (`places`).
        self.sockets_per_key = sockets_per_key
        self.sockets = Places()
        # At most this many HTTP requests of one key in progress on this replica, for a key that sets no
        # `parallel_requests` of its own (None: no cap): one key's slow streams took every place as well.
        self.requests_per_key = requests_per_key
        self.requests = Places()

    # ---------------------------------------------------------------- tabs

    @contextlib.contextmanager
    def open(self, method: str, path: str) -> Iterator[Tab]:
        """A new tab, finished once the response has ended. A request cancelled before its response began
        is one whose client left (Serve cancels it when its connection goes; a WebSocket's answers when the
        socket closes): 499, as proxies log it, not a 500 that says the gateway failed."""
        tab = Tab(self, f"req_{uuid.uuid4().hex}", method, path)
        try:
            yield tab
        except asyncio.CancelledError:
            if tab.status == 0:
                tab.status = CLIENT_GONE
            raise
        finally:
            self.release(tab)  # first: nothing after it may keep a key's place from coming back
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
                "using Bearer auth (i.e. Authorization: Bearer YOUR_KEY), or in an x-api-key header."
            )
        digest = hash_key(key)
        policy = await self._lookup(digest)
        if policy is None:
            if self.master_key_sha256 is not None and same_hash(digest, self.master_key_sha256):
                # What an operator tries first; "incorrect" would send them looking for a typo.
                raise InvalidApiKey(
                    "The master key manages keys and reads usage (/admin); it can't ask models. "
                    "Make a virtual key for that: POST /admin/keys."
                )
            # OpenAI shows a redacted key here; we show nothing of it at all.
            raise InvalidApiKey("Incorrect API key provided.")
        tab.key = policy
        return policy

    # --------------------------------------------------------------- places

    def hold_socket(self, tab: Tab) -> None:
        """A WebSocket's `tab` (its key authenticated) counted among its key's open sockets, or a 429 where
        the key has its share open already."""
        key = tab.key
        if self.sockets_per_key is None or key is None or tab.place is not None:
            return
        held = self.sockets.take(key.id, self.sockets_per_key)
        if held is not None:
            self.metrics.refusals.labels(key=key.id, reason="sockets").inc()
            raise KeyRateLimited(
                f"This API key has {held} WebSockets open on this gateway replica, its most at once; close one, "
                "or send requests over HTTP.",
                kind="requests",
                retry_after=1.0,
            )
        tab.place = (self.sockets, key.id)

    def release_socket(self, tab: Tab) -> None:
        """A WebSocket's `tab` no longer open."""
        self.release(tab)

    def hold_request(self, tab: Tab) -> None:
        """An HTTP request's `tab` (its key authenticated) counted among its key's requests in progress here,
        until its response has ended (`open` gives it back); a 429 where the key has its most in progress."""
        key = tab.key
        if key is None or tab.place is not None:
            return
        cap = key.parallel_requests if key.parallel_requests is not None else self.requests_per_key
        if cap is None:
            return
        held = self.requests.take(key.id, cap)
        if held is not None:
            self.metrics.refusals.labels(key=key.id, reason="parallel_requests").inc()
            raise KeyRateLimited(
                f"Rate limit reached for parallel requests: this API key has {held} requests in progress on this "
                f"gateway replica, its limit (parallel_requests: {cap}); retry when one has ended.",
                kind="requests",
                retry_after=1.0,
            )
        tab.place = (self.requests, key.id)

    def release(self, tab: Tab) -> None:
        """The place `tab` holds (a request's, a socket's) free again; once, however often it is called."""
        held, tab.place = tab.place, None
        if held is not None:
            places, key_id = held
            places.give_back(key_id)

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
        self.check_model(tab, request.model)
        if not key.limited:
            return str(request.model)  # nothing to reserve: no round trip (revocation: the lookup's TTL)
        primary = self._worst(request, request.model, routes)
        cheaper = self._worst(request, downgrade[0], downgrade[1]) if downgrade is not None else None
        # Settlements waiting in this replica's batch ride along: they count in this admission.
        settles = self.settlements.take_batch()
        try:
            answer = await self.owner.call(Reserve(key.id, tab.request_id, primary, cheaper, settles))
        except Exception as e:
            self.settlements.requeue(settles, e)
            raise LedgerUnavailable("The gateway can't check this key's limits now; try again shortly.") from None
        if not isinstance(answer, Admitted):
            raise self._refused(key, answer)
        tab.reservation = answer.reservation_id
        if answer.downgraded:
            tab.downgraded_from = str(request.model)
            self.metrics.downgrades.labels(key=key.id).inc()
        return answer.model

    async def admit_unasked(self, tab: Tab) -> None:
        """A request no model answers (a token count, a response made with `generate: false`) counted in its
        key's requests per minute, or refused past them (429, as any request): tokenizing costs the gateway
        its CPU. Nothing is reserved: it uses no tokens per minute and spends no budget."""
        key = tab.key
        if key is None or self.owner is None or key.rpm is None:
            return  # no rate to count: no round trip (revocation: the lookup's TTL, as for a key without limits)
        settles = self.settlements.take_batch()
        try:
            refused = await self.owner.call(AdmitUnasked(key.id, settles))
        except Exception as e:
            self.settlements.requeue(settles, e)
            raise LedgerUnavailable("The gateway can't check this key's limits now; try again shortly.") from None
        if refused is not None:
            raise self._refused(key, refused)

    def _refused(self, key: KeyPolicy, answer: Refused) -> OrchestratorError:
        """The error for the owner's refusal of a request of `key` (counted in the metrics)."""
        self.metrics.refusals.labels(key=key.id, reason=answer.reason).inc()
        if answer.reason == "revoked":
            self.forget(key.sha256)
            return InvalidApiKey("Incorrect API key provided.")
        if answer.reason in ("rpm", "tpm"):
            kind = "requests" if answer.reason == "rpm" else "tokens"
            return KeyRateLimited(answer.message, kind=kind, retry_after=answer.retry_after)
        return KeyBudgetExhausted(answer.message, retry_after=answer.retry_after)

    def check_model(self, tab: Tab, model: str) -> None:
        """`ModelNotAllowed` (403) where the tab's key may not use `model`; a 404 for a model that
        doesn't exist, for everyone."""
        key = tab.key
        if key is not None and not key.allows(model):
            self._registry_resolve(model)
            raise ModelNotAllowed(f"This API key does not have access to model `{model}`.", param="model")

    def serves(self, model: str) -> bool:
        """Whether `model` is a name this gateway serves (any name, without a registry)."""
        return self._registry is None or any(e.name == model for e in self._registry.entries())

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
        headers = {"x-gateway-overhead-ms": f"{tab.overhead_s * 1000:.2f}"}
        if tab.ingress_id is None:  # else the ingress answers with its own id: one x-request-id, never two
            headers["x-request-id"] = tab.request_id
        if tab.downgraded_from is not None:
            headers["x-budget-downgrade"] = f"{tab.downgraded_from} -> {_served_model(tab)}; soft limit reached"
        return headers

    def response_ended(self, tab: Tab) -> None:
        tab.response_ended = True
        if tab.status == 0:  # the app raised past every handler: the server answered 500
            tab.status = 500
        if not tab.path.startswith("/v1/"):
            return  # /metrics, /health, /admin: not requests to account for
        if tab.record_pending and tab.answer is None:
            return  # its record finishes it (and its reservation holds until then): a 499 too, whose flight pays
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
            row = self.request_log.row(tab)
            if log.isEnabledFor(logging.INFO):
                log.info(json.dumps(row, separators=(",", ":")))
            if self.owner is not None:
                self.settlements.send(Settle(tab.reservation, row))
            self.request_log.observe(tab, row)
        except Exception:  # accounting must never break an answer already given
            _internal.exception("accounting for request %s failed", tab.request_id)

    def flush(self) -> None:
        """Send the settlements waiting in this replica's batch now."""
        self.settlements.flush()

    async def drain(self) -> None:
        """Send and wait for every settlement so far (tests, shutdown)."""
        await self.settlements.drain()


def _served_model(tab: Tab) -> str:
    return tab.answer.model if tab.answer is not None else (tab.key.downgrade_to or "") if tab.key else ""
