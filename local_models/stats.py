"""The engine's load, as the scheduler needs it, kept cheap to read.

vLLM reports scheduler and iteration stats to stat loggers after each engine
step, in the frontend process. `LoadTracker` is fed by a `StatLoggerBase`
adapter (`stat_logger_factory`) and keeps the last scheduler state plus a
short sliding window of processed prompt tokens, generated tokens and
time-to-first-token samples, so `snapshot()` is a few arithmetic operations.
"""

from __future__ import annotations

import time
from collections import deque
from collections.abc import Callable
from typing import Any

from .interface import LoadStats

WINDOW_S = 5.0
TTFT_WINDOW_S = 2.0  # shorter: the scheduler uses recent first-token times as a floor for its prediction
# The idle prefill probe at an engine's start (`VllmEngine.measure_prefill`): its two prompt lengths, and
# the least time between them that measures anything (below it, timer and scheduling noise would be most
# of it: a GPU prefills 1,000 tokens faster than that, and keeps the configured figure).
PROBE_SHORT, PROBE_LONG, PROBE_MIN_S = 32, 1024, 0.05


class LoadTracker:
    """Rolling view of one engine's queue and throughput."""

    def __init__(self, window_s: float = WINDOW_S, clock: Callable[[], float] = time.time, max_num_seqs: int = 0):
        self._window_s = window_s
        self.max_num_seqs = max_num_seqs
        self._clock = clock
        self.waiting = 0
        self.running = 0
        self.kv_cache_usage = 0.0
        self.updated_at = clock()
        # (timestamp, prompt tokens computed, tokens generated, requests finished, interval since
        # the previous step when the engine was busy in between, else None, requests in flight after it)
        self._steps: deque[tuple[float, int, int, int, float | None, int]] = deque()
        self._ttfts: deque[tuple[float, float]] = deque(maxlen=256)
        self._last_step: float | None = None
        self._busy_after_last = False
        # The engine's prefill speed when idle, measured at its start (`VllmEngine.measure_prefill`):
        # the prefill capacity reported while the window has none of its own.
        self.idle_prefill_tokens_per_s: float | None = None

    def record_scheduler(self, waiting: int, running: int, kv_cache_usage: float) -> None:
        self.waiting, self.running, self.kv_cache_usage = waiting, running, kv_cache_usage
        self.updated_at = self._clock()

    def record_step(self, prompt_tokens: int, generated_tokens: int, ttfts_s: list[float], finished: int = 0) -> None:
        now = self._clock()
        # An interval is a step only if the engine had work when the previous step ended.
        interval = now - self._last_step if self._busy_after_last and self._last_step is not None else None
        self._last_step = now
        self._busy_after_last = self.running > 0 or self.waiting > 0
        self._steps.append((now, prompt_tokens, generated_tokens, finished, interval, self.running + self.waiting))
        for t in ttfts_s:
            self._ttfts.append((now, t))
        self._expire(now)

    def forget(self) -> None:
        """Drop every step and first token seen so far (the start's probe: no traffic's load)."""
        self._steps.clear()
        self._ttfts.clear()
        self._last_step, self._busy_after_last = None, False

    def _expire(self, now: float) -> None:
        horizon = now - self._window_s
        while self._steps and self._steps[0][0] < horizon:
            self._steps.popleft()

    def snapshot(self, *, unfinished: int, queued_prompt_tokens: int) -> LoadStats:
        now = self._clock()
        self._expire(now)
        prompt = sum(s[1] for s in self._steps)
        generated = sum(s[2] for s in self._steps)
        recent = sorted(t for ts, t in self._ttfts if ts >= now - self._window_s)
        short = now - min(TTFT_WINDOW_S, self._window_s)
        latest = sorted(t for ts, t in self._ttfts if ts >= short)
        loads = [s[5] for s in self._steps if s[0] >= short]  # what that p90 was measured at
        intervals = sorted(s[4] for s in self._steps if s[4] is not None)
        # Prefill speed the engine showed: prompt tokens of a busy step over its length (decodes
        # shared those steps, so it understates what the engine can do: a safe estimate).
        prefill_speeds = [s[1] / s[4] for s in self._steps if s[4] and s[1] > 0]
        return LoadStats(
            waiting=self.waiting,
            running=self.running,
            unfinished=unfinished,
            queued_prompt_tokens=queued_prompt_tokens,
            kv_cache_usage=self.kv_cache_usage,
            prefill_tokens_per_s=prompt / self._window_s,
            prefill_capacity_tokens_per_s=max(prefill_speeds) if prefill_speeds else self.idle_prefill_tokens_per_s,
            decode_tokens_per_s=generated / self._window_s,
            ttft_p50_ms=recent[len(recent) // 2] * 1000 if recent else None,
            ttft_p90_ms=latest[int(0.9 * (len(latest) - 1))] * 1000 if latest else None,
            ttft_in_flight=sum(loads) / len(loads) if latest and loads else None,
            finished_per_s=sum(s[3] for s in self._steps) / self._window_s,
            step_ms=intervals[len(intervals) // 2] * 1000 if intervals else None,
            max_num_seqs=self.max_num_seqs,
            updated_at=now,  # an idle engine reports nothing, and its idle state stays true
        )


def stat_logger_factory(tracker: LoadTracker) -> Any:
    """A vLLM per-engine stat logger factory that feeds `tracker`."""
    from vllm.v1.metrics.loggers import StatLoggerBase

    class _TrackerLogger(StatLoggerBase):
        def __init__(self, vllm_config: Any, engine_index: int = 0):
            self._tracker = tracker

        def record(
            self,
            scheduler_stats: Any,
            iteration_stats: Any,
            mm_cache_stats: Any = None,
            engine_idx: int = 0,
        ) -> None:
            if scheduler_stats is not None:
                self._tracker.record_scheduler(
                    scheduler_stats.num_waiting_reqs,
                    scheduler_stats.num_running_reqs,
                    scheduler_stats.kv_cache_usage,
                )
            if iteration_stats is not None:
                self._tracker.record_step(
                    iteration_stats.prompt_token_stats.computed,
                    iteration_stats.num_generation_tokens,
                    list(iteration_stats.time_to_first_tokens_iter),
                    len(iteration_stats.finished_requests),
                )

        def log_engine_initialized(self) -> None:
            pass

    return _TrackerLogger
