"""The scheduler's I/O side: gathers what the pure policy needs, and keeps its state.

Two steps per request. `Router.resolve(request, task, needs, headers)` reads the
request's routing headers, counts its prompt with the local tokenizer (only
when a decision depends on it) and resolves its alias once (`scheduler.resolve`:
rules, capabilities, context): what admission prices. `Router.order(resolution)`
takes the current load snapshot and overflow spend from the `LoadView` and
orders the routes (`scheduler.order`), remembering each alias's spill state
(hysteresis). The `RoutePlan` it returns is what the attempts report to: what
is sent to the local model (`attempting`), first tokens (`first_token`, which
teach the calibration and rank spill routes by latency) and overflow spend
(`overflowed`).
"""

from __future__ import annotations

import asyncio
import math
import re
import weakref
from collections.abc import Callable, Iterable, Mapping
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any, cast

from orchestrator.errors import ContextLengthExceeded, InvalidRequest
from orchestrator.failover import Target
from orchestrator.protocol import ChatCompletionRequest, EmbeddingRequest, finite_number
from orchestrator.scheduling.calibration import Calibration
from orchestrator.scheduling.capabilities import Backend, Feature, Registry, Task, needs_why
from orchestrator.scheduling.load import LoadSnapshot, LoadView
from orchestrator.scheduling.policy import (
    AliasPolicy,
    Budget,
    Conditions,
    DataClass,
    Facts,
    Knobs,
    Plan,
    Resolved,
    Rule,
    fallback_label,
    order,
    resolve,
)
from orchestrator.scheduling.tokens import (
    ByteCounter,
    Countable,
    HfTokenCounter,
    TokenCounter,
    UsageEstimator,
    embedding_tokens,
    output_allowance,
    request_text,
)
from orchestrator.settings import ModelRouting, ProviderSettings

SLO_HEADER = "x-ttft-slo-ms"
DATA_CLASS_HEADER = "x-data-class"
TAGS_HEADER = "x-tags"
_DATA_CLASSES = ("default", "sensitive", "batch")
_BYTES = ByteCounter()
_EWMA = 0.2  # weight of the newest first-token time
TYPICAL_OVER = 100  # requests the typical prompt is averaged over
_INLINE_BYTES = 16_384  # prompts up to this size are counted on the event loop (well under a millisecond)


@dataclass(frozen=True)
class Resolution:
    """What a request is (`Facts`) and the alias and routes that may serve it (`Resolved`)."""

    facts: Facts
    resolved: Resolved

    @property
    def backends(self) -> list[Backend]:
        return self.resolved.fitting


@dataclass(frozen=True)
class RoutingState:
    """What this gateway's scheduler sees now (for the dashboard): each local model's load (None:
    no fresh data), the burst budget, each alias's TTFT SLO, and which aliases are spilling here."""

    local: dict[str, str]  # local generation provider -> its model's served name
    load: dict[str, LoadSnapshot | None]  # by served name; empty without a load board (in-process engines)
    budget: Budget
    slo_ms: dict[str, float]  # by alias
    spilling: dict[str, bool]  # by alias, as of this replica's last plan for it


class RoutePlan:
    """One request's ordered routes, and what its attempts report back to the router."""

    def __init__(self, router: Router, plan: Plan, facts: Facts):
        self._router = router
        self.plan = plan
        self.facts = facts

    @property
    def targets(self) -> list[Target]:
        return self.plan.targets

    def is_local(self, target: Target) -> bool:
        return self._router.is_local(target)

    def attempting(self, target: Target) -> Callable[[], None]:
        """A route is being tried; call the result when its output ends (local sends count as load till then)."""
        return self._router.attempting(target, self)

    def first_token(self, target: Target, ms: float) -> None:
        self._router.first_token(target, ms, self)

    def gave_up(self, target: Target, ms: float) -> None:
        """A local attempt was cancelled after `ms` without a first token (a hedge answered first)."""
        self._router.gave_up(target, ms, self)

    def is_overflow(self, target: Target) -> bool:
        """Whether `target` serving is load spill: its spend counts against the burst budget."""
        return self.plan.overflow and not self._router.is_local(target)

    def overflowed(self, cost_usd: float) -> None:
        self._router.overflowed(cost_usd, self.facts.tenant)


class Router:
    def __init__(
        self,
        registry: Registry,
        *,
        local: Mapping[str, str],  # local provider name -> its model's served name
        embedders: Iterable[str] = (),  # local embedding providers
        policies: Mapping[str, AliasPolicy] | None = None,
        knobs: Knobs | None = None,
        load: LoadView | None = None,
        counter: TokenCounter | None = None,
        prices: Mapping[tuple[str, str], float] | None = None,
    ):
        self._registry = registry
        self._local = dict(local)
        self._local_providers = frozenset(local)
        self._models = tuple(dict.fromkeys(self._local.values()))
        self._embedders = frozenset(embedders)
        self._policies = dict(policies or {})
        self._knobs = knobs or Knobs()
        self._load = load
        self._counter = counter or ByteCounter()
        self._prices = dict(prices or {})
        self._spilling: dict[str, bool] = {}
        self._typical: dict[str, float] = {}
        self._ranked: dict[tuple[object, ...], tuple[tuple[Backend, ...], list[Backend]]] = {}  # see Conditions
        self._ttft_ms: dict[str, float] = {}
        self._calibration = {model: Calibration() for model in self._local.values()}
        self._needs_text = {name for name, p in self._policies.items() if any(r.pattern for r in p.rules)}
        self._exact = {e.name for e in registry.entries() if self._counts_exactly(e.name)}
        self._min_context = {
            e.name: min((b.context_length for b in e.backends if b.context_length), default=math.inf)
            for e in registry.entries()
        }
        # The longest context any route of a name could offer, its rules' targets included.
        contexts = {
            e.name: max((b.context_length or math.inf for b in e.backends), default=math.inf)
            for e in registry.entries()
        }
        self._max_context = {
            name: max([most, *(contexts.get(r.use, math.inf) for r in self._policies.get(name, AliasPolicy()).rules)])
            for name, most in contexts.items()
        }
        # One thread for the tokenizer (not safe to share between threads), off the event loop.
        self._tokenizing = ThreadPoolExecutor(max_workers=1, thread_name_prefix="router-tokenizer")

    def _counts_exactly(self, name: str) -> bool:
        """Whether a decision for `name` can depend on the exact prompt size: it has a local
        route (latency, context) or a rule on prompt size, or a rule leads to such an alias."""
        policy = self._policies.get(name, AliasPolicy())
        entries = {e.name: e for e in self._registry.entries()}
        targets = [name, *(r.use for r in policy.rules)]
        local = any(b.provider in self._local_providers for t in targets if t in entries for b in entries[t].backends)
        sized = any(r.min_prompt_tokens is not None or r.max_prompt_tokens is not None for r in policy.rules)
        return local or sized

    # ------------------------------------------------------------------ planning

    async def resolve(
        self, request: Countable, task: Task, needs: set[Feature], headers: Mapping[str, str], tenant: str = "open"
    ) -> Resolution:
        """The request's facts and its alias resolved once (a 4xx when nothing can serve it)."""
        if isinstance(request, EmbeddingRequest):
            return self._resolve_embedding(request, headers)
        facts = await self.facts(request, task, needs, headers, tenant)
        return Resolution(facts, resolve(facts, self._registry, self._policies))

    def _resolve_embedding(self, request: EmbeddingRequest, headers: Mapping[str, str]) -> Resolution:
        """An embedding request's routes under its routing headers: a `sensitive` input may use
        local embedders only (a 400 where there is none)."""
        facts = Facts(
            model=request.model,
            task="embeddings",
            prompt_tokens=embedding_tokens(request),  # what a call cut off may be billed (`Pipeline._cut_off`)
            tags=_tags(headers.get(TAGS_HEADER)),
            ttft_slo_ms=_slo(headers.get(SLO_HEADER)),
            data_class=_data_class(headers.get(DATA_CLASS_HEADER)),
        )
        entry = self._registry.resolve(request.model)
        able = entry.candidates("embeddings")
        if facts.data_class == "sensitive":
            able = [b for b in able if b.provider in self._embedders]
            if not able:
                raise InvalidRequest(
                    "Requests marked x-data-class: sensitive never leave this machine, and no local route of "
                    f"'{request.model}' makes embeddings.",
                    param=DATA_CLASS_HEADER,
                    code="data_class_unroutable",
                )
        return Resolution(facts, Resolved(entry, AliasPolicy(), "", able, able))

    def order(self, resolution: Resolution) -> RoutePlan:
        """The resolved routes in the order to try them, under the load and spend of now."""
        if resolution.facts.task == "embeddings":
            return self._order_embedding(resolution)
        view = self._load
        local_routes = any(b.provider in self._local_providers for b in resolution.resolved.fitting)
        if view is None or not local_routes:
            # In-process engines, without a board: alive while we are. No local route to plan: the load and
            # the spend don't matter to the order, and a gateway serving only remote routes lets its poll doze.
            load: dict[str, LoadSnapshot | None] = {}
            spent = None
            alive = self._local_providers
        else:  # a local engine that reports its load is alive: its circuit never shuts it out when it is the last route
            load = {m: view.snapshot(m) for m in self._models}
            spent = view.overflow_spent_usd()
            alive = self._local_providers  # the same set each plan while every local model reports
            for snap in load.values():
                if snap is None or snap.replicas <= 0:
                    alive = frozenset(
                        p for p, m in self._local.items() if (snap := load.get(m)) is not None and snap.replicas > 0
                    )
                    break
        conditions = Conditions(
            self._local_providers,
            load,
            self._budget(spent, resolution.facts.tenant),
            self._knobs,
            self._spilling,
            self._prices,
            self._ttft_ms,
            {m: c.factor for m, c in self._calibration.items()},
            alive,
            self._ranked,
            self._typical,
        )
        made = order(resolution.resolved, resolution.facts, conditions)
        if local_routes:
            self._saw_prompt(resolution)
        if resolution.facts.ttft_slo_ms is None:  # a request's own SLO moves no one else's line
            self._spilling[made.alias] = made.spilling
        if view is not None and len(alive) < len(self._local):
            for model in {self._local[t.provider] for t in made.targets if t.provider in self._local}:
                if (snap := load.get(model)) is not None and snap.replicas == 0:
                    view.wanted(model)  # no replica ready: ask for one (scaled to zero, it never would be)
        planned = RoutePlan(self, made, resolution.facts)
        if made.overflow and view is not None and self._knobs.overflow_budget_usd_per_hour is not None:
            # What it may cost counts as spent while the plan lives (its prompt, and as much again out, at the
            # leading route's price): spills planned at once can't all pass the budget.
            lead = made.targets[0]
            usd = resolution.facts.prompt_tokens * self._prices.get((lead.provider, lead.model), 0.0) / 1e6
            weakref.finalize(planned, view.reserve(resolution.facts.tenant, usd))
        return planned

    def _saw_prompt(self, resolution: Resolution) -> None:
        """The typical prompt of each local model's requests (`Conditions.typical_prompt`): a moving average
        over about the last `TYPICAL_OVER` requests planned for it."""
        prompt, typical = resolution.facts.prompt_tokens, self._typical
        for b in resolution.resolved.fitting:
            if (model := self._local.get(b.provider)) is not None:
                t = typical.get(model)
                typical[model] = prompt if t is None else t + (prompt - t) / TYPICAL_OVER

    def _budget(self, spent: float | None, tenant: str) -> Budget:
        """The burst budget as `tenant`'s request sees it (its key's share only where there is a cap)."""
        cap = self._knobs.overflow_budget_usd_per_hour
        if cap is None or spent is None or tenant == "open" or self._load is None:
            return Budget(cap, spent)
        return Budget(cap, spent, self._load.overflow_spent_usd(tenant) or 0.0, self._knobs.overflow_budget_key_share)

    def fits(self, resolution: Resolution, output: int | None) -> bool:
        """Whether a route of `resolution` has room for its prompt and `output` tokens more (at least
        one: None is the rest of the context). A route whose context isn't known fits, as does a prompt
        counted only as an upper bound (bytes): the route is the judge then."""
        facts = resolution.facts
        if facts.model not in self._exact or not facts.exact:
            return True
        room = facts.prompt_tokens + (output or 1)
        return any(b.context_length is None or room <= b.context_length for b in resolution.backends)

    async def plan(self, request: Countable, task: Task, needs: set[Feature], headers: Mapping[str, str]) -> RoutePlan:
        """`resolve`, then `order`."""
        return self.order(await self.resolve(request, task, needs, headers))

    async def facts(
        self, request: Countable, task: Task, needs: set[Feature], headers: Mapping[str, str], tenant: str = "open"
    ) -> Facts:
        tags = dict(getattr(request, "metadata", None) or {})
        tags.update(_tags(headers.get(TAGS_HEADER)))
        slo = _slo(headers.get(SLO_HEADER))
        data_class = _data_class(headers.get(DATA_CLASS_HEADER))
        text = request_text(request) if request.model in self._needs_text else ""
        tokens, exact = await self._count(request, task)
        return Facts(
            model=request.model,
            task=task,
            needs=frozenset(needs),
            why=needs_why(request) if isinstance(request, ChatCompletionRequest) else {},
            prompt_tokens=tokens,
            sequences=output_allowance(request)[1],
            exact=exact,
            text=text,
            tags=tags,
            ttft_slo_ms=slo,
            data_class=data_class,
            tenant=tenant,
        )

    async def _count(self, request: Countable, task: Task) -> tuple[int, bool]:
        """The prompt's tokens and whether the count is exact. Counted with the tokenizer
        where a decision depends on it; elsewhere a byte count, an upper bound that changes
        no decision while it is below every route's context.

        A prompt that can't fit any route even at the longest token the tokenizer has is
        refused before it is tokenized, and a long one is tokenized off the event loop."""
        rough = _BYTES.count(request)
        if request.model not in self._exact and rough < self._min_context.get(request.model, math.inf):
            return rough, True
        most = self._max_context.get(request.model, math.inf)
        floor = rough // self._counter.longest_token_bytes
        if floor > most:
            raise ContextLengthExceeded(
                f"This model's maximum context length is {most:.0f} tokens. However, your "
                f"{'messages' if task == 'chat' else 'prompt'} resulted in at least {floor} tokens. "
                "Please reduce the length of the messages.",
                param="messages" if task == "chat" else "prompt",
            )
        return await self.count(request, rough), self._counter.exact

    async def count(self, request: Countable, rough: int | None = None) -> int:
        """The prompt's tokens at the gateway's most exact: the local model's tokenizer and chat
        template (a byte count, an upper bound, where there is none); a long prompt (`rough`, its
        byte count) is tokenized off the event loop."""
        if (rough if rough is not None else _BYTES.count(request)) <= _INLINE_BYTES:
            return self._counter.count(request)
        return await asyncio.get_running_loop().run_in_executor(self._tokenizing, self._counter.count, request)

    def _order_embedding(self, resolution: Resolution) -> RoutePlan:
        """Embedding routes as listed; a local embedder is alive while we are."""
        facts, backends = resolution.facts, resolution.backends
        reason = "data-class: sensitive stays local" if facts.data_class == "sensitive" else "embedding route"
        targets, label = [], reason
        for b in backends:
            local = b.provider in self._embedders
            targets.append(Target(b.provider, b.model, label, alive=local))
            label = fallback_label(reason, label, local)
        return RoutePlan(self, Plan(resolution.resolved.entry.name, targets, False, False), facts)

    # ------------------------------------------------------------ as it runs

    def attempting(self, target: Target, planned: RoutePlan) -> Callable[[], None]:
        """A route of `planned` is being tried; call the result when that attempt's output ends.
        Local sends count toward the local load from now until then."""
        model = self._local.get(target.provider)
        if self._load is None:
            return _nothing
        if model is not None:
            return self._load.sent(model, planned.facts.prompt_tokens)
        # Demand the local model's autoscaler should see: spilled for load, or planned for local first and sent
        # on because local could not take it (its circuit open, its queue full, its replica lost).
        targets = planned.targets
        local = next((i for i, t in enumerate(targets) if t.provider in self._local), None)
        if local is not None and (planned.plan.overflow or target in targets[local + 1 :]):
            return self._load.overflowing(self._local[targets[local].provider])
        return _nothing

    def is_local(self, target: Target) -> bool:
        return target.provider in self._local_providers

    def first_token(self, target: Target, ms: float, planned: RoutePlan | None = None) -> None:
        """A route's observed time to first token. Remote: an average over recent answers, for
        aliases that rank spill routes by latency. Local, where the plan chose it on a prediction:
        what the prediction's calibration learns from."""
        model = self._local.get(target.provider)
        if model is not None:
            made = planned.plan if planned is not None else None
            if made is not None and made.targets[0].provider == target.provider and _near_decision(made):
                assert made.modelled_ttft_ms is not None
                self._calibration[model].observe(made.modelled_ttft_ms, ms)
            return
        last = self._ttft_ms.get(target.provider)
        self._ttft_ms[target.provider] = ms if last is None else last + _EWMA * (ms - last)

    def gave_up(self, target: Target, ms: float, planned: RoutePlan) -> None:
        """A local attempt given up after `ms` without a first token: its TTFT was longer, which
        teaches the calibration where that alone says which side of it the ratio lies."""
        model = self._local.get(target.provider)
        made = planned.plan
        if model is not None and made.targets[0].provider == target.provider and _near_decision(made):
            assert made.modelled_ttft_ms is not None
            self._calibration[model].observe_at_least(made.modelled_ttft_ms, ms)

    @property
    def estimator(self) -> UsageEstimator | None:
        """The counter, as it estimates usage too: the local model's tokenizer, else bytes."""
        return self._counter if isinstance(self._counter, HfTokenCounter | ByteCounter) else None

    def state(self) -> RoutingState:
        """The load, spend, SLOs and spill states this router plans with now."""
        view = self._load
        knobs = self._knobs
        return RoutingState(
            local=dict(self._local),
            load={m: view.snapshot(m) for m in self._local.values()} if view is not None else {},
            budget=Budget(knobs.overflow_budget_usd_per_hour, view.overflow_spent_usd(held=False) if view else None),
            slo_ms={
                e.name: self._policies.get(e.name, AliasPolicy()).ttft_slo_ms or knobs.ttft_slo_ms
                for e in self._registry.entries()
            },
            spilling=dict(self._spilling),
        )

    def calibration(self, model: str) -> Calibration | None:
        """The local model's prediction calibration (for tests and reports)."""
        return self._calibration.get(model)

    def overflowed(self, cost_usd: float, tenant: str = "open") -> None:
        """An overflow answer for `tenant` cost this much."""
        if cost_usd > 0 and self._load is not None:
            self._load.spending(cost_usd, tenant)


def _nothing() -> None:
    pass


def _near_decision(made: Plan) -> bool:
    """Whether the plan's local prediction came within half of its threshold: only such
    predictions teach the calibration (see `orchestrator.scheduling.calibration`)."""
    predicted, threshold = made.predicted_ttft_ms, made.threshold_ms
    return (
        made.modelled_ttft_ms is not None
        and predicted is not None
        and threshold is not None
        and (predicted >= threshold / 2)
    )


def policies_from(models: Mapping[str, ModelRouting]) -> dict[str, AliasPolicy]:
    return {
        name: AliasPolicy(
            ttft_slo_ms=m.ttft_slo_ms,
            order=m.order,
            rules=tuple(
                Rule(
                    use=r.use,
                    name=r.name,
                    min_prompt_tokens=r.min_prompt_tokens,
                    max_prompt_tokens=r.max_prompt_tokens,
                    pattern=re.compile(r.pattern) if r.pattern else None,
                    tags=dict(r.tags),
                )
                for r in m.rules
            ),
        )
        for name, m in models.items()
    }


def blended_prices(providers: Mapping[str, ProviderSettings]) -> dict[tuple[str, str], float]:
    """(provider, model id) -> input + output price per million tokens, to rank spill routes by price."""
    return {
        (name, m.id): m.input_per_mtok + m.output_per_mtok
        for name, cfg in providers.items()
        for m in cfg.models.values()
    }


# ------------------------------------------------------------------ headers


def _slo(raw: str | None) -> float | None:
    if raw is None:
        return None
    value = finite_number(raw)
    if value is None or value <= 0:
        raise InvalidRequest(
            f"Invalid {SLO_HEADER} header {raw!r}: expected a positive number of milliseconds.",
            param=SLO_HEADER,
            code="invalid_header",
        )
    return value


def _data_class(raw: str | None) -> DataClass:
    if raw is None:
        return "default"
    value = raw.strip().lower()
    if value not in _DATA_CLASSES:
        raise InvalidRequest(
            f"Invalid {DATA_CLASS_HEADER} header {raw!r}: expected one of {', '.join(_DATA_CLASSES)}.",
            param=DATA_CLASS_HEADER,
            code="invalid_header",
        )
    return cast(DataClass, value)


def _tags(raw: str | None) -> dict[str, str]:
    """`x-tags: team=research, tier=free` -> {"team": "research", "tier": "free"}."""
    if not raw:
        return {}
    tags: dict[str, Any] = {}
    for part in raw.split(","):
        key, sep, value = part.partition("=")
        if not sep or not key.strip():
            raise InvalidRequest(
                f"Invalid {TAGS_HEADER} header {raw!r}: expected comma-separated key=value pairs.",
                param=TAGS_HEADER,
                code="invalid_header",
            )
        tags[key.strip()] = value.strip()
    return tags
