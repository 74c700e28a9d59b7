"""benchmarks.autoscale's figures from a run's samples and outcomes: events, phases, nothing lost."""

from __future__ import annotations

import argparse

import pytest

from benchmarks.autoscale import Sample, arrivals, summarize
from benchmarks.burst import Outcome

ARGS = argparse.Namespace(
    before_s=10.0, burst_s=40.0, after_s=30.0, base=0.5, peak=4.0, seed=1, slo_ms=1000.0, window_s=5
)


def sample(t: float, running: int, starting: int = 0, stopping: int = 0, reporting: int = 1) -> Sample:
    return Sample(t, running, starting, stopping, reporting, 0)


def outcome(t: float, local: bool, ttft_s: float = 0.1, ok: bool = True, reason: str = "") -> Outcome:
    served = "local/tiny-random" if local else "cloud/llama-3.1-8b"
    return Outcome(
        "autoscale", t, ok, ttft_s if ok else None, 0.5, served if ok else "", reason, error=None if ok else "x"
    )


def test_the_events_and_phases_follow_serve_and_the_board() -> None:
    samples = [sample(t, 1) for t in range(0, 15)]
    samples += [sample(t, 1, starting=1) for t in range(15, 30)]  # Serve adds one at 15 s
    samples += [sample(t, 2, reporting=2) for t in range(30, 60)]  # the board counts it at 30 s
    samples += [sample(t, 1, stopping=1, reporting=2) for t in range(60, 63)]  # scale-down at 60 s
    samples += [sample(t, 1) for t in range(63, 80)]
    outcomes = [outcome(5, True), outcome(12, True)]
    outcomes += [outcome(20, False, reason="spill: predicted 1500 ms > SLO"), outcome(25, True)]
    outcomes += [outcome(35, True), outcome(40, True, ttft_s=2.0), outcome(70, False, ok=False)]
    s = summarize(outcomes, samples, ARGS)
    assert s["events"] == [
        {"t_s": 15, "replicas": 2, "direction": "up", "reporting_s": 30, "cold_start_s": 15},
        {"t_s": 60, "replicas": 1, "direction": "down"},
    ]
    phases = s["phases"]
    assert list(phases) == ["before, 1 reporting", "burst, 1 reporting", "burst, 2 reporting", "after, 1 reporting"]
    assert phases["burst, 1 reporting"]["requests"] == 3
    assert phases["burst, 1 reporting"]["local_share"] == pytest.approx(2 / 3)
    assert phases["burst, 1 reporting"]["reasons"] == {"spill": 1}
    assert phases["burst, 2 reporting"]["within_slo"] == 0.5
    assert phases["after, 1 reporting"]["failed"] == 1 and phases["after, 1 reporting"]["local_share"] is None
    assert (s["sent"], s["answered"], s["failed_explicitly"]) == (7, 6, 1)
    assert sum(p["requests"] for p in phases.values()) == s["sent"]  # every request is in one phase
    assert s["around_scale_down"] == {"requests": 3, "failed": 1}  # sent 30 s before to 10 s after it


def test_arrivals_are_seeded_and_denser_in_the_burst() -> None:
    times = arrivals(2.0, ARGS)
    assert times == arrivals(2.0, ARGS)
    burst = sum(ARGS.before_s <= t < ARGS.before_s + ARGS.burst_s for t in times) / ARGS.burst_s
    quiet = sum(t < ARGS.before_s or t >= ARGS.before_s + ARGS.burst_s for t in times) / (ARGS.before_s + ARGS.after_s)
    assert burst > 4 * quiet
