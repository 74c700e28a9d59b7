"""The scheduler's I/O side: observed first-token times rank spill routes for `order: latency`, and
calibrate the local TTFT prediction."""

from __future__ import annotations

import asyncio
import time
from dataclasses import asdict, replace

import pytest

from orchestrator.failover import Target
from orchestrator.protocol import ChatCompletionRequest
from orchestrator.scheduling.capabilities import Backend, ModelEntry, Registry
from orchestrator.scheduling.load import BoardState, LoadSnapshot, LoadView
from orchestrator.scheduling.policy import AliasPolicy, Knobs
from orchestrator.scheduling.router import RoutePlan, Router

CHAT = frozenset({"chat", "completions"})
REGISTRY = Registry(
    [
        ModelEntry(
            "fast-first",
            (
                Backend("slowco", "m1", CHAT, owned_by="slowco"),
                Backend("quickco", "m2", CHAT, owned_by="quickco"),
            ),
        )
    ]
)
REQUEST = ChatCompletionRequest.model_validate({"model": "fast-first", "messages": [{"role": "user", "content": "hi"}]})


async def order(router: Router) -> list[str]:
    return [t.provider for t in (await router.plan(REQUEST, "chat", set(), {})).targets]


async def test_latency_order_follows_the_first_tokens_each_route_has_shown() -> None:
    router = Router(REGISTRY, local={}, policies={"fast-first": AliasPolicy(order="latency")})
    assert await order(router) == ["slowco", "quickco"]  # nothing observed yet: as listed
    router.first_token(Target("slowco", "m1"), 900.0)
    router.first_token(Target("quickco", "m2"), 120.0)
    assert await order(router) == ["quickco", "slowco"]
    for _ in range(20):  # quickco slows down for good: the average follows
        router.first_token(Target("quickco", "m2"), 2000.0)
    assert await order(router) == ["slowco", "quickco"]


async def test_listed_order_ignores_observed_latency() -> None:
    router = Router(REGISTRY, local={})
    router.first_token(Target("quickco", "m2"), 1.0)
    router.first_token(Target("slowco", "m1"), 5000.0)
    assert await order(router) == ["slowco", "quickco"]


# ---------------------------------------------------------------- local calibration

LOCAL = Backend("local", "small", CHAT, owned_by="me")
HYBRID = Registry([ModelEntry("hybrid", (LOCAL, Backend("quickco", "m2", CHAT, owned_by="q")))])
HYBRID_REQUEST = REQUEST.model_copy(update={"model": "hybrid"})


class Board:
    """A LoadView stand-in: one local replica, busy enough that the model predicts 30 + prefill + 500 ms."""

    def snapshot(self, model: str) -> LoadSnapshot:
        return LoadSnapshot(
            replicas=1, slots=8, waiting=0, running=8, queued_prompt_tokens=0, prefill_tokens_per_s=0.0,
            prefill_capacity_tokens_per_s=None, decode_tokens_per_s=50.0, finished_per_s=2.0, step_ms=30.0,
            recent_ttft_ms=None, kv_cache_usage=0.1, taken_at=0.0,
        )  # fmt: skip

    def overflow_spent_usd(self, tenant: str | None = None, *, held: bool = True) -> float:
        return 0.0

    def wanted(self, model: str) -> None:
        pass


async def test_local_first_tokens_teach_the_prediction_its_error() -> None:
    router = Router(HYBRID, local={"local": "small"}, load=Board(), knobs=Knobs(headroom=0.7))  # type: ignore[arg-type]
    planned = await router.plan(HYBRID_REQUEST, "chat", set(), {})
    assert planned.targets[0].provider == "local"  # ~530 ms modelled, within 700
    modelled = planned.plan.modelled_ttft_ms
    assert modelled is not None
    for _ in range(60):  # the local model keeps taking twice as long as predicted
        router.first_token(Target("local", "small"), modelled * 2, planned)
    calibration = router.calibration("small")
    assert calibration is not None and calibration.factor == pytest.approx(2.0, rel=0.15)
    again = await router.plan(HYBRID_REQUEST, "chat", set(), {})
    assert again.targets[0].provider == "quickco" and "learned" in again.targets[0].reason


async def test_only_local_answers_the_plan_chose_on_a_prediction_count() -> None:
    router = Router(HYBRID, local={"local": "small"}, load=Board(), knobs=Knobs(headroom=0.1))  # type: ignore[arg-type]
    spilled = await router.plan(HYBRID_REQUEST, "chat", set(), {})
    assert spilled.targets[0].provider == "quickco"
    for _ in range(30):
        router.first_token(Target("local", "small"), 5000.0, spilled)  # local as a fallback: not what was predicted
        router.first_token(Target("local", "small"), 5000.0)  # no plan known
        router.first_token(Target("quickco", "m2"), 5000.0, spilled)  # a remote route's time
    calibration = router.calibration("small")
    assert calibration is not None and calibration.factor == 1.0 and calibration.observations == 0


async def test_the_typical_prompt_is_learned_from_the_requests_planned_and_weighs_a_long_ones_wait() -> None:
    router = Router(HYBRID, local={"local": "small"}, load=Board(), knobs=Knobs(headroom=0.7))  # type: ignore[arg-type]
    long = ChatCompletionRequest.model_validate(
        {"model": "hybrid", "messages": [{"role": "user", "content": "word " * 40}]}
    )
    # The first request sets the typical prompt: a long one alone is typical, and stays local.
    assert (await router.plan(long, "chat", set(), {})).targets[0].provider == "local"
    for _ in range(300):  # then short requests, a few prompt tokens each
        assert (await router.plan(HYBRID_REQUEST, "chat", set(), {})).targets[0].provider == "local"
    planned = await router.plan(long, "chat", set(), {})
    assert planned.targets[0].provider == "quickco"  # its wait (500 ms) now counts twice
    assert "for a prompt" in planned.targets[0].reason and "the typical" in planned.targets[0].reason


async def test_predictions_far_from_the_threshold_teach_nothing() -> None:
    # An idle engine: ~50 ms modelled against a 700 ms line; its error is the hops' fixed cost.
    class Idle(Board):
        def snapshot(self, model: str) -> LoadSnapshot:
            return replace(super().snapshot(model), running=1)

    router = Router(HYBRID, local={"local": "small"}, load=Idle(), knobs=Knobs(headroom=0.7))  # type: ignore[arg-type]
    planned = await router.plan(HYBRID_REQUEST, "chat", set(), {})
    assert planned.targets[0].provider == "local" and (planned.plan.predicted_ttft_ms or 0) < 350
    for _ in range(50):
        router.first_token(Target("local", "small"), 300.0, planned)
    calibration = router.calibration("small")
    assert calibration is not None and calibration.observations == 0


async def test_a_local_route_is_alive_while_its_replicas_report_load() -> None:
    class Gone(Board):
        def snapshot(self, model: str) -> LoadSnapshot:
            return replace(super().snapshot(model), replicas=0)

    reporting = Router(HYBRID, local={"local": "small"}, load=Board())  # type: ignore[arg-type]
    local = next(t for t in (await reporting.plan(HYBRID_REQUEST, "chat", set(), {})).targets if t.provider == "local")
    assert local.alive  # tried even with its circuit open when nothing else is left
    silent = Router(HYBRID, local={"local": "small"}, load=Gone())  # type: ignore[arg-type]
    local = next(t for t in (await silent.plan(HYBRID_REQUEST, "chat", set(), {})).targets if t.provider == "local")
    assert not local.alive
    remote = next(t for t in (await silent.plan(HYBRID_REQUEST, "chat", set(), {})).targets if t.provider != "local")
    assert not remote.alive


async def test_a_model_with_no_replica_ready_is_asked_for_one_while_requests_want_it() -> None:
    """Scaled to zero, every request spills (cold-start) and none reaches the deployment, so Serve's autoscaler
    would never start a replica: the gateway asks the deployment itself, one call at a time."""
    asked: list[str] = []
    replica_up = asyncio.Event()

    async def wake(model: str) -> object:
        asked.append(model)
        await replica_up.wait()  # a call waiting at Serve's handle until a replica starts
        return {}

    async def read() -> BoardState:
        raise AssertionError("not polled in this test")

    snapshot = asdict(replace(Board().snapshot("small"), replicas=0, slots=0))  # reports, all stale
    view = LoadView(read, wake=wake)
    view.update(BoardState(models={"small": snapshot}, overflow_spent_usd=0.0, read_at=time.time()))
    router = Router(HYBRID, local={"local": "small"}, load=view)
    for _ in range(5):
        plan = await router.plan(HYBRID_REQUEST, "chat", set(), {})
        assert [t.provider for t in plan.targets] == ["quickco", "local"]  # meanwhile: remote first
        assert plan.targets[0].reason.startswith("cold-start")
    await asyncio.sleep(0)
    assert asked == ["small"]  # one call in flight, however many requests wanted the model
    replica_up.set()
    await asyncio.sleep(0.01)
    await router.plan(HYBRID_REQUEST, "chat", set(), {})  # still none reporting: asked again
    await asyncio.sleep(0)
    assert asked == ["small", "small"]
    remote_only = Router(REGISTRY, local={}, load=view)
    await remote_only.plan(REQUEST, "chat", set(), {})  # an alias without the local model asks for nothing
    await asyncio.sleep(0)
    assert asked == ["small", "small"]


async def test_a_gateway_serving_only_remote_routes_lets_its_poll_of_the_board_doze() -> None:
    """Plans without a local route don't read the load (it doesn't change their order), so the gateway's poll
    dozes as if idle; the first plan with a local route reads it, and wakes the poll at once."""
    polls: list[float] = []
    loop = asyncio.get_running_loop()
    figures = asdict(Board().snapshot("small"))

    async def read(overflow: object) -> BoardState:
        polls.append(loop.time())
        return BoardState(
            models={"small": {**figures, "taken_at": time.time()}}, overflow_spent_usd=0.0, read_at=time.time()
        )

    view = LoadView(read, interval_s=0.01, max_staleness_s=0.2)  # dozes up to 0.1 s
    both = Registry([*REGISTRY.entries(), *HYBRID.entries()])
    router = Router(both, local={"local": "small"}, load=view)
    poller = asyncio.create_task(view.run())
    try:
        for _ in range(50):  # 0.5 s of remote-only traffic
            assert await order(router) == ["slowco", "quickco"]
            await asyncio.sleep(0.01)
        dozing = len(polls)
        assert dozing <= 25  # every interval would be ~50
        for _ in range(3):
            await asyncio.sleep(0.1)
            assert await order(router) == ["slowco", "quickco"]
        assert len(polls) <= dozing + 4  # doze steps of 0.1 s
        woken = loop.time()
        plan = await router.plan(HYBRID_REQUEST, "chat", set(), {})
        assert "local" in [t.provider for t in plan.targets]
        await asyncio.sleep(0.02)
        assert any(t - woken < 0.05 for t in polls if t >= woken)  # the local plan woke the poll at once
    finally:
        poller.cancel()


async def test_a_local_attempt_given_up_for_its_hedge_teaches_that_it_was_slow() -> None:
    router = Router(HYBRID, local={"local": "small"}, load=Board(), knobs=Knobs(headroom=0.7))  # type: ignore[arg-type]
    planned = await router.plan(HYBRID_REQUEST, "chat", set(), {})
    assert planned.targets[0].provider == "local" and planned.targets[0].hedge_after_s is not None
    modelled = planned.plan.modelled_ttft_ms
    assert modelled is not None
    for _ in range(60):  # each given up after three times the prediction without a first token
        planned.gave_up(planned.targets[0], modelled * 3)
    calibration = router.calibration("small")
    assert calibration is not None and calibration.factor > 2.0
    seen = calibration.observations
    for _ in range(5):  # given up sooner than the estimate says it takes: that says nothing
        planned.gave_up(planned.targets[0], modelled * 0.5)
    assert calibration.observations == seen > 0


# ------------------------------------------------------------- one tenant's effect on the others


async def test_one_keys_spill_spends_at_most_its_share_of_the_burst_budget() -> None:
    """The burst budget as each request sees it: a key that spent its share (here by asking for a first
    token no local model gives, on every request) waits for the local model; another key still spills;
    an open endpoint (one tenant) has the whole budget."""
    figures = asdict(replace(Board().snapshot("small"), taken_at=time.time()))

    async def read(overflow: object) -> BoardState:
        raise AssertionError("not polled in this test")

    view = LoadView(read)
    view.update(BoardState(models={"small": figures}, overflow_spent_usd=0.0, read_at=time.time()))
    knobs = Knobs(overflow_budget_usd_per_hour=1.0, overflow_budget_key_share=0.5)
    router = Router(HYBRID, local={"local": "small"}, load=view, knobs=knobs)
    tight = {"x-ttft-slo-ms": "1e-300"}

    async def plan(tenant: str) -> list[str]:
        made = router.order(await router.resolve(HYBRID_REQUEST, "chat", set(), tight, tenant))
        for t in made.targets[:1]:
            if made.is_overflow(t):
                made.overflowed(0.3)  # the spilled answer's cost
        return [t.provider for t in made.targets]

    assert await plan("key:a") == ["quickco", "local"]
    assert await plan("key:a") == ["quickco", "local"]  # 0.6 spent: past its share of 0.5
    assert await plan("key:a") == ["local"]
    assert await plan("key:b") == ["quickco", "local"]  # the other key's half is there
    assert view.overflow_spent_usd() == pytest.approx(0.9)
    assert await plan("open") == ["quickco", "local"]  # no keys: one tenant, the whole budget
    assert await plan("key:b") == ["local"]  # 1.2 spent: the budget itself


async def test_a_requests_own_slo_moves_no_one_elses_spill_state() -> None:
    """Hysteresis keeps an alias spilling until the prediction is well under its SLO: a request with its own
    SLO (x-ttft-slo-ms) plans by that, and leaves the alias's state as the alias's own SLO set it."""
    figures = asdict(replace(Board().snapshot("small"), taken_at=time.time()))

    async def read(overflow: object) -> BoardState:
        raise AssertionError("not polled in this test")

    view = LoadView(read)
    view.update(BoardState(models={"small": figures}, overflow_spent_usd=0.0, read_at=time.time()))
    router = Router(HYBRID, local={"local": "small"}, load=view, knobs=Knobs(hysteresis=0.5))
    own = router.order(await router.resolve(HYBRID_REQUEST, "chat", set(), {"x-ttft-slo-ms": "1"}, "key:a"))
    assert own.plan.spilling and own.targets[0].provider == "quickco"
    assert router.state().spilling == {}
    other = router.order(await router.resolve(HYBRID_REQUEST, "chat", set(), {}, "key:b"))
    assert other.targets[0].provider == "local" and "hysteresis" not in other.targets[0].reason


async def test_spills_planned_at_once_count_against_the_budget_before_their_costs_are_known() -> None:
    """A spill's cost is known only as it ends: a key starting many at once would pass its share (and the
    hour's budget) before any was counted. While a spill's plan lives, what it may cost counts as spent."""
    figures = asdict(replace(Board().snapshot("small"), taken_at=time.time()))

    async def read(overflow: object) -> BoardState:
        raise AssertionError("not polled in this test")

    view = LoadView(read)
    view.update(BoardState(models={"small": figures}, overflow_spent_usd=0.0, read_at=time.time()))
    tight = {"x-ttft-slo-ms": "1"}
    tokens = (await Router(HYBRID, local={"local": "small"}).resolve(HYBRID_REQUEST, "chat", set(), {})).facts
    price = 0.3 / tokens.prompt_tokens * 1e6  # each spill may cost $0.30
    knobs = Knobs(overflow_budget_usd_per_hour=1.0, overflow_budget_key_share=0.5)
    router = Router(HYBRID, local={"local": "small"}, load=view, knobs=knobs, prices={("quickco", "m2"): price})

    async def plan(tenant: str) -> RoutePlan:
        return router.order(await router.resolve(HYBRID_REQUEST, "chat", set(), tight, tenant))

    running = [await plan("key:a") for _ in range(2)]  # both planned before either has cost anything
    assert [p.targets[0].provider for p in running] == ["quickco", "quickco"]
    assert view.overflow_spent_usd("key:a") == pytest.approx(0.6)
    held = await plan("key:a")
    assert held.targets[0].provider == "local" and held.targets[0].reason.startswith("budget:")
    assert (await plan("key:b")).targets[0].provider == "quickco"  # the other key's share is there
    del running, held
    assert view.overflow_spent_usd("key:a") == pytest.approx(0.0)  # ended without cost: nothing held
    assert (await plan("key:a")).targets[0].provider == "quickco"
