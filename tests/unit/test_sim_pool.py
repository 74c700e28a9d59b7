"""The simulator's table spread over processes gives the figures one process gives, in the same order."""

from __future__ import annotations

import os
from typing import Any

from benchmarks.simulate.cells import Cell, run_cell
from benchmarks.simulate.pool import ordered

CELLS = [
    Cell("cpu-1", "poisson-burst", max_requests=300, policies=("ours", "threshold-4")),
    Cell("gpu-1", "mmpp", max_requests=800, policies=("ours",)),
    Cell("cpu-1", "heavy-tail", max_requests=300, policies=("ours", "local-only")),
]
TIMINGS = {"wall_s", "cpu_s", "requests_per_wall_s", "requests_per_cpu_s"}  # the one thing processes change


def _figures(rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    return [{k: v for k, v in row.items() if k not in TIMINGS} for row in rows]


def test_cells_over_two_processes_match_one_process_row_for_row() -> None:
    alone = [_figures(rows) for rows in ordered(run_cell, CELLS, jobs=1)]
    pooled = [_figures(rows) for rows in ordered(run_cell, CELLS, jobs=2)]
    assert pooled == alone
    assert [(rows[0]["fleet"], rows[0]["workload"]) for rows in pooled] == [(c.fleet, c.workload) for c in CELLS]
    assert [[r["policy"] for r in rows] for rows in pooled] == [
        ["remote-only", "threshold-4", "ours"],
        ["remote-only", "ours"],
        ["local-only", "remote-only", "ours"],
    ]
    assert all(rows[0]["requests"] > 0 and rows[-1]["local_share"] > 0 for rows in pooled)


def _pid(_: int) -> int:
    return os.getpid()


def test_jobs_run_in_other_processes_and_one_job_in_this_one() -> None:
    assert set(ordered(_pid, range(4), jobs=1)) == {os.getpid()}
    pids = list(ordered(_pid, range(4), jobs=2))
    assert os.getpid() not in pids and 1 <= len(set(pids)) <= 2
