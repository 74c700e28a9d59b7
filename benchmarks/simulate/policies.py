"""The overflow policies compared, each as one gateway replica runs it.

Every gateway of a simulated fleet gets its own policy object (`PolicyFactory(context)`), with its
own delayed `LoadView` of the load board, as real gateway replicas have. A policy turns a request
into its ordered routes (`plan`) and hears what happens to them (`attempting`, `first_token`,
`overflowed`), the same seam `orchestrator.scheduling.router.RoutePlan` offers the pipeline.

    ours              the real `Router.order` over the real `policy.order` (calibration, headroom,
                      hysteresis, patience, price order), reading the real `LoadView`
    local-only        never spills
    remote-only       always pays (cheapest route first)
    threshold-N       in flight per replica (the same load view) >= N: remote first
    least-busy-P      LiteLLM's pattern: the local deployment takes at most P requests in flight
                      from this gateway (`max_parallel_requests`), then the least busy remote
    fallback          local first, remote only on error (back-pressure, or no first token within
                      the resilience timeout): ordered fallbacks without load awareness
    ttft-estimate     vLLM production-stack's `TtftRouter` estimate (queued prompt tokens / the
                      engine's prefill throughput), against the SLO, without calibration,
                      headroom or hysteresis
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Protocol

from benchmarks.simulate.events import EventLoop
from benchmarks.simulate.profiles import RemoteProfile
from benchmarks.simulate.request import Route, SimRequest
from orchestrator.scheduling.load import LoadView
from orchestrator.settings import SchedulerSettings

LOCAL_MODEL = "local-model"
ALIAS = "hybrid"


@dataclass(frozen=True)
class GatewayContext:
    """What a gateway replica knows: its clock, its view of the load, the routes and the settings."""

    loop: EventLoop
    view: LoadView
    remotes: tuple[RemoteProfile, ...]
    knobs: SchedulerSettings
    slo_ms: float
    context_length: int
    timeout_s: float  # the resilience first-token timeout of a route


class GatewayPolicy(Protocol):
    def plan(self, req: SimRequest) -> None:
        """Set `req.routes` (in order), `req.spill` (remote first because of load) and `req.handle`."""
        ...

    def attempting(self, req: SimRequest, route: Route) -> Callable[[], None] | None:
        """A route of `req` is being tried; the result (if any) is called when that attempt ends
        (a local one: finished, aborted or refused; a remote one: answered or failed)."""
        ...

    def first_token(self, req: SimRequest, route: Route, ms: float) -> None: ...

    def overflowed(self, req: SimRequest, route: Route, usd: float) -> None: ...

    def gave_up(self, req: SimRequest, route: Route, ms: float) -> None:
        """A local attempt of `req` was cancelled after `ms` without a first token (a hedge answered)."""
        ...


PolicyFactory = Callable[[GatewayContext], GatewayPolicy]


class _Static:
    """Routes from the load view alone; no state learned from answers."""

    def __init__(self, ctx: GatewayContext):
        self.ctx = ctx
        by_price = sorted(
            range(len(ctx.remotes)), key=lambda i: ctx.remotes[i].input_per_mtok + ctx.remotes[i].output_per_mtok
        )
        t = ctx.timeout_s
        self.local_first: list[Route] = [(True, -1, t), *((False, i, t) for i in by_price)]
        self.remote_first: list[Route] = [*((False, i, t) for i in by_price), (True, -1, t)]

    def spill(self, req: SimRequest) -> bool:
        return False

    def plan(self, req: SimRequest) -> None:
        req.spill = self.spill(req)
        req.routes = self.remote_first if req.spill else self.local_first

    def attempting(self, req: SimRequest, route: Route) -> Callable[[], None] | None:
        if route[0]:
            return self.ctx.view.sent(LOCAL_MODEL, req.prompt)
        return None

    def first_token(self, req: SimRequest, route: Route, ms: float) -> None:
        pass

    def overflowed(self, req: SimRequest, route: Route, usd: float) -> None:
        pass

    def gave_up(self, req: SimRequest, route: Route, ms: float) -> None:
        pass


class LocalOnly(_Static):
    def __init__(self, ctx: GatewayContext):
        super().__init__(ctx)
        self.local_first = [(True, -1, 0.0)]


class RemoteOnly(_Static):
    def plan(self, req: SimRequest) -> None:
        req.spill = True
        req.routes = self.remote_first[:-1]


class Fallback(_Static):
    """Local first, always; the remote routes only catch its errors."""


class Threshold(_Static):
    def __init__(self, ctx: GatewayContext, n: float):
        super().__init__(ctx)
        self.n = n

    def spill(self, req: SimRequest) -> bool:
        snap = self.ctx.view.snapshot(LOCAL_MODEL)
        if snap is None:
            return False
        if snap.replicas == 0:
            return True
        return (snap.running + snap.waiting + snap.sent) / snap.replicas >= self.n


class TtftEstimate(_Static):
    def spill(self, req: SimRequest) -> bool:
        snap = self.ctx.view.snapshot(LOCAL_MODEL)
        if snap is None:
            return False
        if snap.replicas == 0:
            return True
        rate = snap.prefill_capacity_tokens_per_s or self.ctx.knobs.prefill_tokens_per_s
        queued = (snap.queued_prompt_tokens + snap.sent_prompt_tokens) / snap.replicas
        return queued / rate * 1000 > self.ctx.slo_ms


class LeastBusy(_Static):
    """Counts only its own requests in flight, as a LiteLLM router instance does (no shared store)."""

    def __init__(self, ctx: GatewayContext, parallel: int):
        super().__init__(ctx)
        self.parallel = parallel
        self.local = 0
        self.remote = [0] * len(ctx.remotes)

    def plan(self, req: SimRequest) -> None:
        t = self.ctx.timeout_s
        remotes: list[Route] = [(False, i, t) for i in sorted(range(len(self.remote)), key=self.remote.__getitem__)]
        req.spill = self.local >= self.parallel
        req.routes = remotes if req.spill else [(True, -1, t), *remotes]

    def attempting(self, req: SimRequest, route: Route) -> Callable[[], None] | None:
        if not route[0]:
            i = route[1]
            self.remote[i] += 1

            def remote_done() -> None:
                self.remote[i] -= 1

            return remote_done
        self.local += 1
        sent = self.ctx.view.sent(LOCAL_MODEL, req.prompt)

        def done() -> None:
            self.local -= 1
            sent()

        return done


def factories(thresholds: list[float], parallels: list[int]) -> dict[str, PolicyFactory]:
    """Every policy by its table name."""
    from benchmarks.simulate.ours import Ours

    out: dict[str, PolicyFactory] = {
        "local-only": LocalOnly,
        "remote-only": RemoteOnly,
        "fallback": Fallback,
        "ttft-estimate": TtftEstimate,
    }
    for n in thresholds:
        out[f"threshold-{n:g}"] = lambda ctx, n=n: Threshold(ctx, n)  # type: ignore[misc]
    for p in parallels:
        out[f"least-busy-{p}"] = lambda ctx, p=p: LeastBusy(ctx, p)  # type: ignore[misc]
    out["ours"] = Ours
    return out
