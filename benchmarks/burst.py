"""The burst benchmark: local-only, remote-only and hybrid under the same Poisson burst.

    python -m benchmarks.burst            # ~25 minutes on two cores; JSON and PNGs under benchmarks/results/

One run, one Ray Serve deployment of the orchestrator (the local SmolLM2-135M
on vLLM's CPU build, the default engine settings but eager) and one fake
remote provider on loopback with a realistic time to first token and token
rate. Three aliases of the same deployment are the three modes:

    local-only   [smollm2-135m]                   never spills
    remote-only  [burst/llama-3.1-8b]             always pays
    hybrid       [smollm2-135m, burst/llama-3.1-8b] the scheduler decides

First the local model's capacity C is measured (closed loop at
`--calib-concurrency`, requests/s; `--capacity C` scales the arrivals to a
given C instead, so that runs comparing settings face the same arrivals on an
engine whose measured C moves between runs). Then each mode gets the same seeded
Poisson arrivals: `--base` x C for `--edge-s`, a linear ramp to 4 x C over
`--ramp-s`, 4 x C for `--peak-s`, the ramp back, and `--base` x C again.
By default a baseline of 0.8 x C (a local GPU sized for its baseline) for
150 s on each side of a one-minute burst: the share served locally is bound
by how much of the traffic arrives above what the local model can take in
time, so it depends on that ratio as much as on the scheduler (benchmarks/README.md).
Every request is a streamed chat completion; the client records its TTFT,
who served it (`x-served-by`) and its usage; the remote cost is its tokens
at the configured prices. Reported per mode: TTFT p50/p95/p99 overall and
per 10 s window, the share served locally, failures, and the remote cost;
three PNGs (TTFT over time, local share over time, cumulative cost).
Targets (issue 4): hybrid p95 TTFT within the SLO with >= 70 % served
locally; local-only misses the SLO; remote-only costs the most.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import math
import os
import random
import time
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import aiohttp

from benchmarks.harness import RESULTS, free_port, percentile, run_meta, save, stamp, stream_chat
from benchmarks.harness.progress import bar, timed
from orchestrator.testing.provider import FakeProvider

REMOTE = "burst/llama-3.1-8b"
PRICE_IN, PRICE_OUT = 0.18, 0.18  # $/Mtok, like a hosted 8B model
MODES = {"local-only": "local-only", "remote-only": "remote-only", "hybrid": "hybrid"}
PROMPTS = [
    "Give me three tips for staying focused while studying.",
    "What is the capital of France, and why is it famous?",
    "Explain in two sentences what a hash table is.",
    "Write a haiku about autumn leaves.",
    "Why is the sky blue? Answer briefly.",
    "Name three uses of the Python programming language.",
]


@dataclass
class Outcome:
    mode: str
    sent_at: float  # seconds since the mode's start
    ok: bool
    ttft_s: float | None
    latency_s: float
    served_by: str
    reason: str
    prompt_tokens: int = 0
    completion_tokens: int = 0
    error: str | None = None

    @property
    def local(self) -> bool:
        return self.served_by.startswith("local/")

    @property
    def cost_usd(self) -> float:
        if not self.ok or self.local or not self.served_by:
            return 0.0
        return (self.prompt_tokens * PRICE_IN + self.completion_tokens * PRICE_OUT) / 1e6


# ----------------------------------------------------------------------------- load profile


def rate_at(t: float, c: float, base: float, edge_s: float, ramp_s: float, peak_s: float) -> float:
    """Arrivals per second at `t`: base x C, ramp to 4 x C, hold, ramp back, base x C."""
    lo, hi = base * c, 4 * c
    marks = [edge_s, edge_s + ramp_s, edge_s + ramp_s + peak_s, edge_s + 2 * ramp_s + peak_s]
    if t < marks[0]:
        return lo
    if t < marks[1]:
        return lo + (hi - lo) * (t - marks[0]) / ramp_s
    if t < marks[2]:
        return hi
    if t < marks[3]:
        return hi - (hi - lo) * (t - marks[2]) / ramp_s
    return lo


def arrivals(seed: int, c: float, base: float, edge_s: float, ramp_s: float, peak_s: float) -> list[float]:
    """Send times of a non-homogeneous Poisson process (thinning), seeded: the same for every mode."""
    rng = random.Random(seed)
    total = 2 * edge_s + 2 * ramp_s + peak_s
    top = 4 * c
    t, times = 0.0, []
    while True:
        t += rng.expovariate(top)
        if t >= total:
            return times
        if rng.random() < rate_at(t, c, base, edge_s, ramp_s, peak_s) / top:
            times.append(t)


# ---------------------------------------------------------------------------------- client


def body(model: str, i: int, max_tokens: int) -> bytes:
    return json.dumps(
        {
            "model": model,
            "messages": [{"role": "user", "content": f"{PROMPTS[i % len(PROMPTS)]} (#{i})"}],
            "max_tokens": max_tokens,
            "temperature": 0.7,  # not cacheable: every request reaches a model
            "stream": True,
            "stream_options": {"include_usage": True},
        }
    ).encode()


async def one(http: aiohttp.ClientSession, url: str, mode: str, payload: bytes, sent_at: float) -> Outcome:
    r = await stream_chat(http, url, payload)
    return Outcome(
        mode,
        sent_at,
        r.ok,
        r.ttft_s,
        r.latency_s,
        r.served_by,
        r.route_reason,
        r.prompt_tokens,
        r.completion_tokens,
        r.error,
    )


async def open_loop(
    url: str, mode: str, model: str, times: Sequence[float], max_tokens: int, timeout_s: float
) -> list[Outcome]:
    connector = aiohttp.TCPConnector(limit=0, ttl_dns_cache=None)
    async with aiohttp.ClientSession(connector=connector, timeout=aiohttp.ClientTimeout(total=timeout_s)) as s:
        start = time.perf_counter()
        tasks = []
        with bar(len(times), mode) as done:
            for i, at in enumerate(times):
                delay = start + at - time.perf_counter()
                if delay > 0:
                    await asyncio.sleep(delay)
                task = asyncio.create_task(one(s, url, mode, body(model, i, max_tokens), at))
                task.add_done_callback(lambda _: done.update(1))
                tasks.append(task)
            return list(await asyncio.gather(*tasks))


async def calibrate(url: str, model: str, concurrency: int, seconds: float, max_tokens: int) -> dict[str, float]:
    """Closed loop on the local model: its capacity C in requests/s, and its TTFT there."""
    ttfts: list[float] = []
    done = 0
    async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=120)) as s:
        stop = time.perf_counter() + seconds
        start = time.perf_counter()

        async def worker(w: int) -> None:
            nonlocal done
            i = w
            while time.perf_counter() < stop:
                o = await one(s, url, "calibrate", body(model, i, max_tokens), 0.0)
                i += concurrency
                if o.ok:
                    done += 1
                    if o.ttft_s is not None:
                        ttfts.append(o.ttft_s)

        async with timed(seconds, "calibrating"):
            await asyncio.gather(*(worker(w) for w in range(concurrency)))
        wall = time.perf_counter() - start
    return {
        "capacity_rps": done / wall,
        "ttft_p50_ms": percentile(ttfts, 50) * 1000,
        "ttft_p95_ms": percentile(ttfts, 95) * 1000,
        "requests": done,
    }


# ------------------------------------------------------------------------------- summaries


def summarize(outcomes: Sequence[Outcome], slo_ms: float, window_s: float) -> dict[str, Any]:
    ok = [o for o in outcomes if o.ok]
    # A failed request missed its SLO: it counts as an infinite TTFT in the percentiles.
    ttfts = [(o.ttft_s * 1000 if o.ok and o.ttft_s is not None else math.inf) for o in outcomes]
    windows = []
    end = max((o.sent_at for o in outcomes), default=0.0)
    for k in range(int(end // window_s) + 1):
        group = [o for o in outcomes if k * window_s <= o.sent_at < (k + 1) * window_s]
        if not group:
            continue
        g_ttfts = [(o.ttft_s * 1000 if o.ok and o.ttft_s is not None else math.inf) for o in group]
        windows.append(
            {
                "t_s": k * window_s,
                "requests": len(group),
                "ttft_p50_ms": percentile(g_ttfts, 50),
                "ttft_p95_ms": percentile(g_ttfts, 95),
                "local_share": sum(o.local for o in group if o.ok) / len(group),
                "cost_usd": sum(o.cost_usd for o in group),
            }
        )
    reasons: dict[str, int] = {}
    for o in outcomes:
        code = o.reason.split(":", 1)[0].split(";", 1)[0].split(" ", 1)[0] if o.reason else "none"
        reasons[code] = reasons.get(code, 0) + 1
    return {
        "requests": len(outcomes),
        "ok": len(ok),
        "failed": len(outcomes) - len(ok),
        "errors": sorted({o.error or "" for o in outcomes if not o.ok})[:5],
        "ttft_p50_ms": percentile(ttfts, 50),
        "ttft_p95_ms": percentile(ttfts, 95),
        "ttft_p99_ms": percentile(ttfts, 99),
        "within_slo": sum(t <= slo_ms for t in ttfts) / max(1, len(ttfts)),
        "local_share": sum(o.local for o in ok) / max(1, len(outcomes)),
        "remote_cost_usd": sum(o.cost_usd for o in outcomes),
        "reasons": reasons,
        "windows": windows,
    }


def plot(
    results: dict[str, dict[str, Any]], slo_ms: float, stamp: str, profile: list[tuple[float, float]]
) -> list[str]:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    paths = []
    fig, ax = plt.subplots(figsize=(9, 4.5))
    for mode, r in results.items():
        w = r["windows"]
        ax.plot([x["t_s"] for x in w], [min(x["ttft_p95_ms"], 1e5) for x in w], marker="o", label=f"{mode} p95")
    ax.axhline(slo_ms, color="red", linestyle="--", label=f"SLO {slo_ms:.0f} ms")
    ax.set_yscale("log")
    ax.set_xlabel("time since start of the burst profile (s)")
    ax.set_ylabel("TTFT p95 per window (ms, log)")
    ax2 = ax.twinx()
    ax2.plot([p[0] for p in profile], [p[1] for p in profile], color="gray", alpha=0.4, label="offered load")
    ax2.set_ylabel("offered load (req/s)")
    ax.legend(loc="upper left", fontsize=8)
    ax.set_title("Time to first token under a 4x burst")
    paths.append(_save(fig, f"burst-ttft-{stamp}.png"))

    fig, ax = plt.subplots(figsize=(9, 4.5))
    for mode, r in results.items():
        w = r["windows"]
        ax.plot([x["t_s"] for x in w], [100 * x["local_share"] for x in w], marker="o", label=mode)
    ax.set_ylim(-5, 105)
    ax.set_xlabel("time (s)")
    ax.set_ylabel("served locally (%)")
    ax.legend(fontsize=8)
    ax.set_title("Share of requests served by the local model")
    paths.append(_save(fig, f"burst-share-{stamp}.png"))

    fig, ax = plt.subplots(figsize=(9, 4.5))
    for mode, r in results.items():
        w = r["windows"]
        total, xs, ys = 0.0, [], []
        for x in w:
            total += x["cost_usd"]
            xs.append(x["t_s"])
            ys.append(total * 1000)
        ax.plot(xs, ys, marker="o", label=f"{mode} (${r['remote_cost_usd'] * 1000:.3f} per 1000 runs)")
    ax.set_xlabel("time (s)")
    ax.set_ylabel("cumulative remote cost (milli-dollars)")
    ax.legend(fontsize=8)
    ax.set_title("Remote spend")
    paths.append(_save(fig, f"burst-cost-{stamp}.png"))
    plt.close("all")
    return paths


def _save(fig: Any, name: str) -> str:
    RESULTS.mkdir(parents=True, exist_ok=True)
    path = RESULTS / name
    fig.tight_layout()
    fig.savefig(path, dpi=90)
    return str(path)


# ------------------------------------------------------------------------------------- main


def settings_for(args: argparse.Namespace, fake: FakeProvider, port: int, data_dir: Path) -> Any:
    from orchestrator.settings import load_settings

    slots = {"max_num_seqs": args.max_num_seqs} if args.max_num_seqs else {}
    return load_settings(
        data_dir=str(data_dir),
        server={"port": port},
        local={"engine_args": {"enforce_eager": True}} | slots,
        embedding={"model": None},
        providers={
            "burst": {
                "base_url": fake.base_url + "/v1",
                "api_key_env": "BURST_FAKE_KEY",
                "models": {
                    "llama-3.1-8b": {
                        "id": "llama-3.1-8b",
                        "input_per_mtok": PRICE_IN,
                        "output_per_mtok": PRICE_OUT,
                        "context_length": 131072,
                    }
                },
            }
        },
        models={
            "local-only": ["smollm2-135m"],
            "remote-only": [REMOTE],
            "hybrid": {"routes": ["smollm2-135m", REMOTE], "ttft_slo_ms": args.slo_ms},
        },
        cache={"enabled": False},
        resilience={"first_token_timeout_s": args.timeout_s, "deadline_s": args.timeout_s * 2},
        scheduler=dict(_setting(kv) for kv in args.scheduler),
    )


def _setting(text: str) -> tuple[str, float | None]:
    """`--scheduler headroom=0.6`: one of the scheduler's settings, for a run that tries another value
    (`hedge_at=none`: off)."""
    name, _, value = text.partition("=")
    return name, None if value.strip().lower() == "none" else float(value)


def start(args: argparse.Namespace) -> tuple[FakeProvider, str, Any]:
    """The fake provider, then the orchestrator on Ray Serve (minutes: vLLM starts); the chat URL and the
    settings it runs with."""
    from orchestrator import runtime

    fake = FakeProvider(
        api_key="sk-burst-fake",
        reply=" ".join(["token"] * 200),
        ttft_ms=args.remote_ttft_ms,
        tokens_per_s=args.remote_tokens_per_s,
    )
    fake.start()
    os.environ["BURST_FAKE_KEY"] = "sk-burst-fake"
    port = free_port()
    settings = settings_for(args, fake, port, Path(args.data_dir).resolve())
    print(f"starting the orchestrator on :{port} (Ray Serve + vLLM CPU, SmolLM2-135M) ...", flush=True)
    runtime.prepare_models(settings, progress=False)
    runtime.start(settings, timeout_s=900)
    return fake, f"http://127.0.0.1:{port}/v1/chat/completions", settings


async def measure(args: argparse.Namespace, url: str) -> dict[str, Any]:
    """C, then every mode through the same arrivals: summaries, and every request's outcome."""
    await calibrate(url, "local-only", 2, 5, args.max_tokens)  # warm-up
    cal = await calibrate(url, "local-only", args.calib_concurrency, args.calib_s, args.max_tokens)
    c = args.capacity or cal["capacity_rps"]
    print(
        f"local capacity C = {cal['capacity_rps']:.2f} req/s at concurrency {args.calib_concurrency} "
        f"(TTFT p50 {cal['ttft_p50_ms']:.0f} ms, p95 {cal['ttft_p95_ms']:.0f} ms)"
        + (f"; arrivals at the given C = {c:.2f} req/s" if args.capacity else ""),
        flush=True,
    )
    shape = (args.base, args.edge_s, args.ramp_s, args.peak_s)
    times = arrivals(args.seed, c, *shape)
    total_s = 2 * args.edge_s + 2 * args.ramp_s + args.peak_s
    out: dict[str, Any] = {"calibration": cal, "c": c, "requests": len(times), "results": {}, "outcomes": {}}
    out["offered"] = [(t, rate_at(t, c, *shape)) for t in [x * 2.0 for x in range(int(total_s / 2) + 1)]]
    for mode in args.modes:
        print(f"{mode}: {len(times)} requests over {total_s:.0f} s ...", flush=True)
        outcomes = await open_loop(url, mode, MODES[mode], times, args.max_tokens, args.timeout_s)
        r = out["results"][mode] = summarize(outcomes, args.slo_ms, args.window_s)
        out["outcomes"][mode] = [asdict(o) for o in outcomes]
        print(
            f"  TTFT p50/p95/p99 {r['ttft_p50_ms']:.0f}/{r['ttft_p95_ms']:.0f}/{r['ttft_p99_ms']:.0f} ms, "
            f"local {100 * r['local_share']:.0f} %, failed {r['failed']}, "
            f"remote cost ${r['remote_cost_usd']:.6f}, reasons {r['reasons']}",
            flush=True,
        )
        await asyncio.sleep(args.settle_s)  # the engine drains and its stats window forgets the burst
    return out


def run(args: argparse.Namespace) -> dict[str, Any]:
    """Start, measure, stop; save `benchmarks/results/burst-<stamp>.json` (every request in it) and three PNGs."""
    from orchestrator import runtime

    meta = run_meta("benchmarks.burst")
    fake, url, settings = start(args)
    try:
        figures = asyncio.run(measure(args, url))
    finally:
        runtime.stop()
        fake.stop()
    run_stamp = stamp()
    report: dict[str, Any] = {
        **meta,
        "slo_ms": args.slo_ms,
        "calibration": figures["calibration"],
        "capacity_rps": figures["c"],  # what the arrivals were scaled to: measured, or `--capacity`
        "scheduler": dict(_setting(kv) for kv in args.scheduler),
        # Every scheduler setting the run had (the embedded default's at its commit, and the overrides above):
        # what `benchmarks.simulate.validate` replays it with.
        "scheduler_settings": settings.scheduler.model_dump(),
        "local_settings": settings.local.model_dump(include={"model", "max_num_seqs", "max_model_len", "kv_cache_gib"}),
        "profile": {"base": args.base, "peak": 4, "edge_s": args.edge_s, "ramp_s": args.ramp_s}
        | {"peak_s": args.peak_s, "seed": args.seed, "requests": figures["requests"]},
        "remote": {"ttft_ms": args.remote_ttft_ms, "tokens_per_s": args.remote_tokens_per_s}
        | {"price_per_mtok": [PRICE_IN, PRICE_OUT]},
        "max_tokens": args.max_tokens,
        "results": figures["results"],
    }
    report["plots"] = plot(figures["results"], args.slo_ms, run_stamp, figures["offered"])
    report["targets"] = targets(figures["results"], args.slo_ms)
    report["saved"] = str(save("burst", run_stamp, {**report, "outcomes": figures["outcomes"]}))
    return report


def targets(results: dict[str, dict[str, Any]], slo_ms: float) -> dict[str, Any]:
    h, lo, re_ = results.get("hybrid"), results.get("local-only"), results.get("remote-only")
    out: dict[str, Any] = {}
    if h:
        out["hybrid_p95_within_slo"] = h["ttft_p95_ms"] <= slo_ms
        out["hybrid_local_share_at_least_70pct"] = h["local_share"] >= 0.70
    if lo:
        out["local_only_misses_slo"] = lo["ttft_p95_ms"] > slo_ms
    if h and lo and re_:
        out["remote_only_costs_most"] = re_["remote_cost_usd"] > max(h["remote_cost_usd"], lo["remote_cost_usd"])
    return out


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--slo-ms", type=float, default=1000.0, help="the hybrid alias's TTFT target")
    p.add_argument("--base", type=float, default=0.8, help="load outside the burst, as a fraction of C")
    p.add_argument("--edge-s", type=float, default=150.0, help="seconds at base load before and after")
    p.add_argument("--ramp-s", type=float, default=20.0)
    p.add_argument("--peak-s", type=float, default=60.0, help="seconds at 4 x C")
    p.add_argument("--window-s", type=float, default=10.0)
    p.add_argument("--max-tokens", type=int, default=48)
    p.add_argument("--calib-concurrency", type=int, default=4)
    p.add_argument("--calib-s", type=float, default=20.0)
    p.add_argument(
        "--capacity",
        type=float,
        default=None,
        metavar="C",
        help="scale the arrivals to this C (req/s) instead of the one measured, which is still measured and "
        "saved: runs that compare settings then face the same arrivals",
    )
    p.add_argument("--remote-ttft-ms", type=float, default=350.0)
    p.add_argument("--remote-tokens-per-s", type=float, default=80.0)
    p.add_argument("--timeout-s", type=float, default=60.0, help="per request; a local queue past it fails")
    p.add_argument("--settle-s", type=float, default=15.0)
    p.add_argument("--seed", type=int, default=7)
    p.add_argument("--modes", nargs="+", default=list(MODES), choices=list(MODES))
    p.add_argument(
        "--scheduler", nargs="*", default=[], metavar="NAME=VALUE", help="scheduler settings, e.g. hysteresis=0"
    )
    p.add_argument(
        "--max-num-seqs", type=int, default=None, metavar="N", help="the local engine's slots (default: the file's)"
    )
    p.add_argument("--data-dir", default=str(Path(__file__).resolve().parent.parent / ".data" / "bench"))
    args = p.parse_args()
    report = run(args)
    print(json.dumps({"targets": report["targets"], "saved": report["saved"], "plots": report["plots"]}, indent=1))


if __name__ == "__main__":
    main()
