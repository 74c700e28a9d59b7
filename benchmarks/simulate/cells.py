"""One cell of the side-by-side table: every policy on one fleet under one workload.

A cell is plain data (names and numbers), so it can go to another process (`pool.ordered`); the
worker builds the fleet, the workload and the policies itself and sends back the summary rows,
not the per-request arrays.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from benchmarks.simulate.ceiling import ceiling
from benchmarks.simulate.fleet import simulate
from benchmarks.simulate.policies import factories
from benchmarks.simulate.scenarios import fleets, scenario
from benchmarks.simulate.summary import summarize


def sweeps(per_replica: int, replicas: int, gateways: int) -> tuple[list[float], list[int]]:
    """Threshold N (in flight per replica) and least-busy P (per gateway) around the profile's capacity point."""
    ns = [per_replica * k for k in (0.5, 1, 2, 4)]
    ps = sorted({max(1, round(per_replica * k * replicas / gateways)) for k in (0.5, 1, 2, 4)})
    return ns, ps


@dataclass(frozen=True)
class Cell:
    fleet: str
    workload: str
    seed: int = 7
    max_requests: int = 30_000
    policies: tuple[str, ...] | None = None  # only these (and remote-only, the cost reference); None: all
    cpu_profile: str = "cpu-smollm2"


def run_cell(cell: Cell) -> list[dict[str, Any]]:
    """The cell's rows, one per policy (ours last, when it runs), in the table's order."""
    fleet = fleets([cell.fleet], cell.cpu_profile)[0]
    policies = factories(*sweeps(fleet.profile.capacity_concurrency, fleet.replicas, fleet.gateways))
    if cell.policies:
        policies = {p: f for p, f in policies.items() if p in cell.policies or p == "remote-only"}
    sc = scenario(fleet, cell.workload, seed=cell.seed, max_requests=cell.max_requests)
    results = {p: simulate(fleet, sc.workload, f, p, seed=cell.seed) for p, f in policies.items()}
    all_remote = sum(results["remote-only"].cost_usd)
    top = ceiling(fleet, sc.workload, seed=cell.seed)
    rows = []
    for r in results.values():
        row = summarize(r, fleet.slo_ms, all_remote)
        row.update(
            fleet=fleet.name,
            workload=cell.workload,
            capacity_rps=sc.capacity_rps,
            ceiling_local_share=top.local_share,
            ceiling_unsorted_share=top.unsorted_share,
            ceiling_clairvoyant_share=top.clairvoyant_share,
            ceiling_cost_floor_per_1k_usd=top.cost_floor_per_1k_usd,
        )
        rows.append(row)
    return rows
