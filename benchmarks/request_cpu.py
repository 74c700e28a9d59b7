"""The gateway's CPU per request in one process: whole and streamed answers of a given length.

    .venv/bin/python -m benchmarks.request_cpu [--tokens 8 64] [--requests 3200] [--rounds 3]

The gateway's ASGI app in-process, built as `benchmarks.gc_pauses` builds it (the default
configuration, the `openrouter` preset pointed at a fake provider on loopback, the real upstream
client), its startup heap frozen as a replica's is. 32 concurrent clients post a chat request
straight into the app (no client sockets: the process's CPU is the gateway's and its upstream
client's); the fake answers `--tokens` filler words as fast as it can, one SSE event each. Per
answer length, a whole answer (`stream: false`) and a stream (`stream: true`, with usage), in
`--rounds` rounds alternating. Printed and saved (`benchmarks/results/request_cpu-<stamp>.json`):
CPU µs per request for each, their medians, and the cost of one more chunk (the slope between the
shortest and the longest answer). Beside them, what Ray Serve's direct ingress spends on each request
outside the app to name its route for its metrics (`get_asgi_route_name`: the app's routes matched in
order until one fits), for the benchmark's request.

What it is for: a change on the request path measured before and after, from two trees, in one
sitting (`PYTHONPATH=<tree>`, the command run from that tree): the figures move with the machine,
the differences between two runs back to back don't.
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import json
import logging
import time
from statistics import median
from typing import Any

from benchmarks.gc_pauses import CONCURRENCY, PATH, gateway_in_process, post
from benchmarks.harness import run_meta, save, stamp
from benchmarks.remote_overhead.bodies import nonstream_body

KINDS = ("whole", "stream")


def body(kind: str, tokens: int) -> bytes:
    if kind == "stream":
        return nonstream_body(max_tokens=tokens, stream=True, stream_options={"include_usage": True})
    return json.dumps({**json.loads(nonstream_body()), "max_tokens": tokens}).encode()


async def cpu_per_request(app: Any, raw: bytes, requests: int) -> float:
    async def client(n: int) -> None:
        for _ in range(n):
            await post(app, raw)

    per = requests // CONCURRENCY
    t0 = time.process_time()
    await asyncio.gather(*(client(per) for _ in range(CONCURRENCY)))
    return 1e6 * (time.process_time() - t0) / (per * CONCURRENCY)


def serve_route_lookup_us(app: Any, n: int = 20000) -> float:
    """µs Ray Serve's replica spends naming the benchmark's request's route (per request, before the app)."""
    from ray.serve._private.thirdparty.get_asgi_route_name import get_asgi_route_name

    scope = {"type": "http", "method": "POST", "path": PATH, "root_path": "", "headers": [], "query_string": b""}
    assert get_asgi_route_name(app, scope) == PATH
    t0 = time.perf_counter()
    for _ in range(n):
        get_asgi_route_name(app, scope)
    return 1e6 * (time.perf_counter() - t0) / n


async def measure(tokens: int, requests: int, rounds: int) -> dict[str, list[float]]:
    """One fake answering `tokens` words, one app; every kind once per round."""
    out: dict[str, list[float]] = {k: [] for k in KINDS}
    async with gateway_in_process("--reply-tokens", str(tokens)) as app:
        out["serve_route_lookup"] = [serve_route_lookup_us(app)]
        for kind in KINDS:  # warm: every path once
            await cpu_per_request(app, body(kind, tokens), 4 * CONCURRENCY)
        gc.collect()
        gc.freeze()  # as a Gateway replica does once started (`orchestrator.app.freeze_heap`)
        for _ in range(rounds):
            for kind in KINDS:
                us = await cpu_per_request(app, body(kind, tokens), requests)
                out[kind].append(us)
                print(f"{tokens:4d} tokens  {kind:6s} {us:7.0f} µs CPU/request", flush=True)
        gc.unfreeze()
    return out


def report(results: dict[int, dict[str, list[float]]], requests: int, rounds: int) -> str:
    lines = [
        f"# Gateway CPU per request, in process ({rounds} rounds x {requests:,} requests, {CONCURRENCY} clients)",
        "",
        "| answer | whole: µs/request (median; rounds) | stream: µs/request (median; rounds) |",
        "|---|---|---|",
    ]
    for tokens, by_kind in results.items():
        cells = [f"{median(by_kind[k]):.0f} ({' / '.join(f'{x:.0f}' for x in by_kind[k])})" for k in KINDS]
        lines.append(f"| {tokens} tokens | {cells[0]} | {cells[1]} |")
    if len(results) > 1:
        lo, hi = min(results), max(results)
        slope = {k: (median(results[hi][k]) - median(results[lo][k])) / (hi - lo) for k in KINDS}
        lines += ["", f"One more chunk: whole {slope['whole']:.1f} µs, stream {slope['stream']:.1f} µs."]
    lookup = median(r["serve_route_lookup"][0] for r in results.values())
    lines += ["", f"Ray Serve's route lookup for the request (outside the app, per request): {lookup:.1f} µs."]
    return "\n".join(lines)


async def main(tokens: list[int], requests: int, rounds: int) -> None:
    meta = run_meta("benchmarks.request_cpu")
    logging.disable(logging.WARNING)
    results = {t: await measure(t, requests, rounds) for t in tokens}
    text = report(results, requests, rounds)
    print(text)
    data = {**meta, "requests": requests, "rounds": rounds, "results": {str(t): r for t, r in results.items()}}
    print(f"saved {save('request_cpu', stamp(), data, text)}")


def cli() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--tokens", type=int, nargs="+", default=[8, 64], help="answer lengths (filler words)")
    p.add_argument("--requests", type=int, default=3200, help="per round and kind")
    p.add_argument("--rounds", type=int, default=3)
    args = p.parse_args()
    import uvloop

    uvloop.run(main(sorted(set(args.tokens)), args.requests, args.rounds))


if __name__ == "__main__":
    cli()
