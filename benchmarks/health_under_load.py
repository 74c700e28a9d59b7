"""Is the endpoint still there for everyone while a few clients post huge bodies?

    .venv/bin/python -m benchmarks.health_under_load [--plain] [--clients 8] [--body-mb 5] [--seconds 20]
                                                     [--max-body-mb MB]

Starts the real deployment (`orchestrator serve`: Ray Serve, the Gateway replica, vLLM with
`tiny-random`, the local model's real tokenizer in the gateway), or with `--plain` the gateway's
app under plain uvicorn over a stub model (`benchmarks.plain_gateway`: no Ray, no tokenizer),
in a subprocess; `--max-body-mb` sets the deployment's `server.max_body_mb` (default: the
config's, 8 MB, so 5 MB bodies are read, then refused). Then, over aiohttp, the posting clients
in a process of their own so that the probes' event loop stays idle:

1. alone: `GET /health` sequentially, `--probes` times, 10 ms apart;
2. under load: `--clients` clients each keep posting a `--body-mb` MB chat body to
   `/v1/chat/completions` (the next as soon as the last is answered) while `GET /health` is
   probed the same way for `--seconds`.

Reports /health p50/p99/max alone and under load (target: p99 under load < 50 ms), the posts'
statuses (400/413 are the gateway refusing them; 200 would be an answer) and latencies, and
failed probes. Prints a summary and saves the figures as JSON under benchmarks/results/.
"""

from __future__ import annotations

import argparse
import asyncio
import collections
import json
import multiprocessing
import os
import sys
import tempfile
import time
from pathlib import Path
from typing import Any, Protocol

import aiohttp

from benchmarks.harness import LOGS, RESULTS, ROOT, Server, describe, dist, free_port, http_get, own_state, run_meta

MODEL = "tiny-random"
TARGET_P99_MS = 50.0
PROBE_GAP_S = 0.01
PROBE_TIMEOUT_S = 60.0


def big_chat(mb: float) -> bytes:
    """A chat request whose one message is `mb` MB of words (what a tokenizer really has to chew)."""
    words = "the quick brown fox jumps over the lazy dog and keeps on running far away "
    text = (words * (int(mb * 2**20) // len(words) + 1))[: int(mb * 2**20)]
    return json.dumps({"model": MODEL, "max_tokens": 8, "messages": [{"role": "user", "content": text}]}).encode()


class Stop(Protocol):
    def is_set(self) -> bool: ...


async def probe_health(base: str, stop: Stop, limit: int | None = None) -> tuple[list[float], list[str]]:
    """Sequential GET /health until `stop` (or `limit` probes): latencies in ms, and failures."""
    times: list[float] = []
    failures: list[str] = []
    timeout = aiohttp.ClientTimeout(total=PROBE_TIMEOUT_S)
    async with aiohttp.ClientSession(timeout=timeout) as session:
        while not stop.is_set() and (limit is None or len(times) + len(failures) < limit):
            t0 = time.perf_counter()
            try:
                async with session.get(f"{base}/health") as resp:
                    await resp.read()
                    if resp.status != 200:
                        failures.append(f"HTTP {resp.status}")
                        continue
                times.append((time.perf_counter() - t0) * 1000)
            except (aiohttp.ClientError, TimeoutError) as e:
                failures.append(type(e).__name__)
            await asyncio.sleep(PROBE_GAP_S)
    return times, failures


async def post_big(session: aiohttp.ClientSession, url: str, body: bytes, stop: Stop, out: dict[str, Any]) -> None:
    """Post `body` again and again until `stop`; count statuses, keep latencies."""
    while not stop.is_set():
        t0 = time.perf_counter()
        try:
            async with session.post(url, data=body, headers={"content-type": "application/json"}) as resp:
                await resp.read()
                out["status"][str(resp.status)] += 1
        except (aiohttp.ClientError, TimeoutError) as e:
            # A server may answer 413 and close before the whole body was sent: the client sees a reset.
            out["status"][type(e).__name__] += 1
        out["ms"].append((time.perf_counter() - t0) * 1000)


def posters(base: str, clients: int, body_mb: float, started: Any, stop: Any, out: Any) -> None:
    """The posting clients, in a process of their own: their event loop, busy writing megabytes,
    must not delay the probes' (whose latency would then be the client's, not the server's)."""

    async def run() -> dict[str, Any]:
        body = big_chat(body_mb)
        posts: dict[str, Any] = {"status": collections.Counter(), "ms": []}
        connector = aiohttp.TCPConnector(limit=clients)
        async with aiohttp.ClientSession(connector=connector, timeout=aiohttp.ClientTimeout(total=300)) as session:
            url = f"{base}/v1/chat/completions"
            tasks = [asyncio.create_task(post_big(session, url, body, stop, posts)) for _ in range(clients)]
            started.set()
            await asyncio.gather(*tasks)
        return {
            "body_bytes": len(body),
            "status": dict(posts["status"]),
            "ms": dist(posts["ms"]),
            "sent_mb": round(len(posts["ms"]) * len(body) / 2**20, 1),
        }

    out.put(asyncio.run(run()))


async def measure(base: str, clients: int, body_mb: float, seconds: float, probes: int) -> dict[str, Any]:
    never = asyncio.Event()
    await probe_health(base, never, limit=20)  # warm the connection and the path
    alone, alone_failed = await probe_health(base, never, limit=probes)

    spawn = multiprocessing.get_context("spawn")
    started, stop, out = spawn.Event(), spawn.Event(), spawn.Queue()
    child = spawn.Process(target=posters, args=(base, clients, body_mb, started, stop, out), name="posters")
    child.start()
    if not await asyncio.to_thread(started.wait, 60):
        child.kill()
        raise RuntimeError("the posting clients did not start")
    await asyncio.sleep(1.0)  # every poster under way before probing
    timer = asyncio.get_running_loop().call_later(seconds, stop.set)
    t0 = time.perf_counter()
    loaded, loaded_failed = await probe_health(base, stop)
    probing_s = time.perf_counter() - t0
    timer.cancel()
    stop.set()
    posts = await asyncio.to_thread(out.get, True, 330)
    await asyncio.to_thread(child.join, 30)
    after, after_failed = await probe_health(base, never, limit=20)
    return {
        "health_alone_ms": dist(alone),
        "health_alone_failed": alone_failed,
        "health_under_load_ms": dist(loaded),
        "health_under_load_failed": loaded_failed,
        "probing_s": round(probing_s, 2),
        "health_after": {"ok": len(after), "failed": after_failed},
        "posts": posts,
    }


def start_server(plain: bool, workdir: Path, max_body_mb: float | None = None) -> tuple[Server, str]:
    port = free_port()
    base = f"http://127.0.0.1:{port}"
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    if plain:
        argv = [sys.executable, "-m", "benchmarks.plain_gateway", "--port", str(port), "--model", MODEL]
        timeout_s = 120.0
    else:
        env.update(
            {
                "ORCH_LOCAL__MODEL": MODEL,
                "ORCH_LOCAL__MAX_MODEL_LEN": "512",
                "ORCH_LOCAL__ENGINE_ARGS": '{"enforce_eager": true}',
                "ORCH_EMBEDDING__MODEL": "",
                "ORCH_SERVER__PORT": str(port),
                **own_state(workdir),
                "RAY_TMPDIR": str(workdir / "ray"),
            }
        )
        if max_body_mb is not None:
            env["ORCH_SERVER__MAX_BODY_MB"] = str(max_body_mb)
        (workdir / "ray").mkdir()
        argv = [sys.executable, "-m", "orchestrator.cli", "serve"]
        timeout_s = 600.0
    name = "plain" if plain else "serve"
    server = Server(name, argv, env=env, log_path=LOGS / f"health_under_load-{name}.log", cwd=ROOT).start()
    server.wait_ready(base, MODEL, timeout_s=timeout_s)
    return server, base


def summary(result: dict[str, Any]) -> str:
    alone, loaded = result["health_alone_ms"], result["health_under_load_ms"]
    posts = result["posts"]
    met = loaded["p99"] < TARGET_P99_MS and not result["health_under_load_failed"]
    return "\n".join(
        [
            f"/health under {result['clients']} clients posting {result['body_mb']} MB chat bodies "
            f"({result['setup']}, {result['started']}, load average {result['load'][0]:.2f} at start, "
            f"{result['load_after'][0]:.2f} after)",
            f"  alone:      p50 {alone['p50']:.2f} ms  p99 {alone['p99']:.2f} ms  max {alone['max']:.2f} ms"
            f"  ({alone['n']} probes)",
            f"  under load: p50 {loaded['p50']:.2f} ms  p99 {loaded['p99']:.2f} ms  max {loaded['max']:.2f} ms"
            f"  ({loaded['n']} probes in {result['probing_s']} s, {len(result['health_under_load_failed'])} failed)",
            f"  posts: {sum(posts['status'].values())} answered {posts['status']}, "
            f"p50 {posts['ms']['p50']:.0f} ms, p99 {posts['ms']['p99']:.0f} ms",
            f"  target: /health p99 under load < {TARGET_P99_MS:.0f} ms: {'met' if met else 'MISSED'}",
        ]
    )


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="benchmarks.health_under_load", description=__doc__.split("\n\n")[0])
    parser.add_argument("--plain", action="store_true", help="the app under plain uvicorn (no Ray, stub model)")
    parser.add_argument("--clients", type=int, default=8)
    parser.add_argument("--body-mb", type=float, default=5.0)
    parser.add_argument("--seconds", type=float, default=20.0)
    parser.add_argument("--probes", type=int, default=300, help="/health probes alone")
    parser.add_argument("--max-body-mb", type=float, default=None, help="the deployment's server.max_body_mb")
    args = parser.parse_args(argv)
    if args.plain and args.max_body_mb is not None:
        parser.error("--max-body-mb sets the deployment's config; the plain app keeps its default")

    meta = run_meta("benchmarks.health_under_load")
    started = time.strftime("%Y-%m-%dT%H:%M:%S")
    load = os.getloadavg()
    with tempfile.TemporaryDirectory(prefix="health-bench-") as tmp:
        server, base = start_server(args.plain, Path(tmp), args.max_body_mb)
        try:
            assert http_get(f"{base}/health")[0] == 200
            figures = asyncio.run(measure(base, args.clients, args.body_mb, args.seconds, args.probes))
        finally:
            stopped = server.stop()
    result = {
        "benchmark": "health_under_load",
        **meta,
        "started": started,
        "setup": "plain uvicorn, stub model" if args.plain else f"orchestrator serve (Ray Serve + vLLM {MODEL})",
        "load": load,
        "load_after": os.getloadavg(),  # other work on the machine shows here
        "cpus": os.cpu_count(),
        "clients": args.clients,
        "body_mb": args.body_mb,
        "max_body_mb": args.max_body_mb,  # None: the config's
        "target_p99_ms": TARGET_P99_MS,
        **figures,
        "server_stop": describe(stopped),
    }
    RESULTS.mkdir(parents=True, exist_ok=True)
    path = RESULTS / f"health_under_load-{'plain-' if args.plain else ''}{time.strftime('%Y%m%d-%H%M%S')}.json"
    path.write_text(json.dumps(result, indent=2) + "\n")
    print(summary(result))
    print(f"saved {path.relative_to(ROOT)}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
