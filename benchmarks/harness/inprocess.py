"""Timing the gateway's ASGI app in-process: no sockets, no Ray Serve, only the app's own work.

`sequential_p50_us` posts the same body `n` times, one after another, and gives the nearest-rank p50 in
microseconds (every answer must be a 200). The in-process overhead benchmarks (accounting, front doors,
telemetry) alternate setups round by round with it.
"""

from __future__ import annotations

import time
from typing import Any

import httpx

from benchmarks.harness.stats import percentile


def asgi_client(app: Any) -> httpx.AsyncClient:
    """A client that calls `app` directly (httpx's ASGI transport)."""
    return httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://bench")


async def sequential_p50_us(
    client: httpx.AsyncClient, path: str, body: dict[str, Any], n: int, headers: dict[str, str] | None = None
) -> float:
    times = []
    for _ in range(n):
        t0 = time.perf_counter()
        r = await client.post(path, json=body, headers=headers)
        times.append(time.perf_counter() - t0)
        assert r.status_code == 200, r.text
    return percentile(times, 50) * 1e6
