"""Autoscaling the scheduler rides: Serve adds a local replica in a burst, the scheduler spills while it starts.

    python -m benchmarks.autoscale                   # ~10 minutes on two cores; JSON and a PNG in benchmarks/results/
    python -m benchmarks.autoscale --min-replicas 0  # from zero: the first requests' demand wakes the model

One Ray Serve deployment of the orchestrator whose LocalModel (`tiny-random` on vLLM's CPU build) has a Serve
`autoscaling_config` (`local.autoscaling`: `--min-replicas` to 2 replicas on `target_ongoing_requests`, with the
orchestrator's policy, which counts the requests spilled for load as demand, or `--serve-policy`, Serve's own), and
one fake remote provider on loopback. Every request goes to the alias `auto` = [the local model, the remote] with a
TTFT SLO.

First the local model's capacity C on one replica is measured (closed loop, requests/s), and Serve is left to
scale back to the minimum. Then seeded Poisson arrivals: `--base` x C for `--before-s`, `--peak` x C for
`--burst-s`, `--base` x C for `--after-s`. Sampled every second: Serve's LocalModel replicas by state (RUNNING,
STARTING, STOPPING) and the replicas the load board counts (those reporting: what the scheduler plans with).
Every request: its time to first token, who served it (`x-served-by`), why (`x-route-reason`), and whether it
came back answered or failed explicitly.

Reported: each scale event (when Serve started a replica and when the board first counted it: its cold start;
when it scaled down); the requests by stage (before, burst, after) and by how many replicas the board counted
when they were sent: local share, TTFT p50/p95 and SLO attainment, why the others spilled; every request sent
against every answer or explicit error (none lost), around the scale-downs too. One PNG: replicas, local share
and TTFT p50/p95 (against the SLO) per window over time.
"""

from __future__ import annotations

import argparse
import asyncio
import bisect
import os
import random
import time
from collections import Counter
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import aiohttp

from benchmarks.burst import Outcome, calibrate, open_loop
from benchmarks.harness import RESULTS, ROOT, free_port, percentile, run_meta, save, stamp
from orchestrator.testing.provider import FakeProvider

MODEL = "tiny-random"
SERVE_POLICY = "ray.serve.autoscaling_policy:replica_queue_length_autoscaling_policy"
REMOTE = "cloud/llama-3.1-8b"
PRICE = 0.18  # $/Mtok in and out, like a hosted 8B model


@dataclass
class Sample:
    t: float  # seconds since the arrivals started
    running: int  # Serve's LocalModel replicas by state
    starting: int
    stopping: int
    reporting: int | None  # replicas the load board counts (None: no fresh report at all)
    waiting: int | None


def rate_at(t: float, c: float, args: argparse.Namespace) -> float:
    burst = args.before_s <= t < args.before_s + args.burst_s
    return (args.peak if burst else args.base) * c


def arrivals(c: float, args: argparse.Namespace) -> list[float]:
    """Seeded non-homogeneous Poisson send times (thinning)."""
    rng = random.Random(args.seed)
    total, top = args.before_s + args.burst_s + args.after_s, max(args.peak, args.base) * c
    t, times = 0.0, []
    while True:
        t += rng.expovariate(top)
        if t >= total:
            return times
        if rng.random() < rate_at(t, c, args) / top:
            times.append(t)


# ------------------------------------------------------------------------------------ sampling


def serve_replicas() -> tuple[int, int, int]:
    """LocalModel's replicas by state, as Serve's controller says."""
    from ray import serve

    app = serve.status().applications.get("orchestrator")
    deployment = app.deployments.get("LocalModel") if app else None
    states = {str(getattr(k, "value", k)): v for k, v in (deployment.replica_states if deployment else {}).items()}
    return states.get("RUNNING", 0), states.get("STARTING", 0), states.get("STOPPING", 0)


async def sample(base: str, start: float, stop: asyncio.Event, out: list[Sample]) -> None:
    async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=5)) as http:
        while not stop.is_set():
            running, starting, stopping = await asyncio.to_thread(serve_replicas)
            reporting = waiting = None
            try:
                async with http.get(f"{base}/dashboard/data?minutes=1") as r:
                    load = (await r.json())["local"][0]["load"]
                if load is not None:
                    reporting, waiting = int(load["replicas"]), int(load["waiting"])
                else:
                    reporting = 0
            except (aiohttp.ClientError, TimeoutError, KeyError, IndexError, ValueError):
                pass
            out.append(Sample(time.perf_counter() - start, running, starting, stopping, reporting, waiting))
            try:
                await asyncio.wait_for(stop.wait(), 1.0)
            except TimeoutError:
                pass


# ------------------------------------------------------------------------------------ figures


def scale_events(samples: Sequence[Sample]) -> list[dict[str, Any]]:
    """Each change of Serve's LocalModel replica count (running + starting): when, to how many, and for a
    scale-up when the load board first counted that many (the new replica reporting: the scheduler sees it)."""
    events: list[dict[str, Any]] = []
    for before, s in zip(samples, samples[1:], strict=False):
        was, now = before.running + before.starting, s.running + s.starting
        if now == was:
            continue
        event: dict[str, Any] = {"t_s": round(s.t, 1), "replicas": now, "direction": "up" if now > was else "down"}
        if now > was:
            reporting = next((x.t for x in samples if x.t >= s.t and (x.reporting or 0) >= now), None)
            event["reporting_s"] = None if reporting is None else round(reporting, 1)
            event["cold_start_s"] = None if reporting is None else round(reporting - s.t, 1)
        events.append(event)
    return events


def stage(t: float, args: argparse.Namespace) -> str:
    return "before" if t < args.before_s else "burst" if t < args.before_s + args.burst_s else "after"


def phase(outcomes: Sequence[Outcome], slo_ms: float) -> dict[str, Any]:
    """Requests: count, local share, TTFT p50/p95 (ms), SLO attainment, why the others spilled."""
    ok = [o for o in outcomes if o.ok]
    ttfts = [1000 * o.ttft_s for o in ok if o.ttft_s is not None]
    return {
        "requests": len(outcomes),
        "failed": len(outcomes) - len(ok),
        "local_share": (sum(o.local for o in ok) / len(ok)) if ok else None,
        "ttft_p50_ms": percentile(ttfts, 50) if ttfts else None,
        "ttft_p95_ms": percentile(ttfts, 95) if ttfts else None,
        "within_slo": (sum(t <= slo_ms for t in ttfts) / len(ttfts)) if ttfts else None,
        "reasons": dict(Counter(o.reason.split(":")[0] for o in ok if not o.local).most_common()),
    }


def summarize(outcomes: Sequence[Outcome], samples: Sequence[Sample], args: argparse.Namespace) -> dict[str, Any]:
    """Scale events, and the requests by stage of the load (before, burst, after) and by how many replicas the
    load board counted when each was sent: what the scheduler planned with."""
    times = [s.t for s in samples]
    groups: dict[str, list[Outcome]] = {}
    for o in outcomes:
        i = bisect.bisect_right(times, o.sent_at) - 1
        reporting = (samples[i].reporting or 0) if i >= 0 else 0
        groups.setdefault(f"{stage(o.sent_at, args)}, {reporting} reporting", []).append(o)
    total = args.before_s + args.burst_s + args.after_s
    windows = []
    for lo in range(0, int(total), args.window_s):
        hi = lo + args.window_s
        w = {"from_s": lo, "to_s": hi} | phase([o for o in outcomes if lo <= o.sent_at < hi], args.slo_ms)
        in_window = [s for s in samples if lo <= s.t < hi]
        w["serve_replicas"] = max((s.running + s.starting for s in in_window), default=None)
        w["board_reporting"] = max((s.reporting or 0 for s in in_window), default=None)
        windows.append(w)
    down = [e["t_s"] for e in scale_events(samples) if e["direction"] == "down"]
    near_down = [o for o in outcomes if any(t - 30 <= o.sent_at <= t + 10 for t in down)]
    return {
        "burst_s": [args.before_s, args.before_s + args.burst_s],
        "events": scale_events(samples),
        "phases": {name: phase(group, args.slo_ms) for name, group in groups.items()},
        "sent": len(outcomes),
        "answered": sum(o.ok for o in outcomes),
        "failed_explicitly": sum(not o.ok for o in outcomes),
        "errors": dict(Counter((o.error or "")[:80] for o in outcomes if not o.ok)),
        "around_scale_down": {"requests": len(near_down), "failed": sum(not o.ok for o in near_down)},
        "windows": windows,
    }


def plot(samples: Sequence[Sample], summary: dict[str, Any], slo_ms: float, run_stamp: str) -> str:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    w = summary["windows"]
    mid = [p["from_s"] + (p["to_s"] - p["from_s"]) / 2 for p in w]
    fig, (ax1, ax2, ax3) = plt.subplots(3, 1, figsize=(9, 8), sharex=True)
    ts = [s.t for s in samples]
    ax1.step(ts, [s.running + s.starting for s in samples], where="post", label="Serve: replicas (running + starting)")
    ax1.step(ts, [s.running for s in samples], where="post", label="Serve: running")
    ax1.step(ts, [s.reporting or 0 for s in samples], where="post", label="load board: reporting", linestyle="--")
    ax1.set_ylabel("LocalModel replicas")
    ax1.set_ylim(0, max([s.running + s.starting for s in samples] + [2]) + 0.5)
    ax1.legend(loc="upper right", fontsize=8)
    ax2.plot(mid, [100 * p["local_share"] if p["local_share"] is not None else None for p in w], marker="o")
    ax2.set_ylabel("served locally (%)")
    ax2.set_ylim(-5, 105)
    ax3.plot(mid, [p["ttft_p50_ms"] for p in w], marker=".", label="TTFT p50")
    ax3.plot(mid, [p["ttft_p95_ms"] for p in w], marker=".", label="TTFT p95")
    ax3.axhline(slo_ms, color="red", linestyle=":", label=f"SLO {slo_ms:.0f} ms")
    ax3.set_ylabel("ms")
    ax3.set_xlabel("seconds")
    ax3.legend(loc="upper right", fontsize=8)
    burst = summary["burst_s"]
    for ax in (ax1, ax2, ax3):
        ax.axvspan(burst[0], burst[1], color="orange", alpha=0.1)
        for event in summary["events"]:
            ax.axvline(event["t_s"], color="grey", linestyle="--", linewidth=0.8)
            if event.get("reporting_s") is not None:
                ax.axvline(event["reporting_s"], color="green", linestyle=":", linewidth=0.8)
    ax1.set_title("A burst (shaded): Serve adds a LocalModel replica; the scheduler spills until it reports")
    fig.tight_layout()
    path = RESULTS / f"autoscale-{run_stamp}.png"
    fig.savefig(path, dpi=90)
    plt.close(fig)
    return str(path)


def report_text(result: dict[str, Any]) -> str:
    s = result["summary"]

    def fmt(v: float | None, spec: str = ".0f") -> str:
        return "-" if v is None else format(v, spec)

    lines = [
        f"local capacity C = {result['capacity_rps']:.2f} req/s on one replica; arrivals {result['base']} x C, "
        f"{result['peak']} x C in the burst ({s['burst_s'][0]:.0f}-{s['burst_s'][1]:.0f} s), "
        f"SLO {result['slo_ms']:.0f} ms, Serve autoscaling {result['autoscaling']}",
    ]
    for e in s["events"]:
        if e["direction"] == "up":
            lines.append(
                f"  {e['t_s']:>6.1f} s  Serve starts replica {e['replicas']}; the load board counts it at "
                f"{fmt(e['reporting_s'], '.1f')} s (cold start {fmt(e['cold_start_s'], '.1f')} s)"
            )
        else:
            lines.append(f"  {e['t_s']:>6.1f} s  Serve scales down to {e['replicas']}")
    lines.append(
        f"{'sent while (stage, replicas the board counted)':<34} {'requests':>8} {'local':>6} {'p50':>6} "
        f"{'p95':>6} {'in SLO':>7} {'failed':>6}  spilled because"
    )
    for name, p in s["phases"].items():
        share = "-" if p["local_share"] is None else f"{100 * p['local_share']:.0f}%"
        slo = "-" if p["within_slo"] is None else f"{100 * p['within_slo']:.0f}%"
        lines.append(
            f"{name:<34} {p['requests']:>8} {share:>6} {fmt(p['ttft_p50_ms']):>6} {fmt(p['ttft_p95_ms']):>6} "
            f"{slo:>7} {p['failed']:>6}  {p['reasons']}"
        )
    down = s["around_scale_down"]
    lines.append(
        f"sent {s['sent']}: answered {s['answered']}, failed explicitly {s['failed_explicitly']} {s['errors'] or ''}; "
        f"sent from 30 s before to 10 s after a scale-down: {down['requests']}, failed {down['failed']}"
    )
    return "\n".join(lines)


# ------------------------------------------------------------------------------------ main


def settings_for(args: argparse.Namespace, fake: FakeProvider, port: int) -> Any:
    from orchestrator.settings import load_settings

    return load_settings(
        data_dir=str(Path(args.data_dir).resolve()),
        server={"port": port},
        local={
            "model": MODEL,
            "kv_cache_gib": 0.25,
            "engine_args": {"enforce_eager": True},
            "autoscaling": {
                "min_replicas": args.min_replicas,
                "initial_replicas": 1,
                "max_replicas": 2,
                "target_ongoing_requests": args.target_ongoing,
                "upscale_delay_s": 2,
                "downscale_delay_s": args.downscale_delay_s,
                "downscale_to_zero_delay_s": args.downscale_delay_s,
                "look_back_period_s": 5,
                "metrics_interval_s": 1,
                **({"policy": {"policy_function": SERVE_POLICY}} if args.serve_policy else {}),
            },
        },
        embedding={"model": None},
        providers={
            "cloud": {
                "base_url": fake.base_url + "/v1",
                "api_key_env": "AUTOSCALE_FAKE_KEY",
                "models": {"llama-3.1-8b": {"id": "llama-3.1-8b", "input_per_mtok": PRICE, "output_per_mtok": PRICE}},
            }
        },
        models={"local-only": [MODEL], "auto": {"routes": [MODEL, REMOTE], "ttft_slo_ms": args.slo_ms}},
        cache={"enabled": False},
    )


async def measure(args: argparse.Namespace, base: str) -> dict[str, Any]:
    url = base + "/v1/chat/completions"
    await calibrate(url, "local-only", 2, 5, args.max_tokens)  # warm-up
    cal = await calibrate(url, "local-only", args.calib_concurrency, args.calib_s, args.max_tokens)
    c = cal["capacity_rps"]
    print(f"local capacity C = {c:.2f} req/s on one replica (TTFT p50 {cal['ttft_p50_ms']:.0f} ms)", flush=True)
    # Calibration's load may itself have made Serve add a replica: back to the minimum before the arrivals.
    settled = time.perf_counter() + 2 * args.downscale_delay_s + 120
    while sum(await asyncio.to_thread(serve_replicas)) != args.min_replicas and time.perf_counter() < settled:
        await asyncio.sleep(1)
    times = arrivals(c, args)
    samples: list[Sample] = []
    stop = asyncio.Event()
    start = time.perf_counter()
    sampler = asyncio.create_task(sample(base, start, stop, samples))
    outcomes = await open_loop(url, "autoscale", "auto", times, args.max_tokens, args.timeout_s)
    # Watch the scale-down through if it is still under way.
    deadline = time.perf_counter() + args.downscale_delay_s + 60
    while time.perf_counter() < deadline and (not samples or samples[-1].running + samples[-1].stopping > 1):
        await asyncio.sleep(1)
    stop.set()
    await sampler
    return {"capacity_rps": c, "calibration": cal, "outcomes": outcomes, "samples": samples}


def run(args: argparse.Namespace) -> dict[str, Any]:
    from orchestrator import runtime

    meta = run_meta("benchmarks.autoscale")
    fake = FakeProvider(api_key="sk-autoscale-fake", reply=" ".join(["token"] * 200), ttft_ms=300, tokens_per_s=80)
    fake.start()
    os.environ["AUTOSCALE_FAKE_KEY"] = "sk-autoscale-fake"
    port = free_port()
    settings = settings_for(args, fake, port)
    scaling = f"autoscaling {args.min_replicas}-2"
    print(f"starting the orchestrator on :{port} (Ray Serve + vLLM CPU, {MODEL}, {scaling}) ...", flush=True)
    try:
        runtime.prepare_models(settings, progress=False)
        runtime.start(settings, timeout_s=900, verbose=False)
        figures = asyncio.run(measure(args, f"http://127.0.0.1:{port}"))
    finally:
        runtime.stop()
        fake.stop()
    run_stamp = stamp()
    summary = summarize(figures["outcomes"], figures["samples"], args)
    result: dict[str, Any] = {
        **meta,
        "capacity_rps": figures["capacity_rps"],
        "calibration": figures["calibration"],
        "base": args.base,
        "peak": args.peak,
        "slo_ms": args.slo_ms,
        "autoscaling": settings.local.autoscaling,
        "summary": summary,
    }
    result["plot"] = plot(figures["samples"], summary, args.slo_ms, run_stamp)
    detail = {"samples": [asdict(s) for s in figures["samples"]], "outcomes": [asdict(o) for o in figures["outcomes"]]}
    text = report_text(result)
    result["saved"] = str(save("autoscale", run_stamp, {**result, **detail}, text))
    print(text)
    print(f"saved {result['saved']} and {result['plot']}")
    return result


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m benchmarks.autoscale", description=__doc__.split("\n\n")[0])
    p.add_argument("--slo-ms", type=float, default=1000.0, help="the alias's TTFT SLO")
    p.add_argument("--base", type=float, default=0.5, help="arrivals outside the burst, x C")
    p.add_argument("--peak", type=float, default=4.0, help="arrivals in the burst, x C")
    p.add_argument("--before-s", type=float, default=30.0)
    p.add_argument("--burst-s", type=float, default=150.0)
    p.add_argument("--after-s", type=float, default=90.0)
    p.add_argument("--min-replicas", type=int, default=1, choices=(0, 1), help="0: from zero, woken by demand")
    p.add_argument("--target-ongoing", type=float, default=8.0, help="Serve's target_ongoing_requests")
    p.add_argument(
        "--serve-policy",
        action="store_true",
        help="Serve's own policy (ongoing requests only), not ours (which adds the demand spilled for load)",
    )
    p.add_argument("--downscale-delay-s", type=float, default=30.0)
    p.add_argument("--max-tokens", type=int, default=48)
    p.add_argument("--calib-concurrency", type=int, default=4)
    p.add_argument("--calib-s", type=float, default=15.0)
    p.add_argument("--timeout-s", type=float, default=60.0)
    p.add_argument("--window-s", type=int, default=5)
    p.add_argument("--seed", type=int, default=1)
    p.add_argument("--data-dir", default=str(ROOT / ".data" / "bench"), help="prepared models and vLLM's cache")
    run(p.parse_args(argv))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
