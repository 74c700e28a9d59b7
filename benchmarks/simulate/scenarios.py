"""The default fleets and workloads of `python -m benchmarks.simulate`.

Fleets (local replicas x gateway replicas, their remote routes, SLO 1 s):

    cpu-1    this machine's engine profile (SmolLM2 on CPU) x 1, 1 gateway; the burst benchmark's
             fake remote (TTFT 350 ms, 80 tokens/s, $0.18/$0.18 per Mtok); the scheduler settings of
             the embedded default (config/default.yaml), which is this deployment
    gpu-1    an H200 serving an 8B model x 1, 1 gateway; the config presets' hosts of
    gpu-8    llama-3.1-8b-instruct (groq, together, openrouter: prices as configured, latency and
    gpu-64   error odds assumed, `profiles.PRESET_BEHAVIOUR`), x 8 with 2 gateways, x 64 with 8;
             the scheduler's code defaults (`SchedulerSettings`)

Workloads, at rates relative to the fleet's capacity C (`fleet.capacity_rps` x replicas):

    poisson-burst  the burst benchmark's profile (0.8 C, ramp to 4 C, 60 s, back; 400 s)
    diurnal        0.3 C to 1.6 C over a compressed day
    mmpp           0.5 C with bursts to 2.5 C (mean 15 s on, 60 s off)
    heavy-tail     Poisson at 0.9 C, Pareto prompt and output lengths (alpha 1.5; smaller on the CPU)
    azure-replay   the bundled trace in the Azure CSV format, time scaled to 0.9 C on average

Sizes: the CPU fleet resamples the (prompt, output) pairs of the recorded burst run's local
answers; the GPU fleets draw lognormal sizes near the Azure conversation trace's medians
(prompt ~1,000, output ~130 tokens), except heavy-tail and the replay.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from benchmarks.simulate.fleet import Fleet, capacity_rps
from benchmarks.simulate.profiles import EngineProfile, RemoteProfile, remote_from_presets
from benchmarks.simulate.trace import SYNTHETIC, load_azure_csv
from benchmarks.simulate.workloads import Lengths, Workload, diurnal, mmpp, poisson, poisson_burst, replay
from orchestrator.settings import load_settings

RESULTS = Path(__file__).resolve().parents[1] / "results"
BURST_RUN = RESULTS / "burst-20261123-101555.json"  # the latest recorded real burst run (benchmarks/README.md)
BURST_REMOTE = RemoteProfile("burst", "llama-3.1-8b", 355.0, 0.01, 0.18, 0.18, tokens_per_s=80.0)
GPU_LENGTHS = Lengths("lognormal", prompt=1000, output=130, spread=0.9, max_prompt=8000, max_output=2000)
HEAVY_LENGTHS = Lengths("pareto", prompt=300, output=40, spread=1.5, max_prompt=30000, max_output=4000)
# The CPU model's context is 2,048 tokens and its prefill ~2 ms a token: the same tail, smaller.
CPU_HEAVY_LENGTHS = Lengths("pareto", prompt=25, output=25, spread=1.5, max_prompt=1500, max_output=500)


def burst_lengths(run: Path = BURST_RUN) -> Lengths:
    """The (prompt, completion) pairs of the recorded burst run's local-only answers."""
    data = json.loads(run.read_text())
    pairs = tuple(
        (o["prompt_tokens"], o["completion_tokens"])
        for o in data["outcomes"]["local-only"]
        if o["ok"] and o["completion_tokens"] > 0
    )
    return Lengths("empirical", pairs=pairs)


def at_measured_capacity(profile: EngineProfile) -> EngineProfile:
    """`profile` slowed or sped up so that its simulated C is the C `measure_engine` measured on the real
    engine in the same sitting. The fitted step line alone serves 10-14 % more than the engine it was
    fitted to (1.06 against 0.96 req/s on the 11-30 host, 1.13 against 0.99 on the 12-01 one), and the
    burst runs it is validated against keep less local on a slower engine: benchmarks/README.md, "Simulator"."""
    if profile.measured_capacity_rps is None:
        return profile
    fitted = capacity_rps(profile, poisson(1.0, 1.0, 2000, burst_lengths(), 0))
    return profile.slowed(fitted / profile.measured_capacity_rps)


FLEETS = ("cpu-1", "gpu-1", "gpu-8", "gpu-64")
DEFAULT_FLEETS = ("cpu-1", "gpu-1", "gpu-8")  # gpu-64 on request (--fleets gpu-64): minutes per workload


def fleets(names: list[str] | None = None, cpu_profile: str = "cpu-smollm2", *, as_fitted: bool = False) -> list[Fleet]:
    """The fleets by name; `cpu-1` on `cpu_profile` at its measured C (`at_measured_capacity`; `as_fitted`:
    as its step line alone serves)."""
    out = []
    for name in names or DEFAULT_FLEETS:
        if name == "cpu-1":
            profile = EngineProfile.load(cpu_profile)
            profile = profile if as_fitted else at_measured_capacity(profile)
            knobs = load_settings().scheduler  # the embedded default's, as `make serve` and the burst run it
            out.append(Fleet(name, profile, 1, 1, (BURST_REMOTE,), knobs=knobs, context_length=2048))
            continue
        replicas, gateways = {"gpu-1": (1, 1), "gpu-8": (8, 2), "gpu-64": (64, 8)}[name]
        remotes = tuple(remote_from_presets("llama-3.1-8b-instruct"))
        out.append(Fleet(name, EngineProfile.load("gpu-h200-llama8b"), replicas, gateways, remotes))
    return out


@dataclass(frozen=True)
class Scenario:
    fleet: Fleet
    workload: Workload
    capacity_rps: float  # C of the whole fleet for this workload's sizes


WorkloadMaker = Callable[[float, Lengths, int, float], Workload]


REPLAY_MAX_S = 1800.0  # a slow fleet replays the trace's first half hour (at its pace), not all of it


def _replay(c: float, lengths: Lengths, seed: int, scale: float) -> Workload:
    rows = load_azure_csv(SYNTHETIC)
    speedup = 0.9 * c / (len(rows) / rows[-1][0])
    return replay("azure-replay", [r for r in rows if r[0] / speedup <= REPLAY_MAX_S], speedup=speedup)


WORKLOADS: dict[str, WorkloadMaker] = {
    "poisson-burst": lambda c, n, s, scale: poisson_burst(
        c, n, s, edge_s=150 * scale, ramp_s=20 * scale, peak_s=60 * scale
    ),
    "diurnal": lambda c, n, s, scale: diurnal(c, n, s, period_s=600 * scale),
    "mmpp": lambda c, n, s, scale: mmpp(c, n, s, duration_s=600 * scale, mean_off_s=60 * scale, mean_on_s=15 * scale),
    "heavy-tail": lambda c, n, s, scale: poisson(c, 0.9, 400 * scale, n, s, name="heavy-tail"),
    "azure-replay": _replay,
}


def scenario(fleet: Fleet, workload: str, seed: int = 7, max_requests: int = 30_000) -> Scenario:
    """`workload` for `fleet`, its rate scaled to the fleet's capacity; past `max_requests` its time
    is compressed (every phase, period and sojourn alike) to about that many requests."""
    cpu = fleet.name.startswith("cpu")
    lengths = burst_lengths() if cpu else GPU_LENGTHS
    if workload == "heavy-tail":
        lengths = CPU_HEAVY_LENGTHS if cpu else HEAVY_LENGTHS
    if workload == "azure-replay":
        rows = load_azure_csv(SYNTHETIC)
        lengths = Lengths("empirical", pairs=tuple((r[1], r[2]) for r in rows))
    sizes = poisson(1.0, 1.0, 5000, lengths, seed)  # a sample of sizes for the capacity loop
    c = capacity_rps(fleet.profile, sizes) * fleet.replicas
    maker = WORKLOADS[workload]
    w = maker(c, lengths, seed, 1.0)
    if len(w) > max_requests:  # shorter, same shape
        w = maker(c, lengths, seed, max_requests / len(w))
    return Scenario(fleet, w, c)
