"""The simulated engine, fleet and policies behave as the real ones would, on a small fast profile."""

from __future__ import annotations

import math
import random
from dataclasses import replace

import pytest
from sim_small import FLEET, PROFILE, REMOTE

from benchmarks.simulate.engine import SimEngine
from benchmarks.simulate.events import EventLoop
from benchmarks.simulate.fleet import Fleet, capacity_rps, simulate
from benchmarks.simulate.ours import Ours
from benchmarks.simulate.policies import GatewayContext, LocalOnly, PolicyFactory, RemoteOnly, Threshold
from benchmarks.simulate.profiles import RemoteProfile
from benchmarks.simulate.request import SimRequest
from benchmarks.simulate.summary import summarize
from benchmarks.simulate.workloads import Lengths, Workload, poisson, poisson_burst

SIZES = Lengths("fixed", prompt=100, output=30)


def test_the_engines_first_tokens_come_later_the_longer_its_queue() -> None:
    loop = EventLoop()
    firsts: dict[int, float] = {}
    engine = SimEngine(
        "e", PROFILE, loop, random.Random(0), lambda r: firsts.__setitem__(r.index, loop.now), lambda r: None
    )
    for i in range(24):
        req = SimRequest(i, 0.0, 100, 30, 0)
        engine.submit(req)
    while loop.heap:
        loop.step()
    ttfts = [firsts[i] for i in range(24)]
    assert ttfts == sorted(ttfts)
    # The first arrives at an idle engine and is prefilled alone; the next ones share the
    # 512-token steps; the 9th waits for a slot (8 sequences), the 17th for a second one.
    assert ttfts[0] == pytest.approx((20 + 0.5 * 100) / 1000)
    assert ttfts[1] == pytest.approx(ttfts[0] + (20 + 2 * 1 + 0.5 * 511) / 1000)
    assert ttfts[8] > ttfts[7] + 25 * 0.02  # a slot frees only when a sequence has decoded its 30 tokens
    assert ttfts[16] > ttfts[8] + 25 * 0.02
    assert engine.ongoing == 0 and engine.running == 0 and engine.queued_prompt_tokens == 0


def test_capacity_is_the_closed_loops_completion_rate() -> None:
    w = poisson(1.0, 1.0, 200, SIZES, seed=0)
    c = capacity_rps(PROFILE, w, seconds=200)
    # 4 streams: a request decodes 29 steps of 4 sequences, and shares the other three's prefill steps.
    fastest = (20 + 2 * 4) * 29 + (20 + 50)
    slowest = fastest + 3 * (20 + 50 + 2 * 3)
    assert 4 / (slowest / 1000) < c < 4 / (fastest / 1000)


def _run(policy: PolicyFactory, load: float, seconds: float = 200.0) -> dict[str, float]:
    c = capacity_rps(PROFILE, poisson(1.0, 1.0, 100, SIZES, seed=0), seconds=100)
    w = poisson(c, load, seconds, SIZES, seed=2)
    remote_only = sum(simulate(FLEET, w, RemoteOnly, seed=1).cost_usd)
    return summarize(simulate(FLEET, w, policy, seed=1), FLEET.slo_ms, remote_only)


def test_local_only_on_an_overloaded_engine_misses_the_slo() -> None:
    light = _run(LocalOnly, 0.5)
    heavy = _run(LocalOnly, 3.0)
    assert light["slo_attainment"] > 0.99 and light["local_share"] == 1.0
    assert heavy["slo_attainment"] < 0.5
    assert heavy["ttft_p95_ms"] > 10 * light["ttft_p95_ms"]


def test_remote_only_pays_every_request_at_the_list_price() -> None:
    r = _run(RemoteOnly, 1.0)
    assert r["local_share"] == 0.0
    assert r["cost_per_1k_usd"] == pytest.approx(1000 * (100 * 1.0 + 30 * 2.0) / 1e6)
    assert r["cost_vs_all_remote"] == pytest.approx(1.0)
    assert r["ttft_p50_ms"] == pytest.approx(300.0)


def test_ours_runs_the_real_router_local_when_quiet_spilling_in_a_burst() -> None:
    quiet = _run(Ours, 0.5)
    assert quiet["local_share"] > 0.98 and quiet["slo_attainment"] == 1.0
    c = capacity_rps(PROFILE, poisson(1.0, 1.0, 100, SIZES, seed=0), seconds=100)
    w = poisson_burst(c, SIZES, seed=3)
    local_only = summarize(simulate(FLEET, w, LocalOnly, seed=1), 1000.0)
    ours = summarize(simulate(FLEET, w, Ours, seed=1), 1000.0)
    assert local_only["slo_attainment"] < 0.9
    assert ours["slo_attainment"] > 0.99
    assert 0.5 < ours["local_share"] < 1.0
    assert ours["spills_per_s"] > 0


def test_a_threshold_policy_spills_once_in_flight_reaches_n() -> None:
    low = _run(lambda ctx: Threshold(ctx, 1), 1.0)
    high = _run(lambda ctx: Threshold(ctx, 64), 1.0)
    assert low["local_share"] < high["local_share"]
    assert high["local_share"] == 1.0


def test_a_failed_request_counts_as_an_infinite_ttft() -> None:
    failing = RemoteProfile("down", "m", 300.0, 0.0, 1.0, 1.0, p_fail=1.0)
    fleet = Fleet("down", PROFILE, remotes=(failing,))
    r = summarize(simulate(fleet, poisson(5.0, 1.0, 20, SIZES, seed=0), RemoteOnly), 1000.0)
    assert r["failed"] == r["requests"] and math.isinf(r["ttft_p50_ms"]) and r["slo_attainment"] == 0.0


def test_a_request_arriving_during_a_decode_run_starts_at_the_end_of_the_step_in_progress() -> None:
    loop = EventLoop()
    seen: dict[int, list[float]] = {0: [], 1: []}
    engine = SimEngine(
        "e",
        PROFILE,
        loop,
        random.Random(0),
        lambda r: seen[r.index].append(loop.now),
        lambda r: seen[r.index].append(loop.now),
    )
    engine.submit(SimRequest(0, 0.0, 100, 30, 0))
    step = (20 + 2 * 1) / 1000  # one sequence decoding
    first = (20 + 0.5 * 100) / 1000
    loop.at(first + 10.5 * step, lambda _: engine.submit(SimRequest(1, loop.now, 100, 30, 0)))
    while loop.heap:
        loop.step()
    # Request 1 waits for the 11th decode step to end, then shares a prefill step with request 0's decoding.
    assert seen[1][0] == pytest.approx(first + 11 * step + (20 + 2 * 1 + 50) / 1000)
    # Request 0 decodes 29 tokens: 11 steps alone, one prefill step shared, then steps with two sequences.
    two = (20 + 2 * 2) / 1000
    assert seen[0][1] == pytest.approx(seen[1][0] + (29 - 12) * two)


class _Hedged(LocalOnly):
    """Local first with 1 s of patience and a hedge after 0.5 s, the remote behind it."""

    def __init__(self, ctx: GatewayContext):
        super().__init__(ctx)
        self.local_first = [(True, -1, 1.0), (False, 0, ctx.timeout_s)]

    def plan(self, req: SimRequest) -> None:
        super().plan(req)
        req.hedge_s = 0.5


def test_a_hedge_in_flight_serves_when_the_local_attempts_patience_runs_out_first() -> None:
    """As in the gateway's race: the local attempt (first token after ~3 s) times out at 1 s while its
    hedge (started at 0.5 s, 0.8 s to its first token) is in flight; the hedge serves at 1.3 s, not a
    fresh remote attempt started at 1 s (1.8 s)."""
    slow = replace(PROFILE, prefill_ms_per_token=30.0)
    remote = replace(REMOTE, ttft_median_ms=800.0)
    fleet = Fleet("hedged", slow, remotes=(remote,), slo_ms=1000.0)
    one = Workload("one", [0.0], [100], [30], 1.0)
    r = simulate(fleet, one, _Hedged)
    assert list(r.ttft_ms) == [pytest.approx(1300.0)] and r.local[0] == 0
    assert r.cost_usd[0] == pytest.approx(remote.cost_usd(100, 30))  # the local attempt costs nothing remote
    assert r.extra == {"hedges": 1, "hedges_won": 1, "hedges_called_off": 0}
