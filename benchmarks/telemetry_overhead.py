"""What telemetry adds to a request: the request span, its step spans, the GenAI metrics, and their export.

    .venv/bin/python -m benchmarks.telemetry_overhead [--requests 500] [--rounds 5]

The gateway's app over a fake local engine that answers at once (no Ray Serve: only the gateway's own work
differs), asked the same small chat request sequentially, in setups that alternate round by round so the
machine's noise hits them alike, measured two ways:

- **in process** (httpx's ASGI transport: client, app and exporter thread share one interpreter and one
  core, so every microsecond of telemetry work, the export's encoding included, lands on the requests);
- **over HTTP**: each setup's app in a uvicorn server process of its own on loopback, the client in this
  process (what a client sees: the exporter's thread can run while the server waits on the socket), with
  each server's CPU seconds per request from /proc.

The setups:

- **off**: no telemetry configured (the default);
- **spans**: telemetry on, the spans made and batched but dropped by the exporter (the spans' own cost);
- **otlp**: telemetry on, spans and GenAI metrics to a real OTLP/HTTP receiver on loopback (`http.server`,
  200 to every POST), the exporter's thread sharing the machine with the requests;
- **otlp+traceparent**: the same, each request carrying a client's W3C `traceparent`.

Prints the median microseconds per request per setup (median over rounds of each round's p50, the
harness's nearest-rank), over HTTP also the server's CPU µs per request, each with the difference to
**off**, and saves them as `benchmarks/results/telemetry_overhead-<stamp>.json`. The target: tracing on
adds ≤ 0.2 ms p50 per request.
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import sys
import tempfile
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import httpx

from benchmarks.harness import (
    LOGS,
    Server,
    asgi_client,
    cpu_delta,
    free_port,
    percentile,
    run_meta,
    save,
    sequential_p50_us,
    stamp,
)
from benchmarks.harness.progress import bar

BODY = {"model": "fake-chat", "messages": [{"role": "user", "content": "hello there"}], "max_tokens": 5}
TRACEPARENT = {"traceparent": "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01"}
SETUPS = ["off", "spans", "otlp", "otlp+traceparent"]


class Receiver(BaseHTTPRequestHandler):
    posts = 0
    spans_bytes = 0

    def do_POST(self) -> None:  # noqa: N802
        body = self.rfile.read(int(self.headers.get("content-length", 0)))
        type(self).posts += 1
        type(self).spans_bytes += len(body)
        self.send_response(200)
        self.send_header("content-length", "0")
        self.end_headers()

    def log_message(self, *args: Any) -> None:
        pass


class Drop:
    """A span exporter that drops every batch."""

    def export(self, spans: Any) -> Any:
        from opentelemetry.sdk.trace.export import SpanExportResult

        return SpanExportResult.SUCCESS

    def shutdown(self) -> None:
        pass

    def force_flush(self, timeout_millis: int = 30_000) -> bool:
        return True


async def build(setup: str, tmp: Path, endpoint: str) -> tuple[Any, Any]:
    from orchestrator.api import build_app
    from orchestrator.app import build_pipeline
    from orchestrator.settings import load_settings
    from orchestrator.telemetry import build_telemetry
    from orchestrator.testing.engine import FakeEngine

    engine = FakeEngine("fake-chat")
    settings = load_settings(
        providers={},
        models={},
        cache={"enabled": False},
        ledger={"path": str(tmp / f"{setup}.sqlite"), "owner": "process"},
        telemetry={"otlp_endpoint": None if setup in ("off", "spans") else endpoint},
    )
    telemetry = build_telemetry(settings.telemetry, env={}, exporter=Drop() if setup == "spans" else None)
    assert telemetry.enabled == (setup != "off")
    pipeline = await build_pipeline({"local": (engine, engine.info())}, settings, env={}, telemetry=telemetry)
    return build_app(pipeline), telemetry


async def round_of(app: Any, n: int, headers: dict[str, str]) -> float:
    async with asgi_client(app) as c:
        return await sequential_p50_us(c, "/v1/chat/completions", BODY, n, headers)


async def in_process(endpoint: str, requests: int, rounds: int) -> dict[str, list[float]]:
    """Each round's p50 µs per setup, the app called in this process."""
    with tempfile.TemporaryDirectory() as tmp:
        apps = {s: await build(s, Path(tmp), endpoint) for s in SETUPS}
        headers = {s: TRACEPARENT if s.endswith("traceparent") else {} for s in SETUPS}
        for s in SETUPS:
            await round_of(apps[s][0], 50, headers[s])  # warm up
        results: dict[str, list[float]] = {s: [] for s in SETUPS}
        with bar(rounds * len(SETUPS), "in process", unit="round") as progress:
            for _ in range(rounds):
                for s in SETUPS:
                    results[s].append(await round_of(apps[s][0], requests, headers[s]))
                    progress.update(1)
        for _, telemetry in apps.values():
            telemetry.shutdown()  # flushes what is left
    return results


async def serve(setup: str, port: int, endpoint: str) -> None:
    """One setup's app behind uvicorn on loopback (the `--serve` child of the HTTP phase)."""
    import uvicorn

    logging.disable(logging.WARNING)
    with tempfile.TemporaryDirectory() as tmp:
        app, telemetry = await build(setup, Path(tmp), endpoint)
        config = uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning", lifespan="off")
        try:
            await uvicorn.Server(config).serve()
        finally:
            telemetry.shutdown()


async def over_http(endpoint: str, requests: int, rounds: int) -> tuple[dict[str, list[float]], dict[str, list[float]]]:
    """Each round's p50 µs and server CPU µs per request per setup, each setup's app in its own process."""
    log_dir = LOGS / f"telemetry-{stamp()}"
    servers: dict[str, tuple[Server, str]] = {}
    try:
        for s in SETUPS:
            port = free_port()
            argv = [sys.executable, "-m", "benchmarks.telemetry_overhead", "--serve", s, "--port", str(port)]
            server = Server(
                f"telemetry-{s}", [*argv, "--endpoint", endpoint], env=_env(), log_path=log_dir / f"{s}.log"
            )
            servers[s] = (server.start(), f"http://127.0.0.1:{port}")
        for server, url in servers.values():
            server.wait_ready(url, "fake-chat", 60)
        latency: dict[str, list[float]] = {s: [] for s in SETUPS}
        cpu: dict[str, list[float]] = {s: [] for s in SETUPS}
        headers = {s: TRACEPARENT if s.endswith("traceparent") else {} for s in SETUPS}
        async with httpx.AsyncClient(timeout=30) as client:
            for s, (_, url) in servers.items():
                await sequential_p50_us(client, f"{url}/v1/chat/completions", BODY, 50, headers[s])  # warm up
            with bar(rounds * len(SETUPS), "over HTTP", unit="round") as progress:
                for _ in range(rounds):
                    for s, (server, url) in servers.items():
                        before = server.cpu()
                        latency[s].append(
                            await sequential_p50_us(client, f"{url}/v1/chat/completions", BODY, requests, headers[s])
                        )
                        cpu[s].append(sum(cpu_delta(before, server.cpu()).values()) / requests * 1e6)
                        progress.update(1)
        return latency, cpu
    finally:
        for server, _ in servers.values():
            server.stop(15)


def _env() -> dict[str, str]:
    import os

    return {**{k: v for k, v in os.environ.items() if not k.startswith(("ORCH_", "OTEL_"))}, "PYTHONUNBUFFERED": "1"}


def _table(title: str, medians: dict[str, float], unit: str) -> None:
    print(f"\n{title}")
    print(f"{'setup':<18}{unit:>14}{'vs off':>10}")
    for s in SETUPS:
        print(f"{s:<18}{medians[s]:>14.0f}{medians[s] - medians['off']:>+10.0f}")


async def main(requests: int, rounds: int) -> None:
    meta = run_meta("benchmarks.telemetry_overhead")
    logging.disable(logging.WARNING)
    server = ThreadingHTTPServer(("127.0.0.1", 0), Receiver)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    endpoint = f"http://127.0.0.1:{server.server_address[1]}"
    try:
        inproc = await in_process(endpoint, requests, rounds)
        http_latency, http_cpu = await over_http(endpoint, requests, rounds)
    finally:
        server.shutdown()
        server.server_close()
    medians = {s: percentile(inproc[s], 50) for s in SETUPS}
    http_medians = {s: percentile(http_latency[s], 50) for s in SETUPS}
    cpu_medians = {s: percentile(http_cpu[s], 50) for s in SETUPS}
    print(f"median of {rounds} rounds x {requests} sequential requests")
    _table("in process (client, app and exporter on one core)", medians, "µs/request")
    _table("over HTTP (each setup's server a process of its own): latency", http_medians, "µs/request")
    _table("over HTTP: the server's CPU", cpu_medians, "CPU µs/request")
    print(f"receiver: {Receiver.posts} OTLP posts, {Receiver.spans_bytes} bytes")
    result = {
        **meta,
        "requests": requests,
        "rounds": rounds,
        "median_us": medians,
        "added_us": {s: medians[s] - medians["off"] for s in SETUPS},
        "round_medians_us": inproc,
        "http": {
            "median_us": http_medians,
            "added_us": {s: http_medians[s] - http_medians["off"] for s in SETUPS},
            "cpu_us_per_request": cpu_medians,
            "added_cpu_us": {s: cpu_medians[s] - cpu_medians["off"] for s in SETUPS},
            "round_medians_us": http_latency,
            "round_cpu_us": http_cpu,
        },
        "otlp_posts": Receiver.posts,
        "otlp_bytes": Receiver.spans_bytes,
    }
    print(f"saved {save('telemetry_overhead', stamp(), result)}")


if __name__ == "__main__":
    parser = argparse.ArgumentParser()
    parser.add_argument("--requests", type=int, default=500)
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--serve", choices=SETUPS, help=argparse.SUPPRESS)  # the HTTP phase's server processes
    parser.add_argument("--port", type=int, help=argparse.SUPPRESS)
    parser.add_argument("--endpoint", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.serve:
        asyncio.run(serve(args.serve, args.port, args.endpoint))
    else:
        asyncio.run(main(args.requests, args.rounds))
