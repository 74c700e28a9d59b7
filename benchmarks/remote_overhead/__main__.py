"""Gateway overhead on a remote route: direct, a trivial Ray Serve ingress, ours, and LiteLLM's proxy.

    .venv/bin/python -m benchmarks.remote_overhead

Every target answers the same requests from one fake provider (`benchmarks.fake_provider`, 0 ms to the first
token, no pacing), on loopback:

- **direct**: the fake itself;
- **trivial**: a Ray Serve ingress that only forwards (FastAPI, one shared upstream client, streams passed through
  byte for byte), built by `__serve_build_asgi_app__` exactly like our Gateway: the floor Ray sets. Its client is
  the gateway's own (`orchestrator.providers.factory.http_client`: an `httpx.AsyncClient` on aiohttp), so that
  "ours − trivial" prices our gateway and not a choice of HTTP client;
- **ours**: `python -m orchestrator.cli serve --config <temp yaml>` (local model `tiny-random`, idle; no
  embedding model; the `openrouter` preset pointed at the fake), asked for `openrouter/gpt-4o-mini`;
- **LiteLLM**: `litellm --config cfg.yaml --num_workers 1`, one `openai/...` model at the fake, logging turned
  down; installed, pinned, in its own virtualenv (`benchmarks/out/litellm-venv`), not as a project dependency.

Each Ray-hosted target runs in its own process and Ray instance (own `RAY_TMPDIR`). The Ray settings are tried
in groups: a group starts the trivial ingress and ours with the same settings, side by side with the fake and
LiteLLM (started once), and alternates rounds over those four, so that the machine's noise hits them equally;
each group is compared within itself. Settings (see `GROUPS`): Serve's proxy; direct ingress (the ingress
replica's own port; ours puts it on server.port; `server.throughput_optimized: false`); Ray's throughput bundle
(ours: `server.throughput_optimized: true`, which sets `RAY_SERVE_THROUGHPUT_OPTIMIZED=1`; the trivial ingress gets
the same Serve variables); and, on the trivial ingress only, one knob at a time (option groups, without LiteLLM):
Serve's default `max_ongoing_requests` (5), the access log on, uvloop off, the throughput bundle through the proxy,
and plain httpx or plain aiohttp instead of the gateway's client upstream. One more option group runs ours with and
without `server.throughput_optimized` side by side, so that the two are compared under the same noise.

Per target, per round: sequential non-stream chat latency (one keep-alive connection, `max_tokens` 8), sequential
stream first-content-chunk latency, and requests/s from 32 closed-loop clients for a fixed time (aiohttp: an
httpx client tops out near 200 req/s here). Requests carry no `temperature`, so our response cache passes them by;
ours also gets cacheable ones that miss (temperature 0, a new prompt each). CPU seconds per request of each
server's processes come from /proc; py-spy (in the LiteLLM venv) profiles the ingress replicas of one group.

Prints a table and saves `benchmarks/out/remote_overhead.{json,md}` (and time-stamped copies), with each
server's log under `benchmarks/out/logs/remote-<stamp>/`. Every process started is stopped at the end, and
whatever is left of its session killed, also on failure or Ctrl-C.

(`python -m benchmarks.remote_overhead trivial-serve ...` is the trivial ingress's own process; the benchmark
starts it.)
"""

from __future__ import annotations

import argparse
import asyncio
import datetime
import http.client
import importlib.metadata
import json
import math
import os
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

if __package__ in (None, ""):  # run as a script: make `benchmarks` importable
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import aiohttp  # noqa: E402

from benchmarks import loadgen  # noqa: E402
from benchmarks.local_slice import child_env  # noqa: E402
from benchmarks.servers import Server, describe, free_port, machine_busy_s, role, session_members  # noqa: E402

ROOT = Path(__file__).resolve().parent.parent
OUT = ROOT / "benchmarks" / "out"
LITELLM_VENV = OUT / "litellm-venv"
LITELLM_VERSION = "1.106.2"
PY_SPY_VERSION = "0.4.3"  # the profiler, in the same benchmark-only virtualenv

MODEL = "openrouter/gpt-4o-mini"  # what every client asks for (ours: the openrouter preset's gpt-4o-mini)
UPSTREAM_MODEL = "openai/gpt-4o-mini"  # what reaches the fake from ours and from LiteLLM
PROMPT = "Please repeat these words back to me exactly as they are written here"  # > 8 words: 8 are echoed
MAX_TOKENS = 8
API_KEY = "sk-bench-" + secrets.token_hex(16)  # LiteLLM's master key; every target gets the same header

TARGETS = ("direct", "trivial", "ours", "litellm")


# ----------------------------------------------------------------------------------------- the trivial ingress


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
        from fastapi.responses import JSONResponse, Response, StreamingResponse

        app = FastAPI(docs_url=None, redoc_url=None, openapi_url=None)
        url = self._url

        def forward_headers(request: Any) -> dict[str, str]:
            headers = {"content-type": "application/json"}
            if auth := request.headers.get("authorization"):
                headers["authorization"] = auth
            return headers

        async def health():  # type: ignore[no-untyped-def]
            return JSONResponse({"status": "ok", "app": "trivial"})

        if self._kind in ("gateway", "httpx"):
            import httpx

            if self._kind == "gateway":
                from orchestrator.providers.factory import http_client
                from orchestrator.settings import ResilienceSettings

                client = http_client(ResilienceSettings(connect_timeout_s=5.0, idle_timeout_s=60.0))
            else:
                client = httpx.AsyncClient(
                    timeout=httpx.Timeout(connect=5.0, read=60.0, write=5.0, pool=5.0),
                    limits=httpx.Limits(max_connections=512, max_keepalive_connections=128),
                )

            async def chat(request):  # type: ignore[no-untyped-def]
                built = client.build_request(
                    "POST", url, content=await request.body(), headers=forward_headers(request)
                )
                upstream = await client.send(built, stream=True)
                kind = upstream.headers.get("content-type", "application/json")
                if kind.startswith("text/event-stream"):

                    async def passthrough() -> Any:
                        try:
                            async for piece in upstream.aiter_raw():
                                yield piece
                        finally:
                            await upstream.aclose()

                    return StreamingResponse(passthrough(), status_code=upstream.status_code, media_type=kind)
                body = await upstream.aread()
                await upstream.aclose()
                return Response(body, status_code=upstream.status_code, media_type=kind)

        else:
            import aiohttp

            sessions: list[aiohttp.ClientSession] = []  # made on the replica's loop, at the first request

            async def chat(request):  # type: ignore[no-untyped-def]
                if not sessions:
                    sessions.append(aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=512)))
                upstream = await sessions[0].post(url, data=await request.body(), headers=forward_headers(request))
                kind = upstream.headers.get("content-type", "application/json")
                if kind.startswith("text/event-stream"):

                    async def passthrough() -> Any:
                        try:
                            async for piece in upstream.content.iter_any():
                                yield piece
                        finally:
                            upstream.release()

                    return StreamingResponse(passthrough(), status_code=upstream.status, media_type=kind)
                body = await upstream.read()
                upstream.release()
                return Response(body, status_code=upstream.status, media_type=kind)

        # Real annotation objects: this class is pickled by value into the replica, where the string
        # annotations `from __future__ import annotations` makes could not be resolved by FastAPI.
        chat.__annotations__ = {"request": Request}
        app.add_api_route("/health", health, methods=["GET"])
        app.add_api_route("/v1/chat/completions", chat, methods=["POST"])
        return app


def serve_trivial(argv: list[str]) -> int:
    """The trivial ingress's process: Ray, Serve on `--port`, the app; stop on SIGINT/SIGTERM."""
    parser = argparse.ArgumentParser(prog="benchmarks.remote_overhead trivial-serve")
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--upstream", required=True, help="the fake's base URL, with /v1")
    parser.add_argument("--max-ongoing-requests", type=int, default=512)
    parser.add_argument("--access-log", action="store_true")
    parser.add_argument(
        "--client", choices=("gateway", "httpx", "aiohttp"), default="gateway", help="the upstream HTTP client"
    )
    args = parser.parse_args(argv)

    import ray
    from ray import serve

    stopping = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stopping.set())
    signal.signal(signal.SIGINT, lambda *_: stopping.set())
    ray.init(include_dashboard=False, log_to_driver=True)  # the same as orchestrator.runtime.start
    try:
        serve.start(http_options={"host": "127.0.0.1", "port": args.port})
        deployment = serve.deployment(serve.ingress()(TrivialIngress)).options(  # type: ignore[attr-defined]
            name="TrivialIngress",
            num_replicas=1,
            max_ongoing_requests=args.max_ongoing_requests,
            ray_actor_options={"num_cpus": 0},
        )
        serve.run(
            deployment.bind(args.upstream, args.client),
            name="trivial",
            route_prefix="/",
            blocking=False,
            logging_config={"enable_access_log": args.access_log},
        )
        print(f"\nReady: trivial ingress at http://127.0.0.1:{args.port}\n", file=sys.stderr, flush=True)
        stopping.wait()
    finally:
        print("Stopping...", file=sys.stderr, flush=True)
        try:
            serve.shutdown()  # type: ignore[no-untyped-call]
        finally:
            ray.shutdown()
    return 0


# ----------------------------------------------------------------------------------------- Ray settings


@dataclass(frozen=True)
class RaySetting:
    """One way of running Ray Serve, applied to the trivial ingress and (unless `trivial_only`) to ours."""

    name: str
    label: str
    direct_ingress: bool = False  # measure at the ingress replica's own port
    # Ray's throughput bundle: ours through `server.throughput_optimized` (orchestrator.runtime.serve_env sets
    # the variables), the trivial ingress through the same variables in its environment.
    throughput_optimized: bool = False
    env: dict[str, str] = field(default_factory=dict)  # more environment, for both
    max_ongoing_requests: int = 512
    access_log: bool = False
    trivial_args: tuple[str, ...] = ()  # extra arguments for the trivial ingress's process
    trivial_only: bool = False


TPUT = {"RAY_SERVE_THROUGHPUT_OPTIMIZED": "1"}
# What orchestrator.runtime.serve_env sets with server.throughput_optimized (Serve's logs stay on stderr).
TPUT_AS_OURS = {**TPUT, "RAY_SERVE_LOG_TO_STDERR": "1"}

SETTINGS = {
    s.name: s
    for s in (
        RaySetting("proxy", "Serve proxy (HTTP proxy actor → replica)"),
        RaySetting(
            "di",
            "direct ingress (at the ingress replica's port; ours: server.port, server.throughput_optimized false)",
            direct_ingress=True,
        ),
        RaySetting(
            "tput",
            "RAY_SERVE_THROUGHPUT_OPTIMIZED=1 (ours: server.throughput_optimized true; direct ingress, user code "
            "on the main loop, …)",
            direct_ingress=True,
            throughput_optimized=True,
        ),
        # One knob at a time, on the trivial ingress only:
        RaySetting(
            "proxy_mor5",
            "Serve proxy, max_ongoing_requests=5 (Serve's default)",
            max_ongoing_requests=5,
            trivial_only=True,
        ),
        RaySetting(
            "tput_proxy",
            "throughput-optimized bundle, direct ingress off (through the proxy)",
            env={**TPUT, "RAY_SERVE_ENABLE_DIRECT_INGRESS": "0"},
            trivial_only=True,
        ),
        RaySetting(
            "tput_access_log",
            "throughput-optimized + access log on",
            direct_ingress=True,
            throughput_optimized=True,
            access_log=True,
            trivial_only=True,
        ),
        RaySetting(
            "tput_no_uvloop",
            "throughput-optimized + uvloop off (RAY_USE_UVLOOP=0)",
            direct_ingress=True,
            throughput_optimized=True,
            env={"RAY_USE_UVLOOP": "0"},
            trivial_only=True,
        ),
        RaySetting(
            "tput_httpx",
            "throughput-optimized, plain httpx upstream client (httpx's pool) instead of the gateway's",
            direct_ingress=True,
            throughput_optimized=True,
            trivial_args=("--client", "httpx"),
            trivial_only=True,
        ),
        RaySetting(
            "tput_aiohttp",
            "throughput-optimized, plain aiohttp upstream client instead of the gateway's (httpx on aiohttp)",
            direct_ingress=True,
            throughput_optimized=True,
            trivial_args=("--client", "aiohttp"),
            trivial_only=True,
        ),
    )
}


@dataclass(frozen=True)
class Group:
    """Ray-hosted targets started together and measured in alternating rounds, with direct (and LiteLLM)."""

    members: tuple[tuple[str, str], ...]  # (kind, setting name)
    litellm: bool = True
    reference: str | None = None  # option groups: the member ("kind@setting") every other one is compared with


# Main groups: the trivial ingress and ours under one setting (the comparisons the issue asks for).
# Option groups: one knob changed against a reference in the same group (same noise): ours with and without
# server.throughput_optimized; trivial ingresses only, each with one Ray knob or HTTP client changed.
GROUPS: dict[str, Group] = {
    "proxy": Group((("trivial", "proxy"), ("ours", "proxy"))),
    "di": Group((("trivial", "di"), ("ours", "di"))),
    "tput": Group((("trivial", "tput"), ("ours", "tput"))),
    "ours_tput": Group((("ours", "di"), ("ours", "tput")), litellm=False, reference="ours@di"),
    "options_tput": Group(
        (
            ("trivial", "tput"),
            ("trivial", "tput_httpx"),
            ("trivial", "tput_aiohttp"),
            ("trivial", "tput_access_log"),
            ("trivial", "tput_no_uvloop"),
        ),
        litellm=False,
        reference="trivial@tput",
    ),
    "options_proxy": Group(
        (("trivial", "proxy"), ("trivial", "proxy_mor5"), ("trivial", "tput_proxy")),
        litellm=False,
        reference="trivial@proxy",
    ),
}


# ----------------------------------------------------------------------------------------- processes


_RAY_DIRS = iter(range(10**6))


def _ray_env(tmp: Path, setting: RaySetting, di_ports: range, data_dir: Path, kind: str) -> dict[str, str]:
    ray_tmp = tmp / f"r{next(_RAY_DIRS)}"  # short: Ray's socket paths below it must stay < 108 bytes
    ray_tmp.mkdir()
    env = child_env(
        data_dir,
        RAY_TMPDIR=str(ray_tmp),
        RAY_SERVE_DIRECT_INGRESS_MIN_HTTP_PORT=str(di_ports.start),
        RAY_SERVE_DIRECT_INGRESS_MAX_HTTP_PORT=str(di_ports.stop - 1),
        # Only shortens shutdown (30 s by default); the request path is untouched.
        RAY_SERVE_DIRECT_INGRESS_MIN_DRAINING_PERIOD_S="1",
        # The idle local engine: in-process, starts in seconds instead of ~30 s.
        VLLM_ENABLE_V1_MULTIPROCESSING="0",
    )
    if kind == "trivial":  # ours: server.direct_ingress / server.throughput_optimized in its config
        if setting.throughput_optimized:
            env.update(TPUT_AS_OURS)
        if setting.direct_ingress:
            env["RAY_SERVE_ENABLE_DIRECT_INGRESS"] = "1"
    env.update(setting.env)
    return env


@dataclass
class Target:
    """One server under test (or the fake itself)."""

    key: str  # e.g. "ours@tput"
    kind: str  # one of TARGETS
    setting: RaySetting | None
    server: Server | None
    base_url: str  # where the client sends requests (a direct-ingress replica's port once found)
    ray_tmp: Path | None = None
    di_ports: range | None = None


def fake_server(port: int, logs: Path, data_dir: Path) -> Server:
    argv = [
        sys.executable,
        "-m",
        "benchmarks.fake_provider",
        "--port",
        str(port),
        "--ttft-ms",
        "0",
        "--tokens-per-s",
        "0",
        "--model",
        MODEL,
    ]
    return Server("fake", argv, env=child_env(data_dir), log_path=logs / "fake.log", cwd=ROOT)


def litellm_server(port: int, fake_url: str, logs: Path, tmp: Path, data_dir: Path) -> Server:
    import yaml

    config = {
        "model_list": [
            {
                "model_name": MODEL,
                "litellm_params": {
                    "model": f"openai/{UPSTREAM_MODEL}",
                    "api_base": f"{fake_url}/v1",
                    "api_key": "dummy",
                },
            }
        ],
        "litellm_settings": {"set_verbose": False, "json_logs": False},
        "general_settings": {"master_key": API_KEY, "disable_spend_logs": True},
    }
    path = tmp / "litellm.yaml"
    path.write_text(yaml.safe_dump(config, sort_keys=False))
    argv = [
        str(LITELLM_VENV / "bin" / "litellm"),
        "--config",
        str(path),
        "--host",
        "127.0.0.1",
        "--port",
        str(port),
        "--num_workers",
        "1",
    ]
    env = child_env(data_dir, LITELLM_LOG="ERROR", LITELLM_LOCAL_MODEL_COST_MAP="True", LITELLM_TELEMETRY="False")
    return Server("litellm", argv, env=env, log_path=logs / "litellm.log", cwd=tmp)


def trivial_server(
    name: str, setting: RaySetting, port: int, fake_url: str, logs: Path, tmp: Path, di_ports: range, data_dir: Path
) -> tuple[Server, Path]:
    argv = [
        sys.executable,
        "-m",
        "benchmarks.remote_overhead",
        "trivial-serve",
        "--port",
        str(port),
        "--upstream",
        f"{fake_url}/v1",
        "--max-ongoing-requests",
        str(setting.max_ongoing_requests),
    ]
    if setting.access_log:
        argv.append("--access-log")
    argv += setting.trivial_args
    env = _ray_env(tmp, setting, di_ports, data_dir, "trivial")
    return Server(name, argv, env=env, log_path=logs / f"{name}.log", cwd=ROOT), Path(env["RAY_TMPDIR"])


def ours_server(
    name: str, setting: RaySetting, port: int, fake_url: str, logs: Path, tmp: Path, di_ports: range, data_dir: Path
) -> tuple[Server, Path]:
    import yaml

    from orchestrator.settings import DEFAULT_CONFIG

    config = yaml.safe_load(DEFAULT_CONFIG.read_text())
    config["server"] = {
        "host": "127.0.0.1",
        "port": port,
        "direct_ingress": setting.direct_ingress,
        "throughput_optimized": setting.throughput_optimized,
        "access_log": setting.access_log,
    }
    config["local"].update(model="tiny-random", max_model_len=512, kv_cache_gib=0.25)
    config["embedding"]["model"] = None
    config["gateway"]["max_ongoing_requests"] = setting.max_ongoing_requests
    config["providers"]["openrouter"]["base_url"] = f"{fake_url}/v1"
    # The response cache as configured, but in a directory of its own (not the user's cache).
    config.setdefault("cache", {})["directory"] = str(tmp / f"cache-{name}")
    path = tmp / f"{name}.yaml"
    path.write_text(yaml.safe_dump(config, sort_keys=False))
    env = _ray_env(tmp, setting, di_ports, data_dir, "ours")
    env["OPENROUTER_API_KEY"] = "dummy"
    argv = [sys.executable, "-m", "orchestrator.cli", "serve", "--config", str(path)]
    return Server(name, argv, env=env, log_path=logs / f"{name}.log", cwd=ROOT), Path(env["RAY_TMPDIR"])


def _post(url: str, body: bytes, timeout: float = 5.0) -> tuple[int, bytes]:
    request = urllib.request.Request(
        url, data=body, headers={"Content-Type": "application/json", "Authorization": f"Bearer {API_KEY}"}
    )
    try:
        with urllib.request.urlopen(request, timeout=timeout) as resp:
            return resp.status, resp.read()
    except urllib.error.HTTPError as e:
        return e.code, e.read()
    except (OSError, urllib.error.URLError, http.client.HTTPException):  # nothing, or not HTTP (a gRPC port)
        return 0, b""


def answers(base_url: str) -> bool:
    """True when a real chat request through `base_url` returns the fake's echo."""
    status, body = _post(f"{base_url}/v1/chat/completions", nonstream_body())
    if status != 200:
        return False
    try:
        return bool(json.loads(body)["choices"][0]["message"]["content"])
    except (ValueError, KeyError, IndexError, TypeError):
        return False


def wait_answering(server: Server, base_url: str, timeout_s: float) -> float:
    deadline = time.perf_counter() + timeout_s
    while time.perf_counter() < deadline:
        if not server.alive():
            raise RuntimeError(f"{server.name} exited during start-up; log {server.log_path}:\n{server.log_tail()}")
        if answers(base_url):
            server.ready_s = time.perf_counter() - server.started_at
            return server.ready_s
        time.sleep(0.5)
    raise TimeoutError(
        f"{server.name} not answering within {timeout_s:.0f} s; log {server.log_path}:\n{server.log_tail()}"
    )


def listening_ports(pids: Sequence[int]) -> set[int]:
    """TCP ports that processes `pids` listen on (from /proc: their socket inodes in LISTEN state)."""
    listeners: dict[str, int] = {}
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        try:
            lines = Path(table).read_text().splitlines()[1:]
        except OSError:
            continue
        for line in lines:
            fields = line.split()
            if len(fields) > 9 and fields[3] == "0A":  # LISTEN
                listeners[fields[9]] = int(fields[1].rsplit(":", 1)[1], 16)
    ports = set()
    for pid in pids:
        try:
            fds = os.listdir(f"/proc/{pid}/fd")
        except OSError:
            continue
        for fd in fds:
            try:
                link = os.readlink(f"/proc/{pid}/fd/{fd}")
            except OSError:
                continue
            if link.startswith("socket:[") and link[8:-1] in listeners:
                ports.add(listeners[link[8:-1]])
    return ports


def direct_ingress_port(server: Server, prefer: int, timeout_s: float = 60.0) -> int:
    """The HTTP port the ingress replica of `server`'s Ray instance listens on itself.

    Found from /proc (the ports the replica process listens on; `prefer` first: ours puts its replica on
    server.port), and checked with a real chat request; the Serve proxy's port is never among them.
    """
    assert server.proc is not None
    deadline = time.perf_counter() + timeout_s
    while time.perf_counter() < deadline:
        pids = [pid for pid, cmd in session_members(server.proc.pid) if _role(cmd) == "ingress replica"]
        ports = listening_ports(pids)
        for port in sorted(ports, key=lambda p: p != prefer):
            if answers(f"http://127.0.0.1:{port}"):
                return port
        time.sleep(1.0)
    raise RuntimeError(f"{server.name}: no port of its ingress replica answered")


# ----------------------------------------------------------------------------------------- measuring


def nonstream_body(prompt: str = PROMPT, **extra: Any) -> bytes:
    """A short chat request. No `temperature`, as most clients send it: not reproducible, so our response
    cache (mode "auto") passes it by, and every target does the same work: one upstream call."""
    return json.dumps(
        {"model": MODEL, "messages": [{"role": "user", "content": prompt}], "max_tokens": MAX_TOKENS, **extra}
    ).encode()


def stream_body() -> bytes:
    return nonstream_body(stream=True, stream_options={"include_usage": True})


_MISS = iter(range(10**9))


def cacheable_miss_body() -> bytes:
    """Temperature 0 and a prompt never sent before: our cache looks it up, misses, joins a single-flight,
    and stores the answer (the remote route as a cacheable request sees it)."""
    return nonstream_body(f"{PROMPT} {secrets.token_hex(4)}{next(_MISS)}", temperature=0)


def _session(concurrency: int) -> aiohttp.ClientSession:
    return aiohttp.ClientSession(
        connector=aiohttp.TCPConnector(limit=concurrency, ttl_dns_cache=None),
        timeout=aiohttp.ClientTimeout(total=30),
        headers={"Authorization": f"Bearer {API_KEY}"},
    )


async def _post_once(session: aiohttp.ClientSession, url: str, body: bytes) -> tuple[bool, float]:
    t0 = time.perf_counter()
    try:
        async with session.post(url, data=body, headers=loadgen.JSON_HEADERS) as resp:
            await resp.read()
            ok = resp.status == 200
    except (aiohttp.ClientError, TimeoutError):
        ok = False
    return ok, (time.perf_counter() - t0) * 1000


@dataclass
class Load:
    rounds: int = 3
    sequential: int = 50  # non-stream requests per round, one after another
    streams: int = 50  # stream requests per round, one after another
    concurrency: int = 32
    duration_s: float = 2.5  # of each round's throughput phase
    warmup: int = 5


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

    def summary(self) -> dict[str, Any]:
        server = sum(self.server_cpu_s.values())
        n = self.rate_requests or 1
        return {
            "sequential_ms": _dist(self.sequential_ms),
            "cacheable_miss_ms": _dist(self.miss_ms),
            "first_chunk_ms": _dist(self.first_chunk_ms),
            "stream_total_ms": _dist(self.stream_total_ms),
            "loaded_ms": _dist(self.loaded_ms),
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
        }


def _dist(values: Sequence[float]) -> dict[str, float]:
    return {
        "n": len(values),
        "p50": loadgen.percentile(values, 50),
        "p90": loadgen.percentile(values, 90),
        "p99": loadgen.percentile(values, 99),
        "mean": sum(values) / len(values) if values else math.nan,
        "min": min(values) if values else math.nan,
    }


_ROLES = (
    ("ServeReplica:trivial", "ingress replica"),
    ("ServeReplica:orchestrator:Gateway", "ingress replica"),
    ("ServeReplica:orchestrator:LocalModel", "LocalModel replica (idle)"),
    ("litellm", "LiteLLM proxy"),
    ("benchmarks.fake_provider", "fake provider"),
    ("benchmarks.remote_overhead", "Ray driver"),
)


def _role(cmd: str) -> str:
    for needle, name in _ROLES:
        if needle in cmd:
            return name
    return role(cmd)


_CLK_TCK = os.sysconf("SC_CLK_TCK")


def cpu_snapshot(server: Server | None) -> dict[int, tuple[str, float]]:
    if server is None or server.proc is None:
        return {}
    out = {}
    for pid, cmd in session_members(server.proc.pid):
        try:
            stat = Path(f"/proc/{pid}/stat").read_text()
            fields = stat[stat.rindex(")") + 2 :].split()
            out[pid] = (_role(cmd), (int(fields[11]) + int(fields[12])) / _CLK_TCK)
        except (OSError, ValueError, IndexError):
            continue
    return out


def cpu_spent(before: dict[int, tuple[str, float]], after: dict[int, tuple[str, float]]) -> dict[str, float]:
    spent: dict[str, float] = {}
    for pid, (name, cpu) in after.items():
        spent[name] = spent.get(name, 0.0) + cpu - before.get(pid, (name, 0.0))[1]
    return spent


async def sequential(
    url: str, n: int, warmup: int, body: Callable[[], bytes] = nonstream_body
) -> tuple[list[float], int]:
    out: list[float] = []
    failed = 0
    async with _session(1) as session:
        for i in range(warmup + n):
            ok, ms = await _post_once(session, url, body())
            if i >= warmup and ok:
                out.append(ms)
            elif i >= warmup:
                failed += 1
    return out, failed


async def streams(url: str, n: int, warmup: int) -> tuple[list[loadgen.StreamResult], list[str]]:
    body = stream_body()
    results = []
    async with _session(1) as session:
        for i in range(warmup + n):
            r = await loadgen.stream_chat(session, url, body)
            if i >= warmup:
                results.append(r)
    return results, [r.error for r in results if r.error]


async def rate(url: str, concurrency: int, duration_s: float) -> tuple[int, int, float, list[float]]:
    """Closed loop: `concurrency` clients, each sending its next request when the last ends, for `duration_s`."""
    body = nonstream_body()
    latencies: list[float] = []
    ok_n = failed = 0
    async with _session(concurrency) as session:
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


async def measure_round(target: Target, figures: Figures, load: Load, fake: Server) -> None:
    url = f"{target.base_url}/v1/chat/completions"
    seq, failed = await sequential(url, load.sequential, load.warmup)
    figures.sequential_ms += seq
    figures.seq_p50_rounds.append(loadgen.percentile(seq, 50))
    figures.failed += failed
    results, errors = await streams(url, load.streams, load.warmup)
    chunks = [r.ttft_s * 1000 for r in results if r.ok and r.ttft_s is not None]
    figures.first_chunk_ms += chunks
    figures.stream_total_ms += [r.latency_s * 1000 for r in results if r.ok]
    figures.chunk_p50_rounds.append(loadgen.percentile(chunks, 50))
    figures.failed += len(results) - len(chunks)
    figures.errors += errors
    if target.kind == "ours":
        miss, failed = await sequential(url, load.sequential, load.warmup, cacheable_miss_body)
        figures.miss_ms += miss
        figures.failed += failed
    before, upstream0 = cpu_snapshot(target.server), cpu_snapshot(fake)
    client0, machine0 = time.process_time(), machine_busy_s()
    ok_n, failed, wall, latencies = await rate(url, load.concurrency, load.duration_s)
    client = time.process_time() - client0
    machine = machine_busy_s() - machine0
    upstream = sum(cpu_spent(upstream0, cpu_snapshot(fake)).values())
    spent = cpu_spent(before, cpu_snapshot(target.server)) if target.kind != "direct" else {}
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
    for r in range(load.rounds):
        order = targets[r % len(targets) :] + targets[: r % len(targets)]
        for t in order:
            t0 = time.perf_counter()
            await measure_round(t, figures[t.key], load, fake)
            f = figures[t.key]
            _log(
                f"  round {r + 1}/{load.rounds} {t.key}: seq p50 {f.seq_p50_rounds[-1]:.2f} ms, first chunk p50 "
                f"{f.chunk_p50_rounds[-1]:.2f} ms, {f.rate_rounds[-1]:.0f} req/s ({time.perf_counter() - t0:.1f} s)"
            )
    return figures


# ----------------------------------------------------------------------------------------- profiling


def profile_replica(target: Target, load: Load, out: Path, seconds: float) -> dict[str, Any]:
    """py-spy on `target`'s ingress replica during a throughput phase: where its time goes."""
    py_spy = shutil.which("py-spy", path=str(LITELLM_VENV / "bin")) or shutil.which("py-spy")
    assert target.server is not None and target.server.proc is not None
    pids = [pid for pid, cmd in session_members(target.server.proc.pid) if _role(cmd) == "ingress replica"]
    if py_spy is None or not pids:
        return {"error": "py-spy or the replica not found"}
    raw = out / f"profile-{target.key.replace('@', '-')}.txt"
    spy = subprocess.Popen(
        [py_spy, "record", "-p", str(pids[0]), "-d", str(int(seconds)), "-r", "200", "-f", "raw", "-o", str(raw)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
    )
    try:
        time.sleep(1.0)  # py-spy attaches
        asyncio.run(rate(f"{target.base_url}/v1/chat/completions", load.concurrency, seconds - 1.0))
        spy.wait(30)
    finally:
        if spy.poll() is None:
            spy.kill()
            spy.wait()
    if not raw.exists():
        err = spy.stderr.read().decode(errors="replace")[-300:] if spy.stderr else ""
        return {"error": f"py-spy wrote nothing: {err}"}
    return {"raw": str(raw), **summarize_profile(raw)}


# Buckets for the profile, first match wins (a frame is "file:function" in py-spy's raw format).
_BUCKETS = (
    ("orchestrator/api.py", "orchestrator.api (parse, encode, SSE)"),
    ("orchestrator/pipeline.py", "orchestrator.pipeline"),
    ("orchestrator/failover.py", "orchestrator.failover"),
    ("orchestrator/streams.py", "orchestrator.streams (fold)"),
    ("orchestrator/providers", "orchestrator.providers"),
    ("orchestrator/protocol.py", "orchestrator.protocol"),
    ("pydantic", "pydantic"),
    ("httpx", "httpx"),
    ("httpcore", "httpcore"),
    ("fastapi", "fastapi"),
    ("starlette", "starlette"),
    ("uvicorn", "uvicorn"),
    ("ray/serve", "ray.serve"),
    ("ray/", "ray (core)"),
)


# Leaf frames of threads that are waiting, not working (py-spy sees a thread blocked in C code as active).
_IDLE_LEAVES = (
    "Thread.run (threading.py",
    "_worker (concurrent/futures/thread.py",
    "Worker.main_loop (ray/_private/worker.py",
    "Condition.wait (threading.py",
    "Event.wait (threading.py",
    "select (selectors.py",
    "run_forever (asyncio/base_events.py",
    # uvloop's run_forever is C: an idle loop thread's leaf is the Python function that started it.
    "SingletonThreadRouter._get_singleton_asyncio_loop.<locals>._run_router_event_loop (",
    "UserCallableWrapper.__init__.<locals>._run_user_code_event_loop (",
)


def summarize_profile(raw: Path) -> dict[str, Any]:
    """Over the busy samples (idle waits dropped): the share with each bucket on the stack, the frames with the
    largest inclusive share, and the hottest own frames."""
    busy = idle = 0
    inclusive: dict[str, int] = {}
    frames_in: dict[str, int] = {}
    own: dict[str, int] = {}
    for line in raw.read_text(errors="replace").splitlines():
        stack, _, count = line.rpartition(" ")
        if not count.isdigit():
            continue
        n = int(count)
        frames = stack.split(";")
        if frames[-1].startswith(_IDLE_LEAVES):
            idle += n
            continue
        busy += n
        seen = set()
        for frame in frames:
            for needle, bucket in _BUCKETS:
                if needle in frame:
                    seen.add(bucket)
                    break
        for bucket in seen:
            inclusive[bucket] = inclusive.get(bucket, 0) + n
        for frame in {f.split(" (")[0] + " (" + f.split(" (")[1].split(":")[0] + ")" for f in frames if " (" in f}:
            frames_in[frame] = frames_in.get(frame, 0) + n
        own[frames[-1]] = own.get(frames[-1], 0) + n

    def pct(d: dict[str, int], k: int) -> list[tuple[str, float]]:
        return [(name, round(100 * v / busy, 1)) for name, v in sorted(d.items(), key=lambda kv: -kv[1])[:k]]

    return {
        "busy_samples": busy,
        "idle_samples": idle,
        "inclusive_pct": dict(pct(inclusive, len(inclusive))) if busy else {},
        "top_inclusive_frames": pct(frames_in, 60) if busy else [],
        "top_own_frames": pct(own, 30) if busy else [],
    }


# ----------------------------------------------------------------------------------------- LiteLLM's venv


def ensure_litellm() -> str:
    """LiteLLM's proxy (and py-spy) in `benchmarks/out/litellm-venv`, created or reused, pinned; its version."""
    python = LITELLM_VENV / "bin" / "python"
    wanted = {"litellm": LITELLM_VERSION, "py-spy": PY_SPY_VERSION}
    if python.exists():
        probe = subprocess.run(
            [str(python), "-c", "import importlib.metadata as m; print(m.version('litellm'), m.version('py-spy'))"],
            capture_output=True,
            text=True,
        )
        if probe.stdout.split() == list(wanted.values()):
            return LITELLM_VERSION
    _log(f"installing litellm[proxy]=={LITELLM_VERSION} into {LITELLM_VENV} (a few minutes, once)")
    base = getattr(sys, "_base_executable", sys.executable)
    subprocess.run([base, "-m", "venv", str(LITELLM_VENV)], check=True)
    subprocess.run(
        [str(python), "-m", "pip", "install", "-q", f"litellm[proxy]=={LITELLM_VERSION}", f"py-spy=={PY_SPY_VERSION}"],
        check=True,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,  # pip here prints many harmless "Location ... is ignored" warnings
    )
    return LITELLM_VERSION


# ----------------------------------------------------------------------------------------- the run


def _log(message: str) -> None:
    print(f"[remote_overhead] {message}", file=sys.stderr, flush=True)


def _stop_all(servers: list[Server], result: dict[str, Any]) -> None:
    """Stop servers in parallel (each SIGINT, then escalation), recording how each went."""

    def stop(s: Server) -> None:
        if s.proc is None:
            return
        try:
            result["servers"][s.name] = {"ready_s": s.ready_s, **describe(s.stop())}
        except Exception as e:  # keep stopping the others
            result["servers"][s.name] = {"ready_s": s.ready_s, "error": repr(e)}

    threads = [threading.Thread(target=stop, args=(s,)) for s in servers]
    for t in threads:
        t.start()
    for t in threads:
        t.join()


def _is_free(port: int) -> bool:
    with socket.socket() as s:
        try:
            s.bind(("127.0.0.1", port))
        except OSError:
            return False
    return True


def free_port_range(n: int) -> range:
    """`n` consecutive free ports, from a random free port."""
    for _ in range(50):
        start = free_port()
        if start + n < 65535 and all(_is_free(p) for p in range(start, start + n)):
            return range(start, start + n)
    raise RuntimeError("no free port range")


def _ranges(n: int, k: int) -> list[range]:
    """`k` non-overlapping ranges of `n` free ports."""
    out: list[range] = []
    while len(out) < k:
        r = free_port_range(n)
        if all(r.stop <= o.start or o.stop <= r.start for o in out):
            out.append(r)
    return out


def run(args: argparse.Namespace) -> dict[str, Any]:
    load = Load(
        rounds=args.rounds,
        sequential=args.sequential,
        streams=args.streams,
        concurrency=args.concurrency,
        duration_s=args.duration,
    )
    stamp = datetime.datetime.now().strftime("%Y%m%d-%H%M%S")
    logs = OUT / "logs" / f"remote-{stamp}"
    logs.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix="rob-", dir="/tmp"))  # short: Ray's socket paths must stay < 108 chars
    from orchestrator.settings import load_settings

    data_dir = load_settings().data_dir
    t_run = time.perf_counter()
    result: dict[str, Any] = {"meta": meta(load, logs, args), "groups": {}, "servers": {}, "errors": {}}
    result["meta"]["versions"]["litellm"] = ensure_litellm()

    fake = fake_server(free_port(), logs, data_dir)
    fake_url = f"http://127.0.0.1:{fake.argv[fake.argv.index('--port') + 1]}"
    lite = litellm_server(free_port(), fake_url, logs, tmp, data_dir)
    lite_url = f"http://127.0.0.1:{lite.argv[lite.argv.index('--port') + 1]}"
    running: list[Server] = []
    try:
        fake.start()
        running.append(fake)
        wait_answering(fake, fake_url, 30)
        lite.start()
        running.append(lite)
        lite_started = False
        for group in args.groups:
            members = GROUPS[group].members
            _log(f"group {group}: starting {', '.join(f'{k}@{s}' for k, s in members)}")
            t0 = time.perf_counter()
            ranges = _ranges(8, len(members))
            targets: list[Target] = [Target("direct", "direct", None, None, fake_url)]
            if GROUPS[group].litellm:
                targets.append(Target("litellm", "litellm", None, lite, lite_url))
            group_servers: list[Server] = []

            def launch(kind: str, setting: RaySetting, name: str, di_ports: range, into: list[Server]) -> Target:
                port = free_port()
                make = trivial_server if kind == "trivial" else ours_server
                server, ray_tmp = make(name, setting, port, fake_url, logs, tmp, di_ports, data_dir)
                into.append(server)  # stopped at the end of the group, whatever happens
                server.start()
                url = f"http://127.0.0.1:{port}"
                return Target(f"{kind}@{setting.name}", kind, setting, server, url, ray_tmp, di_ports)

            try:
                for (kind, setting_name), di_ports in zip(members, ranges, strict=True):
                    name = f"{group}-{kind}-{setting_name}"
                    targets.append(launch(kind, SETTINGS[setting_name], name, di_ports, group_servers))
                if not lite_started:
                    wait_answering(lite, lite_url, args.ready_timeout)
                    lite_started = True
                for i, t in enumerate(targets):
                    if t.setting is None:
                        continue
                    assert t.server is not None and t.di_ports is not None
                    try:
                        wait_answering(t.server, t.base_url, args.ready_timeout)
                    except RuntimeError as e:  # it exited: Ray's start-up can time out on a loaded machine
                        _log(f"{t.server.name} failed to start ({str(e).splitlines()[0]}); one more try")
                        retry = launch(t.kind, t.setting, f"{t.server.name}-retry", t.di_ports, group_servers)
                        targets[i] = t = retry
                        assert t.server is not None
                        wait_answering(t.server, t.base_url, args.ready_timeout)
                    if t.setting.direct_ingress:
                        proxy_url = t.base_url
                        port = direct_ingress_port(t.server, prefer=int(proxy_url.rsplit(":", 1)[1]))
                        t.base_url = f"http://127.0.0.1:{port}"
                        result["meta"].setdefault("direct_ingress", {})[f"{group}/{t.key}"] = {
                            "server_port": proxy_url,
                            "replica": t.base_url,
                        }
                _log(f"group {group}: ready in {time.perf_counter() - t0:.0f} s; measuring")
                la0 = os.getloadavg()
                figures = asyncio.run(measure_group(targets, load, fake))
                result["groups"][group] = {
                    "targets": {k: f.summary() for k, f in figures.items()},
                    "loadavg_before": la0,
                    "loadavg_after": os.getloadavg(),
                    "ready_s": {t.key: t.server.ready_s for t in targets if t.server is not None},
                }
                if args.profile and group == args.profile_group:
                    for t in targets:
                        if t.kind in ("trivial", "ours"):
                            _log(f"profiling {t.key}")
                            result.setdefault("profiles", {})[t.key] = profile_replica(t, load, logs, 8.0)
            except Exception as e:  # one group failing must not lose the others' figures
                result["errors"][group] = f"{type(e).__name__}: {e}"
                _log(f"group {group} FAILED: {e}")
            finally:
                _stop_all(group_servers, result)
                _log(f"group {group}: done in {time.perf_counter() - t0:.0f} s")
    finally:
        _stop_all(running, result)
        shutil.rmtree(tmp, ignore_errors=True)
    result["meta"]["total_s"] = round(time.perf_counter() - t_run, 1)
    result["meta"]["loadavg_end"] = os.getloadavg()
    return result


def meta(load: Load, logs: Path, args: argparse.Namespace) -> dict[str, Any]:
    def version(dist: str) -> str | None:
        try:
            return importlib.metadata.version(dist)
        except importlib.metadata.PackageNotFoundError:
            return None

    exe = Path(sys.executable)
    python = str(exe.relative_to(ROOT)) if exe.is_relative_to(ROOT) else exe.name
    return {
        "command": " ".join([python, "-m", "benchmarks.remote_overhead", *sys.argv[1:]]),
        "started": datetime.datetime.now().isoformat(timespec="seconds"),
        "cpus": os.cpu_count(),
        "versions": {
            d: version(d)
            for d in ("ray", "fastapi", "uvicorn", "httpx", "httpx-aiohttp", "aiohttp", "uvloop", "pydantic")
        },
        "load": load.__dict__,
        "groups": args.groups,
        "model": MODEL,
        "max_tokens": MAX_TOKENS,
        "logs": str(logs),
        "loadavg_start": os.getloadavg(),
    }


# ----------------------------------------------------------------------------------------- reporting


LABEL = {"direct": "direct to the fake", "litellm": "LiteLLM proxy (1 worker)"}


def label(key: str) -> str:
    if key in LABEL:
        return LABEL[key]
    kind, _, setting = key.partition("@")
    who = "trivial ingress" if kind == "trivial" else "ours"
    return f"{who}, {SETTINGS[setting].label}"


def _g(d: Any, *path: str) -> float:
    for p in path:
        if not isinstance(d, dict) or p not in d:
            return math.nan
        d = d[p]
    return float(d) if isinstance(d, int | float) else math.nan


def _f(x: float, digits: int = 2) -> str:
    return "–" if math.isnan(x) else f"{x:,.{digits}f}"


def group_table(group: dict[str, Any]) -> str:
    t = group["targets"]
    direct = t.get("direct", {})
    d_seq, d_chunk = _g(direct, "sequential_ms", "p50"), _g(direct, "first_chunk_ms", "p50")
    head = [
        "target",
        "seq p50 ms",
        "seq p99 ms",
        "added p50",
        "1st chunk p50 ms",
        "1st chunk p99 ms",
        "added p50",
        "req/s @32",
        "p50 ms @32",
        "server CPU ms/req",
    ]
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for key, s in t.items():
        seq, chunk = _g(s, "sequential_ms", "p50"), _g(s, "first_chunk_ms", "p50")
        cpu = _g(s, "server_cpu_ms_per_req_total") if key != "direct" else _g(s, "upstream_cpu_ms_per_req")
        lines.append(
            "| "
            + " | ".join(
                [
                    label(key),
                    _f(seq),
                    _f(_g(s, "sequential_ms", "p99")),
                    "" if key == "direct" else _f(seq - d_seq),
                    _f(chunk),
                    _f(_g(s, "first_chunk_ms", "p99")),
                    "" if key == "direct" else _f(chunk - d_chunk),
                    _f(_g(s, "req_per_s"), 0),
                    _f(_g(s, "loaded_ms", "p50"), 1),
                    _f(cpu),
                ]
            )
            + " |"
        )
    return "\n".join(lines)


def miss_text(group: dict[str, Any]) -> str:
    parts = []
    for key, s in group["targets"].items():
        if _g(s, "cacheable_miss_ms", "n") > 0:
            miss, bypass = _g(s, "cacheable_miss_ms", "p50"), _g(s, "sequential_ms", "p50")
            parts.append(
                f"{label(key)}, cacheable requests that miss the response cache (temperature 0, a new prompt each): "
                f"seq p50 {_f(miss)} ms, p99 {_f(_g(s, 'cacheable_miss_ms', 'p99'))} ms ({miss - bypass:+.2f} ms "
                "over the same request without temperature, which the cache passes by)."
            )
    return " ".join(parts)


def rounds_text(group: dict[str, Any]) -> str:
    parts = []
    for key, s in group["targets"].items():
        seq = " / ".join(_f(x) for x in s["sequential_p50_rounds"])
        rps = " / ".join(_f(x, 0) for x in s["req_per_s_rounds"])
        parts.append(f"{key}: seq p50 {seq} ms; {rps} req/s")
    return "Per round — " + "; ".join(parts) + "."


def verdicts(result: dict[str, Any]) -> list[str]:
    """The issue's targets, evaluated inside each main group (same Ray setting, same noise)."""
    out = []
    for name, group in result["groups"].items():
        if name in GROUPS and GROUPS[name].reference is not None:
            continue
        t = group["targets"]
        ours = next((k for k in t if k.startswith("ours@")), None)
        trivial = next((k for k in t if k.startswith("trivial@")), None)
        if ours is None or "direct" not in t:
            continue
        d_seq, d_chunk = _g(t["direct"], "sequential_ms", "p50"), _g(t["direct"], "first_chunk_ms", "p50")
        o = t[ours]
        parts = []
        if trivial:
            dv = _g(o, "sequential_ms", "p50") - _g(t[trivial], "sequential_ms", "p50")
            dc = _g(o, "first_chunk_ms", "p50") - _g(t[trivial], "first_chunk_ms", "p50")
            parts.append(
                f"ours − trivial ingress: {dv:+.2f} ms seq p50 ({'met' if dv <= 1 else 'MISSED'} ≤ 1 ms), "
                f"{dc:+.2f} ms first-chunk p50"
            )
        if "litellm" in t:
            lite = t["litellm"]
            a_o, a_l = _g(o, "sequential_ms", "p50") - d_seq, _g(lite, "sequential_ms", "p50") - d_seq
            c_o, c_l = _g(o, "first_chunk_ms", "p50") - d_chunk, _g(lite, "first_chunk_ms", "p50") - d_chunk
            r = _g(o, "req_per_s") / _g(lite, "req_per_s")
            parts.append(
                f"added latency vs LiteLLM's: seq {a_o:.2f} vs {a_l:.2f} ms = {a_l / a_o:.1f}× lower "
                f"({'met' if a_l >= 3 * a_o else 'MISSED'} ≥ 3×), first chunk {c_o:.2f} vs {c_l:.2f} ms = "
                f"{c_l / c_o:.1f}× lower; throughput {r:.1f}× LiteLLM's ({'met' if r >= 3 else 'MISSED'} ≥ 3×)"
            )
        out.append(f"- **{name}** ({SETTINGS[ours.partition('@')[2]].label}): " + "; ".join(parts))
    return out


def options_lines(result: dict[str, Any]) -> list[str]:
    """Each option against its group's reference (same noise), and the fastest setting for ours."""
    refs = {name: g.reference for name, g in GROUPS.items() if g.reference is not None}
    out = []
    for name, ref in refs.items():
        t = result["groups"].get(name, {}).get("targets", {})
        if ref not in t:
            continue
        r = t[ref]
        for key, s in t.items():
            if key in ("direct", ref):
                continue
            dv = _g(s, "sequential_ms", "p50") - _g(r, "sequential_ms", "p50")
            dc = _g(s, "first_chunk_ms", "p50") - _g(r, "first_chunk_ms", "p50")
            rate = _g(s, "req_per_s") / _g(r, "req_per_s")
            out.append(
                f"- {label(key)} vs {label(ref)}: seq p50 {dv:+.2f} ms, first chunk p50 {dc:+.2f} ms, "
                f"throughput {rate:.2f}×, server CPU/req {_g(s, 'server_cpu_ms_per_req_total'):.2f} vs "
                f"{_g(r, 'server_cpu_ms_per_req_total'):.2f} ms"
            )
    ours = [
        (name, key, g["targets"][key])
        for name, g in result["groups"].items()
        for key in g["targets"]
        if key.startswith("ours@")
    ]
    if ours:
        name, key, s = min(ours, key=lambda o: _g(o[2], "sequential_ms", "p50"))
        fastest_rate = max(ours, key=lambda o: _g(o[2], "req_per_s"))
        out.append(
            f"- Fastest for ours: {SETTINGS[key.partition('@')[2]].label} (seq p50 {_g(s, 'sequential_ms', 'p50'):.2f} "
            f"ms); highest throughput: {SETTINGS[fastest_rate[1].partition('@')[2]].label} "
            f"({_g(fastest_rate[2], 'req_per_s'):.0f} req/s)."
        )
    return out


def cpu_lines(result: dict[str, Any]) -> list[str]:
    lines = []
    for name, group in result["groups"].items():
        for key, s in group["targets"].items():
            if key == "direct":
                continue
            roles = ", ".join(
                f"{k} {v:.2f}"
                for k, v in sorted(s["server_cpu_ms_per_req"].items(), key=lambda kv: -kv[1])
                if v >= 0.01
            )
            lines.append(
                f"- {name} / {key}: {roles} (upstream fake {s['upstream_cpu_ms_per_req']:.2f}, client "
                f"{s['client_cpu_ms_per_req']:.2f}; other processes {s['foreign_cpu_cores']:.2f} cores)"
            )
    return lines


def report(result: dict[str, Any]) -> str:
    meta = result["meta"]
    load = meta["load"]
    la = meta["loadavg_start"]
    parts = [
        "# Gateway overhead on a remote route (fake provider, 0 ms; 2 CPUs)",
        "",
        f"Command: `{meta['command']}` — started {meta['started']}, took {meta.get('total_s', '?')} s. "
        f"Per target and round: {load['sequential']} sequential non-stream chats and {load['streams']} sequential "
        f"streams (max_tokens {MAX_TOKENS}, after {load['warmup']} warm-up each), then {load['duration_s']:g} s of "
        f"{load['concurrency']} closed-loop clients; {load['rounds']} rounds per group, alternating targets. "
        f"Load average at start {la[0]:.2f}, end {meta.get('loadavg_end', [math.nan])[0]:.2f}. "
        f"Versions: {', '.join(f'{k} {v}' for k, v in meta['versions'].items())}.",
        "",
        "'added' = the target's p50 minus direct-to-the-fake's p50 in the same group. 'server CPU ms/req' = CPU of "
        "all the target's processes during the throughput phases per completed request (for direct: the fake's).",
    ]
    for name, group in result["groups"].items():
        parts += [
            "",
            f"## Group {name} (load average {group['loadavg_before'][0]:.2f} → {group['loadavg_after'][0]:.2f})",
            "",
            group_table(group),
            "",
            rounds_text(group),
            "",
            miss_text(group),
        ]
    parts += ["", "## Targets", "", *verdicts(result), ""]
    parts += ["## Options, one at a time (against a reference in the same group)", "", *options_lines(result)]
    parts += ["", "## Server CPU per request (throughput phases, ms)", ""]
    parts += cpu_lines(result)
    if result.get("profiles"):
        parts += ["", "## Profiles (py-spy, ingress replica, throughput phase; % of samples on the stack)", ""]
        for key, p in result["profiles"].items():
            if "error" in p:
                parts.append(f"- {key}: {p['error']}")
                continue
            buckets = ", ".join(f"{k} {v}%" for k, v in p["inclusive_pct"].items())
            parts.append(f"- {key} ({p['busy_samples']} busy samples): {buckets}")
    parts += [
        "",
        "## Servers",
        "",
        "| server | ready s | stop s | exit | escalated | leftovers |",
        "|---|---|---|---|---|---|",
    ]
    for name, s in result["servers"].items():
        ready = "–" if s.get("ready_s") is None else f"{s['ready_s']:.0f}"
        if "error" in s:
            parts.append(f"| {name} | {ready} | – | – | – | {s['error']} |")
            continue
        parts.append(
            f"| {name} | {ready} | {s['stop_s']:.1f} | {s['exit_code']} | {s['escalated'] or '–'} "
            f"| {len(s['leftovers'])} |"
        )
    if result["errors"]:
        parts += ["", "## Errors", ""] + [f"- {k}: {v}" for k, v in result["errors"].items()]
    for name, group in result["groups"].items():
        for key, s in group["targets"].items():
            if s["failed"]:
                parts.append(f"- {name}/{key}: {s['failed']} failed requests: {s['errors']}")
    return "\n".join(parts) + "\n"


def save(result: dict[str, Any], text: str) -> Path:
    stamp = Path(result["meta"]["logs"]).name.removeprefix("remote-")
    for name in (f"remote_overhead-{stamp}", "remote_overhead"):
        (OUT / f"{name}.json").write_text(json.dumps(result, indent=1, default=str))
        (OUT / f"{name}.md").write_text(text)
    return OUT / "remote_overhead.md"


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    if argv[:1] == ["trivial-serve"]:
        return serve_trivial(argv[1:])
    parser = argparse.ArgumentParser(prog="benchmarks.remote_overhead", description=__doc__.split("\n")[0])
    parser.add_argument("--groups", nargs="+", choices=list(GROUPS), default=list(GROUPS))
    parser.add_argument("--rounds", type=int, default=Load.rounds)
    parser.add_argument("--sequential", type=int, default=Load.sequential)
    parser.add_argument("--streams", type=int, default=Load.streams)
    parser.add_argument("--concurrency", type=int, default=Load.concurrency)
    parser.add_argument("--duration", type=float, default=Load.duration_s, help="seconds of each throughput phase")
    parser.add_argument("--ready-timeout", type=float, default=240.0)
    parser.add_argument(
        "--no-profile",
        dest="profile",
        action="store_false",
        help="skip py-spy on the ingress replicas of --profile-group",
    )
    parser.add_argument("--profile-group", default="di", choices=list(GROUPS))
    args = parser.parse_args(argv)

    def terminate(*_: object) -> None:
        raise KeyboardInterrupt  # unwinds through every `finally`, which stops the servers

    signal.signal(signal.SIGTERM, terminate)
    result = run(args)
    text = report(result)
    path = save(result, text)
    print(text)
    _log(f"saved {path} and {path.with_suffix('.json')}")
    return 0 if not result["errors"] else 1


if __name__ == "__main__":
    raise SystemExit(main())
