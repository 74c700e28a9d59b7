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
from pathlib import Path
from typing import Any

from benchmarks.harness import RESULTS, run_meta, save, stamp
from benchmarks.simulate.cells import Cell, run_cell, sweeps
from benchmarks.simulate.pool import cores, ordered
from benchmarks.simulate.report import one_setting, one_setting_text, pareto_plots, table, verdict_text, verdicts
from benchmarks.simulate.scenarios import BURST_RUN, WORKLOADS, fleets
from benchmarks.simulate.validate import validate, validation_text

__all__ = ["main", "run_all", "sweeps"]  # sweeps: where fingerprint (and its copies in older checkouts) finds it


def run_all(args: argparse.Namespace) -> list[dict[str, Any]]:
    """Every cell of the table, over `args.jobs` processes; each cell's line printed as it is done."""
    cells = [
        Cell(fleet.name, name, args.seed, args.max_requests, tuple(args.policies or ()), args.cpu_profile)
        for fleet in fleets(args.fleets, args.cpu_profile)
        for name in args.workloads
    ]
    rows: list[dict[str, Any]] = []
    for cell_rows in ordered(run_cell, cells, args.jobs):
        rows.extend(cell_rows)
        last = cell_rows[-1]  # ours, when it runs: the last policy
        print(
            f"{last['fleet']:7s} {last['workload']:14s} C={last['capacity_rps']:,.1f} req/s, {last['requests']:,} "
            f"requests: {last['policy']} {100 * last['local_share']:.1f} % local, "
            f"{100 * last['slo_attainment']:.2f} % within SLO, {last['requests_per_wall_s']:,.0f} simulated "
            f"requests per wall second ({last['requests_per_cpu_s']:,.0f} per CPU second)",
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
    p.add_argument("--burst-run", type=Path, default=BURST_RUN, help="the real burst run to validate against")
    p.add_argument("--no-validation", action="store_true")
    p.add_argument("--no-save", action="store_true")
    p.add_argument("--jobs", type=int, default=cores(), help="processes running cells at once (default: one per core)")
    args = p.parse_args()
    started = time.perf_counter()
    rows = run_all(args)
    elapsed = time.perf_counter() - started
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
        validation = validate(cpu, args.validation_seeds, args.burst_run, jobs=args.jobs)
        print()
        print(validation_text(validation))
    simulated = sum(r["requests"] for r in rows)
    busy = sum(r["wall_s"] for r in rows)
    cpu = sum(r["cpu_s"] for r in rows)
    print(
        f"\n{simulated:,} simulated requests in {elapsed:.1f} s over {args.jobs} process(es), setup included "
        f"({simulated / elapsed:,.0f} per wall second); each run alone: {busy:.1f} s of simulation "
        f"({simulated / busy:,.0f} per wall second of its process; {cpu:.1f} s of CPU, {simulated / cpu:,.0f} per "
        f"CPU second); {time.perf_counter() - started:.0f} s in all"
    )
    if args.no_save:
        return
    run_stamp = stamp()
    plots = pareto_plots(rows, RESULTS, run_stamp)
    report = {
        **run_meta("benchmarks.simulate"),
        "args": {**vars(args), "burst_run": str(args.burst_run)},
        "rows": rows,
        "verdicts": vs,
        "one_setting": settled,
        "validation": validation,
        "requests_per_wall_s": simulated / busy,
        "table_elapsed_s": elapsed,
        "requests_per_elapsed_s": simulated / elapsed,
        "requests_per_cpu_s": simulated / cpu,
        "plots": plots,
    }
    print(json.dumps({"saved": str(save("simulate", run_stamp, report)), "plots": plots}, indent=1))


if __name__ == "__main__":
    main()
