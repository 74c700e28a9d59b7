"""The load client: streamed chat completions and trivial GETs over aiohttp.

aiohttp, not httpx: an httpx `AsyncClient` tops out near 200 req/s on this
machine, which would make the client the bottleneck of the fixed-overhead
figures. Every figure here is measured on the client's side of a loopback
socket:

- TTFT: from just before the request is sent to the first SSE chunk whose
  delta has non-empty `content` (the role-only opening chunk doesn't count);
- output tokens: `usage.completion_tokens` of the final chunk
  (`stream_options.include_usage`), never a count of chunks, because a server
  may put several tokens in one chunk;
- throughput: the sum of output tokens over the wall time of a closed loop of
  `concurrency` workers that each send their next request when the last ends.
"""

from __future__ import annotations

import asyncio
import json
import math
import time
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from typing import Any

import aiohttp

JSON_HEADERS = {"Content-Type": "application/json"}


@dataclass
class StreamResult:
    """One streamed chat completion, as the client saw it."""

    ok: bool
    latency_s: float
    ttft_s: float | None = None
    completion_tokens: int = 0
    content_chunks: int = 0
    error: str | None = None
    x_cache: str | None = None  # the gateway's response-cache header, where a server sends one


def percentile(values: Sequence[float], q: float) -> float:
    """The q-th percentile (0..100), linearly interpolated like numpy's default."""
    if not values:
        return math.nan
    s = sorted(values)
    k = (len(s) - 1) * q / 100
    lo, hi = math.floor(k), math.ceil(k)
    return s[lo] + (s[hi] - s[lo]) * (k - lo)


def chat_body(model: str, prompt: str, max_tokens: int) -> bytes:
    """A greedy streamed chat request that reports its usage at the end."""
    return json.dumps(
        {
            "model": model,
            "messages": [{"role": "user", "content": prompt}],
            "max_tokens": max_tokens,
            "temperature": 0,
            "stream": True,
            "stream_options": {"include_usage": True},
        }
    ).encode()


async def stream_chat(session: aiohttp.ClientSession, url: str, body: bytes) -> StreamResult:
    """Send one streamed chat request and read its SSE stream to the end."""
    t0 = time.perf_counter()
    ttft = None
    tokens = chunks = 0
    done = False
    x_cache = None
    try:
        async with session.post(url, data=body, headers=JSON_HEADERS) as resp:
            x_cache = resp.headers.get("x-cache")
            if resp.status != 200:
                text = await resp.text()
                return StreamResult(False, time.perf_counter() - t0, error=f"HTTP {resp.status}: {text[:200]}")
            async for line in resp.content:
                if not line.startswith(b"data: "):
                    continue
                payload = line[6:].strip()
                if payload == b"[DONE]":
                    done = True
                    break
                event = json.loads(payload)
                if "error" in event:
                    return StreamResult(False, time.perf_counter() - t0, ttft, error=str(event["error"])[:200])
                for choice in event.get("choices") or ():
                    if (choice.get("delta") or {}).get("content"):
                        chunks += 1
                        if ttft is None:
                            ttft = time.perf_counter() - t0
                usage = event.get("usage")
                if usage:
                    tokens = int(usage["completion_tokens"])
    except (aiohttp.ClientError, TimeoutError) as e:
        return StreamResult(False, time.perf_counter() - t0, ttft, tokens, chunks, f"{type(e).__name__}: {e}")
    latency = time.perf_counter() - t0
    if not done:
        return StreamResult(False, latency, ttft, tokens, chunks, "stream ended without [DONE]")
    return StreamResult(True, latency, ttft, tokens, chunks, x_cache=x_cache)


def _session(concurrency: int, timeout_s: float) -> aiohttp.ClientSession:
    connector = aiohttp.TCPConnector(limit=max(1, concurrency), ttl_dns_cache=None)
    return aiohttp.ClientSession(connector=connector, timeout=aiohttp.ClientTimeout(total=timeout_s))


async def closed_loop(
    url: str, bodies: Sequence[bytes], concurrency: int, *, timeout_s: float = 120.0
) -> tuple[list[StreamResult], float]:
    """Send `bodies` with `concurrency` workers; the results in order, and the wall time."""
    results: list[StreamResult | None] = [None] * len(bodies)
    work = iter(enumerate(bodies))
    async with _session(concurrency, timeout_s) as session:

        async def worker() -> None:
            for i, body in work:  # one shared iterator: each worker takes the next request
                results[i] = await stream_chat(session, url, body)

        t0 = time.perf_counter()
        await asyncio.gather(*(worker() for _ in range(concurrency)))
        wall = time.perf_counter() - t0
    return [r for r in results if r is not None], wall


def summarize_streams(results: Sequence[StreamResult], wall_s: float, concurrency: int) -> dict[str, Any]:
    """Throughput and latency figures for one closed-loop phase."""
    ok = [r for r in results if r.ok]
    ttfts = [r.ttft_s * 1000 for r in ok if r.ttft_s is not None]
    tokens = sum(r.completion_tokens for r in ok)
    # Time per output token after the first, per request (the decode pace a client sees).
    tpot = [
        (r.latency_s - r.ttft_s) * 1000 / (r.completion_tokens - 1)
        for r in ok
        if r.ttft_s is not None and r.completion_tokens > 1
    ]
    return {
        "concurrency": concurrency,
        "requests": len(results),
        "failed": len(results) - len(ok),
        "errors": sorted({r.error for r in results if r.error})[:5],
        "wall_s": wall_s,
        "output_tokens": tokens,
        "output_tokens_per_s": tokens / wall_s if wall_s > 0 else math.nan,
        "tokens_per_request": tokens / len(ok) if ok else math.nan,
        "content_chunks_per_request": sum(r.content_chunks for r in ok) / len(ok) if ok else math.nan,
        # Streams whose first token reached the client after more than half their duration: the
        # server held the stream back and flushed it in a burst (seen with vLLM's own server too,
        # when its processes compete for this machine's 2 cores).
        # Answers replayed from a response cache would not measure the model path at all.
        "cache_hits": sum(1 for r in ok if (r.x_cache or "").upper() == "HIT"),
        "held_back_streams": sum(1 for r in ok if r.ttft_s is not None and r.ttft_s > 0.5 * r.latency_s),
        "ttft_ms": _dist(ttfts),
        "tpot_ms": _dist(tpot),
        "latency_ms": _dist([r.latency_s * 1000 for r in ok]),
        "raw": [asdict(r) for r in results],
    }


def _dist(values: Sequence[float]) -> dict[str, float]:
    return {
        "n": len(values),
        "p50": percentile(values, 50),
        "p95": percentile(values, 95),
        "p99": percentile(values, 99),
        "mean": sum(values) / len(values) if values else math.nan,
        "min": min(values) if values else math.nan,
        "max": max(values) if values else math.nan,
    }


async def get_sequential(url: str, n: int, *, warmup: int = 0) -> dict[str, Any]:
    """`n` GETs one after another on one keep-alive connection: latency percentiles in ms."""
    latencies: list[float] = []
    failed = 0
    async with _session(1, 30.0) as session:
        for i in range(warmup + n):
            t0 = time.perf_counter()
            async with session.get(url) as resp:
                await resp.read()
                status = resp.status
            if i >= warmup:
                latencies.append((time.perf_counter() - t0) * 1000)
                failed += status != 200
    return {"requests": n, "failed": failed, "latency_ms": _dist(latencies)}


async def get_rate(url: str, n: int, concurrency: int) -> dict[str, Any]:
    """`n` GETs from `concurrency` closed-loop workers: requests per second."""
    failed = 0
    remaining = iter(range(n))
    async with _session(concurrency, 60.0) as session:

        async def worker() -> None:
            nonlocal failed
            for _ in remaining:
                async with session.get(url) as resp:
                    await resp.read()
                    failed += resp.status != 200

        t0 = time.perf_counter()
        await asyncio.gather(*(worker() for _ in range(concurrency)))
        wall = time.perf_counter() - t0
    return {"requests": n, "concurrency": concurrency, "failed": failed, "wall_s": wall, "req_per_s": n / wall}
