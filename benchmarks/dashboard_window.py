"""What one read of the dashboard's window costs the ledger: `read_window` over an hour of requests.

    .venv/bin/python -m benchmarks.dashboard_window [--rows 10000 100000] [--rounds 5]

A ledger file in a temporary directory is filled with an hour of synthetic request rows, settled in time
order as a gateway settles them (a mix of local, spilled, cache and failed requests over three keys and
two models, each with its route reason, cache outcome, cost and TTFT), and the dashboard's window is
read over the last 60 minutes `rounds` times. The ledger's owner runs that read in its own process and
answers nothing else meanwhile (admissions wait), which is why a gateway replica shares one read between
its viewers (`orchestrator.dashboard.reader`).

Prints the median time per read and per row in the window, and saves them as
`benchmarks/results/dashboard_window-<stamp>.json`.
"""

from __future__ import annotations

import argparse
import random
import tempfile
import time
from pathlib import Path

from benchmarks.harness import percentile, run_meta, save, stamp
from orchestrator.accounting.book import Book, Settle
from orchestrator.dashboard.window import Bounds, read_window


def fill(book: Book, rows: int, now: float, rng: random.Random) -> None:
    reasons = {
        "local": "local: predicted TTFT 120 ms within 700 ms (SLO 1000 ms)",
        "remote": "spill: predicted local TTFT 900 ms over 700 ms (SLO 1000 ms)",
        "cache": "local: the only route",
        "none": None,
    }
    batch = []
    for i in range(rows):
        route = rng.choice(["local", "local", "local", "remote", "cache", "none"])
        batch.append(
            Settle(
                None,
                {
                    "ts": now - 3600 + 3600 * i / rows,
                    "request_id": f"req_{i}",
                    "key_id": rng.choice(["team-a", "team-b", "batch"]),
                    "endpoint": "/v1/chat/completions",
                    "model": rng.choice(["auto", "big"]),
                    "provider": {"local": "local", "remote": "openrouter", "cache": "cache", "none": None}[route],
                    "route": route,
                    "route_reason": reasons[route],
                    "cache": {"cache": "HIT", "none": None}.get(route, rng.choice(["MISS", "BYPASS"])),
                    "status": 429 if route == "none" else 200,
                    "prompt_tokens": rng.randint(10, 2000),
                    "completion_tokens": rng.randint(1, 500),
                    "cost_usd": rng.uniform(0, 0.01) if route == "remote" else 0.0,
                    "reference_usd": rng.uniform(0, 0.01),
                    "ttft_ms": rng.uniform(20, 1500) if route != "none" else None,
                },
            )
        )
        if len(batch) == 5000:
            book.settle_many(batch)
            batch = []
    book.settle_many(batch)


def main(row_counts: list[int], rounds: int) -> None:
    meta = run_meta("benchmarks.dashboard_window")
    now = time.time()
    out = {}
    print(f"{'rows in the hour':>16}{'ms per read':>14}{'µs per row':>12}   (median of {rounds} reads)")
    for rows in row_counts:
        with tempfile.TemporaryDirectory() as tmp:
            book = Book(Path(tmp) / "ledger.sqlite")
            fill(book, rows, now, random.Random(rows))
            times = []
            for _ in range(rounds):
                started = time.perf_counter()
                read_window(book.db, Bounds.last(now, 60))
                times.append(time.perf_counter() - started)
            book.close()
        p50 = percentile(times, 50)
        out[str(rows)] = {"read_ms_p50": p50 * 1000, "us_per_row": p50 / rows * 1e6, "reads_s": times}
        print(f"{rows:>16,}{p50 * 1000:>14.0f}{p50 / rows * 1e6:>12.2f}")
    print(f"saved {save('dashboard_window', stamp(), {**meta, 'rounds': rounds, 'rows': out})}")


if __name__ == "__main__":
    parser = argparse.ArgumentParser()
    parser.add_argument("--rows", type=int, nargs="+", default=[10_000, 100_000])
    parser.add_argument("--rounds", type=int, default=5)
    args = parser.parse_args()
    main(args.rows, args.rounds)
