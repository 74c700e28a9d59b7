"""The simulator's workloads: arrival rates as asked, and the Azure trace CSV read as written."""

from __future__ import annotations

from pathlib import Path

import pytest

from benchmarks.simulate.trace import load_azure_csv, synthesize, write_azure_csv
from benchmarks.simulate.workloads import Lengths, diurnal, mmpp, poisson, poisson_burst, replay

FIXED = Lengths("fixed", prompt=100, output=20)


def test_poisson_arrivals_come_at_the_asked_rate() -> None:
    w = poisson(50.0, 0.8, 400.0, FIXED, seed=1)
    assert len(w) / w.duration_s == pytest.approx(40.0, rel=0.03)
    gaps = [b - a for a, b in zip(w.times, w.times[1:], strict=False)]
    assert sum(gaps) / len(gaps) == pytest.approx(1 / 40.0, rel=0.03)
    assert w.times == sorted(w.times)


def test_the_burst_profile_holds_four_times_capacity_at_its_peak() -> None:
    w = poisson_burst(10.0, FIXED, seed=3)  # 150 s at 8/s, 20 s ramp, 60 s at 40/s, ramp, 150 s at 8/s
    assert w.duration_s == 400.0
    peak = [t for t in w.times if 170 <= t < 230]
    edge = [t for t in w.times if t < 150]
    assert len(peak) / 60 == pytest.approx(40.0, rel=0.08)
    assert len(edge) / 150 == pytest.approx(8.0, rel=0.08)


def test_diurnal_and_mmpp_average_between_their_extremes() -> None:
    d = diurnal(20.0, FIXED, seed=4, low=0.5, high=1.5, period_s=600.0)
    assert len(d) / d.duration_s == pytest.approx(20.0, rel=0.05)  # a full period averages the middle
    m = mmpp(20.0, FIXED, seed=5, off=0.5, on=2.5, mean_off_s=60, mean_on_s=15, duration_s=3000)
    expected = 20.0 * (0.5 * 60 + 2.5 * 15) / 75
    assert len(m) / m.duration_s == pytest.approx(expected, rel=0.15)


def test_heavy_tailed_lengths_have_a_long_tail() -> None:
    draw = Lengths("pareto", prompt=100, output=20, spread=1.5, max_prompt=10**6, max_output=10**6).sampler(
        __import__("random").Random(0)
    )
    prompts = sorted(draw()[0] for _ in range(20000))
    assert prompts[len(prompts) // 2] < 200
    assert prompts[int(0.999 * len(prompts))] > 50 * prompts[len(prompts) // 2]


def test_the_azure_trace_csv_is_read_as_written(tmp_path: Path) -> None:
    path = tmp_path / "trace.csv"
    path.write_text(
        "TIMESTAMP,ContextTokens,GeneratedTokens\n"
        "2023-11-16 18:15:46.6805900,374,44\n"
        "2023-11-16 18:15:50.9657347,396,109\n"
        "2023-11-16 18:15:46.1805900,879,20\n"
    )
    rows = load_azure_csv(path)
    assert [(c, g) for _, c, g in rows] == [(879, 20), (374, 44), (396, 109)]
    assert [t for t, _, _ in rows] == pytest.approx([0.0, 0.5, 4.7851447], abs=1e-6)


def test_a_trace_written_in_the_azure_format_replays_its_requests(tmp_path: Path) -> None:
    rows = synthesize(500, seed=1)
    write_azure_csv(tmp_path / "t.csv", rows)
    back = load_azure_csv(tmp_path / "t.csv")
    assert [(c, g) for _, c, g in back] == [(c, g) for _, c, g in rows]
    assert back[-1][0] == pytest.approx(rows[-1][0] - rows[0][0], abs=1e-3)
    w = replay("t", back, speedup=2.0)
    assert len(w) == 500 and w.times[-1] == pytest.approx(back[-1][0] / 2)


def test_a_csv_without_the_azure_columns_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "bad.csv"
    path.write_text("time,prompt\n1,2\n")
    with pytest.raises(ValueError, match="ContextTokens"):
        load_azure_csv(path)
