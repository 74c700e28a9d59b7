"""Fair share: one key's backlog against another key's chat, first come first served vs the fair queue.

    python -m benchmarks.fair_share       # ~12 minutes on two cores; JSON under benchmarks/results/

Two starts of the orchestrator on Ray Serve (the local SmolLM2-135M on vLLM's CPU build, eager; one fake
remote provider on loopback with a realistic TTFT), the same in every way but the local engine's
`scheduling_policy`: `fcfs` (vLLM's default, the baseline) and `priority` (this gateway's default: tenants
queued fairly, local_models/fairness.py). Two keys: **batch** keeps `--batch-concurrency` streams open
(a closed loop, `--batch-tokens` each, its workers starting one by one over `--warm-s` so that their answers
end spread out, as a running job's do; sent with `x-data-class: batch`, so it waits for the local model
rather than spill), **chat** sends short requests at `--chat-rate` a second after `--warm-s` (Poisson,
seeded: the same arrivals in both runs). Two phases per start, `--seconds` each:

    local-only   both keys on [smollm2-135m]: chat's wait behind batch's backlog in the engine
    hybrid       both keys on [smollm2-135m, fair/llama-3.1-8b] with a `--slo-ms` SLO: who spills

(The SLO is 3 s by default: this CPU engine takes ~0.5 s a step with 32 sequences, so even the first
slot to free comes later than a GPU's would; what matters is the fair wait fitting it and the
first-come wait not.)

Reported per run, phase and key: TTFT p50/p95, share served locally, output tokens/s; and the ratios the
change is for, fair ÷ fcfs in one run: chat's TTFT p95 (local-only), chat's local share (hybrid), and what it
cost batch (its output tokens/s in local-only).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import random
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import aiohttp

from benchmarks.burst import body
from benchmarks.harness import StreamResult, free_port, percentile, run_meta, save, stamp, stream_chat
from orchestrator.accounting.keys import hash_key
from orchestrator.testing.provider import FakeProvider

REMOTE = "fair/llama-3.1-8b"
KEYS = {"batch": "sk-orch-bench-batch-" + "B" * 40, "chat": "sk-orch-bench-chat-" + "C" * 41}


def settings_for(args: argparse.Namespace, policy: str, fake: FakeProvider, port: int, data_dir: Path) -> Any:
    from orchestrator.settings import load_settings

    return load_settings(
        data_dir=str(data_dir),
        server={"port": port},
        local={"engine_args": {"enforce_eager": True, "scheduling_policy": policy}},
        embedding={"model": None},
        providers={
            "fair": {
                "base_url": fake.base_url + "/v1",
                "api_key_env": "FAIR_FAKE_KEY",
                "models": {"llama-3.1-8b": {"id": "llama-3.1-8b", "input_per_mtok": 0.18, "output_per_mtok": 0.18}},
            }
        },
        models={
            "local-only": ["smollm2-135m"],
            "hybrid": {"routes": ["smollm2-135m", REMOTE], "ttft_slo_ms": args.slo_ms},
        },
        keys={name: {"sha256": hash_key(key)} for name, key in KEYS.items()},
        cache={"enabled": False},
        resilience={"first_token_timeout_s": 120, "deadline_s": 240},
    )


def client(key: str, timeout_s: float, **headers: str) -> aiohttp.ClientSession:
    return aiohttp.ClientSession(
        connector=aiohttp.TCPConnector(limit=0, ttl_dns_cache=None),
        timeout=aiohttp.ClientTimeout(total=timeout_s),
        headers={"Authorization": f"Bearer {key}", **headers},
    )


async def phase(args: argparse.Namespace, url: str, model: str, chat_times: Sequence[float]) -> dict[str, Any]:
    """Batch's closed loop and chat's arrivals for `--seconds`; then what was sent is awaited."""
    batch: list[StreamResult] = []
    chat: list[StreamResult] = []
    start = time.perf_counter()
    end = start + args.seconds
    async with client(KEYS["batch"], 300, **{"x-data-class": args.batch_class}) as b, client(KEYS["chat"], 300) as c:

        async def worker(w: int) -> None:
            i = w
            await asyncio.sleep(w * args.warm_s / args.batch_concurrency)
            while time.perf_counter() < end:
                batch.append(await stream_chat(b, url, body(model, i, args.batch_tokens)))
                i += args.batch_concurrency

        async def chats() -> None:
            tasks = []
            for i, at in enumerate(chat_times):
                await asyncio.sleep(max(0.0, start + args.warm_s + at - time.perf_counter()))
                tasks.append(asyncio.create_task(stream_chat(c, url, body(model, 1000 + i, args.chat_tokens))))
            chat.extend(await asyncio.gather(*tasks))

        await asyncio.gather(chats(), *(worker(w) for w in range(args.batch_concurrency)))
    wall = time.perf_counter() - start
    return {"batch": summary(batch, wall), "chat": summary(chat, wall)}


def summary(results: Sequence[StreamResult], wall_s: float) -> dict[str, Any]:
    ok = [r for r in results if r.ok]
    ttfts = [r.ttft_s * 1000 for r in ok if r.ttft_s is not None]
    local = [r for r in ok if r.served_by.startswith("local/")]
    return {
        "requests": len(results),
        "failed": len(results) - len(ok),
        "errors": sorted({(r.error or "")[:120] for r in results if not r.ok}),
        "ttft_p50_ms": percentile(ttfts, 50) if ttfts else None,
        "ttft_p95_ms": percentile(ttfts, 95) if ttfts else None,
        "local_share": len(local) / len(ok) if ok else None,
        "local_output_tokens_per_s": sum(r.completion_tokens for r in local) / wall_s,
    }


def run_policy(args: argparse.Namespace, policy: str, fake: FakeProvider, chat_times: list[float]) -> dict[str, Any]:
    from orchestrator import runtime

    port = free_port()
    settings = settings_for(args, policy, fake, port, Path(args.data_dir).resolve())
    print(f"{policy}: starting the orchestrator on :{port} (Ray Serve + vLLM CPU, SmolLM2-135M) ...", flush=True)
    runtime.prepare_models(settings, progress=False)
    runtime.start(settings, timeout_s=900)
    url = f"http://127.0.0.1:{port}/v1/chat/completions"
    out: dict[str, Any] = {}
    try:
        for name in args.phases:
            out[name] = figures = asyncio.run(phase(args, url, name, chat_times))
            print(f"  {name}: {line(figures)}", flush=True)
            time.sleep(args.settle_s)  # the engine drains; its stats window forgets the phase
    finally:
        runtime.stop()
    return out


def line(figures: dict[str, Any]) -> str:
    parts = []
    for key, f in figures.items():
        p50, p95, share = f["ttft_p50_ms"], f["ttft_p95_ms"], f["local_share"]
        parts.append(
            f"{key}: {f['requests']} req ({f['failed']} failed), TTFT p50/p95 "
            f"{p50 or 0:.0f}/{p95 or 0:.0f} ms, local {100 * (share or 0):.0f} %, "
            f"{f['local_output_tokens_per_s']:.1f} local tok/s"
        )
    return "; ".join(parts)


def ratios(runs: dict[str, dict[str, Any]]) -> dict[str, float | None]:
    fcfs, fair = runs.get("fcfs", {}), runs.get("priority", {})

    def get(run: dict[str, Any], phase: str, key: str, figure: str) -> float | None:
        value = run.get(phase, {}).get(key, {}).get(figure)
        return float(value) if value is not None else None

    def ratio(a: float | None, b: float | None) -> float | None:
        return a / b if a is not None and b else None

    return {
        "chat_ttft_p95_local_only_fair_over_fcfs": ratio(
            get(fair, "local-only", "chat", "ttft_p95_ms"), get(fcfs, "local-only", "chat", "ttft_p95_ms")
        ),
        "chat_local_share_hybrid_fair": get(fair, "hybrid", "chat", "local_share"),
        "chat_local_share_hybrid_fcfs": get(fcfs, "hybrid", "chat", "local_share"),
        "batch_local_tokens_per_s_local_only_fair_over_fcfs": ratio(
            get(fair, "local-only", "batch", "local_output_tokens_per_s"),
            get(fcfs, "local-only", "batch", "local_output_tokens_per_s"),
        ),
    }


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--policies", nargs="+", default=["fcfs", "priority"], choices=["fcfs", "priority"])
    p.add_argument("--phases", nargs="+", default=["local-only", "hybrid"], choices=["local-only", "hybrid"])
    p.add_argument("--seconds", type=float, default=40.0, help="each phase's length")
    p.add_argument("--warm-s", type=float, default=15.0, help="batch alone (starting) before chat's first request")
    p.add_argument("--settle-s", type=float, default=5.0)
    p.add_argument("--batch-concurrency", type=int, default=48)
    p.add_argument("--batch-tokens", type=int, default=32)
    p.add_argument("--batch-class", default="batch", choices=["batch", "default"], help="batch's x-data-class")
    p.add_argument("--chat-rate", type=float, default=0.5, help="chat requests a second (Poisson)")
    p.add_argument("--chat-tokens", type=int, default=16)
    p.add_argument("--slo-ms", type=float, default=3000.0)
    p.add_argument("--remote-ttft-ms", type=float, default=300.0)
    p.add_argument("--remote-tokens-per-s", type=float, default=150.0)
    p.add_argument("--seed", type=int, default=7)
    p.add_argument("--data-dir", default=str(Path(__file__).resolve().parent.parent / ".data" / "bench"))
    args = p.parse_args()

    rng = random.Random(args.seed)
    chat_times, t = [], rng.expovariate(args.chat_rate)
    while t < args.seconds - args.warm_s:
        chat_times.append(t)
        t += rng.expovariate(args.chat_rate)
    meta = run_meta("benchmarks.fair_share")
    fake = FakeProvider(
        api_key="sk-fair-fake",
        reply=" ".join(["token"] * 200),
        ttft_ms=args.remote_ttft_ms,
        tokens_per_s=args.remote_tokens_per_s,
    )
    fake.start()
    os.environ["FAIR_FAKE_KEY"] = "sk-fair-fake"
    try:
        runs = {policy: run_policy(args, policy, fake, chat_times) for policy in args.policies}
    finally:
        fake.stop()
    report = {**meta, "args": vars(args), "chat_requests": len(chat_times), "runs": runs, "ratios": ratios(runs)}
    print(json.dumps(report["ratios"], indent=2))
    print("saved", save("fair_share", stamp(), report))


if __name__ == "__main__":
    main()
