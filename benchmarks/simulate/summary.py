"""The figures of one run, as the burst benchmark reports them (nearest-rank percentiles, a failure
counts as an infinite TTFT), plus what the issue asks for at fleet scale."""

from __future__ import annotations

import math
from typing import Any

from benchmarks.simulate.fleet import RunResult


def _rank(sorted_values: list[float], q: float) -> float:
    if not sorted_values:
        return math.nan
    return sorted_values[min(len(sorted_values) - 1, max(0, math.ceil(q / 100 * len(sorted_values)) - 1))]


def summarize(r: RunResult, slo_ms: float, all_remote_usd: float | None = None) -> dict[str, Any]:
    """TTFT p50/p95/p99, SLO attainment, local share, cost per 1k requests (and / all-remote), spills."""
    n = len(r.ttft_ms)
    s = sorted(r.ttft_ms)
    within = sum(1 for t in r.ttft_ms if t <= slo_ms)
    cost = sum(r.cost_usd)
    spills = sum(r.spill)
    flips = sum(1 for a, b in zip(r.spill, r.spill[1:], strict=False) if a != b)
    out: dict[str, Any] = {
        "policy": r.policy,
        "requests": n,
        "ttft_p50_ms": _rank(s, 50),
        "ttft_p95_ms": _rank(s, 95),
        "ttft_p99_ms": _rank(s, 99),
        "slo_attainment": within / n if n else math.nan,
        "failed": sum(1 for t in r.ttft_ms if t == math.inf),
        "local_share": sum(r.local) / n if n else math.nan,
        "cost_usd": cost,
        "cost_per_1k_usd": cost / n * 1000 if n else math.nan,
        "cost_vs_all_remote": cost / all_remote_usd if all_remote_usd else math.nan,
        "spills_per_s": spills / r.duration_s if r.duration_s else math.nan,
        "flips_per_s": flips / r.duration_s if r.duration_s else math.nan,
        "sim_s": r.duration_s,
        "wall_s": r.wall_s,
        "requests_per_wall_s": n / r.wall_s if r.wall_s else math.nan,
        "cpu_s": r.cpu_s,
        "requests_per_cpu_s": n / r.cpu_s if r.cpu_s else math.nan,
    }
    out.update(r.extra)
    return out
