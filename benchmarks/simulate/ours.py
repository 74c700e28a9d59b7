"""Our policy in the simulator: the real `Router` over the real pure `policy.order`, nothing re-implemented.

Each simulated gateway builds what `orchestrator.app.build_pipeline` builds: a `Registry` from the
local model and the remote routes (`build_registry`, `local_backend`, `remote_backend`), the alias's
policy (`policies_from`, with the SLO and `order: price` of the default config's `auto` alias), the
prices (`blended_prices`), the scheduler settings as configured, and its own `LoadView` (fed by the
simulated load board on the simulated clock). Per request it makes the `Facts` the router's
`facts()` would make from a chat request of that size and calls `resolve` (rules, capabilities,
context) and `Router.order` (load, calibration, hysteresis, budget), then reports the attempts
back through the `RoutePlan` (`attempting`, `first_token`, `overflowed`), as the pipeline does.

The only thing swapped is the clock: the router's `Calibration` fades on the simulated one
(`Router.calibration(model).clock`), as `LoadView` and `LoadBoard` take it as an argument.
"""

from __future__ import annotations

from collections.abc import Callable

from benchmarks.simulate.policies import ALIAS, LOCAL_MODEL, GatewayContext
from benchmarks.simulate.request import Route, SimRequest
from local_models.interface import ModelInfo
from orchestrator.failover import Target
from orchestrator.providers.factory import remote_backend
from orchestrator.scheduling.capabilities import build_registry, local_backend
from orchestrator.scheduling.policy import Facts, resolve
from orchestrator.scheduling.router import Resolution, RoutePlan, Router, blended_prices, policies_from
from orchestrator.settings import ModelRouting, ProviderSettings, RemoteModel

LOCAL_PROVIDER = "local"


class Ours:
    def __init__(self, ctx: GatewayContext):
        self.ctx = ctx
        local = local_backend(
            ModelInfo(name=LOCAL_MODEL, task="generate", max_model_len=ctx.context_length, has_chat_template=True),
            LOCAL_PROVIDER,
        )
        providers = {
            r.provider: ProviderSettings(
                base_url="http://simulated",
                api_key_env="SIMULATED",
                models={
                    r.model: RemoteModel(id=r.model, input_per_mtok=r.input_per_mtok, output_per_mtok=r.output_per_mtok)
                },
            )
            for r in ctx.remotes
        }
        remote = {r.route: remote_backend(r.provider, providers[r.provider].models[r.model]) for r in ctx.remotes}
        routing = {ALIAS: ModelRouting(routes=[LOCAL_MODEL, *remote], ttft_slo_ms=ctx.slo_ms, order="price")}
        self.registry = build_registry({LOCAL_MODEL: local}, remote, {ALIAS: routing[ALIAS].routes})
        self.policies = policies_from(routing)
        self.router = Router(
            self.registry,
            local={LOCAL_PROVIDER: LOCAL_MODEL},
            policies=self.policies,
            knobs=ctx.knobs,
            load=ctx.view,
            prices=blended_prices(providers),
        )
        calibration = self.router.calibration(LOCAL_MODEL)
        assert calibration is not None
        calibration.clock = ctx.loop.time
        self._index = {r.provider: i for i, r in enumerate(ctx.remotes)}

    def plan(self, req: SimRequest) -> None:
        facts = Facts(model=ALIAS, task="chat", prompt_tokens=req.prompt)
        made = self.router.order(Resolution(facts, resolve(facts, self.registry, self.policies)))
        req.handle = made
        req.spill = made.plan.overflow
        req.hedge_s = made.plan.targets[0].hedge_after_s or 0.0
        index, timeout = self._index, self.ctx.timeout_s
        req.routes = [
            (True, -1, t.first_token_timeout_s or timeout)
            if t.provider == LOCAL_PROVIDER
            else (False, index[t.provider], t.first_token_timeout_s or timeout)
            for t in made.plan.targets
        ]

    def _target(self, req: SimRequest) -> Target:
        plan: RoutePlan = req.handle
        return plan.plan.targets[req.attempt]

    def attempting(self, req: SimRequest, route: Route) -> Callable[[], None] | None:
        plan: RoutePlan = req.handle
        return plan.attempting(self._target(req))

    def first_token(self, req: SimRequest, route: Route, ms: float) -> None:
        plan: RoutePlan = req.handle
        plan.first_token(self._target(req), ms)

    def overflowed(self, req: SimRequest, route: Route, usd: float) -> None:
        plan: RoutePlan = req.handle
        if plan.is_overflow(self._target(req)):
            plan.overflowed(usd)

    def gave_up(self, req: SimRequest, route: Route, ms: float) -> None:
        plan: RoutePlan = req.handle
        plan.gave_up(self._target(req), ms)
