"""`python -m benchmarks.simulate`: every default fleet x workload x policy, side by side.

    .venv/bin/python -m benchmarks.simulate [--fleets cpu-1 gpu-8] [--workloads mmpp] [--max-requests N]

Prints the table (TTFT p50/p95/p99, SLO attainment, local share, cost per 1k requests and against
all-remote, spills and flips per simulated second, simulated requests per wall second; the summary
line adds per CPU second of this process, the speed on a host shared with other work), the verdict
against issue 16's target and the validation against the recorded real burst run; saves
`benchmarks/results/simulate-<stamp>.json` and one Pareto plot per workload
(`simulate-pareto-<workload>-<stamp>.png`).
"""

from __future__ import annotations

import argparse
import json
import time
from typing import Any

from benchmarks.harness import RESULTS, run_meta, save, stamp
from benchmarks.simulate.fleet import simulate
from benchmarks.simulate.policies import factories
from benchmarks.simulate.report import one_setting, one_setting_text, pareto_plots, table, verdict_text, verdicts
from benchmarks.simulate.scenarios import WORKLOADS, fleets, scenario
from benchmarks.simulate.summary import summarize
from benchmarks.simulate.validate import validate, validation_text


def sweeps(per_replica: int, replicas: int, gateways: int) -> tuple[list[float], list[int]]:
    """Threshold N (in flight per replica) and least-busy P (per gateway) around the profile's capacity point."""
    ns = [per_replica * k for k in (0.5, 1, 2, 4)]
    ps = sorted({max(1, round(per_replica * k * replicas / gateways)) for k in (0.5, 1, 2, 4)})
    return ns, ps


def run_all(args: argparse.Namespace) -> list[dict[str, Any]]:
    rows: list[dict[str, Any]] = []
    for fleet in fleets(args.fleets, args.cpu_profile):
        ns, ps = sweeps(fleet.profile.capacity_concurrency, fleet.replicas, fleet.gateways)
        policies = factories(ns, ps)
        if args.policies:
            policies = {p: f for p, f in policies.items() if p in args.policies or p == "remote-only"}
        for name in args.workloads:
            sc = scenario(fleet, name, seed=args.seed, max_requests=args.max_requests)
            results = {p: simulate(fleet, sc.workload, f, p, seed=args.seed) for p, f in policies.items()}
            all_remote = sum(results["remote-only"].cost_usd)
            for r in results.values():
                row = summarize(r, fleet.slo_ms, all_remote)
                row.update(fleet=fleet.name, workload=name, capacity_rps=sc.capacity_rps)
                rows.append(row)
            last = rows[-1]  # ours, when it runs: the last policy
            print(
                f"{fleet.name:7s} {name:14s} C={sc.capacity_rps:,.1f} req/s, {len(sc.workload):,} requests: "
                f"{last['policy']} {100 * last['local_share']:.1f} % local, {100 * last['slo_attainment']:.2f} % "
                f"within SLO, {last['requests_per_wall_s']:,.0f} simulated requests per wall second "
                f"({last['requests_per_cpu_s']:,.0f} per CPU second)",
                flush=True,
            )
    return rows


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--fleets", nargs="+", default=None, help="cpu-1 gpu-1 gpu-8 gpu-64 (default: the first three)")
    p.add_argument("--workloads", nargs="+", default=list(WORKLOADS), choices=list(WORKLOADS))
    p.add_argument("--max-requests", type=int, default=30_000, help="per run; longer workloads are compressed in time")
    p.add_argument("--seed", type=int, default=7)
    p.add_argument("--policies", nargs="+", default=None, help="only these (and remote-only, the cost reference)")
    p.add_argument("--cpu-profile", default="cpu-smollm2")
    p.add_argument("--validation-seeds", type=int, default=5)
    p.add_argument("--no-validation", action="store_true")
    p.add_argument("--no-save", action="store_true")
    args = p.parse_args()
    started = time.perf_counter()
    rows = run_all(args)
    print()
    print(table(rows))
    vs = verdicts(rows)
    print()
    print(verdict_text(vs))
    settled = one_setting(rows)
    print()
    print(one_setting_text(settled))
    validation = None
    if not args.no_validation:
        cpu = fleets(["cpu-1"], args.cpu_profile)[0]
        validation = validate(cpu, args.validation_seeds)
        print()
        print(validation_text(validation))
    simulated = sum(r["requests"] for r in rows)
    busy = sum(r["wall_s"] for r in rows)
    cpu = sum(r["cpu_s"] for r in rows)
    print(
        f"\n{simulated:,} simulated requests in {busy:.1f} s of simulation ({simulated / busy:,.0f} per wall second; "
        f"{cpu:.1f} s of CPU, {simulated / cpu:,.0f} per CPU second); {time.perf_counter() - started:.0f} s in all"
    )
    if args.no_save:
        return
    run_stamp = stamp()
    plots = pareto_plots(rows, RESULTS, run_stamp)
    report = {
        **run_meta("benchmarks.simulate"),
        "args": vars(args),
        "rows": rows,
        "verdicts": vs,
        "one_setting": settled,
        "validation": validation,
        "requests_per_wall_s": simulated / busy,
        "requests_per_cpu_s": simulated / cpu,
        "plots": plots,
    }
    print(json.dumps({"saved": str(save("simulate", run_stamp, report)), "plots": plots}, indent=1))


if __name__ == "__main__":
    main()
