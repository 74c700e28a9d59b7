"""The ceiling the simulator's verdicts are read against: what any policy could keep local within the SLO."""

from __future__ import annotations

from dataclasses import replace
from functools import partial

import pytest
from sim_small import FLEET, PROFILE

from benchmarks.simulate.ceiling import ceiling, lone_ttft_ms
from benchmarks.simulate.fleet import capacity_rps, simulate
from benchmarks.simulate.ours import Ours
from benchmarks.simulate.policies import LocalOnly, PolicyFactory, RemoteOnly, Threshold
from benchmarks.simulate.report import reachable
from benchmarks.simulate.summary import summarize
from benchmarks.simulate.workloads import Lengths, Workload, poisson, poisson_burst

SIZES = Lengths("lognormal", prompt=200, output=30, spread=0.6, max_prompt=1500)


def _c() -> float:
    return capacity_rps(PROFILE, poisson(1.0, 1.0, 100, SIZES, seed=0), seconds=100)


def test_a_lone_first_token_is_the_prompts_chunks_and_the_hop() -> None:
    assert lone_ttft_ms(PROFILE, 100) == pytest.approx(20 + 0.5 * 100 + 10)
    assert lone_ttft_ms(PROFILE, 700) == pytest.approx((20 + 0.5 * 512) + (20 + 0.5 * 188) + 10)


def test_no_policy_keeps_more_local_within_the_slo_than_the_ceiling() -> None:
    w = poisson_burst(_c(), SIZES, seed=3)
    top = ceiling(FLEET, w, seed=3)
    assert 0.3 < top.local_share < 0.95  # a burst at 4 x C: some of it must go
    assert top.unsorted_share <= top.local_share <= top.clairvoyant_share
    held = []
    all_remote = sum(simulate(FLEET, w, RemoteOnly, seed=1).cost_usd)
    assert 0 < top.cost_floor_per_1k_usd < 1000 * all_remote / len(w)
    policies: list[PolicyFactory] = [LocalOnly, Ours, *(partial(Threshold, n=n) for n in (1, 2, 4, 8, 16))]
    for policy in policies:
        r = summarize(simulate(FLEET, w, policy, seed=1), FLEET.slo_ms)
        if r["slo_attainment"] >= 0.99:
            held.append(r["local_share"])
            assert r["local_share"] <= top.local_share
            assert r["cost_per_1k_usd"] >= top.cost_floor_per_1k_usd  # and none pays less for the rest
    assert len(held) >= 3 and max(held) > 0.8 * top.local_share  # a ceiling near what policies reach, not 100 %


def test_a_quiet_workload_could_all_stay_local() -> None:
    w = poisson(_c(), 0.5, 300, SIZES, seed=4)
    top = ceiling(FLEET, w)
    assert top.local_share == 1.0 and top.cost_floor_per_1k_usd == pytest.approx(0.0, abs=1e-12)


def test_a_request_that_misses_the_slo_on_an_idle_engine_is_never_counted() -> None:
    # Prompts of 3,000 tokens take 1.5 s to prefill alone: only the 1 % the SLO lets be late stays.
    n = 200
    w = Workload("long", [i * 10.0 for i in range(n)], [3000] * n, [10] * n, n * 10.0)
    top = ceiling(FLEET, w)
    assert top.feasible_share == 0.0 and top.local_share == pytest.approx(0.01)
    # Past the context length, too: an idle engine can't take it at all.
    short = Workload("short", w.times, [100] * n, [10] * n, w.duration_s)
    assert ceiling(replace(FLEET, context_length=50), short).feasible_share == 0.0


def test_the_verdict_says_which_form_of_the_target_any_policy_could_reach() -> None:
    top = {"local_share": 0.843, "cost_floor_per_1k_usd": 0.0022}
    assert reachable(top, {"local_share": 0.747, "cost_per_1k_usd": 0.0039}) == {"local": False, "cost": True}
    assert reachable(top, {"local_share": 0.70, "cost_per_1k_usd": 0.0025}) == {"local": True, "cost": False}
    # A best peer that pays nothing (local-only holds the SLO): nobody is 20 % cheaper than nothing.
    assert reachable(
        {"local_share": 1.0, "cost_floor_per_1k_usd": 0.0}, {"local_share": 1.0, "cost_per_1k_usd": 0.0}
    ) == {
        "local": False,
        "cost": False,
    }
