"""The dashboard's JSON document: the ledger's window and the scheduler's state of now, shaped.

Pure: `summarize(window, routing, now)` does no I/O, so it is tested by
tables of cases. The document (what `GET /dashboard/data` answers):

    window          the bounds read and where the figures come from ("ledger": every replica; null: none)
    traffic         requests by route; of those answered, the local, spilled and cache shares
    timeline        one entry per slot: requests by route (local, remote, cache, failed)
    spill_reasons   why requests spilled: requests per route-reason code, most first
    ttft            per model asked for: p50 and p95 time to first byte against the alias's TTFT SLO
    cache           outcomes and the hit rate of the requests the cache could answer
    spend           spend, reference cost and savings, in total and by key and by model
    local           each local model's replicas, slots, queue and KV-cache use (this replica's view)
    budget          the burst budget: the hour's overflow spend against its cap
    spilling        the aliases this replica is spilling now (hysteresis state)
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from typing import Any

from orchestrator.dashboard.window import Group, Window
from orchestrator.scheduling.router import RoutingState

ROUTES = ("local", "remote", "cache", "none")
# Route-reason codes of remote answers that no local-vs-remote choice made, so no spill: an alias with no local
# route ("remote: no local route") and an embeddings request's listed route ("embedding route": the scheduler
# orders embedding routes as configured, never by the local model's load or what it lacks); a route after a
# failed remote one keeps its plan's reason (`policy.fallback_label`). A remote route after a failed local one
# is "fallback", and spill.
NOT_SPILL = frozenset({"remote", "embedding"})


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


def _groups(window: Window | None) -> list[Group]:
    return window.groups if window is not None else []


def count_by(groups: Iterable[Group], label: Callable[[Group], str]) -> dict[str, int]:
    """Requests per `label` of their group."""
    out: dict[str, int] = {}
    for g in groups:
        out[label(g)] = out.get(label(g), 0) + g.requests
    return out


def spilled(group: Group) -> bool:
    """Whether the group's requests spilled: a remote route served them instead of a local one it could have."""
    return group.route == "remote" and group.reason not in NOT_SPILL


def traffic(window: Window | None) -> dict[str, Any]:
    groups = _groups(window)
    by_route = count_by(groups, lambda g: g.route)
    counts = {route: by_route.get(route, 0) for route in ROUTES}
    answered = counts["local"] + counts["remote"] + counts["cache"]
    spill = sum(g.requests for g in groups if spilled(g))
    return {
        "requests": sum(by_route.values()),
        "local": counts["local"],
        "remote": counts["remote"],  # answered by a remote route, spilled or not
        "spilled": spill,
        "cache": counts["cache"],
        "failed": counts["none"],  # refused or failed: no answer
        "errors": sum(g.errors for g in groups),
        "answered": answered,
        "local_share": share(counts["local"], answered),
        "spill_share": share(spill, answered),
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
    """Why requests spilled, most requests first (ties by name)."""
    merged = count_by((g for g in _groups(window) if spilled(g)), lambda g: g.reason)
    total = sum(merged.values())
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
    outcomes = count_by(_groups(window), lambda g: g.cache)
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
    """Spend, what the reference model would have charged for the same tokens, and the difference saved."""
    groups = _groups(window)
    total = _measures(groups)
    return {
        "reference_model": window.reference_model if window is not None else None,
        "cost_usd": total["cost_usd"],
        "reference_usd": total["reference_usd"],
        "saved_usd": total["saved_usd"],
        "by_key": _breakdown(groups, "key"),
        "by_model": _breakdown(groups, "model"),
    }


def _measures(groups: Iterable[Group]) -> dict[str, Any]:
    out: dict[str, Any] = dict.fromkeys(("requests", "errors", "cache_hits", "prompt_tokens", "completion_tokens"), 0)
    cost = reference = 0.0
    for g in groups:
        out["requests"] += g.requests
        out["errors"] += g.errors
        out["cache_hits"] += g.requests if g.cache == "HIT" else 0
        out["prompt_tokens"] += g.prompt_tokens
        out["completion_tokens"] += g.completion_tokens
        cost += g.cost_usd
        reference += g.reference_usd
    return {**out, "cost_usd": cost, "reference_usd": reference, "saved_usd": reference - cost}


def _breakdown(groups: list[Group], name: str) -> list[dict[str, Any]]:
    """Measures per key (or model), most spend first (then most requests, then by name); "-": none."""
    by: dict[str, list[Group]] = {}
    for g in groups:
        by.setdefault(getattr(g, name), []).append(g)
    rows = [{name: label, **_measures(members)} for label, members in by.items()]
    return sorted(rows, key=lambda r: (-r["cost_usd"], -r["requests"], r[name]))


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
