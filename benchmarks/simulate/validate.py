"""The simulator against reality: a recorded real burst run, replayed on its host's engine profile.

    .venv/bin/python -m benchmarks.simulate.validate RUN.json[=PROFILE] ... [--save]   # seconds a run

A real run (`benchmarks.burst`; by default `scenarios.BURST_RUN`) measured its engine's capacity C in
the deployment, drew seeded Poisson arrivals on the burst profile from a C (that one, or its
`--capacity`), and recorded every request. Here the same arrivals (the burst benchmark's own `arrivals`
with its seed and C) and the same request sizes (resampled from `BURST_RUN`'s local answers: the same
prompts) go through the simulated `cpu-1` fleet, under our policy with the settings the run had
(`ran_with`: its recorded scheduler settings, or the defaults of its day) and the bounds the run measured. The
engine is its host's profile (`measure_engine`) at the C it measured on the real engine
(`scenarios.at_measured_capacity`). Targets (issue 16): the hybrid's local share within 5 points of the
real one, its p95 TTFT within 25 %. Printed beside it, to tell a wrong policy model from a wrong engine
speed: the profile as fitted, and the profile at the C the run's own 20-second calibration measured in
the deployment (noisy: one slow spell moves it by 30 %, but it is the engine with the gateway and Ray on
the same cores).
"""

from __future__ import annotations

import json
import random
from dataclasses import replace
from pathlib import Path
from typing import Any

from benchmarks.simulate.fleet import Fleet, capacity_rps, simulate, with_knobs
from benchmarks.simulate.policies import LocalOnly, PolicyFactory, RemoteOnly
from benchmarks.simulate.pool import ordered
from benchmarks.simulate.scenarios import BURST_RUN, burst_lengths
from benchmarks.simulate.summary import summarize
from benchmarks.simulate.workloads import Workload, poisson


def arrivals_capacity(run: dict[str, Any]) -> float:
    """The C the run scaled its arrivals to: its `--capacity`, or else the C it measured."""
    return float(run.get("capacity_rps") or run["calibration"]["capacity_rps"])


def burst_workload(run: dict[str, Any], seed_sizes: int) -> Workload:
    from benchmarks.burst import arrivals, rate_at

    prof, c = run["profile"], arrivals_capacity(run)
    shape = (prof["base"], prof["edge_s"], prof["ramp_s"], prof["peak_s"])
    times = arrivals(prof["seed"], c, *shape)
    draw = burst_lengths().sampler(random.Random(seed_sizes))
    sizes = [draw() for _ in times]
    duration = 2 * prof["edge_s"] + 2 * prof["ramp_s"] + prof["peak_s"]
    profile = [(float(t), rate_at(t, c, *shape)) for t in range(int(duration))]
    return Workload("burst-replay", times, [s[0] for s in sizes], [s[1] for s in sizes], duration, profile)


# The scheduler's defaults before each change of them (`started` of a run before the change's commit).
_DEFAULTS_BEFORE: tuple[tuple[str, dict[str, Any]], ...] = (
    ("2026-11-30T18:01", {"headroom": 0.7, "hysteresis": 0.2, "hedge_at": None}),  # before 9e922f7
    ("2026-12-01T13:30", {"headroom": 0.6, "hysteresis": 0.0, "hedge_at": None}),  # before the hedge
    ("2026-12-03T08:45", {"headroom": 0.65, "hysteresis": 0.0, "hedge_at": 0.55}),  # before the file's 0.8
)

# Settings added since runs record theirs, at the value that does what the code did before them: a run whose
# record lacks one ran without it.
_NOT_YET: dict[str, Any] = {"size_bias": 0.0}  # 329e3c1


def ran_with(run: dict[str, Any]) -> dict[str, Any]:
    """The scheduler settings the real run's deployment had: as it recorded them, or else the defaults of
    its day with its own `--scheduler` overrides. The simulated hybrid replays the policy that ran."""
    if "scheduler_settings" in run:
        return {**_NOT_YET, **run["scheduler_settings"]}
    started = str(run.get("started", ""))
    defaults = next((d for before, d in _DEFAULTS_BEFORE if started < before), {})
    return {**_NOT_YET, **defaults, **run.get("scheduler", {})}


def _modes() -> dict[str, PolicyFactory]:
    from benchmarks.simulate.ours import Ours

    return {"hybrid": Ours, "local-only": LocalOnly, "remote-only": RemoteOnly}


def _run_modes(run: dict[str, Any]) -> dict[str, PolicyFactory]:
    """The modes the real run measured (`--modes hybrid` runs only ours)."""
    return {mode: factory for mode, factory in _modes().items() if mode in run["results"]}


def _seed(args: tuple[Fleet, Path, int]) -> dict[str, dict[str, Any]]:
    """One seed's arrivals under each mode (a unit of work for `pool.ordered`)."""
    fleet, run_path, seed = args
    run = json.loads(run_path.read_text())
    w = burst_workload(run, seed)
    return {
        mode: summarize(simulate(fleet, w, factory, mode, seed=seed), run["slo_ms"])
        for mode, factory in _run_modes(run).items()
    }


def validate(fleet: Fleet, seeds: int = 5, run_path: Path = BURST_RUN, jobs: int = 1) -> dict[str, Any]:
    """`run_path`: any recorded run of `benchmarks.burst` that measured the hybrid mode (its arrivals: the
    run's seed, C and profile; the request sizes: `BURST_RUN`'s local answers, the same prompts)."""
    run = json.loads(run_path.read_text())
    real = run["results"]
    modes = _run_modes(run)
    fleet = with_knobs(fleet, **ran_with(run))
    if (slots := run.get("local_settings", {}).get("max_num_seqs")) is not None:  # the engine's slots, as it ran
        fleet = replace(fleet, profile=replace(fleet.profile, max_num_seqs=slots))
    sims: dict[str, list[dict[str, Any]]] = {m: [] for m in modes}
    for by_mode in ordered(_seed, [(fleet, run_path, s) for s in range(seeds)], jobs):
        for mode, summary in by_mode.items():
            sims[mode].append(summary)
    sizes = poisson(1.0, 1.0, 2000, burst_lengths(), 0)
    out: dict[str, Any] = {
        "real_run": str(run_path.name),
        "profile": fleet.profile.name,
        "profile_measured_capacity_rps": fleet.profile.measured_capacity_rps,
        "arrivals_capacity_rps": arrivals_capacity(run),
        "real_capacity_rps": run["calibration"]["capacity_rps"],
        "simulated_capacity_rps": capacity_rps(fleet.profile, sizes),
        "seeds": seeds,
        "modes": {},
    }
    for mode in modes:
        shares = [r["local_share"] for r in sims[mode]]
        p95s = [r["ttft_p95_ms"] for r in sims[mode]]
        out["modes"][mode] = {
            "real": {"local_share": real[mode]["local_share"], "ttft_p95_ms": real[mode]["ttft_p95_ms"]},
            "sim_local_share": shares,
            "sim_ttft_p95_ms": p95s,
            "sim_local_share_mean": sum(shares) / len(shares),
            "sim_ttft_p95_ms_median": sorted(p95s)[len(p95s) // 2],
        }
    h = out["modes"]["hybrid"]
    h["local_share_points_off"] = 100 * (h["sim_local_share_mean"] - h["real"]["local_share"])
    h["ttft_p95_off"] = h["sim_ttft_p95_ms_median"] / h["real"]["ttft_p95_ms"] - 1
    out["met"] = abs(h["local_share_points_off"]) <= 5 and abs(h["ttft_p95_off"]) <= 0.25
    return out


def validation_text(v: dict[str, Any]) -> str:
    lines = [
        f"Validation against the real burst run {v['real_run']} (the run measured C {v['real_capacity_rps']:.2f} "
        f"req/s, drew its arrivals at {v['arrivals_capacity_rps']:.2f}; profile {v['profile']}, measured at "
        f"{v['profile_measured_capacity_rps'] or float('nan'):.2f}, simulated {v['simulated_capacity_rps']:.2f}; "
        f"{v['seeds']} simulated seeds):"
    ]
    for mode, m in v["modes"].items():
        real = m["real"]
        lines.append(
            f"  {mode:11s} local share real {100 * real['local_share']:.1f} % / "
            f"sim {100 * m['sim_local_share_mean']:.1f} %"
            f" ({', '.join(f'{100 * x:.0f}' for x in m['sim_local_share'])}); p95 TTFT real "
            f"{real['ttft_p95_ms']:,.0f} ms / sim {m['sim_ttft_p95_ms_median']:,.0f} ms"
        )
    h = v["modes"]["hybrid"]
    lines.append(
        f"  hybrid: local share {h['local_share_points_off']:+.1f} points (target within 5), p95 "
        f"{100 * h['ttft_p95_off']:+.0f} % (target within 25 %) -> {'met' if v['met'] else 'MISSED'}"
    )
    return "\n".join(lines)


def main() -> None:
    """Several real runs, each on its host's profile: at its measured C (the validation) and as fitted."""
    import argparse

    from benchmarks.harness import run_meta, save, stamp
    from benchmarks.simulate.pool import cores
    from benchmarks.simulate.scenarios import at_measured_capacity, fleets

    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("runs", nargs="+", help="RUN.json[=PROFILE]: a recorded burst run, and its host's engine profile")
    p.add_argument("--seeds", type=int, default=5)
    p.add_argument("--jobs", type=int, default=cores())
    p.add_argument("--save", action="store_true", help="write benchmarks/results/simulate-validate-<stamp>.json")
    args = p.parse_args()
    out = []
    for item in args.runs:
        path, _, profile = item.partition("=")
        fitted = fleets(["cpu-1"], profile or "cpu-smollm2", as_fitted=True)[0]
        run_c = json.loads(Path(path).read_text())["calibration"]["capacity_rps"]
        variants = {  # the validation first; the others say how much of a miss the engine's speed explains
            "engine": (fleets(["cpu-1"], profile or "cpu-smollm2")[0], ""),
            "fitted": (fitted, "(the profile as fitted) "),
            "run": (
                replace(fitted, profile=at_measured_capacity(replace(fitted.profile, measured_capacity_rps=run_c))),
                "(at the run's own calibrated C) ",
            ),
        }
        for at, (fleet, label) in variants.items():
            v = validate(fleet, args.seeds, Path(path), args.jobs)
            print(label + validation_text(v), flush=True)
            out.append({**v, "as_fitted": at == "fitted", "at": at})
        print()
    if len(args.runs) > 1:
        met = {at: sum(v["met"] for v in out if v["at"] == at) for at in ("engine", "fitted", "run")}
        print(
            f"Within 5 points and 25 %, of {len(args.runs)} runs: {met['engine']} at the engine's C (the validation), "
            f"{met['fitted']} as fitted, {met['run']} at the run's own C"
        )
    if args.save:
        print(save("simulate-validate", stamp(), {**run_meta("benchmarks.simulate.validate"), "validations": out}))


if __name__ == "__main__":
    main()
