"""How far the scheduler's TTFT model is off, learned from what the local model then did.

`predict_ttft_ms` models the engine (step, prefill, slot wait, the engine's own
recent TTFT); it can't see everything: a CPU shared with other work makes it
under-predict, a fast batch on a quiet machine makes it over-predict, and the
hops between gateway and engine aren't in it at all. `Calibration` tracks the
`quantile` (the median) of actual / predicted over the local first tokens this
gateway saw, so that `predicted × factor` is what a request typically gets; the
scheduler's `headroom` keeps that far enough under the SLO for the tail.

Only predictions that came near a decision teach it (`Router.first_token`):
an idle engine's error is a fixed cost (the hops), not a proportion, and
learning a ratio from 100 ms predictions would scale every busy one wrongly.

A stochastic quantile estimate in log space (no window to keep, constant work
per observation): each observation moves the estimate up by `rate × q` if the
ratio was above it, down by `rate × (1 - q)` if below, so it settles where a
fraction q of ratios lie below. It starts at 1 (the model as it is) and stays
within [`low`, `high`], so a few wild observations can't switch the local
model off or trust it blindly. `low` is 0.8: what makes the model over-predict
in a calm spell (a slow replica's recent p90 as a floor, a batch that
happens to be quick) is gone in a burst, and a factor of 0.5 learned before
it scaled the burst's predictions down by half (benchmarks/simulate: 8 GPU
replicas, bursty traces, 97.3 % within the SLO at 0.5, 99.3 % at 0.8, the
local share elsewhere unchanged or higher; benchmarks/README.md). What it learned fades towards 1 with a
`half_life_s` when nothing new comes: once it has sent everything remote it
sees no local answers, and a factor learned in a bad minute must not keep the
local model out for good.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable
from dataclasses import dataclass, field


@dataclass
class Calibration:
    quantile: float = 0.5
    rate: float = 0.05  # log-space step per observation
    low: float = 0.8
    high: float = 4.0
    half_life_s: float = 30.0
    clock: Callable[[], float] = field(default=time.monotonic, repr=False)
    observations: int = 0
    _log: float = field(default=0.0, repr=False)
    _at: float | None = field(default=None, repr=False)  # when `_log` was last set

    @property
    def factor(self) -> float:
        """What a prediction is multiplied by."""
        return math.exp(self._faded())

    def _faded(self) -> float:
        if self._at is None or self._log == 0.0:
            return self._log
        return self._log * math.pow(0.5, max(0.0, self.clock() - self._at) / self.half_life_s)

    def observe_at_least(self, predicted_ms: float, waited_ms: float) -> None:
        """A local request predicted at `predicted_ms` was given up (another route answered first)
        after `waited_ms` without a first token: its TTFT was longer. The estimate moves only on the
        side of the ratio, so that is known exactly when the wait alone is above the estimate."""
        if predicted_ms > 0 and waited_ms > 0 and math.log(waited_ms / predicted_ms) > self._faded():
            self.observe(predicted_ms, waited_ms)

    def observe(self, predicted_ms: float, actual_ms: float) -> None:
        """A local request predicted at `predicted_ms` got its first token after `actual_ms`."""
        if not (predicted_ms > 0 and actual_ms > 0 and math.isfinite(predicted_ms) and math.isfinite(actual_ms)):
            return
        log = self._faded()
        log += self.rate * (self.quantile if math.log(actual_ms / predicted_ms) > log else self.quantile - 1)
        self._log = min(max(log, math.log(self.low)), math.log(self.high))
        self._at = self.clock()
        self.observations += 1
