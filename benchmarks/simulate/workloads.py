"""Arrival processes and request sizes: what the simulated clients send.

A `Workload` is three parallel arrays (send time, prompt tokens, output tokens), sorted by time,
plus the rate profile it was drawn from (for plots). Rates are given relative to the fleet's
local capacity C (requests/s), so one shape fits a CPU replica at 1 req/s and 64 GPUs at 2,000:

- `poisson_burst`: the burst benchmark's profile (its own `rate_at`): base x C, a ramp to 4 x C,
  a hold, the ramp back;
- `diurnal`: a day's sinusoid squeezed into `period_s`, between `low` and `high` x C;
- `mmpp`: a two-state Markov-modulated Poisson process, on/off bursts with exponential sojourns;
- any of them with `Lengths`: fixed, uniform, lognormal or Pareto (heavy-tailed) prompt and output;
- `replay`: a trace's own times and sizes (`benchmarks.simulate.trace`).

Everything is seeded; non-homogeneous processes are drawn by thinning.
"""

from __future__ import annotations

import math
import random
from collections.abc import Callable
from dataclasses import dataclass, field


@dataclass(frozen=True)
class Lengths:
    """How many prompt and output tokens a request has."""

    kind: str = "lognormal"  # fixed | uniform | lognormal | pareto | empirical
    prompt: float = 512.0  # fixed / median / scale (pareto x_m)
    output: float = 128.0
    spread: float = 0.8  # lognormal sigma; pareto alpha; uniform: +- fraction
    max_prompt: int = 8000
    max_output: int = 2000
    pairs: tuple[tuple[int, int], ...] = ()  # empirical: (prompt, output) to resample

    def sampler(self, rng: random.Random) -> Callable[[], tuple[int, int]]:
        mp, mo = self.max_prompt, self.max_output
        if self.kind == "empirical":
            pairs = self.pairs
            return lambda: pairs[int(rng.random() * len(pairs))]
        if self.kind == "fixed":
            p, o = int(self.prompt), int(self.output)
            return lambda: (p, o)
        if self.kind == "uniform":
            s = self.spread
            return lambda: (
                max(1, int(self.prompt * (1 + s * (2 * rng.random() - 1)))),
                max(1, int(self.output * (1 + s * (2 * rng.random() - 1)))),
            )
        if self.kind == "pareto":
            a = self.spread
            return lambda: (
                min(mp, max(1, int(self.prompt * rng.paretovariate(a)))),
                min(mo, max(1, int(self.output * rng.paretovariate(a)))),
            )
        lp, lo, s = math.log(self.prompt), math.log(self.output), self.spread
        return lambda: (
            min(mp, max(1, int(rng.lognormvariate(lp, s)))),
            min(mo, max(1, int(rng.lognormvariate(lo, s)))),
        )

    @property
    def mean(self) -> tuple[float, float]:
        """Mean prompt and output tokens (by sampling, for capacity estimates)."""
        draw = self.sampler(random.Random(0))
        xs = [draw() for _ in range(20_000)]
        return sum(x[0] for x in xs) / len(xs), sum(x[1] for x in xs) / len(xs)


@dataclass
class Workload:
    name: str
    times: list[float]
    prompts: list[int]
    outputs: list[int]
    duration_s: float
    profile: list[tuple[float, float]] = field(default_factory=list)  # (t, offered req/s), for plots

    def __len__(self) -> int:
        return len(self.times)


def thinned(rate: Callable[[float], float], top: float, duration_s: float, rng: random.Random) -> list[float]:
    """Send times of a Poisson process with intensity `rate(t)` <= `top` (Lewis-Shedler thinning)."""
    t, times = 0.0, list[float]()
    while True:
        t += rng.expovariate(top)
        if t >= duration_s:
            return times
        if rng.random() * top < rate(t):
            times.append(t)


def _build(
    name: str,
    times: list[float],
    lengths: Lengths,
    rng: random.Random,
    duration_s: float,
    rate: Callable[[float], float],
) -> Workload:
    draw = lengths.sampler(rng)
    sizes = [draw() for _ in times]
    profile = [(t, rate(t)) for t in [duration_s * k / 200 for k in range(201)]]
    return Workload(name, times, [s[0] for s in sizes], [s[1] for s in sizes], duration_s, profile)


def poisson(c: float, load: float, duration_s: float, lengths: Lengths, seed: int, name: str = "poisson") -> Workload:
    rng = random.Random(seed)
    rate = load * c
    return _build(name, thinned(lambda t: rate, rate, duration_s, rng), lengths, rng, duration_s, lambda t: rate)


def poisson_burst(
    c: float,
    lengths: Lengths,
    seed: int,
    *,
    base: float = 0.8,
    peak: float = 4.0,
    edge_s: float = 150.0,
    ramp_s: float = 20.0,
    peak_s: float = 60.0,
    name: str = "poisson-burst",
) -> Workload:
    """The burst benchmark's profile (`benchmarks.burst.rate_at`, scaled to `peak` x C)."""
    from benchmarks.burst import rate_at

    duration = 2 * edge_s + 2 * ramp_s + peak_s
    scale = peak / 4.0  # rate_at peaks at 4 x C

    def rate(t: float) -> float:
        return rate_at(t, c, base / scale, edge_s, ramp_s, peak_s) * scale

    rng = random.Random(seed)
    return _build(name, thinned(rate, peak * c, duration, rng), lengths, rng, duration, rate)


def diurnal(
    c: float,
    lengths: Lengths,
    seed: int,
    *,
    low: float = 0.3,
    high: float = 1.6,
    period_s: float = 600.0,
    days: float = 1.0,
    name: str = "diurnal",
) -> Workload:
    """A day's load curve in `period_s`: a trough at `low` x C, a peak at `high` x C."""
    mid, amp = (high + low) / 2 * c, (high - low) / 2 * c

    def rate(t: float) -> float:
        return mid - amp * math.cos(2 * math.pi * t / period_s)

    rng = random.Random(seed)
    duration = period_s * days
    return _build(name, thinned(rate, high * c, duration, rng), lengths, rng, duration, rate)


def mmpp(
    c: float,
    lengths: Lengths,
    seed: int,
    *,
    off: float = 0.5,
    on: float = 2.5,
    mean_off_s: float = 60.0,
    mean_on_s: float = 15.0,
    duration_s: float = 600.0,
    name: str = "mmpp",
) -> Workload:
    """On/off bursts: `off` x C, switching to `on` x C for exponential sojourns."""
    rng = random.Random(seed)
    switches: list[tuple[float, float]] = []  # (from t, rate)
    t, state = 0.0, False
    while t < duration_s:
        switches.append((t, (on if state else off) * c))
        t += rng.expovariate(1 / (mean_on_s if state else mean_off_s))
        state = not state

    def rate(x: float) -> float:
        lo, hi = 0, len(switches) - 1
        while lo < hi:  # the last switch at or before x
            mid = (lo + hi + 1) // 2
            if switches[mid][0] <= x:
                lo = mid
            else:
                hi = mid - 1
        return switches[lo][1]

    return _build(name, thinned(rate, on * c, duration_s, rng), lengths, rng, duration_s, rate)


def replay(name: str, rows: list[tuple[float, int, int]], *, speedup: float = 1.0) -> Workload:
    """A trace's requests as recorded (`(seconds since start, prompt, output)`), time compressed by `speedup`."""
    rows = sorted(rows)
    times = [r[0] / speedup for r in rows]
    duration = (times[-1] if times else 0.0) + 1e-9
    buckets: dict[int, int] = {}
    width = max(duration / 100, 1e-6)
    for t in times:
        buckets[int(t / width)] = buckets.get(int(t / width), 0) + 1
    profile = [(k * width, buckets.get(k, 0) / width) for k in range(101)]
    return Workload(name, times, [r[1] for r in rows], [r[2] for r in rows], duration, profile)
