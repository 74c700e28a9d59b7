"""Load snapshots: replicas summed, stale ones dropped, the gateway's own sends added."""

from __future__ import annotations

import asyncio
import random
import time
from collections.abc import Callable, Mapping
from typing import Any

import pytest

from local_models.interface import LoadStats
from orchestrator.scheduling.load import BoardState, LoadBoard, LoadView, aggregate
from orchestrator.testing.clock import FakeClock


def stats(at: float, **kw: Any) -> LoadStats:
    base: dict[str, Any] = dict(
        waiting=0,
        running=0,
        unfinished=0,
        queued_prompt_tokens=0,
        kv_cache_usage=0.0,
        prefill_tokens_per_s=0.0,
        prefill_capacity_tokens_per_s=None,
        decode_tokens_per_s=0.0,
        ttft_p50_ms=None,
        ttft_p90_ms=None,
        finished_per_s=0.0,
        step_ms=None,
        max_num_seqs=8,
        updated_at=at,
    )
    base.update(kw)
    return LoadStats(**base)  # type: ignore[typeddict-item]


def test_aggregate_sums_fresh_replicas_and_drops_stale_ones() -> None:
    reports = {
        "a": stats(10.0, waiting=2, running=8, queued_prompt_tokens=100, step_ms=40.0, finished_per_s=1.5),
        "b": stats(9.8, waiting=1, running=3, queued_prompt_tokens=50, step_ms=60.0, kv_cache_usage=0.7),
        "gone": stats(8.0, waiting=100, running=8),
    }
    s = aggregate(reports, now=10.1, max_age_s=1.0)
    assert (s.replicas, s.slots, s.waiting, s.running, s.queued_prompt_tokens) == (2, 16, 3, 11, 150)
    assert (s.step_ms, s.kv_cache_usage, s.finished_per_s, s.taken_at) == (60.0, 0.7, 1.5, 9.8)


def test_aggregate_sums_who_waits_over_the_replicas_that_say() -> None:
    reports = {
        "a": stats(10.0, waiting=3, waiting_by_tenant={"key:busy": 2, "key:x": 1}),
        "b": stats(10.0, waiting=4, waiting_by_tenant={"key:busy": 4}),
        "c": stats(10.0),  # nothing waiting: nothing said
        "gone": stats(8.0, waiting=9, waiting_by_tenant={"key:old": 9}),
    }
    assert aggregate(reports, now=10.1, max_age_s=1.0).waiting_by_tenant == {"key:busy": 6, "key:x": 1}
    assert aggregate({"c": stats(10.0)}, now=10.1, max_age_s=1.0).waiting_by_tenant is None


def test_no_fresh_report_means_no_ready_replica() -> None:
    s = aggregate({"a": stats(1.0)}, now=10.0, max_age_s=1.0)
    assert (s.replicas, s.slots) == (0, 0)


def test_board_keeps_the_last_report_per_replica_and_the_hours_spend() -> None:
    clock = FakeClock(1000.0)
    board = LoadBoard(max_age_s=1.0, clock=clock)
    board.report("m", "r1", stats(clock.now, waiting=5))
    board.report("m", "r1", stats(clock.now, waiting=1))
    board.report("m", "r2", stats(clock.now, waiting=2))
    board.spent({"key:a": 0.5})
    clock.advance(1800)
    board.spent({"key:a": 0.125, "key:b": 0.125})
    state = board.read()
    assert state["models"]["m"]["waiting"] == 0  # both reports are 30 minutes old now
    assert state["overflow_spent_usd"] == pytest.approx(0.75)
    assert state.get("overflow_spent_by_tenant") == pytest.approx({"key:a": 0.625, "key:b": 0.125})
    clock.advance(1801)
    state = board.read()
    assert state["overflow_spent_usd"] == pytest.approx(0.25)  # the first spend left the hour
    assert state.get("overflow_spent_by_tenant") == pytest.approx({"key:a": 0.125, "key:b": 0.125})
    clock.advance(1800)
    assert board.read().get("overflow_spent_by_tenant") == {}  # a tenant whose spend left the hour is gone


def test_board_aggregates_fresh_reports() -> None:
    clock = FakeClock(1000.0)
    board = LoadBoard(max_age_s=1.0, clock=clock)
    board.report("m", "r1", stats(clock.now, waiting=1))
    board.report("m", "r2", stats(clock.now, waiting=2))
    assert board.read()["models"]["m"]["waiting"] == 3


def state(read_at: float, **snapshot: Any) -> BoardState:
    snap: dict[str, Any] = dict(
        replicas=1,
        slots=8,
        waiting=1,
        running=8,
        queued_prompt_tokens=10,
        prefill_tokens_per_s=0.0,
        prefill_capacity_tokens_per_s=None,
        decode_tokens_per_s=0.0,
        finished_per_s=0.0,
        step_ms=None,
        recent_ttft_ms=None,
        kv_cache_usage=0.0,
        taken_at=read_at - 0.05,
    )
    snap.update(snapshot)
    return BoardState(models={"m": snap}, overflow_spent_usd=1.0, read_at=read_at)


async def test_view_adds_what_this_gateway_sent_since_the_snapshot() -> None:
    clock = FakeClock(100.0)
    view = LoadView(_never, clock=clock)
    view.sent("m", 500)  # before the snapshot: already in the engine's figures
    clock.advance(0.1)
    view.update(state(clock.now))
    clock.advance(0.01)
    view.sent("m", 30)
    ended = view.sent("m", 20)
    snap = view.snapshot("m")
    assert snap is not None and (snap.waiting, snap.sent, snap.sent_prompt_tokens) == (1, 2, 50)
    ended()  # over before the next snapshot: no longer adds to the load
    snap = view.snapshot("m")
    assert snap is not None and (snap.sent, snap.sent_prompt_tokens) == (1, 30)


@pytest.mark.parametrize("seed", [1, 2, 3])
async def test_view_keeps_count_of_the_sends_since_the_snapshot_as_they_start_and_end(seed: int) -> None:
    """The count a plan sees, kept as sends start and end (no walk per plan), is every send still in
    flight made after the snapshot was taken, however reads, sends, ends and plans interleave."""
    rng = random.Random(seed)
    clock = FakeClock(100.0)
    view = LoadView(_never, clock=clock)
    running: list[tuple[float, int, Callable[[], None]]] = []
    taken_at = None
    for _ in range(2000):
        clock.advance(rng.choice([0.0, 0.001, 0.02]))
        x = rng.random()
        if x < 0.05:
            taken_at = clock.now - rng.choice([0.0, 0.05, 0.3])
            view.update(state(clock.now, taken_at=taken_at))
        elif x < 0.45:
            tokens = rng.randrange(1, 100)
            running.append((clock.now, tokens, view.sent("m", tokens)))
        elif x < 0.75 and running:
            _, _, ended = running.pop(rng.randrange(len(running)))
            ended()
            if rng.random() < 0.1:
                ended()  # ending twice counts once
        elif taken_at is not None:
            snap = view.snapshot("m")
            since = [(at, tokens) for at, tokens, _ in running if at > taken_at]
            assert snap is not None
            assert (snap.sent, snap.sent_prompt_tokens) == (len(since), sum(t for _, t in since))


async def test_view_keeps_planning_on_its_own_sends_while_the_board_is_late_then_forgets_it() -> None:
    """A host too busy to poll the board in time: the last snapshot, marked stale, with every send since
    (a burst starving the poll still shows in this gateway's own traffic); ten freshness limits on, nothing."""
    clock = FakeClock(100.0)
    view = LoadView(_never, clock=clock, max_staleness_s=1.0)
    assert view.snapshot("m") is None  # never read
    view.update(state(clock.now))
    assert view.snapshot("other") is None  # a model nobody reports
    snap = view.snapshot("m")
    assert snap is not None and snap.stale_s == 0.0
    clock.advance(1.5)
    for _ in range(5):
        view.sent("m", 100)
    snap = view.snapshot("m")
    assert snap is not None and snap.stale_s == 1.5 and (snap.sent, snap.sent_prompt_tokens) == (5, 500)
    clock.advance(9.0)
    assert view.snapshot("m") is None


async def test_view_counts_its_own_spend_until_the_board_has_it() -> None:
    reported: list[Mapping[str, float]] = []

    async def report(by_tenant: Mapping[str, float]) -> None:
        reported.append(by_tenant)

    view = LoadView(_never, report=report)
    view.update({**state(0.0), "overflow_spent_by_tenant": {"key:a": 0.25}})
    view.spending(0.5, "key:a")
    assert view.overflow_spent_usd() == pytest.approx(1.5)
    assert view.overflow_spent_usd("key:a") == pytest.approx(0.75)
    assert view.overflow_spent_usd("key:b") == 0
    await _settle()
    assert reported == [{"key:a": 0.5}]
    assert view.overflow_spent_usd("key:a") == pytest.approx(0.25)  # reported: the next read has it


async def test_a_burst_of_spend_goes_to_the_board_in_a_few_reports_not_one_per_request() -> None:
    """Every spilled request spends: reported one call each, a burst's spills were as many calls to the
    board. The first is reported at once, the rest together once per poll interval; none is lost."""
    import asyncio

    reported: list[float] = []

    async def report(by_tenant: Mapping[str, float]) -> None:
        reported.append(by_tenant["open"])

    view = LoadView(_never, report=report, interval_s=0.05)
    view.update(state(0.0))
    view.spending(0.01)
    await _settle()
    assert reported == [0.01]  # at once
    loop = asyncio.get_running_loop()
    began = loop.time()
    for _ in range(200):  # 200 spills within ~2 intervals (more on a busy machine: its sleeps run long)
        view.spending(0.01)
        await asyncio.sleep(0.0005)
    intervals = (loop.time() - began) / 0.05
    # Counted here at once: the board's figure as last read (1.0) plus what no report has carried yet.
    assert view.overflow_spent_usd() == pytest.approx(1.0 + 2.01 - sum(reported))
    await asyncio.sleep(0.2)
    assert 2 <= len(reported) <= 4 + intervals  # one at once, one an interval, the rest at the end
    assert len(reported) < 20  # not one per request
    assert sum(reported) == pytest.approx(2.01)
    assert view.overflow_spent_usd() == pytest.approx(1.0)  # all of it reported: the next read has it


async def _never() -> BoardState:
    raise AssertionError("not polled in this test")


async def _settle() -> None:
    import asyncio

    for _ in range(3):
        await asyncio.sleep(0)


async def test_a_gateway_no_plan_reads_polls_less_often_and_a_plan_wakes_it_at_once() -> None:
    """An idle gateway (or one serving only remote routes) needn't read the board ten times a second;
    its first plan on local load gets a poll at once, and polls go back to every interval."""
    polls: list[float] = []
    loop = asyncio.get_running_loop()

    async def read(overflow: Any) -> BoardState:
        polls.append(loop.time())
        return state(time.time(), waiting=0)

    view = LoadView(read, interval_s=0.01, max_staleness_s=0.2)  # dozes up to 0.1 s
    poller = asyncio.create_task(view.run())
    try:
        await asyncio.sleep(0.5)
        quiet = len(polls)
        assert 8 <= quiet <= 25  # 10 at 0.01 s, then waits of 0.02, 0.04, 0.08, 0.1, ... (every interval: ~50)
        assert polls[-1] - polls[-2] >= 0.09
        for _ in range(30):  # reads not for a plan (the local price's figures) leave it dozing
            assert view.snapshot("m", planning=False) is not None
            await asyncio.sleep(0.01)
        assert len(polls) <= quiet + 6  # ~3 dozes of 0.1 s, not ~30 polls
        quiet = len(polls)
        woken = loop.time()
        assert view.snapshot("m") is not None  # a plan: the figures are at most half the freshness limit old
        await asyncio.sleep(0.02)
        assert len(polls) >= quiet + 1 and polls[quiet] - woken < 0.05  # at once, not at the doze's end
        for _ in range(10):  # plans keep coming: a poll every interval
            view.snapshot("m")
            await asyncio.sleep(0.01)
        assert len(polls) >= quiet + 6
        spilled = view.overflowing("m")  # nothing planned, but a spilled request in flight: the board must hear
        await asyncio.sleep(0.3)
        busy = len(polls)
        await asyncio.sleep(0.1)
        assert len(polls) >= busy + 5
        spilled()
    finally:
        poller.cancel()
