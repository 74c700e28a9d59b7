"""How the scheduler's predictions fared in real burst runs: the evidence for why a host keeps less local.

    .venv/bin/python -m benchmarks.simulate.predictions RUN.json ...      # instant: reads recorded runs

Every hybrid request of a `benchmarks.burst` run carries the scheduler's reason (`x-route-reason`), with
the calibrated TTFT it predicted for the local model. Per run: the engine's C and TTFT at 4 streams, the
share served locally in the base phases and at the burst (ramps and peak), the predictions' quantiles
in the first base phase (how long an idle-ish engine's first token is expected to take), and, for the
requests served locally, actual ÷ predicted TTFT (how wrong the prediction was: the spread the
scheduler's headroom has to cover).
"""

from __future__ import annotations

import argparse
import json
import re
from pathlib import Path
from typing import Any

from benchmarks.harness.stats import percentile

_PREDICTED = re.compile(r"predicted (?:local )?TTFT (\d+) ms")


def summarize(run: dict[str, Any]) -> dict[str, Any]:
    prof = run["profile"]
    burst_from, burst_to = prof["edge_s"], prof["edge_s"] + 2 * prof["ramp_s"] + prof["peak_s"]
    rows = []
    for o in run["outcomes"]["hybrid"]:
        m = _PREDICTED.search(o["reason"] or "")
        if m is not None:
            rows.append((o, float(m.group(1)), o["served_by"].startswith("local")))
    base = [(o, p, local) for o, p, local in rows if not burst_from <= o["sent_at"] < burst_to]
    burst = [(o, p, local) for o, p, local in rows if burst_from <= o["sent_at"] < burst_to]
    first_base = [p for o, p, _ in rows if o["sent_at"] < burst_from]
    ratios = [o["ttft_s"] * 1000 / p for o, p, local in rows if local and o["ok"] and p > 0]
    return {
        "capacity_rps": run["calibration"]["capacity_rps"],
        "ttft_p50_ms_at_4": run["calibration"]["ttft_p50_ms"],
        "local_share": run["results"]["hybrid"]["local_share"],
        "local_share_base": sum(local for *_, local in base) / max(1, len(base)),
        "local_share_burst": sum(local for *_, local in burst) / max(1, len(burst)),
        "predicted_ms_first_base": {f"q{q}": percentile(first_base, q) for q in (10, 50, 90)},
        "actual_over_predicted": {f"q{q}": percentile(ratios, q) for q in (50, 90, 95, 99)},
        "cpu": run.get("machine", {}).get("cpu", "not recorded"),
    }


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("runs", nargs="+", type=Path)
    args = p.parse_args()
    for path in args.runs:
        s = summarize(json.loads(path.read_text()))
        pred, ratio = s["predicted_ms_first_base"], s["actual_over_predicted"]
        print(
            f"{path.name}: C {s['capacity_rps']:.2f} req/s (TTFT p50 {s['ttft_p50_ms_at_4']:.0f} ms at 4 streams), "
            f"local {100 * s['local_share']:.1f} % (base {100 * s['local_share_base']:.0f} %, burst "
            f"{100 * s['local_share_burst']:.0f} %); predicted in the first base phase q10/q50/q90 "
            f"{pred['q10']:.0f}/{pred['q50']:.0f}/{pred['q90']:.0f} ms; local actual/predicted q50/q90/q95/q99 "
            f"{ratio['q50']:.2f}/{ratio['q90']:.2f}/{ratio['q95']:.2f}/{ratio['q99']:.2f}; CPU {s['cpu']}"
        )


if __name__ == "__main__":
    main()
