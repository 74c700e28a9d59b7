"""The last hour of the ledger's request log, aggregated where the rows are.

`read_window(db, bounds)` runs inside the ledger's owner (a `Query`, like
`/admin/usage`), so what it sees is every gateway replica's requests, and
only a few hundred aggregate numbers cross Ray, however many rows the hour
holds. It reads the `requests` table by its `ts` index:

    usage      totals and breakdowns by key, model, provider and route (`reports.usage_report`)
    timeline   requests per time slot and route (local | remote | cache | none)
    reasons    requests per route and route-reason code (`spill_reason_code`: "spill", "capability", ...)
    cache      requests per cache outcome (HIT | MISS | SHARED | BYPASS)
    ttft       per model asked for, answers by a model (not the cache, not failed): count, p50, p95
               (nearest rank, exact, ranked by sqlite's window functions)

`Bounds` is pure: slots are whole minutes (by default), so the bars of two
reads a few seconds apart line up.
"""

from __future__ import annotations

import math
import sqlite3
from dataclasses import dataclass
from typing import Any

from orchestrator.accounting.reports import usage_report
from orchestrator.scheduling.policy import spill_reason_code

PERCENTILES = (50, 95)
_REASON_FN = "orchestrator_reason_code"  # registered on the ledger's connection for these queries


@dataclass(frozen=True)
class Bounds:
    """The window read: `slots` slots of `slot_s` seconds, the last one holding `until` (now)."""

    since: float
    until: float
    slot_s: float
    slots: int

    @classmethod
    def last(cls, now: float, slots: int, slot_s: float = 60.0) -> Bounds:
        """The `slots` slots up to `now`: the current (partial) one and the whole ones before it."""
        start = math.floor(now / slot_s) * slot_s - (slots - 1) * slot_s
        return cls(start, now, slot_s, slots)

    def slot_start(self, index: int) -> float:
        return self.since + index * self.slot_s


@dataclass(frozen=True)
class Percentiles:
    requests: int
    p50_ms: float
    p95_ms: float


@dataclass(frozen=True)
class Window:
    """What the request log holds for `bounds`: plain data (it crosses Ray)."""

    bounds: Bounds
    usage: dict[str, Any]  # `reports.usage_report` over the bounds
    timeline: list[tuple[int, str, int]]  # (slot index, route, requests)
    reasons: list[tuple[str, str, int]]  # (route, reason code, requests)
    cache: dict[str, int]  # outcome -> requests ("-": no answer)
    ttft: dict[str, Percentiles]  # by the model asked for


def nearest_rank(n: int, p: int) -> int:
    """The 1-based rank of the `p`th percentile of `n` sorted values (nearest rank: ceil(p/100 * n))."""
    return max(1, (n * p + 99) // 100)


def read_window(db: sqlite3.Connection, bounds: Bounds, reference_model: str | None = None) -> Window:
    """The window's aggregates from the ledger's database (see the module docstring)."""
    db.create_function(_REASON_FN, 1, _reason_code, deterministic=True)
    span = (bounds.since, bounds.until)
    where = "WHERE ts >= ? AND ts <= ?"
    timeline = db.execute(
        f"SELECT CAST((ts - ?) / ? AS INTEGER), COALESCE(route, 'none'), COUNT(*) FROM requests {where} "
        "GROUP BY 1, 2 ORDER BY 1, 2",
        (bounds.since, bounds.slot_s, *span),
    ).fetchall()
    reasons = db.execute(
        f"SELECT COALESCE(route, 'none'), {_REASON_FN}(route_reason), COUNT(*) FROM requests {where} "
        "AND route_reason IS NOT NULL GROUP BY 1, 2 ORDER BY 1, 2",
        span,
    ).fetchall()
    cache = db.execute(
        f"SELECT COALESCE(cache, '-'), COUNT(*) FROM requests {where} GROUP BY 1 ORDER BY 1", span
    ).fetchall()
    return Window(
        bounds=bounds,
        # usage_report's window is half-open; the current slot ends at `until` itself, inclusive.
        usage=usage_report(
            db, since=bounds.since, until=math.nextafter(bounds.until, math.inf), reference_model=reference_model
        ),
        timeline=[(int(slot), str(route), int(n)) for slot, route, n in timeline if 0 <= slot < bounds.slots],
        reasons=[(str(route), str(code), int(n)) for route, code, n in reasons],
        cache={str(outcome): int(n) for outcome, n in cache},
        ttft=_ttft(db, where, span),
    )


def _ttft(db: sqlite3.Connection, where: str, span: tuple[float, float]) -> dict[str, Percentiles]:
    """Per model asked for: p50 and p95 of the time to first byte of answers a model gave."""
    ranks = " OR ".join(f"i = (n * {p} + 99) / 100" for p in PERCENTILES)  # `nearest_rank`, in SQL
    rows = db.execute(
        f"""
        SELECT model, n, i, ttft_ms FROM (
            SELECT COALESCE(model, '-') AS model, ttft_ms,
                   ROW_NUMBER() OVER (PARTITION BY COALESCE(model, '-') ORDER BY ttft_ms) AS i,
                   COUNT(*) OVER (PARTITION BY COALESCE(model, '-')) AS n
            FROM requests {where} AND route IN ('local', 'remote') AND status < 400 AND ttft_ms IS NOT NULL
        ) WHERE {ranks}
        """,
        span,
    ).fetchall()
    at: dict[str, dict[int, float]] = {}
    counts: dict[str, int] = {}
    for model, n, i, ms in rows:
        at.setdefault(model, {})[int(i)] = float(ms)
        counts[model] = int(n)
    return {
        model: Percentiles(n, *(at[model][nearest_rank(n, p)] for p in PERCENTILES))
        for model, n in sorted(counts.items())
    }


def _reason_code(reason: str | None) -> str:
    return spill_reason_code(reason) if reason else "unknown"
