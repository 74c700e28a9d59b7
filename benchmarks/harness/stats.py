"""Percentiles, one definition for every benchmark: nearest-rank.

The q-th percentile of n samples is the smallest sample with at least q % of the samples at or below it,
`sorted(s)[ceil(q / 100 * n) - 1]`. Every figure reported is then a value that was measured; failed requests
counted as infinite times give an infinite percentile (interpolation would give NaN); with few samples the
tail is the worst one (p99 of 50 samples is their maximum, p50 of an even count the lower middle). Until the
harness, `loadgen.py` interpolated like numpy's default and `burst.py` used nearest-rank, so p95s differed
between documents.
"""

from __future__ import annotations

import math
from collections.abc import Sequence


def percentile(values: Sequence[float], q: float) -> float:
    """The q-th percentile (0..100), nearest-rank (see the module docstring); NaN for no values."""
    if not values:
        return math.nan
    s = sorted(values)
    return s[min(len(s) - 1, max(0, math.ceil(q / 100 * len(s)) - 1))]


def dist(values: Sequence[float]) -> dict[str, float]:
    """The one summary every benchmark reports: n, p50, p90, p95, p99, mean, min, max."""
    finite = [v for v in values if math.isfinite(v)]
    return {
        "n": len(values),
        **{f"p{q}": percentile(values, q) for q in (50, 90, 95, 99)},
        "mean": sum(finite) / len(finite) if finite else math.nan,
        "min": min(values) if values else math.nan,
        "max": max(values) if values else math.nan,
    }
