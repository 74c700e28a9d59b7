"""The load board's view of many replicas: the upper-quartile one, not the slowest (benchmarks/simulate)."""

from __future__ import annotations

from local_models.interface import LoadStats
from orchestrator.scheduling.load import aggregate


def stats(ttft_p90_ms: float, step_ms: float) -> LoadStats:
    return LoadStats(
        waiting=0, running=1, unfinished=1, queued_prompt_tokens=0, kv_cache_usage=0.1, prefill_tokens_per_s=0.0,
        prefill_capacity_tokens_per_s=None, decode_tokens_per_s=10.0, ttft_p50_ms=None, ttft_p90_ms=ttft_p90_ms,
        finished_per_s=1.0, step_ms=step_ms, max_num_seqs=8, updated_at=10.0,
    )  # fmt: skip


def test_up_to_four_replicas_are_seen_through_the_slowest() -> None:
    snap = aggregate({f"r{i}": stats(100.0 * (i + 1), 10.0 * (i + 1)) for i in range(4)}, now=10.0, max_age_s=1.0)
    assert (snap.recent_ttft_ms, snap.step_ms) == (400.0, 40.0)


def test_one_outlier_among_many_replicas_is_not_what_a_request_meets() -> None:
    reports = {f"r{i}": stats(200.0, 20.0) for i in range(15)}
    reports["stuck"] = stats(5000.0, 900.0)
    snap = aggregate(reports, now=10.0, max_age_s=1.0)
    assert (snap.recent_ttft_ms, snap.step_ms) == (200.0, 20.0)
    many = {f"r{i}": stats(float(i), float(i)) for i in range(64)}
    snap = aggregate(many, now=10.0, max_age_s=1.0)
    assert (snap.recent_ttft_ms, snap.step_ms) == (48.0, 48.0)  # the upper quartile of 0..63


def test_the_load_a_p90_was_measured_at_comes_with_it() -> None:
    reports = {f"r{i}": LoadStats(stats(100.0 * (i + 1), 10.0), ttft_in_flight=float(10 - i)) for i in range(4)}
    snap = aggregate(reports, now=10.0, max_age_s=1.0)
    assert (snap.recent_ttft_ms, snap.recent_ttft_in_flight) == (400.0, 7.0)  # r3's p90, and r3's load
    snap = aggregate({"old": stats(100.0, 10.0)}, now=10.0, max_age_s=1.0)  # an engine that doesn't say
    assert (snap.recent_ttft_ms, snap.recent_ttft_in_flight) == (100.0, None)
