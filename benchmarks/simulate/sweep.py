"""Our policy under other settings, or on another engine: where it loses, and what would help.

    .venv/bin/python -m benchmarks.simulate.sweep --fleets gpu-1 --workloads mmpp \\
        --variant hysteresis=0.2,headroom=0.7 --variant hysteresis=0,headroom=0.6
    .venv/bin/python -m benchmarks.simulate.sweep --fleets cpu-1 --workloads burst-replay \\
        --variant engine.step_noise=0.05 --variant engine.step_noise=0.4

A variant changes `scheduler:` settings (`key=value`) and/or engine-profile fields
(`engine.field=value`); each variant runs `ours` (the real Router) once per seed on every fleet and
workload; printed: local share, SLO attainment, p95 TTFT and cost per 1,000 requests (the seeds' mean, mean,
median and mean).
`burst-replay` is the validation's workload (the recorded real burst run's arrivals, cpu-1).
"""

from __future__ import annotations

import argparse
import json
from dataclasses import replace
from pathlib import Path
from typing import Any

from benchmarks.simulate.fleet import Fleet, simulate, with_knobs
from benchmarks.simulate.ours import Ours
from benchmarks.simulate.pool import cores, ordered
from benchmarks.simulate.scenarios import BURST_RUN, WORKLOADS, fleets, scenario
from benchmarks.simulate.summary import summarize
from benchmarks.simulate.validate import burst_workload
from benchmarks.simulate.workloads import Workload


def _workload(fleet: Fleet, name: str, seed: int, max_requests: int, run: Path = BURST_RUN) -> Workload:
    if name == "burst-replay":
        return burst_workload(json.loads(run.read_text()), seed)
    return scenario(fleet, name, seed=seed, max_requests=max_requests).workload


def parse_variant(text: str) -> dict[str, float | None]:
    """`key=value,...`: numbers, or `none` for a setting that may be off (`hedge_at=none`)."""
    out: dict[str, float | None] = {}
    for part in text.split(","):
        key, _, value = part.partition("=")
        out[key.strip()] = None if value.strip().lower() == "none" else float(value)
    return out


def apply(fleet: Fleet, variant: dict[str, Any]) -> Fleet:
    knobs = {k: v for k, v in variant.items() if not k.startswith("engine.")}
    engine: dict[str, Any] = {k.removeprefix("engine."): v for k, v in variant.items() if k.startswith("engine.")}
    fleet = with_knobs(fleet, **knobs) if knobs else fleet
    return replace(fleet, profile=replace(fleet.profile, **engine)) if engine else fleet


def run_variant(
    fleet: Fleet,
    workload: str,
    variant: dict[str, float | None],
    seeds: list[int],
    max_requests: int,
    run: Path = BURST_RUN,
) -> dict[str, Any]:
    f = apply(fleet, variant)
    runs = [
        summarize(simulate(f, _workload(fleet, workload, s, max_requests, run), Ours, "ours", seed=s), f.slo_ms)
        for s in seeds
    ]
    return {
        "fleet": fleet.name,
        "workload": workload,
        "variant": variant,
        "local_share": sum(r["local_share"] for r in runs) / len(runs),
        "slo_attainment": sum(r["slo_attainment"] for r in runs) / len(runs),
        "ttft_p95_ms": sorted(r["ttft_p95_ms"] for r in runs)[len(runs) // 2],
        "cost_per_1k_usd": sum(r["cost_per_1k_usd"] for r in runs) / len(runs),
        "per_seed_local": [round(r["local_share"], 3) for r in runs],
    }


def _run(item: tuple[Fleet, str, str, list[int], int, Path]) -> dict[str, Any]:
    """One variant on one fleet and workload, over its seeds (a unit of work for `pool.ordered`)."""
    fleet, workload, text, seeds, max_requests, run = item
    return run_variant(fleet, workload, parse_variant(text), seeds, max_requests, run)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--fleets", nargs="+", default=["gpu-1"])
    p.add_argument("--workloads", nargs="+", default=["poisson-burst"], choices=[*WORKLOADS, "burst-replay"])
    p.add_argument("--variant", action="append", required=True, help="key=value[,key=value...]")
    p.add_argument("--seeds", type=int, nargs="+", default=[7, 11, 1, 2, 3])
    p.add_argument("--max-requests", type=int, default=30_000)
    p.add_argument("--jobs", type=int, default=cores(), help="processes at once (default: one per core)")
    p.add_argument("--cpu-profile", default="cpu-smollm2", help="cpu-1's engine profile")
    p.add_argument("--burst-run", type=Path, default=BURST_RUN, help="the real burst run burst-replay replays")
    p.add_argument("--save", metavar="NAME", help="also write benchmarks/results/simulate-sweep-NAME-<stamp>.json")
    args = p.parse_args()
    work = [
        (fleet, workload, text, args.seeds, args.max_requests, args.burst_run)
        for fleet in fleets(args.fleets, args.cpu_profile)
        for workload in args.workloads
        if workload != "burst-replay" or fleet.name == "cpu-1"
        for text in args.variant
    ]
    rows = []
    for (fleet, workload, text, *_), r in zip(work, ordered(_run, work, args.jobs), strict=True):
        rows.append(r)
        print(
            f"{fleet.name:7s} {workload:14s} {text:32s} local {100 * r['local_share']:5.1f} % "
            f"({', '.join(f'{100 * x:.0f}' for x in r['per_seed_local'])}), "
            f"within SLO {100 * r['slo_attainment']:.2f} %, p95 {r['ttft_p95_ms']:,.0f} ms, "
            f"${r['cost_per_1k_usd']:.4f} per 1k requests",
            flush=True,
        )
    if args.save:
        from benchmarks.harness import run_meta, save, stamp

        print(
            save(
                f"simulate-sweep-{args.save}",
                stamp(),
                {
                    **run_meta("benchmarks.simulate.sweep"),
                    "args": {**vars(args), "burst_run": str(args.burst_run)},
                    "rows": rows,
                },
            )
        )


if __name__ == "__main__":
    main()
