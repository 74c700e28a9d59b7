"""The router remembers the best prefill speed the local engines showed (found with benchmarks/simulate)."""

from __future__ import annotations

from dataclasses import replace

from orchestrator.protocol import ChatCompletionRequest
from orchestrator.scheduling.capabilities import Backend, ModelEntry, Registry, Task
from orchestrator.scheduling.load import LoadSnapshot
from orchestrator.scheduling.policy import Knobs
from orchestrator.scheduling.router import Router

CHAT: frozenset[Task] = frozenset({"chat", "completions"})
REGISTRY = Registry(
    [ModelEntry("hybrid", (Backend("local", "small", CHAT, owned_by="me"), Backend("cloud", "m", CHAT, owned_by="c")))]
)
# ~1,000 prompt tokens (the byte counter's upper bound): 0.5 s at the configured 2,000 tokens/s,
# 2 s at the 500 tokens/s this engine really prefills.
LONG = ChatCompletionRequest.model_validate({"model": "hybrid", "messages": [{"role": "user", "content": "x" * 1000}]})
IDLE = LoadSnapshot(
    replicas=1, slots=8, waiting=0, running=0, queued_prompt_tokens=0, prefill_tokens_per_s=0.0,
    prefill_capacity_tokens_per_s=None, decode_tokens_per_s=0.0, finished_per_s=0.0, step_ms=None,
    recent_ttft_ms=None, kv_cache_usage=0.0, taken_at=0.0,
)  # fmt: skip


class Board:
    """A LoadView stand-in whose snapshot the test sets."""

    def __init__(self) -> None:
        self.now = IDLE

    def snapshot(self, model: str) -> LoadSnapshot:
        return self.now

    def overflow_spent_usd(self) -> float:
        return 0.0


async def first(router: Router) -> str:
    return (await router.plan(LONG, "chat", set(), {})).targets[0].provider


async def test_an_engine_that_never_showed_its_prefill_speed_is_planned_at_the_configured_one() -> None:
    router = Router(REGISTRY, local={"local": "small"}, load=Board(), knobs=Knobs(prefill_tokens_per_s=2000))  # type: ignore[arg-type]
    assert await first(router) == "local"  # 20 + 500 ms, within 700


async def test_an_engine_idle_past_its_stats_window_keeps_the_prefill_speed_it_showed() -> None:
    board = Board()
    router = Router(REGISTRY, local={"local": "small"}, load=board, knobs=Knobs(prefill_tokens_per_s=2000))  # type: ignore[arg-type]
    board.now = replace(IDLE, running=1, prefill_capacity_tokens_per_s=500.0, step_ms=30.0)
    assert await first(router) == "cloud"  # 2 s of prefill at its own speed
    board.now = IDLE  # a quiet spell: its window forgot the speed, not the engine
    planned = await router.plan(LONG, "chat", set(), {})
    assert planned.targets[0].provider == "cloud"
    assert planned.plan.predicted_ttft_ms is not None and planned.plan.predicted_ttft_ms > 2000


async def test_a_faster_engine_replaces_what_was_remembered() -> None:
    board = Board()
    router = Router(REGISTRY, local={"local": "small"}, load=board, knobs=Knobs(prefill_tokens_per_s=1000))  # type: ignore[arg-type]
    board.now = IDLE
    assert await first(router) == "cloud"  # 1 s at the configured speed
    board.now = replace(IDLE, prefill_capacity_tokens_per_s=500.0)
    assert await first(router) == "cloud"
    board.now = replace(IDLE, prefill_capacity_tokens_per_s=20_000.0)
    await first(router)
    board.now = IDLE
    assert await first(router) == "local"  # 50 ms of prefill at the speed it showed last


async def test_one_slow_window_before_a_quiet_spell_does_not_lock_the_engine_out() -> None:
    board = Board()
    router = Router(REGISTRY, local={"local": "small"}, load=board)  # type: ignore[arg-type]
    board.now = replace(IDLE, prefill_capacity_tokens_per_s=20_000.0)
    await first(router)
    board.now = replace(IDLE, prefill_capacity_tokens_per_s=300.0)  # one slow step in its window
    assert await first(router) == "cloud"
    board.now = IDLE  # then it got nothing (everything spilled) and showed nothing new
    assert await first(router) == "local"  # planned at the best it showed, not the last
