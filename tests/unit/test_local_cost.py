"""The local model's amortized price: the GPU's hourly price over measured throughput, with floors."""

from __future__ import annotations

import time

import pytest

from local_models.interface import LoadStats
from orchestrator.accounting.local_prices import LocalRate, LocalStatsPoller
from orchestrator.accounting.prices import Prices
from orchestrator.protocol import Usage


def stats(decode: float, prefill: float, waiting: int = 0) -> LoadStats:
    return LoadStats(
        waiting=waiting,
        running=1,
        unfinished=1 + waiting,
        queued_prompt_tokens=0,
        kv_cache_usage=0.1,
        prefill_tokens_per_s=prefill,
        decode_tokens_per_s=decode,
        ttft_p50_ms=None,
        updated_at=time.time(),
    )


def test_price_per_token_is_hourly_price_over_measured_throughput_never_below_the_floors() -> None:
    rate = LocalRate(3.6, min_decode_tps=100, min_prefill_tps=1000)  # $0.001 per second of GPU
    assert rate.price().output_per_mtok == pytest.approx(10.0)  # idle: the floor, 100 tok/s
    assert rate.price().input_per_mtok == pytest.approx(1.0)
    rate.update(stats(decode=400, prefill=8000, waiting=3))
    assert rate.price().output_per_mtok == pytest.approx(2.5)
    assert rate.price().input_per_mtok == pytest.approx(0.125)
    assert rate.waiting() == 3 and rate.running() == 1
    rate.update(stats(decode=20, prefill=10))  # slower than the floors: the floors
    assert rate.price().output_per_mtok == pytest.approx(10.0)


def test_prices_use_the_live_rate_for_the_local_provider_only() -> None:
    prices = Prices.from_providers({})
    rate = LocalRate(3.6, min_decode_tps=100, min_prefill_tps=1000)
    prices.add_live("local", rate)
    usage = Usage(prompt_tokens=1000, completion_tokens=100, total_tokens=1100)
    assert prices.cost("local", "smollm2-135m", usage) == pytest.approx((1000 * 1.0 + 100 * 10.0) / 1e6)
    assert prices.cost("elsewhere", "m", usage) == 0.0


async def test_the_poller_keeps_the_last_reading_when_one_fails() -> None:
    rate = LocalRate(3.6, min_decode_tps=100, min_prefill_tps=1000)
    readings = [stats(400, 8000), RuntimeError("replica gone")]

    async def read() -> LoadStats:
        r = readings.pop(0)
        if isinstance(r, Exception):
            raise r
        return r

    poller = LocalStatsPoller({"local": (read, rate)}, interval_s=60)
    await poller.poll_once()
    await poller.poll_once()
    assert rate.price().output_per_mtok == pytest.approx(2.5)


async def test_under_serve_the_figures_come_from_the_load_board_not_from_a_call_to_the_model() -> None:
    """A stats call a second to the deployment would be demand for Serve's autoscaler: a model allowed to
    scale to zero was woken within a second, every time (seen in benchmarks.autoscale --min-replicas 0).
    The board's sum over the replicas gives the queue gauges; a GPU's throughput is the sum per replica."""
    from orchestrator.app import board_figures
    from orchestrator.scheduling.load import BoardState, LoadView

    async def read(overflow: object) -> BoardState:
        raise AssertionError("the figures use what the view has already read")

    view = LoadView(read)
    figures = board_figures(view, "m")
    with pytest.raises(LookupError):  # nothing read yet: the poller keeps its last figures
        await figures()
    snapshot = dict(
        replicas=2, slots=16, waiting=3, running=9, queued_prompt_tokens=0, prefill_tokens_per_s=4000.0,
        prefill_capacity_tokens_per_s=None, decode_tokens_per_s=600.0, finished_per_s=1.0, step_ms=None,
        recent_ttft_ms=None, kv_cache_usage=0.2, taken_at=time.time(),
    )  # fmt: skip
    view.update(BoardState(models={"m": snapshot}, overflow_spent_usd=0.0, read_at=time.time()))
    got = await figures()
    assert got == {"waiting": 3, "running": 9, "prefill_tokens_per_s": 2000.0, "decode_tokens_per_s": 300.0}
    rate = LocalRate(3.6, min_decode_tps=1, min_prefill_tps=1)
    rate.update(got)
    assert rate.price().output_per_mtok == pytest.approx(0.001 / 300 * 1e6)
