"""`python -m benchmarks.simulate.fingerprint [OUT.json] [--compare OTHER.json]`: whether a change to the
scheduler or the simulator changed what they decide.

Runs a fixed set of fleets x workloads x policies (seed 7, a few hundred to 40,000 requests each; about
a minute) and hashes each run's per-request TTFT, local, spill and cost arrays. Two checkouts that make
the same decisions print the same hashes; a speed-up must not move one. It imports only what the
simulator had at ad5a0c6, so a copy of this file runs in an older checkout for the reference.
"""

from __future__ import annotations

import argparse
import hashlib
import json
from pathlib import Path
from typing import Any

from benchmarks.simulate.__main__ import sweeps
from benchmarks.simulate.fleet import simulate
from benchmarks.simulate.policies import factories
from benchmarks.simulate.scenarios import fleets, scenario
from benchmarks.simulate.summary import summarize

CASES = (
    ("cpu-1", "poisson-burst", 6000),
    ("cpu-1", "azure-replay", 6000),
    ("gpu-1", "mmpp", 20000),
    ("gpu-8", "diurnal", 20000),
    ("gpu-8", "azure-replay", 20000),
    ("gpu-64", "diurnal", 40000),
)
GPU_64_POLICIES = ("ours", "local-only", "remote-only", "ttft-estimate")  # the rest would take minutes


def fingerprints(seed: int = 7) -> dict[str, dict[str, Any]]:
    out: dict[str, dict[str, Any]] = {}
    for fleet_name, workload, most in CASES:
        fleet = fleets([fleet_name])[0]
        policies = factories(*sweeps(fleet.profile.capacity_concurrency, fleet.replicas, fleet.gateways))
        sc = scenario(fleet, workload, seed=seed, max_requests=most)
        for name, policy in policies.items():
            if fleet_name == "gpu-64" and name not in GPU_64_POLICIES:
                continue
            r = simulate(fleet, sc.workload, policy, name, seed=seed)
            h = hashlib.sha256()
            h.update(r.ttft_ms.tobytes())
            h.update(r.cost_usd.tobytes())
            h.update(bytes(r.local))
            h.update(bytes(r.spill))
            s = summarize(r, fleet.slo_ms)
            key = f"{fleet_name}/{workload}/{name}"
            out[key] = {
                "hash": h.hexdigest()[:16],
                "local_share": s["local_share"],
                "slo_attainment": s["slo_attainment"],
                "decisions": r.decisions,
                "events": r.events,
            }
            print(key, out[key], flush=True)
    return out


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("out", nargs="?", help="write the fingerprints here (JSON)")
    p.add_argument("--compare", help="fingerprints to compare with (JSON); exits 1 on any difference")
    args = p.parse_args()
    prints = fingerprints()
    if args.out:
        Path(args.out).write_text(json.dumps(prints, indent=1))
    if args.compare:
        other = json.loads(Path(args.compare).read_text())
        differ = sorted(k for k in set(prints) | set(other) if prints.get(k) != other.get(k))
        print(f"{len(prints)} runs; {len(differ)} differ" + (f": {', '.join(differ)}" if differ else ""))
        if differ:
            raise SystemExit(1)


if __name__ == "__main__":
    main()
