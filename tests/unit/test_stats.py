"""`LoadTracker`: a sliding window of engine throughput, on an injected clock."""

from __future__ import annotations

import pytest

from local_models.stats import LoadTracker
from orchestrator.testing.clock import FakeClock


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()


@pytest.fixture
def tracker(clock: FakeClock) -> LoadTracker:
    return LoadTracker(window_s=5.0, clock=clock, max_num_seqs=8)


def snap(tracker: LoadTracker) -> dict[str, object]:
    return dict(tracker.snapshot(unfinished=3, queued_prompt_tokens=40))


def test_empty_snapshot(tracker: LoadTracker, clock: FakeClock) -> None:
    assert snap(tracker) == {
        "waiting": 0,
        "running": 0,
        "unfinished": 3,
        "queued_prompt_tokens": 40,
        "kv_cache_usage": 0.0,
        "prefill_tokens_per_s": 0.0,
        "prefill_capacity_tokens_per_s": None,
        "decode_tokens_per_s": 0.0,
        "ttft_p50_ms": None,
        "ttft_p90_ms": None,
        "ttft_in_flight": None,
        "finished_per_s": 0.0,
        "step_ms": None,
        "max_num_seqs": 8,
        "updated_at": clock.now,
    }


def test_scheduler_state_is_the_last_report(tracker: LoadTracker, clock: FakeClock) -> None:
    tracker.record_scheduler(waiting=4, running=2, kv_cache_usage=0.5)
    clock.advance(1)
    tracker.record_scheduler(waiting=1, running=6, kv_cache_usage=0.75)
    s = snap(tracker)
    assert (s["waiting"], s["running"], s["kv_cache_usage"], s["updated_at"]) == (1, 6, 0.75, clock.now)


def test_rates_are_tokens_over_the_window(tracker: LoadTracker, clock: FakeClock) -> None:
    tracker.record_step(prompt_tokens=100, generated_tokens=10, ttfts_s=[])
    clock.advance(1)
    tracker.record_step(prompt_tokens=50, generated_tokens=20, ttfts_s=[])
    s = snap(tracker)
    assert s["prefill_tokens_per_s"] == pytest.approx(150 / 5)
    assert s["decode_tokens_per_s"] == pytest.approx(30 / 5)


def test_steps_leave_the_window(tracker: LoadTracker, clock: FakeClock) -> None:
    tracker.record_step(prompt_tokens=100, generated_tokens=10, ttfts_s=[])
    clock.advance(3)
    tracker.record_step(prompt_tokens=50, generated_tokens=20, ttfts_s=[])
    clock.advance(2)  # the first step is exactly window_s old: still in
    assert snap(tracker)["prefill_tokens_per_s"] == pytest.approx(150 / 5)
    clock.advance(0.5)  # now it is out
    s = snap(tracker)
    assert s["prefill_tokens_per_s"] == pytest.approx(50 / 5)
    assert s["decode_tokens_per_s"] == pytest.approx(20 / 5)
    clock.advance(5)
    s = snap(tracker)
    assert (s["prefill_tokens_per_s"], s["decode_tokens_per_s"]) == (0.0, 0.0)


def test_ttft_p50(tracker: LoadTracker, clock: FakeClock) -> None:
    tracker.record_step(prompt_tokens=1, generated_tokens=1, ttfts_s=[0.3, 0.1])
    tracker.record_step(prompt_tokens=1, generated_tokens=1, ttfts_s=[0.2])
    assert snap(tracker)["ttft_p50_ms"] == pytest.approx(200.0)
    tracker.record_step(prompt_tokens=1, generated_tokens=1, ttfts_s=[0.4])
    # An even count takes the upper middle sample.
    assert snap(tracker)["ttft_p50_ms"] == pytest.approx(300.0)


def test_ttft_samples_leave_the_window(tracker: LoadTracker, clock: FakeClock) -> None:
    tracker.record_step(prompt_tokens=1, generated_tokens=1, ttfts_s=[5.0])
    clock.advance(4)
    tracker.record_step(prompt_tokens=1, generated_tokens=1, ttfts_s=[0.05])
    clock.advance(1.5)
    assert snap(tracker)["ttft_p50_ms"] == pytest.approx(50.0)
    clock.advance(10)
    assert snap(tracker)["ttft_p50_ms"] is None


def test_finished_requests_are_a_rate_over_the_window(tracker: LoadTracker, clock: FakeClock) -> None:
    tracker.record_step(prompt_tokens=0, generated_tokens=4, ttfts_s=[], finished=3)
    clock.advance(1)
    tracker.record_step(prompt_tokens=0, generated_tokens=4, ttfts_s=[], finished=2)
    assert snap(tracker)["finished_per_s"] == pytest.approx(5 / 5)
    clock.advance(5)
    assert snap(tracker)["finished_per_s"] == pytest.approx(2 / 5)


def test_step_time_is_the_median_interval_while_busy(tracker: LoadTracker, clock: FakeClock) -> None:
    tracker.record_step(prompt_tokens=10, generated_tokens=1, ttfts_s=[])  # idle before: no interval
    clock.advance(3)
    assert snap(tracker)["step_ms"] is None  # an idle gap is not a step
    tracker.record_scheduler(waiting=0, running=2, kv_cache_usage=0.1)
    for gap in (0.05, 0.05, 0.2):
        tracker.record_step(prompt_tokens=0, generated_tokens=2, ttfts_s=[])
        clock.advance(gap)
    tracker.record_step(prompt_tokens=0, generated_tokens=2, ttfts_s=[])
    assert snap(tracker)["step_ms"] == pytest.approx(50)


def test_recent_ttft_p90_covers_only_the_last_two_seconds(tracker: LoadTracker, clock: FakeClock) -> None:
    tracker.record_step(prompt_tokens=0, generated_tokens=1, ttfts_s=[5.0, 5.0])
    clock.advance(3)
    tracker.record_step(prompt_tokens=0, generated_tokens=1, ttfts_s=[0.1] * 9 + [0.4])
    s = snap(tracker)
    assert s["ttft_p90_ms"] == pytest.approx(100)  # 10 recent samples; the 5 s ones are too old
    assert s["ttft_p50_ms"] == pytest.approx(100)


def test_recent_ttft_comes_with_the_load_it_was_measured_at(tracker: LoadTracker, clock: FakeClock) -> None:
    tracker.record_scheduler(waiting=20, running=8, kv_cache_usage=0.5)
    tracker.record_step(prompt_tokens=0, generated_tokens=8, ttfts_s=[2.0])  # 28 in flight, 3 s ago
    clock.advance(3)
    for waiting, running in ((4, 8), (0, 6)):  # the queue drains
        tracker.record_scheduler(waiting=waiting, running=running, kv_cache_usage=0.5)
        tracker.record_step(prompt_tokens=0, generated_tokens=running, ttfts_s=[0.5])
        clock.advance(0.1)
    s = snap(tracker)
    assert (s["ttft_p90_ms"], s["ttft_in_flight"]) == (pytest.approx(500), pytest.approx((12 + 6) / 2))
    clock.advance(3)
    assert snap(tracker)["ttft_in_flight"] is None  # no first token measured lately: nothing to say it of


def test_prefill_capacity_is_the_fastest_busy_step(tracker: LoadTracker, clock: FakeClock) -> None:
    tracker.record_scheduler(waiting=1, running=1, kv_cache_usage=0.1)
    tracker.record_step(prompt_tokens=0, generated_tokens=1, ttfts_s=[])
    for prompt, gap in ((100, 0.5), (300, 0.5), (0, 0.1)):
        clock.advance(gap)
        tracker.record_step(prompt_tokens=prompt, generated_tokens=1, ttfts_s=[])
    assert snap(tracker)["prefill_capacity_tokens_per_s"] == pytest.approx(600)


def test_an_idle_engine_reports_the_prefill_speed_its_start_measured(tracker: LoadTracker, clock: FakeClock) -> None:
    """Past its window an engine has shown no speed: it reports what its probe at start measured (the
    scheduler's configured figure is a GPU's), and what it shows while busy once it shows any."""
    assert snap(tracker)["prefill_capacity_tokens_per_s"] is None  # no probe (a fake engine): the configured one
    tracker.idle_prefill_tokens_per_s = 450.0
    tracker.record_step(prompt_tokens=1024, generated_tokens=1, ttfts_s=[2.3])  # the probe's own step...
    tracker.forget()  # ...is no traffic's
    s = snap(tracker)
    assert (s["prefill_capacity_tokens_per_s"], s["ttft_p90_ms"], s["step_ms"]) == (450.0, None, None)
    tracker.record_scheduler(waiting=1, running=1, kv_cache_usage=0.1)
    tracker.record_step(prompt_tokens=0, generated_tokens=1, ttfts_s=[])
    clock.advance(0.5)
    tracker.record_step(prompt_tokens=100, generated_tokens=1, ttfts_s=[])
    assert snap(tracker)["prefill_capacity_tokens_per_s"] == pytest.approx(200)  # busy: what it shows
    clock.advance(10)
    assert snap(tracker)["prefill_capacity_tokens_per_s"] == 450.0  # idle again
