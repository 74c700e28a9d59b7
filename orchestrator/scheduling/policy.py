"""The overflow scheduler: which routes serve a request, in what order, and why.

Pure policy, no I/O: `plan(facts, registry, policies, load, budget, knobs, spilling)`
returns the ordered routes, each with its reason, or raises the client-facing
error. Everything it needs is handed in: what the request is (`Facts`), what
each model can do (`Registry`), how each alias is routed (`AliasPolicy`), the
local engine's load (`load.LoadSnapshot`), the overflow spend, and whether the
alias was spilling before (hysteresis).

The order of questions:

1. *rules* — an alias's rules (prompt size, a regex on the text, request tags)
   may send the request to another alias;
2. *capabilities and context* — only routes that can serve the request
   (tools, images, structured output, a context the prompt fits in);
3. *data class* — `sensitive` never leaves the machine; `batch` takes the
   cheapest route and may wait for it;
4. *latency* — the local model serves when its predicted time to first token
   (`predict_ttft_ms`, scaled by the error the gateway has learned it makes:
   `calibration`, see `orchestrator.scheduling.calibration`) fits the request's SLO,
   under load the wait in it weighed by the request's prompt against the typical
   one (`size_bias`: long prompts spill first); otherwise the request spills to
   a remote route, hosts of the same open weights first. Once spilling, the
   local model takes traffic back only when the prediction is `hysteresis`
   below the SLO, so traffic doesn't flap at the edge;
5. *burst budget* — spilling spends money; once the hour's overflow budget is
   spent (or, with keys, the request's key has spent its `overflow_budget_key_share`
   of it), requests wait for the local model if it can answer within
   `budget_max_wait_ms`, and otherwise get a 429.

The local routes stay in every plan that may use them: a local rejection
(back-pressure) or failure moves on to the next route at once.
"""

from __future__ import annotations

import math
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Literal

from local_models.fairness import ahead
from orchestrator.errors import ContextLengthExceeded, InvalidRequest, OverflowBudgetExhausted
from orchestrator.failover import Target
from orchestrator.scheduling.capabilities import FEATURE_ORDER, Backend, Feature, ModelEntry, Registry, Task
from orchestrator.scheduling.load import LoadSnapshot
from orchestrator.settings import SchedulerSettings

DataClass = Literal["default", "sensitive", "batch"]
Order = Literal["listed", "price", "latency"]


@dataclass(frozen=True)
class Rule:
    """Send matching requests for an alias to another alias. Every given condition must hold."""

    use: str
    name: str = ""
    min_prompt_tokens: int | None = None
    max_prompt_tokens: int | None = None
    pattern: re.Pattern[str] | None = None  # searched in the request's text
    tags: Mapping[str, str] = field(default_factory=dict)  # each must be present with this value

    def matches(self, facts: Facts) -> bool:
        if self.min_prompt_tokens is not None and facts.prompt_tokens < self.min_prompt_tokens:
            return False
        if self.max_prompt_tokens is not None and facts.prompt_tokens > self.max_prompt_tokens:
            return False
        if self.pattern is not None and not self.pattern.search(facts.text):
            return False
        return all(facts.tags.get(k) == v for k, v in self.tags.items())

    @property
    def label(self) -> str:
        return self.name or f"to {self.use}"


@dataclass(frozen=True)
class AliasPolicy:
    ttft_slo_ms: float | None = None  # None: the scheduler's default
    order: Order = "listed"  # how spill routes are ranked after same-weights hosts
    rules: tuple[Rule, ...] = ()


# The scheduler's knobs are its settings section, as configured (`scheduler:` in the YAML).
Knobs = SchedulerSettings


@dataclass(frozen=True)
class Facts:
    """What the scheduler knows about one request."""

    model: str
    task: Task
    needs: frozenset[Feature] = frozenset()
    why: Mapping[Feature, str] = field(default_factory=dict)  # what in the request needs a feature (its error)
    prompt_tokens: int = 0
    sequences: int = 1  # the answers it asks for at once: n (x prompts, for text completions)
    exact: bool = True  # prompt_tokens counted with the local tokenizer; else an upper bound
    text: str = ""  # for rule patterns; empty when no rule needs it
    tags: Mapping[str, str] = field(default_factory=dict)
    ttft_slo_ms: float | None = None  # the request's own (x-ttft-slo-ms)
    data_class: DataClass = "default"
    tenant: str = "open"  # whose it is (`Call.tenant`): the local engine queues tenants fairly


@dataclass(frozen=True)
class Budget:
    """The hour's overflow budget as one request sees it: spent by everyone, and by the request's key."""

    cap_usd_per_hour: float | None
    spent_usd: float | None  # None: unknown (board not read yet)
    key_spent_usd: float = 0.0  # by the request's key (none for an open endpoint: one tenant)
    key_share: float = 1.0  # of the cap, the most one key may spend

    @property
    def exhausted(self) -> bool:
        return self.cap_usd_per_hour is not None and (
            (self.spent_usd or 0.0) >= self.cap_usd_per_hour or self.key_exhausted
        )

    @property
    def key_exhausted(self) -> bool:
        """The key has spent its share, while others may still spill."""
        cap = self.cap_usd_per_hour
        return cap is not None and self.key_share < 1 and self.key_spent_usd >= cap * self.key_share


@dataclass(frozen=True)
class Plan:
    alias: str  # the alias that planned it (after rules)
    targets: list[Target]
    spilling: bool  # for the alias's hysteresis
    overflow: bool  # remote routes lead because of load: spend counts against the burst budget
    predicted_ttft_ms: float | None = None  # the local TTFT the decision used (calibrated)
    modelled_ttft_ms: float | None = None  # the same before calibration: what `Calibration` learns from
    threshold_ms: float | None = None  # what the prediction was held against


def predict_ttft_ms(snapshot: LoadSnapshot, prompt_tokens: int, knobs: Knobs, tenant: str | None = None) -> float:
    """The local model's time to first token for a new request of `prompt_tokens`.

    One engine step (measured), plus the prefill of every prompt queued ahead
    and this one (at the engine's best recent prefill speed per replica; idle, the
    speed its start measured; the configured figure where it has none), plus, when
    every slot is taken, the wait for a slot at the rate requests have been
    finishing. Per replica: Serve spreads requests over the replicas. The
    requests this gateway sent since the snapshot (`sent`) count as waiting.

    What the engines measured for the requests that just got their first
    token (p90 over the last two seconds) is a floor: the model can't know
    every cost (a CPU shared with other work, a step slowed by a bigger
    batch), the measurement can. It grows with the requests in flight since
    it was measured: on a busy engine every extra request slows every step.
    It shrinks with them where the engine has fewer in flight now than while
    it measured (`recent_ttft_in_flight`): once a queue has drained, a new
    request isn't held to the times that queue gave (benchmarks/README.md,
    "The measured floor, at the load it was measured at").

    The engines queue tenants fairly (local_models/fairness.py): where they
    report who waits, `tenant`'s request waits behind its share of the queue
    (`fairness.ahead`), not all of it, and of the sends since (mostly a busy
    tenant's, which queue behind it), and the measured floor is taken at its
    place in the queue (the first tokens measured were the busy tenants', each
    behind the whole queue).
    """
    replicas = max(1, snapshot.replicas)
    share = 1.0
    if tenant is not None and (by_tenant := snapshot.waiting_by_tenant):
        share = min(1.0, ahead(by_tenant, tenant) / max(1, sum(by_tenant.values())))
    waiting = (snapshot.waiting + snapshot.sent) * share
    step = snapshot.step_ms if snapshot.step_ms is not None else knobs.idle_step_ms
    # The engine's own best prefill speed lately (idle: its start's probe); without one, the configured figure.
    rate = snapshot.prefill_capacity_tokens_per_s or knobs.prefill_tokens_per_s
    queued = (snapshot.queued_prompt_tokens + snapshot.sent_prompt_tokens) * share
    prefill = (queued / replicas + prompt_tokens) / rate * 1000
    free = snapshot.slots - snapshot.running
    wait = 0.0
    if waiting >= free:
        finish_rate = max(snapshot.finished_per_s, knobs.min_finish_rate * replicas)
        wait = (waiting - free + 1) / finish_rate * 1000
    measured = 0.0
    if snapshot.recent_ttft_ms is not None and share < 1.0:
        # The first tokens measured were other tenants', each behind the queue they were in; this one
        # is behind its share of it.
        measured = snapshot.recent_ttft_ms * (waiting + 1) / (snapshot.waiting + 1)
    elif snapshot.recent_ttft_ms is not None:
        in_flight = snapshot.running + snapshot.waiting
        measured = snapshot.recent_ttft_ms * (in_flight + snapshot.sent + 1) / (in_flight + 1)
        then = snapshot.recent_ttft_in_flight  # per replica, as `in_flight / replicas`
        if then is not None and then > (per_replica := in_flight / replicas):
            measured *= (per_replica + 1) / (then + 1)
    return max(step + prefill + wait, measured)


@dataclass(frozen=True)
class Resolved:
    """A request's alias after its rules, and its routes able to serve it: what admission
    prices and what the plan orders. Made once per request, before any load is seen."""

    entry: ModelEntry
    policy: AliasPolicy
    via: str  # " (rule ...: a -> b)" when a rule chose the alias
    able: list[Backend]  # routes with the task and every needed feature
    fitting: list[Backend]  # those whose context the prompt fits


def resolve(facts: Facts, registry: Registry, policies: Mapping[str, AliasPolicy]) -> Resolved:
    """The alias that serves `facts` (its rules applied) and its able routes, or the 4xx that says why none."""
    entry = registry.resolve(facts.model)
    policy = policies.get(entry.name, AliasPolicy())
    via = ""
    for rule in policy.rules:
        if rule.matches(facts):
            entry = registry.resolve(rule.use)
            policy = policies.get(entry.name, AliasPolicy())
            via = f" (rule {rule.label}: {facts.model} -> {entry.name})"
            break
    able = entry.candidates(facts.task, facts.needs, facts.why)  # raises when no route has the task or a feature
    # Only an exact count rules a route out; an upper bound leaves it to the route to refuse.
    fitting = [b for b in able if not facts.exact or b.context_length is None or facts.prompt_tokens < b.context_length]
    if not fitting:
        longest = max(b.context_length or 0 for b in able)
        raise ContextLengthExceeded(
            f"This model's maximum context length is {longest} tokens. However, your messages resulted in "
            f"{facts.prompt_tokens} tokens. Please reduce the length of the messages.",
            param="messages" if facts.task == "chat" else "prompt",
            prompt_tokens=facts.prompt_tokens,
            context=longest,
        )
    # A request asking more answers at once than a local engine's share for one goes to a route without
    # that limit, or is refused: it would hold the engine from every other client.
    if facts.sequences > 1 and any(b.max_sequences is not None for b in fitting):
        shared = [b for b in fitting if b.max_sequences is None or facts.sequences <= b.max_sequences]
        if not shared:
            most = max(b.max_sequences or 0 for b in fitting)
            what = "n" if facts.task == "chat" else "n x the prompts"
            raise InvalidRequest(
                f"This request asks for {facts.sequences} answers at once ({what}); the model '{entry.name}' "
                f"serves at most {most} per request, so that one request can't hold its engine from everyone else.",
                param="n" if facts.task == "chat" else "prompt",
                code="too_many_answers",
            )
        fitting = shared
    return Resolved(entry, policy, via, able, fitting)


@dataclass(slots=True)
class Conditions:
    """What the order depends on besides the request: load, spend, and what the gateway learned.
    (Made once per request and never changed: not frozen, whose fields cost a call each to set.)"""

    local_providers: frozenset[str]
    load: Mapping[str, LoadSnapshot | None]  # by local model name; None or absent: no data
    budget: Budget
    knobs: Knobs
    spilling: Mapping[str, bool] = field(default_factory=dict)
    prices: Mapping[tuple[str, str], float] = field(default_factory=dict)
    remote_ttft_ms: Mapping[str, float] = field(default_factory=dict)
    calibration: Mapping[str, float] = field(default_factory=dict)  # by local model (`scheduling.calibration`)
    # Local providers known to be alive (an engine reporting its load): their targets say so (`Target.alive`).
    alive: frozenset[str] = frozenset()
    # The caller's memo of spill routes ranked by price or as listed, which change with neither load nor
    # answers: valid while the prices and knobs it is handed stay the same (a `Router`'s do). None: none.
    ranked: dict[tuple[object, ...], tuple[tuple[Backend, ...], list[Backend]]] | None = None
    # By local model: the prompt tokens of its typical request lately (the caller's moving average), the
    # scale `size_bias` weighs a request's wait by. Absent: one line for every size.
    typical_prompt: Mapping[str, float] = field(default_factory=dict)


def plan(
    facts: Facts,
    registry: Registry,
    policies: Mapping[str, AliasPolicy],
    *,
    local_providers: frozenset[str],
    load: Mapping[str, LoadSnapshot | None],
    budget: Budget,
    knobs: Knobs,
    spilling: Mapping[str, bool] | None = None,
    prices: Mapping[tuple[str, str], float] | None = None,
    remote_ttft_ms: Mapping[str, float] | None = None,
    calibration: Mapping[str, float] | None = None,
    typical_prompt: Mapping[str, float] | None = None,
) -> Plan:
    """The ordered routes for `facts`, each with its reason; see the module docstring."""
    conditions = Conditions(
        local_providers, load, budget, knobs, spilling or {}, prices or {}, remote_ttft_ms or {}, calibration or {}
    )
    conditions.typical_prompt = typical_prompt or {}
    return order(resolve(facts, registry, policies), facts, conditions)


class _Ordering:
    """One request's ordering in progress: its routes split local and remote, and how to finish a plan.
    (A plain class: one is made per request, and a frozen dataclass's fields cost a call each.)"""

    __slots__ = ("resolved", "facts", "c", "local", "remote", "slo", "factor")

    def __init__(
        self,
        resolved: Resolved,
        facts: Facts,
        c: Conditions,
        local: list[Backend],
        remote: list[Backend],
        slo: float,
        factor: float,
    ):
        self.resolved = resolved
        self.facts = facts
        self.c = c
        self.local = local
        self.remote = remote
        self.slo = slo
        self.factor = factor

    def done(
        self,
        reason: str,
        first: list[Backend],
        then: list[Backend],
        *,
        spill: bool = False,
        overflow: bool = False,
        predicted: float | None = None,
        threshold: float | None = None,
        teach: bool = True,
    ) -> Plan:
        """The plan: `first` then `then`. `teach`: whether its prediction may teach the calibration (not one
        made on stale load data, whose error is the staleness's, not the model's)."""
        learnable = teach and predicted is not None and math.isfinite(predicted)
        modelled = predicted / self.factor if learnable and predicted is not None else None
        c = self.c
        # A prediction can be wrong: a local attempt that has remote routes to fall back on gives
        # up after `local_patience` SLOs without a first token, and the next route serves.
        patience = hedge = None
        if self.facts.data_class == "default" and self.remote:
            patience = c.knobs.local_patience * self.slo / 1000
            # Before that, a hedge (`orchestrator.hedging`): load spill, so none once the burst budget is spent.
            if c.knobs.hedge_at is not None and not c.budget.exhausted:
                hedge = c.knobs.hedge_at * self.slo / 1000
        local, alive = c.local_providers, c.alive
        targets = []
        label = lead = reason + self.resolved.via
        routes = (*first, *then)
        for i, b in enumerate(routes):
            provider = b.provider
            if provider in local:
                # Patience only where a remote route follows (the last route waits as long as routes do), and a
                # hedge only where one is right behind.
                waits = patience if any(r.provider not in local for r in routes[i + 1 :]) else None
                after = hedge if i + 1 < len(routes) and routes[i + 1].provider not in local else None
                targets.append(Target(provider, b.model, label, waits, provider in alive, hedge_after_s=after))
            else:
                targets.append(Target(provider, b.model, label))
            label = fallback_label(lead, label, provider in local)
        return Plan(self.resolved.entry.name, targets, spill, overflow, predicted, modelled, threshold)


def fallback_label(lead: str, before: str, local_before: bool) -> str:
    """The reason of a plan's next route: "fallback" once a local route came before it (a remote answer
    after a local one failed is a spill), else the plan's own `lead` reason: a remote route after a failed
    remote one answers for the same reason the first would have (an alias without a local route doesn't
    spill when its first provider fails; a spilled request still spilled)."""
    return "fallback" if local_before or before == "fallback" else lead


def order(resolved: Resolved, facts: Facts, c: Conditions) -> Plan:
    """`resolved`'s routes in the order to try them, by data class, then latency and budget."""
    entry, fitting = resolved.entry, resolved.fitting
    local: list[Backend] = []
    others: list[Backend] = []
    for b in fitting:
        (local if b.provider in c.local_providers else others).append(b)
    remote = _remote(fitting, local, others, resolved.policy.order, c)
    slo = facts.ttft_slo_ms or resolved.policy.ttft_slo_ms or c.knobs.ttft_slo_ms
    factor = c.calibration.get(local[0].model, 1.0) if local else 1.0
    o = _Ordering(resolved, facts, c, local, remote, slo, factor)
    if facts.data_class == "sensitive":
        if not local:
            why = _why_not_local(entry, resolved.able, fitting, c.local_providers, facts)
            raise InvalidRequest(
                "Requests marked x-data-class: sensitive never leave this machine, and no local route of "
                f"'{entry.name}' can serve this one" + (f" ({why})." if why else "."),
                param="x-data-class",
                code="data_class_unroutable",
            )
        return o.done("data-class: sensitive stays local", local, [])
    if not local:
        why = _why_not_local(entry, resolved.able, fitting, c.local_providers, facts)
        return o.done(why or "remote: no local route", remote, [])
    if not remote:
        return o.done("local: the only route", local, [])
    if facts.data_class == "batch":
        return o.done("batch: cheapest route, may wait", local, remote)
    return _by_latency(o)


LONG_PROMPT_MOST = 2.0  # a long prompt's wait counts at most twice
SHORT_PROMPT_LINE = 0.9  # a short prompt's wait weighs no less than keeps it within 0.9 x the SLO


def _by_latency(o: _Ordering) -> Plan:
    """Local while its predicted first token fits the SLO; otherwise spill, within the burst budget."""
    local, remote, c = o.local, o.remote, o.c
    was_spilling = c.spilling.get(o.resolved.entry.name, False)
    snapshot = c.load.get(local[0].model)
    if snapshot is None:
        return o.done("local: no load data yet", local, remote, spill=was_spilling)
    teach = not snapshot.stale_s
    threshold: float | None = None
    if snapshot.replicas == 0:
        predicted, lead = float("inf"), "cold-start: no local replica ready"
    else:
        predicted = predict_ttft_ms(snapshot, o.facts.prompt_tokens, c.knobs, o.facts.tenant) * o.factor
        notes = "" if o.factor == 1.0 else f", x{o.factor:.2f} learned"
        if snapshot.stale_s:
            notes += f", load data {snapshot.stale_s:.1f} s old"
        threshold = o.slo * c.knobs.headroom * ((1 - c.knobs.hysteresis) if was_spilling else 1)
        weighed, shown = predicted, f"{predicted:.0f} ms"
        typical = c.typical_prompt.get(local[0].model)
        if c.knobs.size_bias and typical:
            weighed, weight = _weigh_by_size(predicted, o, snapshot, typical)
            if round(weighed) != round(predicted):  # a wait to weigh, and weighed
                ratio = o.facts.prompt_tokens / typical
                shown += f" (its wait x{weight:.2f} for a prompt {ratio:.2g}x the typical: {weighed:.0f} ms)"
        if weighed <= threshold:
            reason = f"local: predicted TTFT {shown} within {threshold:.0f} ms (SLO {o.slo:.0f} ms{notes})"
            return o.done(reason, local, remote, predicted=predicted, threshold=threshold, teach=teach)
        band = f"{notes}, hysteresis" if was_spilling and c.knobs.hysteresis else notes  # only where it moved the line
        lead = f"spill: predicted local TTFT {shown} over {threshold:.0f} ms (SLO {o.slo:.0f} ms{band})"
    if c.budget.exhausted:
        if predicted <= c.knobs.budget_max_wait_ms:
            reason = f"budget: overflow budget spent, waiting locally (predicted TTFT {predicted:.0f} ms)"
            return o.done(reason, local, [], spill=True, predicted=predicted, threshold=threshold, teach=teach)
        b = c.budget
        whose = (
            f"This key's share of the overflow budget (${(b.cap_usd_per_hour or 0) * b.key_share:.2f} of "
            f"${b.cap_usd_per_hour or 0:.2f} per hour)"
            if b.key_exhausted
            else f"The overflow budget of ${b.cap_usd_per_hour or 0:.2f} per hour"
        )
        raise OverflowBudgetExhausted(
            f"{whose} is spent and the local model can't start answering within "
            f"{c.knobs.budget_max_wait_ms / 1000:.0f} s. Retry later.",
            retry_after=60.0,
        )
    return o.done(lead, remote, local, spill=True, overflow=True, predicted=predicted, threshold=threshold, teach=teach)


def _weigh_by_size(predicted: float, o: _Ordering, snapshot: LoadSnapshot, typical: float) -> tuple[float, float]:
    """The predicted TTFT with the wait in it (all of it but the request's own step and prefill) weighed by the
    request's size against the typical prompt: (the weighed TTFT, the wait's weight).

    Under load a long prompt takes engine time from every request behind it, a short one little: a line
    that holds each to its own share of that time keeps more requests local within the SLO than one line
    for all (`size_bias` 1: a prompt twice the typical has its wait count twice; at most `LONG_PROMPT_MOST`
    times, and a short one's at least as much as keeps its TTFT within `SHORT_PROMPT_LINE` of the SLO). On
    an idle engine the wait is nothing and a long prompt stays local where its own prefill fits.
    benchmarks/README.md, "A ceiling for the verdicts, and a line by the prompt's size"."""
    c = o.c
    prompt = max(1, o.facts.prompt_tokens)
    least = min(1.0, c.knobs.headroom / SHORT_PROMPT_LINE)
    weight = min(max((prompt / typical) ** c.knobs.size_bias, least), LONG_PROMPT_MOST)
    rate = snapshot.prefill_capacity_tokens_per_s or c.knobs.prefill_tokens_per_s
    step = snapshot.step_ms if snapshot.step_ms is not None else c.knobs.idle_step_ms
    own = min(predicted, (step + prompt / rate * 1000) * o.factor)  # what it would wait alone
    return own + (predicted - own) * weight, weight


def _remote(
    fitting: list[Backend], local: list[Backend], others: list[Backend], order: Order, c: Conditions
) -> list[Backend]:
    """`_rank_remote`, or what it gave for the same routes before (`Conditions.ranked`)."""
    memo = c.ranked
    if memo is None or order == "latency" or len(others) < 2:
        return _rank_remote(others, local, order, c.knobs, c.prices, c.remote_ttft_ms)
    # Keyed by the routes' identities (hashing a Backend hashes every field); the entry holds the
    # routes, so no key's identity can be reused while it is in the memo.
    key = (order, *map(id, fitting))
    hit = memo.get(key)
    if hit is None:
        if len(memo) >= 256:  # bounded: a registry has few alias x route combinations
            memo.clear()
        hit = memo[key] = (tuple(fitting), _rank_remote(others, local, order, c.knobs, c.prices, c.remote_ttft_ms))
    return list(hit[1])


def _rank_remote(
    remote: list[Backend],
    local: Sequence[Backend],
    order: Order,
    knobs: Knobs,
    prices: Mapping[tuple[str, str], float],
    ttft: Mapping[str, float],
) -> list[Backend]:
    """Hosts of the local model's weights first (when configured), then by `order` (stable)."""
    if len(remote) < 2:
        return remote
    local_weights = {w for b in local for w in (b.model, b.weights) if w}

    def key(pair: tuple[int, Backend]) -> tuple[int, float, int]:
        i, b = pair
        same = 0 if knobs.same_weights_first and b.weights is not None and b.weights in local_weights else 1
        if order == "price":
            return same, prices.get((b.provider, b.model), 0.0), i
        if order == "latency":
            return same, ttft.get(b.provider, float("inf")), i
        return same, 0.0, i

    return [b for _, b in sorted(enumerate(remote), key=key)]


def _why_not_local(
    entry: ModelEntry,
    able: Sequence[Backend],
    fitting: Sequence[Backend],
    local_providers: frozenset[str],
    facts: Facts,
) -> str:
    """Why the entry's local routes can't serve this request ('' when it has none)."""
    local_all = [b for b in entry.backends if b.provider in local_providers]
    if not local_all:
        return ""
    if not any(b in able for b in local_all):
        lacking = {f for b in local_all for f in facts.needs if f not in b.features}
        if "tools" in lacking:  # no tools at all: choosing them by itself goes without saying
            lacking.discard("auto_tools")
        missing = sorted(lacking, key=FEATURE_ORDER.index)
        if missing:
            return f"capability: the local model lacks {', '.join(missing)}"
        return f"capability: the local model does not serve {facts.task}"
    if not any(b in fitting for b in local_all):
        return f"context: {facts.prompt_tokens} prompt tokens exceed the local model's context"
    return ""


def spill_reason_code(reason: str) -> str:
    """The bounded label of a route reason, for metrics: the part before the first ':'."""
    return reason.split(":", 1)[0].split(";", 1)[0].split(" ", 1)[0].strip() or "unknown"


__all__ = [
    "AliasPolicy",
    "Budget",
    "Conditions",
    "Resolved",
    "order",
    "resolve",
    "Facts",
    "Knobs",
    "OverflowBudgetExhausted",
    "Plan",
    "Rule",
    "plan",
    "predict_ttft_ms",
    "spill_reason_code",
]
