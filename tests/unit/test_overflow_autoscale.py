"""Demand spilled for load reaches Serve's autoscaler: gateway -> load board -> LocalModel replica -> policy.

The real `LoadView`, `LoadBoard`, `Router`, `LocalModel` (around the fake engine) and Serve's own policy
wrapper (bounds and delays) around `overflow_aware`; Ray itself is not started.
"""

from __future__ import annotations

import asyncio
import time
from dataclasses import replace
from types import SimpleNamespace
from typing import Any

from ray.serve._private.common import DeploymentID, ReplicaID
from ray.serve.autoscaling_policy import _apply_autoscaling_config
from ray.serve.config import AutoscalingConfig, AutoscalingContext

from local_models.deployment import LocalModel
from local_models.interface import OVERFLOW_METRIC, Engine, EngineConfig
from orchestrator.protocol import ChatCompletionRequest
from orchestrator.scheduling.autoscale import POLICY, overflow_aware, with_overflow_policy
from orchestrator.scheduling.capabilities import Backend, ModelEntry, Registry
from orchestrator.scheduling.load import BoardState, LoadBoard, LoadView
from orchestrator.scheduling.router import Router
from orchestrator.testing.clock import FakeClock
from orchestrator.testing.engine import FakeEngine

DEPLOYMENT = DeploymentID(name="LocalModel", app_name="orchestrator")
CONFIG = AutoscalingConfig(min_replicas=1, max_replicas=4, target_ongoing_requests=2, upscale_delay_s=0)


def context(running: int, ongoing: float, overflow: list[float]) -> AutoscalingContext:
    replicas = [ReplicaID(f"r{i}", DEPLOYMENT) for i in range(running)]
    return AutoscalingContext(
        deployment_id=DEPLOYMENT,
        deployment_name="LocalModel",
        app_name="orchestrator",
        current_num_replicas=running,
        target_num_replicas=running,
        running_replicas=replicas,
        total_num_requests=ongoing,
        total_queued_requests=0.0,
        aggregated_metrics={OVERFLOW_METRIC: dict(zip(replicas, overflow, strict=True))} if overflow else {},
        raw_metrics={},
        capacity_adjusted_min_replicas=CONFIG.min_replicas,
        capacity_adjusted_max_replicas=CONFIG.max_replicas,
        policy_state={},
        last_scale_up_time=None,
        last_scale_down_time=None,
        current_time=None,
        config=CONFIG,
    )


def test_spilled_demand_counts_as_ongoing_requests() -> None:
    # One replica holding 2 requests (its target): Serve's own policy would keep one.
    assert overflow_aware(context(1, 2.0, []))[0] == 1
    # The gateways have 6 more in flight elsewhere that wanted it: 8 / 2 = 4 replicas' worth.
    assert overflow_aware(context(1, 2.0, [6.0]))[0] == 4
    # Every replica hears the same total from the board: counted once, not per replica.
    assert overflow_aware(context(2, 4.0, [6.0, 6.0]))[0] == 5
    # Serve wraps it in the config's factors and delays (and bounds it by min/max replicas itself).
    policy = _apply_autoscaling_config(overflow_aware)
    assert policy(context(1, 2.0, [6.0]))[0] == 4  # upscale_delay_s 0: at once
    held = context(1, 2.0, [6.0])
    held.config = CONFIG.model_copy(update={"upscale_delay_s": 30.0})
    assert policy(held)[0] == 1  # a burst must last the upscale delay


def test_the_policy_is_set_unless_the_config_names_one() -> None:
    assert with_overflow_policy(None) is None
    mine = {"max_replicas": 2, "policy": {"policy_function": "my.module:policy"}}
    assert with_overflow_policy(mine) == mine
    added = with_overflow_policy({"max_replicas": 2})
    assert added == {"max_replicas": 2, "policy": {"policy_function": POLICY}}
    AutoscalingConfig(**added).policy.get_policy()  # importable by name, as Serve's controller imports it


async def test_a_gateway_tells_the_board_what_it_spilled_and_the_replicas_hear_it() -> None:
    clock = FakeClock(100.0)
    board = LoadBoard(max_age_s=1.0, clock=clock)

    async def read(overflow: Any) -> BoardState:
        return board.read("gateway-1", overflow)

    view = LoadView(read, clock=clock)
    ended = [view.overflowing("small") for _ in range(3)]
    view.overflowing("other")()  # over at once: nothing left in flight for that model
    await view.poll_once()
    assert board.report("small", "replica-1", _stats(clock.now)) == 3
    ended[0]()
    ended[0]()  # once only
    await view.poll_once()
    assert board.report("small", "replica-1", _stats(clock.now)) == 2
    assert board.report("other", "replica-9", _stats(clock.now)) == 0
    clock.advance(11.0)  # the gateway stopped reading: its figure goes
    assert board.report("small", "replica-1", _stats(clock.now)) == 0


async def test_remote_attempts_count_when_spilled_for_load_or_sent_on_by_the_local_route() -> None:
    """Spilled for load, or the local route planned first and unable to take it (circuit open, queue full,
    replica lost): demand Serve should see. A remote that leads for another reason (a capability) is not."""
    local, remote = Backend("local", "small", frozenset({"chat"})), Backend("cloud", "big", frozenset({"chat"}))
    registry = Registry([ModelEntry("hybrid", (local, remote))])
    counted: list[str] = []
    view = SimpleNamespace(
        overflowing=lambda model: counted.append(model) or (lambda: None),
        sent=lambda model, tokens: lambda: None,
    )
    router = Router(registry, local={"local": "small"})
    request = ChatCompletionRequest.model_validate({"model": "hybrid", "messages": [{"role": "user", "content": "hi"}]})
    plan = router.order(await router.resolve(request, "chat", set(), {}))  # local first, the remote a fallback
    router._load = view  # type: ignore[assignment]  # a stand-in that records
    spilled = type(plan)(router, replace(plan.plan, overflow=True, targets=plan.targets[::-1]), plan.facts)
    spilled.attempting(spilled.targets[0])()  # the remote, spilled for load
    plan.attempting(plan.targets[1])()  # the remote after the local route of a local-first plan
    spilled.attempting(spilled.targets[1])()  # the local route itself: its own load, not overflow
    assert counted == ["small", "small"]
    led = type(plan)(router, replace(plan.plan, targets=plan.targets[::-1]), plan.facts)
    led.attempting(led.targets[0])()  # the remote leads, not for load: local is only its fallback
    assert counted == ["small", "small"]


async def test_a_replica_gives_serve_what_the_board_answered() -> None:
    class Board:
        def __init__(self) -> None:
            self.report = SimpleNamespace(remote=self._report)
            self.describe = SimpleNamespace(remote=self._describe)
            self.described: list[tuple[str, Any]] = []

        async def _report(self, model: str, replica: str, stats: Any) -> int:
            return 7

        async def _describe(self, model: str, info: Any) -> None:
            self.described.append((model, info))

    async def factory(config: EngineConfig) -> Engine:
        return FakeEngine("small")

    replica = LocalModel.__new__(LocalModel)
    board = Board()
    await replica.__init__(EngineConfig("m", "small"), engine_factory=factory, board=board, report_interval_s=0.01)  # type: ignore[misc]
    assert replica.record_autoscaling_stats() in ({OVERFLOW_METRIC: 0.0}, {OVERFLOW_METRIC: 7.0})
    await asyncio.sleep(0.05)
    assert replica.record_autoscaling_stats() == {OVERFLOW_METRIC: 7.0}
    # It told the board what it serves, once, for gateways that start while no replica is up.
    assert [(m, i["name"]) for m, i in board.described] == [("small", "small")]
    replica.__del__()


def _stats(at: float) -> Any:
    return FakeEngine("small").stats() | {"updated_at": at}


async def test_a_gateway_starting_while_the_model_has_no_replica_takes_its_description_from_the_board() -> None:
    """Scaled to zero (or every replica restarting): asking a replica would hold the gateway, and every route
    it serves, through a cold start. The board has what the last replica told it; with a replica up, or
    nothing told yet, or no board, the replica answers (the freshest description)."""
    from orchestrator.app import model_info

    board = LoadBoard()
    told = FakeEngine("small").info()
    asked: list[str] = []

    async def info() -> Any:
        asked.append("replica")
        return told

    handle = SimpleNamespace(info=SimpleNamespace(remote=info))

    class Remote:
        def __init__(self, method: Any, fail: bool = False) -> None:
            self.method, self.fail = method, fail

        async def remote(self, *args: Any) -> Any:
            if self.fail:
                raise ConnectionError("board restarting")
            return self.method(*args)

    served = SimpleNamespace(read=Remote(board.read), described=Remote(board.described))
    assert await model_info(served, handle, "small") == told and asked == ["replica"]  # nothing told yet
    board.describe("small", told | {"max_model_len": 77})
    assert (await model_info(served, handle, "small"))["max_model_len"] == 77 and asked == ["replica"]
    board.report("small", "replica-1", _stats(time.time()))  # a replica is up: it answers
    assert await model_info(served, handle, "small") == told and asked == ["replica", "replica"]
    down = SimpleNamespace(read=Remote(board.read, fail=True), described=Remote(board.described))
    assert await model_info(down, handle, "small") == told and len(asked) == 3
    assert await model_info(None, handle, "small") == told and len(asked) == 4
