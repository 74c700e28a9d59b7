"""The Azure LLM inference trace format, and a synthetic trace of the same shape.

Azure's public traces (AzurePublicDataset, `AzureLLMInferenceTrace_{conv,code}.csv`, 2023 and 2024)
are CSV files with a header and one request per row:

    TIMESTAMP,ContextTokens,GeneratedTokens
    2023-11-16 18:15:46.6805900,374,44

`load_azure_csv` reads that (timestamps with any number of fractional digits, or plain seconds)
into `(seconds since the first request, prompt tokens, output tokens)`. The real traces can't be
downloaded here; `data/azure-synthetic.csv` is a synthetic one in the same format (bursty
arrivals, lognormal sizes near the conversation trace's published medians), made by

    python -m benchmarks.simulate.trace data/azure-synthetic.csv

so a user points `--trace` at the real file and nothing else changes.
"""

from __future__ import annotations

import argparse
import csv
import math
import random
from datetime import datetime
from pathlib import Path

SYNTHETIC = Path(__file__).resolve().parent / "data" / "azure-synthetic.csv"
HEADER = ("TIMESTAMP", "ContextTokens", "GeneratedTokens")


def _seconds(stamp: str) -> float:
    stamp = stamp.strip()
    try:
        return float(stamp)
    except ValueError:
        pass
    date, _, frac = stamp.partition(".")
    base = datetime.fromisoformat(date.replace("T", " "))
    return base.timestamp() + (float("0." + frac) if frac else 0.0)


def load_azure_csv(path: Path | str, limit: int | None = None) -> list[tuple[float, int, int]]:
    """Rows of an Azure LLM inference trace: (seconds since its first request, context, generated tokens)."""
    rows: list[tuple[float, int, int]] = []
    with open(path, newline="") as f:
        reader = csv.DictReader(f)
        names = {n.strip().lower(): n for n in reader.fieldnames or []}
        try:
            ts, ctx, gen = (names[h.lower()] for h in HEADER)
        except KeyError:
            raise ValueError(f"{path}: expected the columns {', '.join(HEADER)}, got {reader.fieldnames}") from None
        for row in reader:
            rows.append((_seconds(row[ts]), max(1, int(row[ctx])), max(1, int(row[gen]))))
            if limit is not None and len(rows) >= limit:
                break
    if not rows:
        return rows
    start = min(r[0] for r in rows)
    return sorted((t - start, c, g) for t, c, g in rows)


def synthesize(n: int = 4000, seed: int = 2023, mean_rps: float = 4.0) -> list[tuple[float, int, int]]:
    """Bursty arrivals (rate switching between 0.5x and 3x the mean) with conversation-trace-like sizes."""
    rng = random.Random(seed)
    rows: list[tuple[float, int, int]] = []
    t, rate_until, rate = 0.0, 0.0, mean_rps
    while len(rows) < n:
        if t >= rate_until:
            burst = rng.random() < 0.2
            rate = mean_rps * (3.0 if burst else 0.5 + rng.random() * 0.5)
            rate_until = t + rng.expovariate(1 / (20.0 if burst else 60.0))
        t += rng.expovariate(rate)
        context = min(8000, max(4, int(rng.lognormvariate(math.log(1020), 1.0))))
        generated = min(2000, max(1, int(rng.lognormvariate(math.log(130), 0.9))))
        rows.append((t, context, generated))
    return rows


def write_azure_csv(path: Path | str, rows: list[tuple[float, int, int]], start: str = "2023-11-16 18:00:00") -> None:
    origin = datetime.fromisoformat(start).timestamp()
    with open(path, "w", newline="") as f:
        w = csv.writer(f)
        w.writerow(HEADER)
        for t, c, g in rows:
            stamp = datetime.fromtimestamp(origin + t)
            w.writerow([stamp.strftime("%Y-%m-%d %H:%M:%S.") + f"{stamp.microsecond:06d}0", c, g])


def main() -> None:
    p = argparse.ArgumentParser(description="Write a synthetic trace in the Azure LLM inference CSV format.")
    p.add_argument("path", nargs="?", default=str(SYNTHETIC))
    p.add_argument("-n", type=int, default=4000)
    p.add_argument("--seed", type=int, default=2023)
    args = p.parse_args()
    write_azure_csv(args.path, synthesize(args.n, args.seed))
    print(f"wrote {args.n} requests to {args.path}")


if __name__ == "__main__":
    main()
