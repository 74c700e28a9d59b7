"""The side-by-side table, the verdict against the issue's target, and one Pareto plot per workload."""

from __future__ import annotations

import math
from collections import defaultdict
from pathlib import Path
from typing import Any

PEERS_EXCLUDED = ("ours", "remote-only")  # remote-only keeps nothing local: not a peer for local share
CEILINGS = ("local_share", "unsorted_share", "clairvoyant_share", "cost_floor_per_1k_usd")  # simulate.ceiling


def _ms(x: float) -> str:
    return "∞" if math.isinf(x) else f"{x:,.0f}"


def table(rows: list[dict[str, Any]]) -> str:
    head = (
        "| fleet | workload | policy | TTFT p50 | p95 | p99 | within SLO | local | $ / 1k req | vs all-remote "
        "| spills/s | flips/s | sim req / wall s |"
    )
    lines = [head, "|" + "---|" * 13]
    for r in rows:
        lines.append(
            f"| {r['fleet']} | {r['workload']} | {'**ours**' if r['policy'] == 'ours' else r['policy']} "
            f"| {_ms(r['ttft_p50_ms'])} | {_ms(r['ttft_p95_ms'])} | {_ms(r['ttft_p99_ms'])} "
            f"| {100 * r['slo_attainment']:.2f} % | {100 * r['local_share']:.1f} % | {r['cost_per_1k_usd']:.4f} "
            f"| {r['cost_vs_all_remote']:.2f} | {r['spills_per_s']:.2f} | {r['flips_per_s']:.2f} "
            f"| {r['requests_per_wall_s']:,.0f} |"
        )
    return "\n".join(lines)


def verdicts(rows: list[dict[str, Any]], attainment: float = 0.99) -> list[dict[str, Any]]:
    """Per fleet and workload: ours against the best peer that also reaches `attainment`
    (most local; at equal local share, cheapest)."""
    groups: dict[tuple[str, str], list[dict[str, Any]]] = defaultdict(list)
    for r in rows:
        groups[(r["fleet"], r["workload"])].append(r)
    out = []
    for (fleet, workload), rs in groups.items():
        ours = next((r for r in rs if r["policy"] == "ours"), None)
        peers = [r for r in rs if r["policy"] not in PEERS_EXCLUDED and r["slo_attainment"] >= attainment]
        best = max(peers, key=lambda r: (r["local_share"], -r["cost_per_1k_usd"]), default=None)
        v: dict[str, Any] = {"fleet": fleet, "workload": workload, "ours": ours and _pick(ours)}
        v["best_peer"] = best and _pick(best)
        v["ceiling"] = {k: rs[0][f"ceiling_{k}"] for k in CEILINGS if f"ceiling_{k}" in rs[0]} or None
        v["reachable"] = (
            reachable(v["ceiling"], best) if v["ceiling"] and len(v["ceiling"]) == len(CEILINGS) and best else None
        )
        if ours is not None:
            ok = ours["slo_attainment"] >= attainment
            if best is None:
                v["local_points_over_best"] = None
                v["cost_below_best"] = None
                v["met"] = ok
            else:
                points = 100 * (ours["local_share"] - best["local_share"])
                cheaper = 1 - ours["cost_per_1k_usd"] / best["cost_per_1k_usd"] if best["cost_per_1k_usd"] else 0.0
                v["local_points_over_best"] = points
                v["cost_below_best"] = cheaper
                v["met"] = ok and (points >= 10 or cheaper >= 0.2)
        out.append(v)
    return out


def one_setting(rows: list[dict[str, Any]], attainment: float = 0.99) -> list[dict[str, Any]]:
    """Per fleet: each policy (one setting, as a user configures it once) over every workload: its
    worst SLO attainment and mean local share; the best peer setting that holds `attainment` everywhere."""
    by_fleet: dict[str, dict[str, list[dict[str, Any]]]] = defaultdict(lambda: defaultdict(list))
    for r in rows:
        by_fleet[r["fleet"]][r["policy"]].append(r)
    out = []
    for fleet, policies in by_fleet.items():
        stats = {
            p: {
                "policy": p,
                "worst_slo_attainment": min(r["slo_attainment"] for r in rs),
                "mean_local_share": sum(r["local_share"] for r in rs) / len(rs),
                "mean_cost_vs_all_remote": sum(r["cost_vs_all_remote"] for r in rs) / len(rs),
            }
            for p, rs in policies.items()
        }
        holding = [s for p, s in stats.items() if p not in PEERS_EXCLUDED and s["worst_slo_attainment"] >= attainment]
        best = max(holding, key=lambda s: s["mean_local_share"], default=None)
        out.append({"fleet": fleet, "ours": stats.get("ours"), "best_peer": best})
    return out


def one_setting_text(vs: list[dict[str, Any]], attainment: float = 0.99) -> str:
    lines = [f"One setting for every workload (worst SLO attainment >= {100 * attainment:.0f} %, mean local share):"]
    for v in vs:
        o, b = v["ours"], v["best_peer"]
        if o is None:
            continue
        mine = f"ours {100 * o['mean_local_share']:.1f} % (worst {100 * o['worst_slo_attainment']:.2f} %)"
        peer = "no peer setting holds it"
        if b is not None:
            worst = 100 * b["worst_slo_attainment"]
            peer = f"best peer {b['policy']} {100 * b['mean_local_share']:.1f} % (worst {worst:.2f} %)"
        lines.append(f"  {v['fleet']:7s} {mine}; {peer}")
    return "\n".join(lines)


def _pick(r: dict[str, Any]) -> dict[str, Any]:
    keys = ("policy", "slo_attainment", "local_share", "cost_per_1k_usd", "ttft_p95_ms")
    return {k: r[k] for k in keys}


def verdict_text(vs: list[dict[str, Any]], attainment: float = 0.99) -> str:
    lines = [
        f"Target: at >= {100 * attainment:.0f} % SLO attainment, ours keeps >= 10 points more local "
        "(or costs >= 20 % less) than the best peer reaching it"
    ]
    for v in vs:
        o, b = v["ours"], v["best_peer"]
        if o is None:
            continue
        mine = f"ours {100 * o['local_share']:.1f} % local at {100 * o['slo_attainment']:.2f} %"
        if b is None:
            lines.append(
                f"  {v['fleet']:7s} {v['workload']:14s} {mine}; no peer reaches it -> {'met' if v['met'] else 'MISSED'}"
            )
            continue
        cheaper = v["cost_below_best"]
        cost = f"costs {100 * abs(cheaper):.0f} % {'less' if cheaper >= 0 else 'more'}"
        lines.append(
            f"  {v['fleet']:7s} {v['workload']:14s} {mine}; best peer {b['policy']} {100 * b['local_share']:.1f} % "
            f"({v['local_points_over_best']:+.1f} points, {cost}) -> {'met' if v['met'] else 'MISSED'}"
            f"{_against_ceiling(v, b)}"
        )
    return "\n".join(lines)


def reachable(top: dict[str, float], best: dict[str, Any]) -> dict[str, bool]:
    """Whether any policy could meet the target's each form against `best` (`ceiling.py`): 10 points more local
    than the ceiling allows, and 20 % cheaper than the cost floor allows (never where the best pays nothing)."""
    cheaper = 0.8 * best["cost_per_1k_usd"]
    return {
        "local": best["local_share"] + 0.10 <= top["local_share"] + 1e-9,
        "cost": best["cost_per_1k_usd"] > 0 and cheaper >= top["cost_floor_per_1k_usd"] - 1e-12,
    }


def _against_ceiling(v: dict[str, Any], best: dict[str, Any]) -> str:
    """Where the target stands against what any policy could do (`ceiling.py`)."""
    top, can = v.get("ceiling"), v.get("reachable")
    if not top or not can:
        return ""
    local, cost = ("within" if can[form] else "out of" for form in ("local", "cost"))
    return (
        f"; ceiling {100 * top['local_share']:.1f} % (FIFO {100 * top['unsorted_share']:.1f}, knowing answers' "
        f"lengths {100 * top['clairvoyant_share']:.1f}), cost floor ${top['cost_floor_per_1k_usd']:.4f}: "
        f"+10 points {local} reach, 20 % cheaper {cost} reach"
    )


def pareto_plots(rows: list[dict[str, Any]], directory: Path, stamp: str) -> list[str]:
    """One PNG per workload: SLO attainment against local share, a panel per fleet."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    by_workload: dict[str, dict[str, list[dict[str, Any]]]] = defaultdict(lambda: defaultdict(list))
    for r in rows:
        by_workload[r["workload"]][r["fleet"]].append(r)
    paths = []
    directory.mkdir(parents=True, exist_ok=True)
    for workload, fleets in by_workload.items():
        fig, axes = plt.subplots(1, len(fleets), figsize=(4.6 * len(fleets), 4.2), squeeze=False)
        for ax, (fleet, rs) in zip(axes[0], fleets.items(), strict=True):
            families: dict[str, list[dict[str, Any]]] = defaultdict(list)
            for r in rs:
                families[r["policy"].rsplit("-", 1)[0] if r["policy"][-1].isdigit() else r["policy"]].append(r)
            for family, members in families.items():
                members.sort(key=lambda r: r["local_share"])
                xs = [100 * r["local_share"] for r in members]
                ys = [100 * r["slo_attainment"] for r in members]
                style = (
                    {"color": "red", "marker": "*", "markersize": 14, "zorder": 5}
                    if family == "ours"
                    else {"marker": "o"}
                )
                ax.plot(xs, ys, label=family, linestyle="-" if len(members) > 1 else "none", **style)
            ax.axhline(99, color="gray", linestyle=":", linewidth=1)
            if (top := rs[0].get("ceiling_local_share")) is not None:  # what any policy could keep at 99 %
                ax.axvline(
                    100 * top, color="black", linestyle="--", linewidth=1, label="ceiling" if ax is axes[0][0] else None
                )
            ax.set_title(f"{fleet}: {workload}", fontsize=10)
            ax.set_xlabel("served locally (%)")
            ax.set_ylabel("requests within the TTFT SLO (%)")
            ax.set_xlim(-3, 103)
            low = min(100 * r["slo_attainment"] for r in rs)
            ax.set_ylim(max(0, low - 5), 100.5)
            ax.grid(alpha=0.3)
        axes[0][0].legend(fontsize=7, loc="lower left")
        fig.tight_layout()
        path = directory / f"simulate-pareto-{workload}-{stamp}.png"
        fig.savefig(path, dpi=80)
        plt.close(fig)
        paths.append(str(path))
    return paths
