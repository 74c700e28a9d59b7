"""Load generation over aiohttp: streamed chat completions and plain GETs, measured at the client.

aiohttp, not httpx: an httpx `AsyncClient` tops out near 200 req/s on this machine, which would make the client
the bottleneck of the fixed-overhead figures. Measured on the client's side of a loopback socket: TTFT is the
time to the first SSE chunk whose delta has non-empty `content` (the role-only opening chunk doesn't count);
output tokens are `usage.completion_tokens` of the final chunk (`stream_options.include_usage`), never a count
of chunks; throughput is output tokens over the wall time of a closed loop of workers that each send their
next request when the last ends.
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

from benchmarks.harness.progress import bar
from benchmarks.harness.stats import dist

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
    served_by: str = ""  # the gateway's x-served-by (local/<model> or <provider>/<model>)
    route_reason: str = ""  # the gateway's x-route-reason
    prompt_tokens: int = 0


def chat_body(model: str, prompt: str, max_tokens: int, **extra: Any) -> bytes:
    """A greedy streamed chat request that reports its usage at the end."""
    body = {"model": model, "messages": [{"role": "user", "content": prompt}], "max_tokens": max_tokens}
    return json.dumps(
        {**body, "temperature": 0, "stream": True, "stream_options": {"include_usage": True}, **extra}
    ).encode()


def session(concurrency: int, timeout_s: float, headers: dict[str, str] | None = None) -> aiohttp.ClientSession:
    connector = aiohttp.TCPConnector(limit=max(1, concurrency), ttl_dns_cache=None)
    timeout = aiohttp.ClientTimeout(total=timeout_s)
    return aiohttp.ClientSession(connector=connector, timeout=timeout, headers=headers)


async def stream_chat(http: aiohttp.ClientSession, url: str, body: bytes) -> StreamResult:
    """Send one streamed chat request and read its SSE stream to the end."""
    t0 = time.perf_counter()
    r = StreamResult(False, 0.0)
    done = False
    try:
        async with http.post(url, data=body, headers=JSON_HEADERS) as resp:
            r.x_cache = resp.headers.get("x-cache")
            r.served_by, r.route_reason = resp.headers.get("x-served-by", ""), resp.headers.get("x-route-reason", "")
            if resp.status != 200:
                r.error = f"HTTP {resp.status}: {(await resp.text())[:200]}"
            else:
                done = await _read_stream(resp, r, t0)
    except (aiohttp.ClientError, TimeoutError) as e:
        r.error = f"{type(e).__name__}: {e}"
    r.latency_s = time.perf_counter() - t0
    if r.error is None and not done:
        r.error = "stream ended without [DONE]"
    r.ok = r.error is None
    return r


async def _read_stream(resp: aiohttp.ClientResponse, r: StreamResult, t0: float) -> bool:
    """Read SSE events into `r` (TTFT, chunks, tokens, an error event); True at `[DONE]`."""
    async for line in resp.content:
        if not line.startswith(b"data: "):
            continue
        payload = line[6:].strip()
        if payload == b"[DONE]":
            return True
        event = json.loads(payload)
        if "error" in event:
            r.error = str(event["error"])[:200]
            return False
        for choice in event.get("choices") or ():
            if (choice.get("delta") or {}).get("content"):
                r.content_chunks += 1
                r.ttft_s = r.ttft_s if r.ttft_s is not None else time.perf_counter() - t0
        if usage := event.get("usage"):
            r.completion_tokens = int(usage["completion_tokens"])
            r.prompt_tokens = int(usage.get("prompt_tokens", 0))
    return False


async def closed_loop(
    url: str, bodies: Sequence[bytes], concurrency: int, *, timeout_s: float = 120.0
) -> tuple[list[StreamResult], float]:
    """Send `bodies` with `concurrency` workers; the results in order, and the wall time."""
    results: list[StreamResult | None] = [None] * len(bodies)
    work = iter(enumerate(bodies))
    async with session(concurrency, timeout_s) as http:
        with bar(len(bodies), f"{concurrency} streams") as done:

            async def worker() -> None:
                for i, body in work:  # one shared iterator: each worker takes the next request
                    results[i] = await stream_chat(http, url, body)
                    done.update(1)

            t0 = time.perf_counter()
            await asyncio.gather(*(worker() for _ in range(concurrency)))
            wall = time.perf_counter() - t0
    return [r for r in results if r is not None], wall


def summarize_streams(results: Sequence[StreamResult], wall_s: float, concurrency: int) -> dict[str, Any]:
    """Throughput and latency figures for one closed-loop phase."""
    ok = [r for r in results if r.ok]
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
        # Answers replayed from a response cache would not measure the model path at all.
        "cache_hits": sum(1 for r in ok if (r.x_cache or "").upper() == "HIT"),
        # Streams whose first token reached the client after more than half their duration: the server held
        # the stream back and flushed it in a burst (seen with vLLM's own server when starved of CPU).
        "held_back_streams": sum(1 for r in ok if r.ttft_s is not None and r.ttft_s > 0.5 * r.latency_s),
        "ttft_ms": dist([r.ttft_s * 1000 for r in ok if r.ttft_s is not None]),
        "tpot_ms": dist(tpot),
        "latency_ms": dist([r.latency_s * 1000 for r in ok]),
        "raw": [asdict(r) for r in results],
    }


async def get_sequential(url: str, n: int, *, warmup: int = 0) -> dict[str, Any]:
    """`n` GETs one after another on one keep-alive connection: latency percentiles in ms."""
    latencies: list[float] = []
    failed = 0
    async with session(1, 30.0) as http:
        for i in range(warmup + n):
            t0 = time.perf_counter()
            async with http.get(url) as resp:
                await resp.read()
            if i >= warmup:
                latencies.append((time.perf_counter() - t0) * 1000)
                failed += resp.status != 200
    return {"requests": n, "failed": failed, "latency_ms": dist(latencies)}


async def get_rate(url: str, n: int, concurrency: int) -> dict[str, Any]:
    """`n` GETs from `concurrency` closed-loop workers: requests per second."""
    failed = 0
    remaining = iter(range(n))
    async with session(concurrency, 60.0) as http:

        async def worker() -> None:
            nonlocal failed
            for _ in remaining:
                async with http.get(url) as resp:
                    await resp.read()
                    failed += resp.status != 200

        t0 = time.perf_counter()
        await asyncio.gather(*(worker() for _ in range(concurrency)))
        wall = time.perf_counter() - t0
    return {"requests": n, "concurrency": concurrency, "failed": failed, "wall_s": wall, "req_per_s": n / wall}
