"""The trivial ingress: a Ray Serve deployment that only forwards chat requests upstream (the floor Ray sets).

`python -m benchmarks.remote_overhead trivial-serve --port P --upstream URL` is its process: Ray, Serve on `P`,
this app; it stops on SIGINT/SIGTERM. Ray's workers import this module by name (the driver's working directory,
the repository root, is on their path).
"""

from __future__ import annotations

import argparse
import os
import signal
import sys
import threading
from typing import Any


class TrivialIngress:
    """Serve ingress replica that only forwards POST /v1/chat/completions to the upstream.

    `client` "gateway": the gateway's own client (orchestrator.providers.factory.http_client,
    httpx's interface on aiohttp); "httpx": a plain `httpx.AsyncClient` of the same shape (httpx's
    own pool; the gateway's client before it moved to aiohttp); "aiohttp": one shared
    `aiohttp.ClientSession` (the last two are options, to price the client itself).
    """

    def __init__(self, upstream: str, client: str = "gateway"):
        self._url = upstream.rstrip("/") + "/chat/completions"
        self._kind = client

    def __serve_build_asgi_app__(self) -> Any:
        from fastapi import FastAPI, Request
        from fastapi.responses import JSONResponse

        app = FastAPI(docs_url=None, redoc_url=None, openapi_url=None)

        async def health():  # type: ignore[no-untyped-def]
            return JSONResponse({"status": "ok", "app": "trivial"})

        chat = _aiohttp_forwarder(self._url) if self._kind == "aiohttp" else _httpx_forwarder(self._url, self._kind)
        # Real annotation objects: FastAPI can't resolve the strings `from __future__ import annotations` makes
        # for a function defined inside another.
        chat.__annotations__ = {"request": Request}
        app.add_api_route("/health", health, methods=["GET"])
        app.add_api_route("/v1/chat/completions", chat, methods=["POST"])
        return app


def _forward_headers(request: Any) -> dict[str, str]:
    headers = {"content-type": "application/json"}
    if auth := request.headers.get("authorization"):
        headers["authorization"] = auth
    return headers


def _httpx_forwarder(url: str, kind: str) -> Any:
    """POST through an httpx client: the gateway's own (on aiohttp) or a plain one with httpx's pool."""
    import httpx
    from fastapi.responses import Response, StreamingResponse

    if kind == "gateway":
        from orchestrator.providers.factory import http_client
        from orchestrator.settings import ResilienceSettings

        client = http_client(ResilienceSettings(connect_timeout_s=5.0, idle_timeout_s=60.0))
    else:
        client = httpx.AsyncClient(
            timeout=httpx.Timeout(connect=5.0, read=60.0, write=5.0, pool=5.0),
            limits=httpx.Limits(max_connections=512, max_keepalive_connections=128),
        )

    async def chat(request):  # type: ignore[no-untyped-def]
        built = client.build_request("POST", url, content=await request.body(), headers=_forward_headers(request))
        upstream = await client.send(built, stream=True)
        media = upstream.headers.get("content-type", "application/json")
        if media.startswith("text/event-stream"):

            async def passthrough() -> Any:
                try:
                    async for piece in upstream.aiter_raw():
                        yield piece
                finally:
                    await upstream.aclose()

            return StreamingResponse(passthrough(), status_code=upstream.status_code, media_type=media)
        body = await upstream.aread()
        await upstream.aclose()
        return Response(body, status_code=upstream.status_code, media_type=media)

    return chat


def _aiohttp_forwarder(url: str) -> Any:
    """POST through one shared `aiohttp.ClientSession`, made on the replica's loop at the first request."""
    import aiohttp
    from fastapi.responses import Response, StreamingResponse

    sessions: list[aiohttp.ClientSession] = []

    async def chat(request):  # type: ignore[no-untyped-def]
        if not sessions:
            sessions.append(aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=512)))
        upstream = await sessions[0].post(url, data=await request.body(), headers=_forward_headers(request))
        media = upstream.headers.get("content-type", "application/json")
        if media.startswith("text/event-stream"):

            async def passthrough() -> Any:
                try:
                    async for piece in upstream.content.iter_any():
                        yield piece
                finally:
                    upstream.release()

            return StreamingResponse(passthrough(), status_code=upstream.status, media_type=media)
        body = await upstream.read()
        upstream.release()
        return Response(body, status_code=upstream.status, media_type=media)

    return chat


def parse_args(argv: list[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="benchmarks.remote_overhead trivial-serve")
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--upstream", required=True, help="the fake's base URL, with /v1")
    parser.add_argument("--max-ongoing-requests", type=int, default=512)
    parser.add_argument("--access-log", action="store_true")
    parser.add_argument(
        "--client", choices=("gateway", "httpx", "aiohttp"), default="gateway", help="the upstream HTTP client"
    )
    return parser.parse_args(argv)


def serve_trivial(argv: list[str]) -> int:
    """The trivial ingress's process: Ray, Serve on `--port`, the app; stop on SIGINT/SIGTERM."""
    args = parse_args(argv)
    import ray
    from ray import serve

    stopping = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stopping.set())
    signal.signal(signal.SIGINT, lambda *_: stopping.set())
    # The same as orchestrator.runtime.start, the workers' priority included (serve_env).
    niceness = {"RAY_worker_niceness": os.environ.get("RAY_worker_niceness", "0")}
    ray.init(include_dashboard=False, log_to_driver=True, runtime_env={"env_vars": niceness})
    try:
        serve.start(http_options={"host": "127.0.0.1", "port": args.port})
        deployment = serve.deployment(serve.ingress()(TrivialIngress)).options(  # type: ignore[attr-defined]
            name="TrivialIngress",
            num_replicas=1,
            max_ongoing_requests=args.max_ongoing_requests,
            ray_actor_options={"num_cpus": 0},
        )
        app = deployment.bind(args.upstream, args.client)
        logging_config = {"enable_access_log": args.access_log}
        serve.run(app, name="trivial", route_prefix="/", blocking=False, logging_config=logging_config)
        print(f"\nReady: trivial ingress at http://127.0.0.1:{args.port}\n", file=sys.stderr, flush=True)
        stopping.wait()
    finally:
        print("Stopping...", file=sys.stderr, flush=True)
        try:
            serve.shutdown()  # type: ignore[no-untyped-call]
        finally:
            ray.shutdown()
    return 0
