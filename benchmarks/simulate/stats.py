"""A simulated replica's load report: `local_models.stats.LoadTracker`'s figures, kept incrementally.

The real tracker recomputes its sums, medians and maxima over its whole window at each snapshot:
about 0.6 ms with a GPU's ~500 steps in the 5 s window, which made snapshots 60 % of a simulated
fleet's time (a cProfile of an 8-replica run). `WindowedStats` keeps the same window, the same
fields and the same definitions (busy intervals only, the median interval, the best prefill speed
of a busy step, TTFT p50 over the window and p90 over `TTFT_WINDOW_S`, both nearest-lower rank as
the tracker takes them, the mean requests in flight over the steps of `TTFT_WINDOW_S`) with running
sums, the intervals kept sorted (a run of m equal decode steps adds m copies at once, and counts m
times in the mean), the first-token times kept sorted per window and a monotonic deque for the
maximum, so a step costs O(log n) plus a short memmove and a snapshot O(1).
`tests/unit/test_sim_stats.py` holds it equal to the real tracker on random step sequences.
"""

from __future__ import annotations

import bisect
from collections import deque
from collections.abc import Callable

from local_models.interface import LoadStats
from local_models.stats import TTFT_WINDOW_S, WINDOW_S

TTFT_KEPT = 256  # the tracker's deque(maxlen=256) of first-token times


def _remove(values: list[float], value: float) -> None:
    """Take one `value` out of the sorted `values`."""
    del values[bisect.bisect_left(values, value)]


class WindowedStats:
    def __init__(self, clock: Callable[[], float], max_num_seqs: int, window_s: float = WINDOW_S):
        self._clock = clock
        self._window_s = window_s
        self.max_num_seqs = max_num_seqs
        self.waiting = 0
        self.running = 0
        self.kv_cache_usage = 0.0
        # (time, prompt, generated, finished, interval or None, steps)
        self._steps: deque[tuple[float, int, int, int, float | None, int]] = deque()
        self._prompt = 0
        self._generated = 0
        self._finished = 0
        self._intervals: list[float] = []  # the intervals of the steps in the window (a run's, m times), sorted
        self._speeds: deque[tuple[float, float]] = deque()  # (time, speed), decreasing speeds: the max first
        # The tracker's last 256 first-token times (time, ttft), and those sorted; the newest of them
        # not yet past `TTFT_WINDOW_S` (a suffix), and those sorted: a snapshot sorts nothing.
        self._ttfts: deque[tuple[float, float]] = deque()
        self._ttfts_sorted: list[float] = []
        self._short: deque[tuple[float, float]] = deque()
        self._short_sorted: list[float] = []
        self._last_step: float | None = None
        self._busy_after_last = False
        self.idle_prefill_tokens_per_s: float | None = None  # as `LoadTracker`'s: the start's probe
        # (time, requests in flight after the step x steps, steps) over `TTFT_WINDOW_S`, and their sums
        self._loads: deque[tuple[float, int, int]] = deque()
        self._load_sum = 0
        self._load_steps = 0

    def record_scheduler(self, waiting: int, running: int, kv_cache_usage: float) -> None:
        self.waiting, self.running, self.kv_cache_usage = waiting, running, kv_cache_usage

    def record_step(
        self, prompt_tokens: int, generated_tokens: int, ttfts_s: list[float], finished: int = 0, steps: int = 1
    ) -> None:
        """One engine step, or `steps` equal decode steps ending now (`generated_tokens` over all of them)."""
        now = self._clock()
        if steps > 1:  # a decode run: busy all along, every step as long as the last
            interval: float | None = (now - self._last_step) / steps if self._last_step is not None else None
        else:
            interval = now - self._last_step if self._busy_after_last and self._last_step is not None else None
        self._last_step = now
        self._busy_after_last = self.running > 0 or self.waiting > 0
        speed = prompt_tokens / interval if interval and prompt_tokens > 0 else None
        self._steps.append((now, prompt_tokens, generated_tokens, finished, interval, steps))
        load = (self.running + self.waiting) * steps
        self._loads.append((now, load, steps))
        self._load_sum += load
        self._load_steps += steps
        self._prompt += prompt_tokens
        self._generated += generated_tokens
        self._finished += finished
        if interval is not None:
            intervals = self._intervals
            if steps == 1:
                bisect.insort(intervals, interval)
            else:
                at = bisect.bisect_left(intervals, interval)
                intervals[at:at] = [interval] * steps
        if speed is not None:
            speeds = self._speeds
            while speeds and speeds[-1][1] <= speed:
                speeds.pop()
            speeds.append((now, speed))
        if ttfts_s:
            self._add_ttfts(now, ttfts_s)
        # What left the window is taken out when a snapshot is made: the sums, the sorted intervals and
        # the maximum's deque come out the same, and a step does less.

    def _add_ttfts(self, now: float, ttfts_s: list[float]) -> None:
        ttfts, short = self._ttfts, self._short
        for t in ttfts_s:
            if len(ttfts) == TTFT_KEPT:  # the oldest leaves, as from the tracker's deque(maxlen=256)
                if len(short) == len(ttfts):
                    _remove(self._short_sorted, short.popleft()[1])
                _remove(self._ttfts_sorted, ttfts.popleft()[1])
            entry = (now, t)
            ttfts.append(entry)
            short.append(entry)
            bisect.insort(self._ttfts_sorted, t)
            bisect.insort(self._short_sorted, t)

    def _expire(self, now: float) -> None:
        horizon = now - self._window_s
        steps = self._steps
        while steps and steps[0][0] < horizon:
            _, prompt, generated, finished, interval, n = steps.popleft()
            self._prompt -= prompt
            self._generated -= generated
            self._finished -= finished
            if interval is not None:
                at = bisect.bisect_left(self._intervals, interval)
                del self._intervals[at : at + n]
        speeds = self._speeds
        while speeds and speeds[0][0] < horizon:
            speeds.popleft()

    def snapshot(self, *, unfinished: int, queued_prompt_tokens: int) -> LoadStats:
        now = self._clock()
        self._expire(now)
        w = self._window_s
        # Time-ordered, and the clock only moves on: what left a window never comes back. The short
        # window's horizon is the later one, so whatever leaves the long one has left it already.
        short, horizon = self._short, now - min(TTFT_WINDOW_S, w)
        while short and short[0][0] < horizon:
            _remove(self._short_sorted, short.popleft()[1])
        ttfts = self._ttfts
        while ttfts and ttfts[0][0] < now - w:
            _remove(self._ttfts_sorted, ttfts.popleft()[1])
        recent = self._ttfts_sorted
        latest = self._short_sorted
        loads = self._loads
        while loads and loads[0][0] < horizon:
            _, load, n = loads.popleft()
            self._load_sum -= load
            self._load_steps -= n
        return LoadStats(
            waiting=self.waiting,
            running=self.running,
            unfinished=unfinished,
            queued_prompt_tokens=queued_prompt_tokens,
            kv_cache_usage=self.kv_cache_usage,
            prefill_tokens_per_s=self._prompt / w,
            prefill_capacity_tokens_per_s=self._speeds[0][1] if self._speeds else self.idle_prefill_tokens_per_s,
            decode_tokens_per_s=self._generated / w,
            ttft_p50_ms=recent[len(recent) // 2] * 1000 if recent else None,
            ttft_p90_ms=latest[int(0.9 * (len(latest) - 1))] * 1000 if latest else None,
            ttft_in_flight=self._load_sum / self._load_steps if latest and self._load_steps else None,
            finished_per_s=self._finished / w,
            step_ms=self._intervals[len(self._intervals) // 2] * 1000 if self._intervals else None,
            max_num_seqs=self.max_num_seqs,
            updated_at=now,
        )
