"""Usage and spend reports from the ledger's request log, and what the local GPU and the cache saved.

Every request's row carries its real cost and `reference_usd`, what the
configured reference remote model would have charged for the same tokens
(priced when the request was settled). Savings are the difference, summed:
a local answer or a cache hit saves its whole reference cost minus its own
(amortized, or zero) cost; a remote answer saves (or loses) the difference
between its provider's price and the reference's.

`usage_report(db, ...)` is a plain function over a sqlite connection, so the
gateway's `/admin/usage` runs it inside the ledger's owner and `orchestrator
report` runs it on the database file directly.
"""

from __future__ import annotations

import math
import sqlite3
import time
from typing import Any

_COLUMNS = (("key", "key_id"), ("model", "model"), ("provider", "provider"), ("route", "route"))
GROUPS = {name: f"COALESCE({column}, '-')" for name, column in _COLUMNS}

_MEASURES = """
    COUNT(*) AS requests,
    SUM(status >= 400) AS errors,
    SUM(cache = 'HIT') AS cache_hits,
    SUM(estimated) AS estimated,
    COALESCE(SUM(prompt_tokens), 0) AS prompt_tokens,
    COALESCE(SUM(completion_tokens), 0) AS completion_tokens,
    COALESCE(SUM(cost_usd), 0) AS cost_usd,
    COALESCE(SUM(reference_usd), 0) AS reference_usd
"""


def usage_report(
    db: sqlite3.Connection,
    *,
    since: float | None = None,
    until: float | None = None,
    reference_model: str | None = None,
) -> dict[str, Any]:
    """Totals and breakdowns by key, model, provider and route over [since, until) (`since` and `until`
    null in the report where not given: from the first request, up to now)."""
    lo, hi = since if since is not None else 0.0, until if until is not None else math.inf
    where, args = "WHERE ts >= ? AND ts < ?", (lo, hi)
    total = _rows(db, f"SELECT {_MEASURES} FROM requests {where}", args)[0]
    report: dict[str, Any] = {
        "since": since,
        "until": until,
        "totals": total,
        "savings": {
            "reference_model": reference_model,
            "reference_usd": total["reference_usd"],
            "actual_usd": total["cost_usd"],
            "saved_usd": total["saved_usd"],
        },
    }
    for name, column in GROUPS.items():
        report[f"by_{name}"] = {
            str(r.pop("name")): r
            for r in _rows(
                db, f"SELECT {column} AS name, {_MEASURES} FROM requests {where} GROUP BY 1 ORDER BY 1", args
            )
        }
    return report


def _rows(db: sqlite3.Connection, sql: str, args: tuple[Any, ...]) -> list[dict[str, Any]]:
    cursor = db.execute(sql, args)
    names = [d[0] for d in cursor.description]
    out = []
    for values in cursor.fetchall():
        row = dict(zip(names, values, strict=True))
        for k in ("requests", "errors", "cache_hits", "estimated", "prompt_tokens", "completion_tokens"):
            row[k] = int(row[k] or 0)
        row["cost_usd"] = float(row["cost_usd"] or 0.0)
        row["reference_usd"] = float(row["reference_usd"] or 0.0)
        row["saved_usd"] = row["reference_usd"] - row["cost_usd"]
        out.append(row)
    return out


def render(report: dict[str, Any]) -> str:
    """The report as plain-text tables."""
    s = report["savings"]
    lines = [
        f"Usage from {_when(report['since'], 'the beginning')} to {_when(report['until'], 'now')}",
        "",
        f"Spend ${s['actual_usd']:.6f}; the same tokens on {s['reference_model'] or '(no reference model)'} "
        f"${s['reference_usd']:.6f}; saved ${s['saved_usd']:.6f}",
    ]
    header = f"{'':<34}{'requests':>9}{'errors':>7}{'hits':>6}{'prompt':>10}{'output':>10}{'cost $':>12}{'saved $':>12}"
    for name in GROUPS:
        lines += ["", f"by {name}", header]
        for label, r in report[f"by_{name}"].items():
            lines.append(
                f"{label[:33]:<34}{r['requests']:>9}{r['errors']:>7}{r['cache_hits']:>6}{r['prompt_tokens']:>10}"
                f"{r['completion_tokens']:>10}{r['cost_usd']:>12.6f}{r['saved_usd']:>12.6f}"
            )
    return "\n".join(lines)


def _when(ts: float | None, otherwise: str) -> str:
    return otherwise if ts is None else time.strftime("%Y-%m-%d %H:%M:%S UTC", time.gmtime(ts))
