"""Measure this machine's local engine and write its simulator profile.

    flock /tmp/cpu-heavy.lock .venv/bin/python -m benchmarks.simulate.measure_engine   # ~5 min on two cores

Starts the real engine in-process (`local_models.engine.VllmEngine`, SmolLM2-135M on vLLM's CPU
build, the default `local:` settings with `enforce_eager` as the burst benchmark runs it, and
per-token streaming so every step is seen) and fits the simulator's step model to what it does:

1. prefill: single requests with prompts of growing length and `max_tokens` 1; the engine's own
   TTFT against the prompt's tokens gives the per-token prefill cost (slope), and its intercept
   over a one-sequence step the fixed cost of a new request (`first_token_ms`);
2. decode: closed loops at 1, 2, 4, 8 and 16 concurrent streams of the burst benchmark's requests;
   the median gap between a stream's tokens is one step with that many sequences decoding, so a
   line through (streams, step) gives `step_base_ms` and `step_per_seq_ms`, and the spread of the
   gaps (robust sigma of their logs) gives `step_noise`;
3. the capacity C at 4 streams, as the burst benchmark measures it, for comparison with the
   simulated engine's.

Writes `benchmarks/simulate/profiles/<name>.json` (default `cpu-smollm2`) with the raw points.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import math
import statistics
import time
import uuid
from pathlib import Path
from typing import Any

from benchmarks.burst import PROMPTS
from benchmarks.harness import run_meta
from benchmarks.simulate.profiles import PROFILES, EngineProfile

# A long filler for prefill points (the prompts are the burst benchmark's).
FILLER = "The quick brown fox jumps over the lazy dog while the band plays on. "
HOP_MS = 30.0  # gateway <-> replica through Ray Serve: see the profile's `source`


def _request(text: str, max_tokens: int) -> dict[str, Any]:
    return {
        "request_id": uuid.uuid4().hex,
        "kind": "chat",
        "messages": [{"role": "user", "content": text}],
        "sampling": {"max_tokens": max_tokens, "temperature": 0.7},
        "stream": True,
    }


async def _one(engine: Any, text: str, max_tokens: int) -> dict[str, Any]:
    t0 = time.perf_counter()
    stamps: list[float] = []
    usage: dict[str, int] = {}
    async for batch in engine.generate(_request(text, max_tokens)):
        if any(d["text"] for d in batch["deltas"]):
            stamps.append(time.perf_counter())
        usage = dict(batch.get("usage") or usage)
    gaps = [b - a for a, b in zip(stamps, stamps[1:], strict=False)]
    return {
        "ttft_ms": (stamps[0] - t0) * 1000 if stamps else math.nan,
        "gaps_ms": [g * 1000 for g in gaps],
        "prompt_tokens": usage.get("prompt_tokens", 0),
        "completion_tokens": usage.get("completion_tokens", 0),
        "latency_s": time.perf_counter() - t0,
    }


async def prefill_points(engine: Any, repeats: int) -> list[tuple[int, float]]:
    points = []
    for k in (0, 2, 5, 10, 20, 40):
        for i in range(repeats):
            # A new first word each time: vLLM's prefix cache would otherwise skip the repeated prompt.
            text = f"{uuid.uuid4().hex[:8]} {k} {i}. " + PROMPTS[0] + " " + FILLER * k
            r = await _one(engine, text, 1)
            points.append((r["prompt_tokens"], r["ttft_ms"]))
    return points


async def closed_loop(engine: Any, streams: int, seconds: float, max_tokens: int) -> dict[str, Any]:
    gaps: list[float] = []
    done: list[dict[str, Any]] = []
    stop = time.perf_counter() + seconds
    start = time.perf_counter()

    async def worker(w: int) -> None:
        i = w
        while time.perf_counter() < stop:
            r = await _one(engine, f"{PROMPTS[i % len(PROMPTS)]} (#{i})", max_tokens)
            i += streams
            done.append(r)
            gaps.extend(r["gaps_ms"][2:])  # past the first steps, when the batch has settled

    await asyncio.gather(*(worker(w) for w in range(streams)))
    wall = time.perf_counter() - start
    logs = sorted(math.log(g) for g in gaps if g > 0)
    q1, q3 = logs[len(logs) // 4], logs[3 * len(logs) // 4]
    return {
        "streams": streams,
        "requests": len(done),
        "capacity_rps": len(done) / wall,
        "step_ms": statistics.median(gaps) if gaps else math.nan,
        "log_sigma": (q3 - q1) / 1.349,
        "ttft_p50_ms": statistics.median(r["ttft_ms"] for r in done),
        "prompt_tokens": statistics.mean(r["prompt_tokens"] for r in done),
        "completion_tokens": statistics.mean(r["completion_tokens"] for r in done),
    }


def fit_line(points: list[tuple[float, float]]) -> tuple[float, float]:
    """Least squares: (intercept, slope)."""
    n = len(points)
    mx = sum(p[0] for p in points) / n
    my = sum(p[1] for p in points) / n
    sxx = sum((p[0] - mx) ** 2 for p in points)
    slope = sum((p[0] - mx) * (p[1] - my) for p in points) / sxx if sxx else 0.0
    return my - slope * mx, slope


async def measure(args: argparse.Namespace) -> tuple[EngineProfile, dict[str, Any]]:
    from local_models import catalog
    from local_models.engine import VllmEngine
    from local_models.interface import EngineConfig
    from orchestrator.settings import load_settings

    s = load_settings()
    data_dir = Path(args.data_dir).resolve()
    prepared = catalog.prepare(args.model or s.local.model or "smollm2-135m", data_dir, progress=False)
    max_num_seqs = args.max_num_seqs or s.local.max_num_seqs
    config = EngineConfig(
        model_path=str(prepared.path),
        served_name=prepared.name,
        max_model_len=args.max_model_len or s.local.max_model_len,
        kv_cache_bytes=int((args.kv_cache_gib or s.local.kv_cache_gib) * (1 << 30)),
        max_num_seqs=max_num_seqs,
        dtype=args.dtype or s.local.dtype,
        cache_dir=str(data_dir / "vllm-cache"),
        stream_interval_s=0.0,
        extra_engine_args=json.loads(args.engine_args),
    )
    print(f"starting {prepared.name} on vLLM ...", flush=True)
    engine = await VllmEngine.start(config)
    try:
        vc = engine._llm.vllm_config  # what vLLM chose: batch token budget, KV blocks
        max_batched = int(vc.scheduler_config.max_num_batched_tokens)
        kv_tokens = int((vc.cache_config.num_gpu_blocks or 0) * vc.cache_config.block_size)
        await closed_loop(engine, 2, 5, args.max_tokens)  # warm-up
        pre = await prefill_points(engine, args.repeats)
        base, per_token = fit_line([(float(p), t) for p, t in pre])
        print(f"prefill: {per_token:.3f} ms/token, intercept {base:.1f} ms ({len(pre)} points)", flush=True)
        loops = []
        for streams in args.streams:
            r = await closed_loop(engine, streams, args.seconds, args.max_tokens)
            loops.append(r)
            print(
                f"{streams:>3} streams: step {r['step_ms']:.1f} ms, {r['capacity_rps']:.2f} req/s, "
                f"TTFT p50 {r['ttft_p50_ms']:.0f} ms, sigma {r['log_sigma']:.2f}",
                flush=True,
            )
    finally:
        engine.shutdown()
    step_base, per_seq = fit_line([(float(r["streams"]), r["step_ms"]) for r in loops])
    # A lone request's first token costs more than its step (prefill included): the rest is per request.
    first_token = max(0.0, base - (step_base + per_seq))
    noise = statistics.median(r["log_sigma"] for r in loops)
    cap = next((r for r in loops if r["streams"] == args.capacity_concurrency), loops[-1])
    profile = EngineProfile(
        name=args.name,
        max_num_seqs=max_num_seqs,
        max_batched_tokens=max_batched,
        kv_capacity_tokens=kv_tokens or 10**6,
        step_base_ms=round(max(1.0, step_base), 2),
        step_per_seq_ms=round(max(0.0, per_seq), 3),
        prefill_ms_per_token=round(max(0.0, per_token), 4),
        step_noise=round(noise, 3),
        hop_ms=args.hop_ms,
        first_token_ms=round(first_token, 1),
        capacity_concurrency=args.capacity_concurrency,
        source=(
            "measured on this machine by `python -m benchmarks.simulate.measure_engine` (the real engine: "
            f"{prepared.name}, vLLM, engine args {args.engine_args}, per-token streaming); "
            "step line fitted through the closed "
            "loops' median token gaps, prefill slope through single requests' engine TTFT, whose intercept "
            "over a one-sequence step is first_token_ms; hop_ms is the Ray Serve path's cost over the "
            "engine's own TTFT in shared/DESIGN.md (minimal deployment 41-48 ms vs vLLM's api_server "
            "19-23 ms, ~25 ms) plus the gateway, rounded to 30 ms"
        ),
    )
    raw = {"prefill_points": pre, "closed_loops": loops, "capacity_rps": cap["capacity_rps"]}
    raw["args"] = vars(args)
    return profile, raw


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--name", default="cpu-smollm2")
    p.add_argument("--streams", type=int, nargs="+", default=[1, 2, 4, 8, 16])
    p.add_argument("--seconds", type=float, default=25.0, help="per closed loop")
    p.add_argument("--repeats", type=int, default=3, help="per prefill point")
    p.add_argument("--max-tokens", type=int, default=48)
    p.add_argument("--data-dir", default=str(Path(__file__).resolve().parents[2] / ".data" / "bench"))
    p.add_argument("--model", default=None, help="a catalog name or a model directory (default: local.model)")
    p.add_argument("--engine-args", default='{"enforce_eager": true}', help="JSON, passed to vLLM as is")
    p.add_argument("--max-num-seqs", type=int, default=None)
    p.add_argument("--max-model-len", type=int, default=None)
    p.add_argument("--kv-cache-gib", type=float, default=None)
    p.add_argument("--dtype", default=None)
    p.add_argument("--capacity-concurrency", type=int, default=4, help="the closed loop that defines C")
    p.add_argument("--hop-ms", type=float, default=HOP_MS, help="gateway <-> replica, added to local TTFT")
    args = p.parse_args()
    profile, raw = asyncio.run(measure(args))
    path = PROFILES / f"{args.name}.json"
    path.write_text(profile.to_json({"measured": {**run_meta("benchmarks.simulate.measure_engine"), **raw}}))
    print(f"wrote {path}")


if __name__ == "__main__":
    main()
