"""The gateway's CPU per request in one process, beside a forwarder's: whole and streamed answers of a given length.

    .venv/bin/python -m benchmarks.request_cpu [--tokens 8 64] [--requests 3200] [--rounds 3] [--pace 0] [--calls]

The gateway's ASGI app in-process, built as `benchmarks.gc_pauses` builds it (the default
configuration, the `openrouter` preset pointed at a fake provider on loopback, the real upstream
client), its startup heap frozen as a replica's is. 32 concurrent clients post a chat request
straight into the app (no client sockets: the process's CPU is the gateway's and its upstream
client's); the fake answers `--tokens` filler words, one SSE event each, as fast as it can or, with
`--pace T`, T a second (a live model's pace: each token then arrives in a read of its own). Per
answer length, a whole answer (`stream: false`) and a stream (`stream: true`, with usage), in
`--rounds` rounds alternating; each round also sends both through the **forwarder** in the same
process, the baseline: the remote overhead benchmark's trivial ingress (`benchmarks.remote_overhead.trivial`,
the gateway's own upstream client, no parse: the provider's bytes relayed as they come; a whole answer
asked of the provider whole, where ours reads it as a stream to keep its first-token and idle timeouts).
Printed and saved (`benchmarks/results/request_cpu-<stamp>.json`): CPU µs per request for each, their
medians, ours ÷ the forwarder's, and the cost of one more chunk (the slope between the shortest and the
longest answer). Beside them, what Ray Serve's direct ingress spends on each request outside the app
to name its route for its metrics (`get_asgi_route_name`: the app's routes matched in order until one
fits), for the benchmark's request. With `--calls`, each length's stream then runs once more under
cProfile, ours and the forwarder's: the Python calls (builtins included) a token takes, in all and the
most called functions (where the difference lies, counted, not timed).

What it is for: a change on the request path measured before and after, from two trees, in one
sitting (`PYTHONPATH=<tree>`, the command run from that tree): the figures move with the machine,
the differences between two runs back to back don't; the forwarder's figures in the same run say how
much of a move was the machine's.
"""

from __future__ import annotations

import argparse
import asyncio
import cProfile
import gc
import json
import logging
import math
import pstats
import time
from itertools import product
from statistics import median
from typing import Any

from benchmarks.gc_pauses import CONCURRENCY, PATH, gateway_in_process, post
from benchmarks.harness import ROOT, run_meta, save, stamp
from benchmarks.remote_overhead.bodies import nonstream_body
from benchmarks.remote_overhead.trivial import TrivialIngress

KINDS = ("whole", "stream")
FORWARDER = "forwarder "  # the forwarder's figures: under "forwarder whole", "forwarder stream"
# The fake's key, which the forwarder passes on as the client sent it (the gateway sends its own).
FORWARDED = ((b"authorization", b"Bearer bench"),)
CALLS_SHOWN = 12  # with --calls: the most called functions shown


def body(kind: str, tokens: int) -> bytes:
    if kind == "stream":
        return nonstream_body(max_tokens=tokens, stream=True, stream_options={"include_usage": True})
    return json.dumps({**json.loads(nonstream_body()), "max_tokens": tokens}).encode()


async def cpu_per_request(app: Any, raw: bytes, requests: int, extra: tuple[tuple[bytes, bytes], ...] = ()) -> float:
    async def client(n: int) -> None:
        for _ in range(n):
            await post(app, raw, extra)

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


async def calls_per_token(
    app: Any, raw: bytes, tokens: int, requests: int, extra: tuple[tuple[bytes, bytes], ...]
) -> dict[str, Any]:
    """Python function calls (builtins included) per token of `requests` streams, under cProfile: in all,
    and the most called functions'."""
    profile = cProfile.Profile()
    profile.enable()
    try:
        await cpu_per_request(app, raw, requests, extra)
    finally:
        profile.disable()
    done = requests // CONCURRENCY * CONCURRENCY * tokens
    counts: dict[str, float] = {}
    for (path, line, name), (_, calls, *_rest) in pstats.Stats(profile).stats.items():  # type: ignore[attr-defined]
        where = name if path == "~" else f"{path.split('site-packages/')[-1].split(str(ROOT) + '/')[-1]}:{line}({name})"
        counts[where] = counts.get(where, 0.0) + calls / done
    top = sorted(counts.items(), key=lambda kv: -kv[1])[:CALLS_SHOWN]
    return {"total": sum(counts.values()), "top": [[where, round(n, 2)] for where, n in top]}


async def measure(tokens: int, requests: int, rounds: int, pace: float, calls: bool) -> dict[str, Any]:
    """One fake answering `tokens` words (`pace` a second; 0: at once), the gateway's app and the forwarder
    in front of it; every kind through each once per round. `calls`: then a stream's calls a token, each."""
    out: dict[str, Any] = {}
    async with gateway_in_process("--reply-tokens", str(tokens), "--tokens-per-s", f"{pace:g}") as (app, upstream):
        apps = {"": (app, ()), FORWARDER: (TrivialIngress(f"{upstream}/v1").__serve_build_asgi_app__(), FORWARDED)}
        out["serve_route_lookup"] = [serve_route_lookup_us(app)]
        for target, kind in product(apps, KINDS):  # warm: every path once
            await cpu_per_request(apps[target][0], body(kind, tokens), 4 * CONCURRENCY, apps[target][1])
        gc.collect()
        gc.freeze()  # as a Gateway replica does once started (`orchestrator.app.freeze_heap`)
        for _ in range(rounds):
            for target, kind in product(apps, KINDS):
                us = await cpu_per_request(apps[target][0], body(kind, tokens), requests, apps[target][1])
                out.setdefault(target + kind, []).append(us)
                print(f"{tokens:4d} tokens  {target + kind:16s} {us:7.0f} µs CPU/request", flush=True)
        if calls:
            raw = body("stream", tokens)
            out["calls"] = {
                name or "ours": await calls_per_token(app_, raw, tokens, max(CONCURRENCY, requests // 8), extra)
                for name, (app_, extra) in apps.items()
            }
        gc.unfreeze()
    return out


def report(results: dict[int, dict[str, Any]], requests: int, rounds: int, pace: float) -> str:
    arrive = f"{pace:g} tokens a second" if pace else "as fast as the fake writes them"
    lines = [
        f"# Gateway CPU per request, in process ({rounds} rounds x {requests:,} requests, {CONCURRENCY} clients)",
        "",
        f"The answers' tokens arrive {arrive}. µs CPU a request: the median (the rounds).",
        "",
        "| answer | whole, ours | the forwarder's | ours ÷ it | stream, ours | the forwarder's | ours ÷ it |",
        "|---|---|---|---|---|---|---|",
    ]

    def cell(runs: list[float]) -> str:
        return f"{median(runs):.0f} ({' / '.join(f'{x:.0f}' for x in runs)})"

    for tokens, got in results.items():
        cells = []
        for kind in KINDS:
            ours, theirs = got[kind], got[FORWARDER + kind]
            cells += [cell(ours), cell(theirs), f"{median(ours) / median(theirs):.2f}×"]
        lines.append(f"| {tokens} tokens | {' | '.join(cells)} |")
    longest = max(results)
    per_token = {k: median(results[longest][k]) / longest for k in ("stream", FORWARDER + "stream")}
    lines += [
        "",
        f"A {longest}-token stream a token: ours {per_token['stream']:.1f} µs, the forwarder's "
        f"{per_token[FORWARDER + 'stream']:.1f} µs.",
    ]
    if len(results) > 1:
        lo, hi = min(results), max(results)
        slope = {k: (median(results[hi][k]) - median(results[lo][k])) / (hi - lo) for k in results[hi]}
        lines.append(
            f"One more chunk: whole {slope['whole']:.1f} µs, stream {slope['stream']:.1f} µs (the forwarder: "
            f"whole {slope[FORWARDER + 'whole']:.1f}, stream {slope[FORWARDER + 'stream']:.1f})."
        )
    lookup = median(r["serve_route_lookup"][0] for r in results.values())
    lines += ["", f"Ray Serve's route lookup for the request (outside the app, per request): {lookup:.1f} µs."]
    for tokens, got in results.items():
        if "calls" in got:
            lines += [
                "",
                f"Calls a token of a {tokens}-token stream (Python functions and builtins, under cProfile):",
                "",
            ]
            for name, seen in got["calls"].items():
                top = ", ".join(f"`{where}` {n:.2f}" for where, n in seen["top"])
                lines.append(f"- {name.strip()}: {seen['total']:.1f} in all; the most called: {top}")
    return "\n".join(lines)


async def main(tokens: list[int], requests: int, rounds: int, pace: float, calls: bool) -> None:
    meta = run_meta("benchmarks.request_cpu")
    logging.disable(logging.WARNING)
    results = {t: await measure(t, requests, rounds, pace, calls) for t in tokens}
    text = report(results, requests, rounds, pace)
    print(text)
    data = {**meta, "requests": requests, "rounds": rounds, "pace": pace}
    data["results"] = {str(t): r for t, r in results.items()}
    print(f"saved {save('request_cpu', stamp(), data, text)}")


def cli() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--tokens", type=int, nargs="+", default=[8, 64], help="answer lengths (filler words)")
    p.add_argument("--requests", type=int, default=3200, help="per round and kind")
    p.add_argument("--rounds", type=int, default=3)
    p.add_argument(
        "--pace", type=float, default=0.0,
        help="the fake's tokens a second (0: as fast as it writes them); at 500, --requests 640 takes ~2 s a kind",
    )  # fmt: skip
    p.add_argument(
        "--calls", action="store_true",
        help="then count a stream's Python calls a token, ours and the forwarder's (cProfile; slower: not timed)",
    )  # fmt: skip
    args = p.parse_args()
    if not 0 <= args.pace < math.inf:  # NaN fails this too
        p.error("--pace: tokens a second, 0 or more")
    import uvloop

    uvloop.run(main(sorted(set(args.tokens)), args.requests, args.rounds, args.pace, args.calls))


if __name__ == "__main__":
    cli()
