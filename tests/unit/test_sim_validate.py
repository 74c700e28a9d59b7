"""The validation replays a real burst run on its host's engine, as fast as the run measured it."""

from __future__ import annotations

from pathlib import Path

import pytest

from benchmarks.simulate.fleet import capacity_rps
from benchmarks.simulate.scenarios import RESULTS, burst_lengths, fleets
from benchmarks.simulate.validate import arrivals_capacity, as_run_measured, validate
from benchmarks.simulate.workloads import poisson

HOST2_RUN = RESULTS / "burst-20261201-062837.json"  # `--modes hybrid` only, on the host of cpu-smollm2-host2


def test_a_slowed_profile_serves_that_much_less() -> None:
    profile = fleets(["cpu-1"])[0].profile
    sizes = poisson(1.0, 1.0, 500, burst_lengths(), 0)
    assert capacity_rps(profile.slowed(1.5), sizes) == pytest.approx(capacity_rps(profile, sizes) / 1.5, rel=0.05)


def test_the_engine_is_scaled_to_the_c_the_run_measured_and_arrivals_keep_their_own_c() -> None:
    run = {"calibration": {"capacity_rps": 0.5}, "capacity_rps": 0.9}
    fleet = fleets(["cpu-1"], "cpu-smollm2-host2")[0]
    scaled, as_profiled = as_run_measured(fleet, run)
    assert as_profiled > 1.0  # the engine alone, on its own
    assert capacity_rps(scaled.profile, poisson(1.0, 1.0, 500, burst_lengths(), 0)) == pytest.approx(0.5, rel=0.1)
    assert scaled.profile.hop_ms == fleet.profile.hop_ms  # the hop is not the engine's
    assert arrivals_capacity(run) == 0.9 and arrivals_capacity({"calibration": {"capacity_rps": 0.5}}) == 0.5


@pytest.mark.parametrize("scale", [True, False])
def test_a_hybrid_only_run_validates_its_hybrid_mode(scale: bool) -> None:
    v = validate(fleets(["cpu-1"], "cpu-smollm2-host2")[0], 1, Path(HOST2_RUN), scale=scale)
    assert list(v["modes"]) == ["hybrid"]
    # This host's run, as recorded in benchmarks/README.md: met scaled, 15 points off as the profile measured it.
    assert v["met"] is scale
