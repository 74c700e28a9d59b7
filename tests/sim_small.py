"""A small, fast simulated fleet for the simulator's unit tests: one engine of 8 slots, one remote route."""

from __future__ import annotations

from benchmarks.simulate.fleet import Fleet
from benchmarks.simulate.profiles import EngineProfile, RemoteProfile

PROFILE = EngineProfile(
    name="test",
    max_num_seqs=8,
    max_batched_tokens=512,
    kv_capacity_tokens=100_000,
    step_base_ms=20.0,
    step_per_seq_ms=2.0,
    prefill_ms_per_token=0.5,
    hop_ms=10.0,
)
REMOTE = RemoteProfile("cloud", "m", ttft_median_ms=300.0, ttft_sigma=0.0, input_per_mtok=1.0, output_per_mtok=2.0)
FLEET = Fleet("test", PROFILE, remotes=(REMOTE,), slo_ms=1000.0)
