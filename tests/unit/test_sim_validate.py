"""The validation replays a real burst run on its host's engine, at the C measured on that engine."""

from __future__ import annotations

import json
from dataclasses import replace
from pathlib import Path

import pytest

from benchmarks.simulate.fleet import capacity_rps
from benchmarks.simulate.profiles import EngineProfile
from benchmarks.simulate.scenarios import RESULTS, burst_lengths, fleets
from benchmarks.simulate.validate import arrivals_capacity, ran_with, validate
from benchmarks.simulate.workloads import poisson

HOST2_RUN = RESULTS / "burst-20261201-062837.json"  # `--modes hybrid` only, on the host of cpu-smollm2-host2
SIZES = poisson(1.0, 1.0, 2000, burst_lengths(), 0)


def test_a_slowed_profile_serves_that_much_less() -> None:
    profile = EngineProfile.load("cpu-smollm2")
    assert capacity_rps(profile.slowed(1.5), SIZES) == pytest.approx(capacity_rps(profile, SIZES) / 1.5, rel=0.05)


def test_a_profile_measure_engine_writes_loads_with_its_measured_c(tmp_path: Path) -> None:
    profile = EngineProfile.load("cpu-smollm2")
    path = tmp_path / "written.json"
    path.write_text(profile.to_json({"measured": {"capacity_rps": 0.5}}))
    assert EngineProfile.load(str(path)) == replace(profile, measured_capacity_rps=0.5)


@pytest.mark.parametrize("name", ["cpu-smollm2", "cpu-smollm2-host2", "cpu-smollm2-host3"])
def test_cpu_1_runs_its_profile_at_the_c_measured_on_the_real_engine(name: str) -> None:
    measured = json.loads(Path(f"benchmarks/simulate/profiles/{name}.json").read_text())["measured"]
    c = measured.get("capacity_rps") or measured["capacity_rps_at_4"]
    fitted = fleets(["cpu-1"], name, as_fitted=True)[0].profile
    assert capacity_rps(fitted, SIZES) > c  # the step line alone serves more than its engine did (5-14 %)
    at_c = fleets(["cpu-1"], name)[0].profile
    assert capacity_rps(at_c, SIZES) == pytest.approx(c, rel=0.05)
    assert at_c.hop_ms == fitted.hop_ms  # the hop is not the engine's


def test_arrivals_keep_the_c_they_were_drawn_from() -> None:
    assert arrivals_capacity({"calibration": {"capacity_rps": 0.5}, "capacity_rps": 0.9}) == 0.9  # --capacity
    assert arrivals_capacity({"calibration": {"capacity_rps": 0.5}}) == 0.5


def test_a_hybrid_only_run_validates_its_hybrid_mode() -> None:
    v = validate(fleets(["cpu-1"], "cpu-smollm2-host2")[0], 1, HOST2_RUN)
    assert list(v["modes"]) == ["hybrid"] and v["met"]  # benchmarks/README.md, "Simulator": another host


def test_a_run_is_replayed_with_the_engine_slots_it_ran_with(tmp_path: Path) -> None:
    path = RESULTS / "burst-20261203-111610.json"  # `--max-num-seqs 48`
    run = json.loads(path.read_text())
    assert run["local_settings"]["max_num_seqs"] == 48
    as_32 = tmp_path / "as-32.json"
    as_32.write_text(json.dumps({**run, "local_settings": {**run["local_settings"], "max_num_seqs": 32}}))
    fleet = fleets(["cpu-1"], "cpu-smollm2-host4-plugin2")[0]
    assert fleet.profile.max_num_seqs == 32

    def share(p: Path) -> float:
        return float(validate(fleet, 1, p)["modes"]["hybrid"]["sim_local_share_mean"])

    assert share(path) > share(as_32)  # 16 more slots take more of the burst's peak


def test_a_run_recorded_before_a_setting_existed_is_replayed_without_it() -> None:
    before = json.loads((RESULTS / "burst-20261203-134955.json").read_text())  # before the prompt-size line
    assert "size_bias" not in before["scheduler_settings"] and ran_with(before)["size_bias"] == 0.0
    after = json.loads((RESULTS / "burst-20261203-164800.json").read_text())
    assert ran_with(after)["size_bias"] == after["scheduler_settings"]["size_bias"] == 1.0
    assert ran_with({"started": "2026-11-29T10:00", "scheduler": {}})["size_bias"] == 0.0  # recorded none at all
