"""The dashboard's JSON document: the ledger's window and the scheduler's state of now, shaped.

Pure: `summarize(window, routing, now)` does no I/O, so it is tested by
tables of cases. The document (what `GET /dashboard/data` answers):

    window          the bounds read and where the figures come from ("ledger": every replica; null: none)
    traffic         requests by route; of those answered, the local, spilled (remote) and cache shares
    timeline        one entry per slot: requests by route (local, remote, cache, failed)
    spill_reasons   why remote routes served: requests per route-reason code, most first
    ttft            per model asked for: p50 and p95 time to first byte against the alias's TTFT SLO
    cache           outcomes and the hit rate of the requests the cache could answer
    spend           spend, reference cost and savings, in total and by key and by model
    local           each local model's replicas, slots, queue and KV-cache use (this replica's view)
    budget          the burst budget: the hour's overflow spend against its cap
    spilling        the aliases this replica is spilling now (hysteresis state)
"""

from __future__ import annotations

from typing import Any

from orchestrator.dashboard.window import Window
from orchestrator.scheduling.router import RoutingState

ROUTES = ("local", "remote", "cache", "none")
_MEASURES = ("requests", "errors", "cache_hits", "prompt_tokens", "completion_tokens", "cost_usd", "saved_usd")


def summarize(window: Window | None, routing: RoutingState, now: float) -> dict[str, Any]:
    """The whole document; without a window (no ledger), its request figures are empty."""
    return {
        "object": "dashboard",
        "generated_at": now,
        "window": _bounds(window),
        "traffic": traffic(window),
        "timeline": timeline(window),
        "spill_reasons": spill_reasons(window),
        "ttft": ttft(window, routing.slo_ms),
        "cache": cache(window),
        "spend": spend(window),
        "local": local(routing),
        "budget": budget(routing),
        "spilling": sorted(alias for alias, on in routing.spilling.items() if on),
    }


def _bounds(window: Window | None) -> dict[str, Any]:
    if window is None:
        return {"source": None, "since": None, "until": None, "slot_s": None, "slots": 0}
    b = window.bounds
    return {"source": "ledger", "since": b.since, "until": b.until, "slot_s": b.slot_s, "slots": b.slots}


def share(part: int | float, whole: int | float) -> float | None:
    """`part` of `whole`, or None when there is no whole."""
    return part / whole if whole else None


def traffic(window: Window | None) -> dict[str, Any]:
    by_route = window.usage["by_route"] if window is not None else {}
    counts = {route: int(by_route.get(route, {}).get("requests", 0)) for route in ROUTES}
    answered = counts["local"] + counts["remote"] + counts["cache"]
    totals = window.usage["totals"] if window is not None else {}
    return {
        "requests": int(totals.get("requests", 0)),
        "local": counts["local"],
        "remote": counts["remote"],
        "cache": counts["cache"],
        "failed": counts["none"],  # refused or failed: no answer
        "errors": int(totals.get("errors", 0)),
        "answered": answered,
        "local_share": share(counts["local"], answered),
        "spill_share": share(counts["remote"], answered),
        "cache_share": share(counts["cache"], answered),
    }


def timeline(window: Window | None) -> list[dict[str, Any]]:
    """Every slot of the window, in order, empty ones included."""
    if window is None:
        return []
    b = window.bounds
    slots = [{"start": b.slot_start(i), "local": 0, "remote": 0, "cache": 0, "failed": 0} for i in range(b.slots)]
    for index, route, n in window.timeline:
        slots[index]["failed" if route == "none" else route] += n
    return slots


def spill_reasons(window: Window | None) -> list[dict[str, Any]]:
    """Why remote routes served, most requests first (ties by name)."""
    rows = [(code, n) for route, code, n in (window.reasons if window else []) if route == "remote"]
    total = sum(n for _, n in rows)
    merged: dict[str, int] = {}
    for code, n in rows:
        merged[code] = merged.get(code, 0) + n
    ordered = sorted(merged.items(), key=lambda item: (-item[1], item[0]))
    return [{"reason": code, "requests": n, "share": share(n, total)} for code, n in ordered]


def ttft(window: Window | None, slo_ms: dict[str, float]) -> list[dict[str, Any]]:
    """Per model asked for (answers by a model): p50 and p95 against its alias's SLO."""
    out = []
    for model, p in (window.ttft if window else {}).items():
        slo = slo_ms.get(model)
        out.append(
            {
                "model": model,
                "requests": p.requests,
                "p50_ms": p.p50_ms,
                "p95_ms": p.p95_ms,
                "slo_ms": slo,
                "p95_within_slo": None if slo is None else p.p95_ms <= slo,
            }
        )
    return out


def cache(window: Window | None) -> dict[str, Any]:
    """A hit rate over the lookups the cache could answer (a hit, a miss, or an identical request in flight)."""
    outcomes = window.cache if window is not None else {}
    hits, misses, shared = outcomes.get("HIT", 0), outcomes.get("MISS", 0), outcomes.get("SHARED", 0)
    lookups = hits + misses + shared
    return {
        "hits": hits,
        "misses": misses,
        "shared": shared,
        "bypass": outcomes.get("BYPASS", 0),
        "lookups": lookups,
        "hit_rate": share(hits, lookups),
    }


def spend(window: Window | None) -> dict[str, Any]:
    usage = window.usage if window is not None else {}
    savings = usage.get("savings", {})
    return {
        "reference_model": savings.get("reference_model"),
        "cost_usd": float(savings.get("actual_usd", 0.0)),
        "reference_usd": float(savings.get("reference_usd", 0.0)),
        "saved_usd": float(savings.get("saved_usd", 0.0)),
        "by_key": _breakdown(usage.get("by_key", {}), "key"),
        "by_model": _breakdown(usage.get("by_model", {}), "model"),
    }


def _breakdown(rows: dict[str, dict[str, Any]], name: str) -> list[dict[str, Any]]:
    """Rows by spend, most first (ties by name); "-" is requests without a key (or model)."""
    out = [{name: label, **{m: row[m] for m in _MEASURES}} for label, row in rows.items()]
    return sorted(out, key=lambda r: (-r["cost_usd"], -r["requests"], r[name]))


def local(routing: RoutingState) -> list[dict[str, Any]]:
    """Each local generation model: its replicas and queue, or why there is no figure."""
    out = []
    for provider, model in sorted(routing.local.items()):
        row: dict[str, Any] = {"provider": provider, "model": model}
        if model not in routing.load:
            row.update(status="no load board (engine in this process)", load=None)
        elif (snap := routing.load[model]) is None:
            row.update(status="no fresh load report", load=None)
        else:
            row.update(
                status="ok",
                load={
                    "replicas": snap.replicas,
                    "slots": snap.slots,
                    "running": snap.running,
                    "waiting": snap.waiting + snap.sent,  # what this replica sent since counts as waiting
                    "kv_cache_usage": snap.kv_cache_usage,
                    "recent_ttft_ms": snap.recent_ttft_ms,
                },
            )
        out.append(row)
    return out


def budget(routing: RoutingState) -> dict[str, Any]:
    """The hour's overflow spend (every replica, through the load board) against its cap."""
    b = routing.budget
    cap, spent = b.cap_usd_per_hour, b.spent_usd
    remaining = max(0.0, cap - (spent or 0.0)) if cap is not None else None
    return {
        "cap_usd_per_hour": cap,
        "spent_usd": spent,
        "remaining_usd": remaining,
        "used_share": share(spent or 0.0, cap) if cap is not None else None,
        "exhausted": b.exhausted,
    }
