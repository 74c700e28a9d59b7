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
model off or trust it blindly.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field


@dataclass
class Calibration:
    quantile: float = 0.5
    rate: float = 0.05  # log-space step per observation
    low: float = 0.5
    high: float = 4.0
    observations: int = 0
    _log: float = field(default=0.0, repr=False)

    @property
    def factor(self) -> float:
        """What a prediction is multiplied by."""
        return math.exp(self._log)

    def observe(self, predicted_ms: float, actual_ms: float) -> None:
        """A local request predicted at `predicted_ms` got its first token after `actual_ms`."""
        if not (predicted_ms > 0 and actual_ms > 0 and math.isfinite(predicted_ms) and math.isfinite(actual_ms)):
            return
        above = math.log(actual_ms / predicted_ms) > self._log
        self._log += self.rate * (self.quantile if above else self.quantile - 1)
        self._log = min(max(self._log, math.log(self.low)), math.log(self.high))
        self.observations += 1
