"""The last hour of the ledger's request log, aggregated where the rows are.

`read_window(db, bounds)` runs inside the ledger's owner (a `Query`, as
`/admin/usage` does), so it sees every gateway replica's requests, and only
aggregates cross Ray, however many rows the hour holds. Three passes over
the `requests` table's rows in the window (by its `ts` index):

    groups     requests, errors, tokens, cost and reference cost per route, route-reason code
               (`spill_reason_code`: "spill", "capability", ...), cache outcome, key and model:
               what `summary` adds up into shares, spill reasons, the hit rate and spend
    timeline   requests per time slot and route (local | remote | cache | none)
    ttft       per model asked for, answers by a model (not the cache, not failed): count, p50, p95
               (nearest rank, exact, ranked by sqlite's window functions)

While it runs the owner answers nothing else, so it is one pass per concern,
not one per figure. `Bounds` is pure: slots are whole minutes (by default),
so the bars of two reads a few seconds apart line up.
"""

from __future__ import annotations

import math
import sqlite3
from dataclasses import dataclass
from typing import NamedTuple

from orchestrator.scheduling.policy import spill_reason_code

PERCENTILES = (50, 95)
_REASON_FN = "orchestrator_reason_code"  # registered on the ledger's connection for these queries
_WHERE = "WHERE ts >= ? AND ts <= ?"


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


class Group(NamedTuple):
    """The requests that share a route, a reason code, a cache outcome, a key and a model ("-": none)."""

    route: str
    reason: str
    cache: str
    key: str
    model: str
    requests: int
    errors: int
    prompt_tokens: int
    completion_tokens: int
    cost_usd: float
    reference_usd: float


@dataclass(frozen=True)
class Percentiles:
    requests: int
    p50_ms: float
    p95_ms: float


@dataclass(frozen=True)
class Window:
    """What the request log holds for `bounds`: plain data (it crosses Ray)."""

    bounds: Bounds
    groups: list[Group]
    timeline: list[tuple[int, str, int]]  # (slot index, route, requests)
    ttft: dict[str, Percentiles]  # by the model asked for
    reference_model: str | None = None  # what `reference_usd` prices at


def nearest_rank(n: int, p: int) -> int:
    """The 1-based rank of the `p`th percentile of `n` sorted values (nearest rank: ceil(p/100 * n))."""
    return max(1, (n * p + 99) // 100)


def read_window(db: sqlite3.Connection, bounds: Bounds, reference_model: str | None = None) -> Window:
    """The window's aggregates from the ledger's database (see the module docstring)."""
    db.create_function(_REASON_FN, 1, _reason_code, deterministic=True)
    span = (bounds.since, bounds.until)
    groups = db.execute(
        f"""
        SELECT COALESCE(route, 'none'), {_REASON_FN}(route_reason), COALESCE(cache, '-'), COALESCE(key_id, '-'),
               COALESCE(model, '-'), COUNT(*), SUM(status >= 400), COALESCE(SUM(prompt_tokens), 0),
               COALESCE(SUM(completion_tokens), 0), COALESCE(SUM(cost_usd), 0), COALESCE(SUM(reference_usd), 0)
        FROM requests {_WHERE} GROUP BY 1, 2, 3, 4, 5 ORDER BY 1, 2, 3, 4, 5
        """,
        span,
    ).fetchall()
    timeline = db.execute(
        f"SELECT CAST((ts - ?) / ? AS INTEGER), COALESCE(route, 'none'), COUNT(*) FROM requests {_WHERE} "
        "GROUP BY 1, 2 ORDER BY 1, 2",
        (bounds.since, bounds.slot_s, *span),
    ).fetchall()
    return Window(
        bounds=bounds,
        groups=[
            Group(str(r), str(why), str(c), str(k), str(m), int(n), int(e or 0), int(p), int(o), float(u), float(ref))
            for r, why, c, k, m, n, e, p, o, u, ref in groups
        ],
        timeline=[(int(slot), str(route), int(n)) for slot, route, n in timeline if 0 <= slot < bounds.slots],
        ttft=_ttft(db, span),
        reference_model=reference_model,
    )


def _ttft(db: sqlite3.Connection, span: tuple[float, float]) -> dict[str, Percentiles]:
    """Per model asked for: p50 and p95 of the time to first byte of answers a model gave."""
    ranks = " OR ".join(f"i = (n * {p} + 99) / 100" for p in PERCENTILES)  # `nearest_rank`, in SQL
    rows = db.execute(
        f"""
        SELECT model, n, i, ttft_ms FROM (
            SELECT COALESCE(model, '-') AS model, ttft_ms,
                   ROW_NUMBER() OVER (PARTITION BY COALESCE(model, '-') ORDER BY ttft_ms) AS i,
                   COUNT(*) OVER (PARTITION BY COALESCE(model, '-')) AS n
            FROM requests {_WHERE} AND route IN ('local', 'remote') AND status < 400 AND ttft_ms IS NOT NULL
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
    return spill_reason_code(reason) if reason else "-"
