"""The simulator's incremental load report equals the real engine's LoadTracker."""

from __future__ import annotations

import random

import pytest

from benchmarks.simulate.stats import WindowedStats
from local_models.stats import LoadTracker


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


@pytest.mark.parametrize("seed", [1, 2, 3])
def test_windowed_stats_match_the_real_tracker(seed: int) -> None:
    rng = random.Random(seed)
    clock = Clock()
    real = LoadTracker(clock=clock, max_num_seqs=32)
    sim = WindowedStats(clock, 32)
    real.idle_prefill_tokens_per_s = sim.idle_prefill_tokens_per_s = 480.0  # the start's probe
    for _ in range(3000):
        clock.now += rng.choice([0.004, 0.01, 0.05, 0.3, 2.0]) * rng.random()
        waiting, running = rng.randrange(0, 5), rng.randrange(0, 5)
        for t in (real, sim):
            t.record_scheduler(waiting, running, 0.5)
        prompt = rng.choice([0, 0, 17, 300])
        ttfts = [rng.random() for _ in range(rng.randrange(0, 3))]
        finished = rng.randrange(0, 2)
        real.record_step(prompt, running, ttfts, finished)
        sim.record_step(prompt, running, ttfts, finished)
        if rng.random() < 0.1:
            clock.now += rng.random()
            a = real.snapshot(unfinished=3, queued_prompt_tokens=40)
            b = sim.snapshot(unfinished=3, queued_prompt_tokens=40)
            for key, value in a.items():
                if isinstance(value, float):
                    assert b[key] == pytest.approx(value, rel=1e-9, abs=1e-9), key  # type: ignore[literal-required]
                else:
                    assert b[key] == value, key  # type: ignore[literal-required]
