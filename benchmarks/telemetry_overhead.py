"""What tracing adds to a request: the request span, its step spans, and their export over OTLP/HTTP.

    .venv/bin/python -m benchmarks.telemetry_overhead [--requests 500] [--rounds 5]

The gateway's ASGI app in-process (no sockets to the app, no Ray Serve: only the gateway's own work differs)
over a fake local engine that answers at once, asked the same small chat request sequentially, in setups
that alternate round by round so the machine's noise hits them alike:

- **off**: no telemetry configured (the default);
- **spans**: telemetry on, the spans made and batched but dropped by the exporter (the spans' own cost);
- **otlp**: telemetry on, the spans batched to a real OTLP/HTTP receiver on loopback (`http.server`, 200 to
  every POST /v1/traces), the exporter's thread sharing the machine with the requests;
- **otlp+traceparent**: the same, each request carrying a client's W3C `traceparent`.

Prints the median microseconds per request per setup (median over rounds of each round's p50, the
harness's nearest-rank) and the difference to **off**, and saves them as
`benchmarks/results/telemetry_overhead-<stamp>.json`. The target: tracing on adds ≤ 0.2 ms p50 per request.
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import tempfile
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

from benchmarks.harness import asgi_client, percentile, run_meta, save, sequential_p50_us, stamp

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


async def main(requests: int, rounds: int) -> None:
    meta = run_meta("benchmarks.telemetry_overhead")
    logging.disable(logging.WARNING)
    server = ThreadingHTTPServer(("127.0.0.1", 0), Receiver)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    endpoint = f"http://127.0.0.1:{server.server_address[1]}"
    try:
        with tempfile.TemporaryDirectory() as tmp:
            apps = {s: await build(s, Path(tmp), endpoint) for s in SETUPS}
            headers = {s: TRACEPARENT if s.endswith("traceparent") else {} for s in SETUPS}
            for s in SETUPS:
                await round_of(apps[s][0], 50, headers[s])  # warm up
            results: dict[str, list[float]] = {s: [] for s in SETUPS}
            for _ in range(rounds):
                for s in SETUPS:
                    results[s].append(await round_of(apps[s][0], requests, headers[s]))
            for _, telemetry in apps.values():
                telemetry.shutdown()  # flushes what is left
    finally:
        server.shutdown()
        server.server_close()
    medians = {s: percentile(results[s], 50) for s in SETUPS}
    print(f"{'setup':<18}{'µs/request':>12}{'vs off':>10}   (median of {rounds} rounds x {requests} sequential)")
    for s in SETUPS:
        print(f"{s:<18}{medians[s]:>12.0f}{medians[s] - medians['off']:>+10.0f}")
    print(f"receiver: {Receiver.posts} OTLP posts, {Receiver.spans_bytes} bytes")
    result = {
        **meta,
        "requests": requests,
        "rounds": rounds,
        "median_us": medians,
        "added_us": {s: medians[s] - medians["off"] for s in SETUPS},
        "round_medians_us": results,
        "otlp_posts": Receiver.posts,
        "otlp_bytes": Receiver.spans_bytes,
    }
    print(f"saved {save('telemetry_overhead', stamp(), result)}")


if __name__ == "__main__":
    parser = argparse.ArgumentParser()
    parser.add_argument("--requests", type=int, default=500)
    parser.add_argument("--rounds", type=int, default=5)
    args = parser.parse_args()
    asyncio.run(main(args.requests, args.rounds))
