"""The garbage collector's pauses in a gateway process, with its startup heap frozen and without.

    .venv/bin/python -m benchmarks.gc_pauses [--requests 8000] [--rounds 2]

The gateway's ASGI app in-process (what `orchestrator.app.Gateway` builds: the default configuration with
the `openrouter` preset pointed at a fake provider on loopback, the real upstream client; the local model a
fake engine, which is never asked), plus the modules a Gateway replica also holds (Ray, Serve's replica,
transformers): its heap, ~180,000 objects. 32 concurrent clients post the remote overhead benchmark's
request straight into the app (no sockets on the client side, so the process's CPU is the gateway's and
its upstream client's). Rounds alternate two settings in one process: **default** (CPython's collector as it
comes) and **frozen** (`gc.collect()` then `gc.freeze()` after start, as `Gateway` and `LocalModel` do since
this benchmark; `gc.unfreeze()` undoes it for the next default round).

A full (oldest-generation) collection walks every object the process holds while the event loop waits: every
request in flight stalls for its duration. Printed and saved (`benchmarks/results/gc_pauses-<stamp>.json`):
per setting, the collections of each generation, their total and longest pause, CPU µs per request, and the
requests' latency p50 / p99 / max.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import gc
import logging
import os
import subprocess
import sys
import tempfile
import time
from collections import defaultdict
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any, NamedTuple

from benchmarks.harness import ROOT, free_port, http_get, percentile, run_meta, save, stamp
from benchmarks.remote_overhead.bodies import MODEL, nonstream_body

CONCURRENCY = 32
PATH = "/v1/chat/completions"


async def post(app: Any, body: bytes, extra: tuple[tuple[bytes, bytes], ...] = ()) -> None:
    """One request straight into the ASGI app, as a server would hand it over (`extra`: more headers)."""
    headers = [(b"host", b"gateway"), (b"content-type", b"application/json"), (b"content-length", b"%d" % len(body))]
    headers += extra
    scope = {
        "type": "http", "asgi": {"version": "3.0"}, "http_version": "1.1", "method": "POST", "scheme": "http",
        "path": PATH, "raw_path": PATH.encode(), "query_string": b"", "root_path": "", "headers": headers,
        "client": ("127.0.0.1", 1), "server": ("127.0.0.1", 80), "state": {},
    }  # fmt: skip
    sent = False
    status = 0

    async def receive() -> dict[str, Any]:
        nonlocal sent
        if not sent:
            sent = True
            return {"type": "http.request", "body": body, "more_body": False}
        await asyncio.Event().wait()  # the client never disconnects
        raise AssertionError

    async def send(message: dict[str, Any]) -> None:
        nonlocal status
        if message["type"] == "http.response.start":
            status = message["status"]

    await app(scope, receive, send)
    if status != 200:
        raise RuntimeError(f"the gateway answered {status}")


async def build(upstream: str, tmp: Path) -> tuple[Any, Any, Any]:
    """The app, its accounts, and the upstream client (the caller closes it)."""
    import yaml

    from orchestrator.accounting.setup import build_accounts
    from orchestrator.api import build_app
    from orchestrator.app import build_pipeline
    from orchestrator.providers.factory import http_client
    from orchestrator.settings import DEFAULT_CONFIG, load_settings
    from orchestrator.testing.engine import FakeEngine

    config = yaml.safe_load(DEFAULT_CONFIG.read_text())
    config["providers"]["openrouter"]["base_url"] = f"{upstream}/v1"
    config["cache"]["directory"] = str(tmp / "cache")
    config["ledger"] = {"path": str(tmp / "ledger.sqlite"), "owner": "process"}
    for section in ("server", "gateway", "local", "embedding", "responses"):
        config.pop(section, None)
    settings = load_settings(**config)
    engine = FakeEngine(settings.local.served_name or "local")
    env = {**os.environ, "OPENROUTER_API_KEY": "bench"}
    client = http_client(settings.resilience)
    pipeline = await build_pipeline({"local": (engine, engine.info())}, settings, env=env, client=client)
    accounts = await build_accounts(settings, pipeline, env=env)
    return build_app(pipeline, accounts), accounts, client


class InProcess(NamedTuple):
    app: Any  # the gateway's ASGI app
    upstream: str  # the fake provider's URL (its API under /v1)


@contextlib.asynccontextmanager
async def gateway_in_process(*fake_args: str) -> AsyncIterator[InProcess]:
    """A fake provider (answering as fast as it can; `fake_args` for more) and the gateway's app in front
    of it, answering: both are yielded; the fake, the accounts and the upstream client are stopped after."""
    port = free_port()
    argv = [sys.executable, "-m", "orchestrator.testing.provider", "--port", str(port), "--ttft-ms", "0"]
    argv += ["--tokens-per-s", "0", "--model", MODEL, *fake_args]
    fake = subprocess.Popen(argv, cwd=ROOT, stdout=subprocess.DEVNULL)
    upstream = f"http://127.0.0.1:{port}"
    try:
        # The fake up before the gateway's first request: the gateway's requests to a fake still starting
        # would be refused, and enough refusals open the route's circuit for longer than this waits.
        for _ in range(100):
            if (await asyncio.to_thread(http_get, f"{upstream}/health", 0.5))[0] == 200:
                break
            await asyncio.sleep(0.2)
        else:  # not up in 20 s or more (its port taken meanwhile?): say so
            raise RuntimeError(f"the fake provider on port {port} never answered (exit code {fake.poll()})")
        with tempfile.TemporaryDirectory() as tmp:
            app, accounts, client = await build(upstream, Path(tmp))
            try:
                await post(app, nonstream_body())  # the connections open
                yield InProcess(app, upstream)
            finally:
                await accounts.drain()
                await accounts.background.stop()
                await client.aclose()
    finally:
        fake.terminate()
        fake.wait(10)


class Pauses:
    """Every collection's generation and duration, from `gc.callbacks`."""

    def __init__(self) -> None:
        self.seen: list[tuple[int, float]] = []
        self._t0 = 0.0

    def __call__(self, phase: str, info: dict[str, int]) -> None:
        if phase == "start":
            self._t0 = time.perf_counter()
        else:
            self.seen.append((info["generation"], time.perf_counter() - self._t0))


async def round_of(app: Any, body: bytes, requests: int, pauses: Pauses) -> dict[str, Any]:
    latencies: list[float] = []

    async def client(n: int) -> None:
        for _ in range(n):
            t0 = time.perf_counter()
            await post(app, body)
            latencies.append(time.perf_counter() - t0)

    pauses.seen.clear()
    cpu0 = time.process_time()
    await asyncio.gather(*(client(requests // CONCURRENCY) for _ in range(CONCURRENCY)))
    cpu = time.process_time() - cpu0
    by_gen: dict[int, list[float]] = defaultdict(list)
    for generation, seconds in pauses.seen:
        by_gen[generation].append(seconds)
    return {
        "requests": len(latencies),
        "cpu_us_per_request": 1e6 * cpu / len(latencies),
        "latency_ms": {q: 1000 * percentile(latencies, q) for q in (50, 99)} | {"max": 1000 * max(latencies)},
        "collections": {
            f"gen{g}": {"n": len(v), "total_ms": 1000 * sum(v), "max_ms": 1000 * max(v)}
            for g, v in sorted(by_gen.items())
        },
    }


def setting(frozen: bool) -> None:
    if frozen:
        gc.collect()
        gc.freeze()
    else:
        gc.unfreeze()


async def main(requests: int, rounds: int) -> None:
    meta = run_meta("benchmarks.gc_pauses")
    logging.disable(logging.WARNING)
    pauses = Pauses()
    results: dict[str, list[dict[str, Any]]] = {"default": [], "frozen": []}
    async with gateway_in_process() as (app, _):
        import ray  # noqa: F401  # what a Gateway replica holds besides the app
        import ray.serve._private.replica  # noqa: F401
        import transformers  # noqa: F401

        body = nonstream_body()
        for _ in range(50):  # warm
            await post(app, body)
        gc.collect()
        print(f"heap: {len(gc.get_objects()):,} tracked objects", flush=True)
        gc.callbacks.append(pauses)
        for _ in range(rounds):
            for name in ("default", "frozen"):
                setting(name == "frozen")
                r = await round_of(app, body, requests, pauses)
                results[name].append(r)
                gens = ", ".join(
                    f"{g} {c['n']} ({c['total_ms']:.0f} ms, max {c['max_ms']:.1f})" for g, c in r["collections"].items()
                )
                lat = r["latency_ms"]
                cpu = r["cpu_us_per_request"]
                print(f"{name:8s} {cpu:6.0f} µs CPU/request, p99 {lat[99]:.1f} max {lat['max']:.1f} ms; {gens}")
        gc.callbacks.remove(pauses)
        gc.unfreeze()
    text = report(results, requests, rounds)
    print(text)
    path = save("gc_pauses", stamp(), {**meta, "requests": requests, "rounds": rounds, "results": results}, text)
    print(f"saved {path}")


def report(results: dict[str, list[dict[str, Any]]], requests: int, rounds: int) -> str:
    lines = [
        f"# GC pauses in a gateway process ({rounds} rounds x {requests:,} requests a setting, {CONCURRENCY} clients)",
        "",
        "| setting | full collections | their pauses, total / longest ms | all collections' pauses, total ms "
        "| CPU µs/request | latency p50 / p99 / max ms |",
        "|---|---|---|---|---|---|",
    ]
    for name, runs in results.items():
        full = [c for r in runs for g, c in r["collections"].items() if g == "gen2"]
        full_n = sum(c["n"] for c in full)
        full_total = sum(c["total_ms"] for c in full)
        full_max = max((c["max_ms"] for c in full), default=0.0)
        total = sum(c["total_ms"] for r in runs for c in r["collections"].values())
        cpu = sum(r["cpu_us_per_request"] for r in runs) / len(runs)
        lat = [r["latency_ms"] for r in runs]
        p50, p99 = (percentile([x[q] for x in lat], 50) for q in (50, 99))
        worst = max(x["max"] for x in lat)
        lines.append(
            f"| {name} | {full_n} | {full_total:.0f} / {full_max:.1f} | {total:.0f} | {cpu:.0f} | "
            f"{p50:.1f} / {p99:.1f} / {worst:.1f} |"
        )
    return "\n".join(lines) + "\n"


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=(__doc__ or "").split("\n")[0])
    parser.add_argument("--requests", type=int, default=8000, help="per round and setting")
    parser.add_argument("--rounds", type=int, default=2)
    args = parser.parse_args()
    import uvloop  # as in a Serve replica

    uvloop.run(main(args.requests, args.rounds))
