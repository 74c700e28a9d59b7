"""The scheduler's TTFT model, corrected by what the local model then did."""

from __future__ import annotations

import math
import random

import pytest

from orchestrator.scheduling.calibration import Calibration


def feed(c: Calibration, ratios: list[float], predicted: float = 400.0) -> None:
    for r in ratios:
        c.observe(predicted, predicted * r)


@pytest.mark.parametrize("quantile", [0.5, 0.9])
@pytest.mark.parametrize(("centre", "spread"), [(1.0, 0.3), (0.75, 0.2), (2.5, 0.4)])
def test_settles_at_its_quantile_of_actual_over_predicted(quantile: float, centre: float, spread: float) -> None:
    rng = random.Random(1)
    ratios = [centre * math.exp(rng.gauss(0, spread)) for _ in range(4000)]
    c = Calibration(quantile=quantile, low=0.5)
    feed(c, ratios[:3000])
    factors = []
    for r in ratios[3000:]:  # where it hovers, observation after observation
        feed(c, [r])
        factors.append(c.factor)
    typical = sorted(factors)[len(factors) // 2]
    below = sum(r <= typical for r in ratios[3000:]) / 1000
    assert abs(below - quantile) < 0.08, (typical, below)


def test_a_given_up_attempt_teaches_only_where_its_wait_alone_tells_the_side() -> None:
    c = Calibration(clock=lambda: 0.0)
    feed(c, [1.0] * 100)
    before = c.factor
    c.observe_at_least(400.0, 300.0)  # cancelled after 300 ms of a 400 ms prediction: the ratio may be below
    assert c.factor == before
    c.observe_at_least(400.0, 900.0)  # cancelled after 900 ms: the ratio is above 2.25, so above the estimate
    assert c.factor > before and c.observations == 101


def test_by_default_the_median_a_typical_request() -> None:
    assert Calibration().quantile == 0.5


def test_an_over_predicting_model_is_brought_down_and_an_under_predicting_one_up() -> None:
    quiet, shared = Calibration(), Calibration()
    feed(quiet, [0.85] * 200)
    feed(shared, [2.5] * 200)
    assert quiet.factor == pytest.approx(0.85, rel=0.05)
    assert shared.factor == pytest.approx(2.5, rel=0.1)


def test_a_calm_spell_scales_predictions_down_by_a_fifth_at_most() -> None:
    c = Calibration()
    feed(c, [0.5] * 500)  # quiet: everything local came twice as fast as predicted
    assert c.factor == pytest.approx(0.8)


def test_it_follows_a_change_within_seconds_of_traffic() -> None:
    c = Calibration()
    feed(c, [0.8] * 200)
    feed(c, [2.0] * 40)  # the machine got busy: 40 local requests later the model is trusted less
    assert c.factor > 1.5


def test_bounded_and_deaf_to_nonsense() -> None:
    c = Calibration(clock=lambda: 0.0)
    feed(c, [100.0] * 500)
    assert c.factor == pytest.approx(4.0)
    feed(c, [0.001] * 5000)
    assert c.factor == pytest.approx(0.8)
    before = (c.factor, c.observations)
    for predicted, actual in [(0.0, 100.0), (100.0, 0.0), (math.inf, 5.0), (5.0, math.nan), (-1.0, 3.0)]:
        c.observe(predicted, actual)
    assert (c.factor, c.observations) == before


def test_what_it_learned_fades_when_no_local_answer_comes() -> None:
    now = [0.0]
    c = Calibration(clock=lambda: now[0])
    feed(c, [2.0] * 200)  # a bad minute: everything local came twice as slow as predicted
    assert c.factor == pytest.approx(2.0, rel=0.1)
    now[0] += 30.0  # then it spilled everything, and saw no local answer for a half-life
    assert c.factor == pytest.approx(2.0**0.5, rel=0.1)
    now[0] += 300.0
    assert c.factor == pytest.approx(1.0, abs=0.01)  # the model as it is: local traffic can come back
    feed(c, [0.8] * 100)
    assert c.factor == pytest.approx(0.8, rel=0.1)
