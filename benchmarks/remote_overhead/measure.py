"""Measuring a group: per target and round, sequential latency, first-chunk latency, throughput and its CPU."""

from __future__ import annotations

import asyncio
import math
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import aiohttp

from benchmarks.harness import (
    JSON_HEADERS,
    Server,
    StreamResult,
    cpu_delta,
    dist,
    machine_busy_s,
    percentile,
    stream_chat,
)
from benchmarks.harness import session as client_session
from benchmarks.remote_overhead.bodies import API_KEY, cacheable_miss_body, nonstream_body, stream_body
from benchmarks.remote_overhead.targets import Target, role_of


@dataclass
class Load:
    rounds: int = 3
    sequential: int = 50  # non-stream requests per round, one after another
    streams: int = 50  # stream requests per round, one after another
    concurrency: int = 32
    duration_s: float = 2.5  # of each round's throughput phase
    warmup: int = 5
    # An unmeasured closed loop per target before a group's first round: V8 compiles Portkey's hot path over its
    # first few thousand requests (without it, its first round ran at ~0.4× its later ones); every target gets it.
    warm_s: float = 3.0
    # Answers of this many tokens, streamed, in a closed loop of their own after each throughput phase (0: none):
    # what a chunk costs each target, where the default phases' 8-token answers are mostly the request's cost.
    long_tokens: int = 0
    # Their tokens paced by the fake at this many a second each (0: as fast as it can write them): a live model's
    # tokens arrive a read each, where an unpaced fake's come several to a read and relaying can batch them.
    long_pace: float = 0.0


@dataclass
class Figures:
    """What one target accumulated over the rounds of its group."""

    sequential_ms: list[float] = field(default_factory=list)
    miss_ms: list[float] = field(default_factory=list)  # ours only: cacheable requests that miss
    first_chunk_ms: list[float] = field(default_factory=list)
    stream_total_ms: list[float] = field(default_factory=list)
    loaded_ms: list[float] = field(default_factory=list)  # latencies inside the throughput phase
    rate_rounds: list[float] = field(default_factory=list)
    rate_requests: int = 0
    rate_wall_s: float = 0.0
    failed: int = 0
    errors: list[str] = field(default_factory=list)
    seq_p50_rounds: list[float] = field(default_factory=list)
    chunk_p50_rounds: list[float] = field(default_factory=list)
    server_cpu_s: dict[str, float] = field(default_factory=dict)  # throughput phases, by process role
    upstream_cpu_s: float = 0.0  # the fake's, during the same phases
    client_cpu_s: float = 0.0
    foreign_cpu_s: float = 0.0  # everything else on the machine (other people's jobs)
    long_requests: int = 0  # the long-stream phase (`Load.long_tokens`): whole streams, every token come
    long_wall_s: float = 0.0
    long_failed: int = 0
    long_rounds: list[float] = field(default_factory=list)
    long_server_cpu_s: float = 0.0
    long_upstream_cpu_s: float = 0.0

    def summary(self) -> dict[str, Any]:
        server = sum(self.server_cpu_s.values())
        n = self.rate_requests or 1
        return {
            "sequential_ms": dist(self.sequential_ms),
            "cacheable_miss_ms": dist(self.miss_ms),
            "first_chunk_ms": dist(self.first_chunk_ms),
            "stream_total_ms": dist(self.stream_total_ms),
            "loaded_ms": dist(self.loaded_ms),
            "req_per_s": self.rate_requests / self.rate_wall_s if self.rate_wall_s else math.nan,
            "req_per_s_rounds": self.rate_rounds,
            "sequential_p50_rounds": self.seq_p50_rounds,
            "first_chunk_p50_rounds": self.chunk_p50_rounds,
            "failed": self.failed,
            "errors": sorted(set(self.errors))[:5],
            "server_cpu_ms_per_req": {k: round(v * 1000 / n, 3) for k, v in self.server_cpu_s.items()},
            "server_cpu_ms_per_req_total": server * 1000 / n,
            "upstream_cpu_ms_per_req": self.upstream_cpu_s * 1000 / n,
            "client_cpu_ms_per_req": self.client_cpu_s * 1000 / n,
            "foreign_cpu_cores": self.foreign_cpu_s / self.rate_wall_s if self.rate_wall_s else math.nan,
            "long_streams": {
                "streams_per_s": self.long_requests / self.long_wall_s if self.long_wall_s else math.nan,
                "streams_per_s_rounds": self.long_rounds,
                "failed": self.long_failed,
                "server_cpu_ms_per_stream": self.long_server_cpu_s * 1000 / (self.long_requests or 1),
                "upstream_cpu_ms_per_stream": self.long_upstream_cpu_s * 1000 / (self.long_requests or 1),
            },
        }


def log(message: str) -> None:
    print(f"[remote_overhead] {message}", file=sys.stderr, flush=True)


def _session(concurrency: int, headers: dict[str, str] | None = None) -> aiohttp.ClientSession:
    return client_session(concurrency, 30.0, headers={"Authorization": f"Bearer {API_KEY}", **(headers or {})})


async def _post_once(session: aiohttp.ClientSession, url: str, body: bytes) -> tuple[bool, float]:
    t0 = time.perf_counter()
    try:
        async with session.post(url, data=body, headers=JSON_HEADERS) as resp:
            await resp.read()
            ok = resp.status == 200
    except (aiohttp.ClientError, TimeoutError):
        ok = False
    return ok, (time.perf_counter() - t0) * 1000


async def sequential(
    url: str, n: int, warmup: int, body: Callable[[], bytes] = nonstream_body, headers: dict[str, str] | None = None
) -> tuple[list[float], int]:
    out: list[float] = []
    failed = 0
    async with _session(1, headers) as session:
        for i in range(warmup + n):
            ok, ms = await _post_once(session, url, body())
            if i >= warmup and ok:
                out.append(ms)
            elif i >= warmup:
                failed += 1
    return out, failed


async def streams(url: str, n: int, warmup: int, headers: dict[str, str] | None = None) -> list[StreamResult]:
    body = stream_body()
    results = []
    async with _session(1, headers) as session:
        for i in range(warmup + n):
            r = await stream_chat(session, url, body)
            if i >= warmup:
                results.append(r)
    return results


async def rate(
    url: str, concurrency: int, duration_s: float, headers: dict[str, str] | None = None
) -> tuple[int, int, float, list[float]]:
    """Closed loop: `concurrency` clients, each sending its next request when the last ends, for `duration_s`."""
    body = nonstream_body()
    latencies: list[float] = []
    ok_n = failed = 0
    async with _session(concurrency, headers) as session:
        await asyncio.gather(*(_post_once(session, url, body) for _ in range(concurrency)))  # open the connections
        deadline = time.perf_counter() + duration_s

        async def client() -> None:
            nonlocal ok_n, failed
            while time.perf_counter() < deadline:
                ok, ms = await _post_once(session, url, body)
                if ok:
                    ok_n += 1
                    latencies.append(ms)
                else:
                    failed += 1

        t0 = time.perf_counter()
        await asyncio.gather(*(client() for _ in range(concurrency)))
        wall = time.perf_counter() - t0
    return ok_n, failed, wall, latencies


async def long_streams(
    url: str, tokens: int, concurrency: int, duration_s: float, headers: dict[str, str] | None = None
) -> tuple[int, int, float, list[str]]:
    """Closed loop of streams of `tokens` tokens, each read to its `[DONE]`: (whole streams, failed, wall s,
    errors). A stream counts when it ended well and its usage says every token came."""
    body = nonstream_body(max_tokens=tokens, stream=True, stream_options={"include_usage": True})
    ok_n = failed = 0
    errors: list[str] = []
    async with _session(concurrency, headers) as session:
        deadline = time.perf_counter() + duration_s

        async def client() -> None:
            nonlocal ok_n, failed
            while time.perf_counter() < deadline:
                r = await stream_chat(session, url, body)
                if r.ok and r.completion_tokens == tokens:
                    ok_n += 1
                else:
                    failed += 1
                    errors.append(r.error or f"{r.completion_tokens} tokens of {tokens}")

        t0 = time.perf_counter()
        await asyncio.gather(*(client() for _ in range(concurrency)))
        wall = time.perf_counter() - t0
    return ok_n, failed, wall, errors


async def _long_stream_phase(target: Target, figures: Figures, load: Load, url: str, fake: Server) -> None:
    before, upstream0 = _cpu(target.server), _cpu(fake)
    await _pace(fake, load.long_pace)
    try:
        ok_n, failed, wall, errors = await long_streams(
            url, load.long_tokens, load.concurrency, load.duration_s, target.headers
        )
    finally:
        await _pace(fake, 0.0)
    figures.long_upstream_cpu_s += sum(cpu_delta(upstream0, _cpu(fake)).values())
    if target.kind != "direct":
        figures.long_server_cpu_s += sum(cpu_delta(before, _cpu(target.server)).values())
    figures.long_requests += ok_n
    figures.long_wall_s += wall
    figures.long_failed += failed
    figures.long_rounds.append(ok_n / wall)
    figures.errors += errors


def server_url(server: Server) -> str:
    return f"http://127.0.0.1:{server.argv[server.argv.index('--port') + 1]}"


async def _pace(fake: Server, tokens_per_s: float) -> None:
    """The fake's output pace from its next request on (`POST /_fake/pace`)."""
    async with aiohttp.ClientSession() as session:
        async with session.post(f"{server_url(fake)}/_fake/pace", json={"tokens_per_s": tokens_per_s}) as response:
            response.raise_for_status()


async def _latency_phases(target: Target, figures: Figures, load: Load, url: str) -> None:
    """Sequential non-stream requests, sequential streams (first content chunk), and for ours cacheable misses."""
    seq, failed = await sequential(url, load.sequential, load.warmup, headers=target.headers)
    figures.sequential_ms += seq
    figures.seq_p50_rounds.append(percentile(seq, 50))
    figures.failed += failed
    results = await streams(url, load.streams, load.warmup, target.headers)
    chunks = [r.ttft_s * 1000 for r in results if r.ok and r.ttft_s is not None]
    figures.first_chunk_ms += chunks
    figures.stream_total_ms += [r.latency_s * 1000 for r in results if r.ok]
    figures.chunk_p50_rounds.append(percentile(chunks, 50))
    figures.failed += len(results) - len(chunks)
    figures.errors += [r.error for r in results if r.error]
    if target.kind == "ours":
        miss, failed = await sequential(url, load.sequential, load.warmup, cacheable_miss_body)
        figures.miss_ms += miss
        figures.failed += failed


def _cpu(server: Server | None) -> dict[int, tuple[str, float]]:
    return server.cpu(role_of) if server is not None else {}


async def _throughput_phase(target: Target, figures: Figures, load: Load, url: str, fake: Server) -> None:
    """The closed loop, with the CPU every process spent meanwhile: the target's, the fake's, ours, the rest."""
    before, upstream0 = _cpu(target.server), _cpu(fake)
    client0, machine0 = time.process_time(), machine_busy_s()
    ok_n, failed, wall, latencies = await rate(url, load.concurrency, load.duration_s, target.headers)
    client = time.process_time() - client0
    machine = machine_busy_s() - machine0
    upstream = sum(cpu_delta(upstream0, _cpu(fake)).values())
    spent = cpu_delta(before, _cpu(target.server)) if target.kind != "direct" else {}
    for k, v in spent.items():
        figures.server_cpu_s[k] = figures.server_cpu_s.get(k, 0.0) + v
    figures.upstream_cpu_s += upstream
    figures.client_cpu_s += client
    figures.foreign_cpu_s += max(0.0, machine - client - upstream - sum(spent.values()))
    figures.rate_requests += ok_n
    figures.rate_wall_s += wall
    figures.rate_rounds.append(ok_n / wall)
    figures.loaded_ms += latencies
    figures.failed += failed


async def measure_group(targets: list[Target], load: Load, fake: Server) -> dict[str, Figures]:
    """`load.rounds` rounds over `targets`; each round starts one target later, so none is always first."""
    figures = {t.key: Figures() for t in targets}
    for t in targets:
        await rate(f"{t.base_url}/v1/chat/completions", load.concurrency, load.warm_s, t.headers)
    for r in range(load.rounds):
        order = targets[r % len(targets) :] + targets[: r % len(targets)]
        for t in order:
            t0 = time.perf_counter()
            url = f"{t.base_url}/v1/chat/completions"
            f = figures[t.key]
            await _latency_phases(t, f, load, url)
            await _throughput_phase(t, f, load, url, fake)
            if load.long_tokens:
                await _long_stream_phase(t, f, load, url, fake)
                log(
                    f"  round {r + 1}/{load.rounds} {t.key}: {f.long_rounds[-1]:.1f} {load.long_tokens}-token streams/s"
                )
            log(
                f"  round {r + 1}/{load.rounds} {t.key}: seq p50 {f.seq_p50_rounds[-1]:.2f} ms, first chunk p50 "
                f"{f.chunk_p50_rounds[-1]:.2f} ms, {f.rate_rounds[-1]:.0f} req/s ({time.perf_counter() - t0:.1f} s)"
            )
    return figures
