"""Server subprocesses for benchmarks: start, wait until ready, stop, leave nothing behind.

Each server runs in its own session (`start_new_session`), so everything it
starts — vLLM's engine-core process, Ray's GCS, raylet and worker processes —
can be found afterwards by session id, even the Ray workers that move to
process groups of their own. `stop()` sends SIGINT (what Ctrl-C sends; the
orchestrator CLI and vLLM's api_server both shut down cleanly on it), waits,
escalates only if needed, and then kills, one pid at a time, whatever of that
session is still alive, reporting it.
"""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import time
import urllib.error
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def http_get(url: str, timeout: float = 2.0) -> tuple[int, bytes]:
    """A plain GET: (status, body); status 0 when nothing answered."""
    try:
        with urllib.request.urlopen(url, timeout=timeout) as resp:
            return resp.status, resp.read()
    except urllib.error.HTTPError as e:
        return e.code, e.read()
    except (OSError, urllib.error.URLError):
        return 0, b""


def serves_model(base_url: str, model: str, timeout: float = 2.0) -> bool:
    status, body = http_get(f"{base_url}/v1/models", timeout)
    if status != 200:
        return False
    try:
        return any(m.get("id") == model for m in json.loads(body).get("data", []))
    except (ValueError, AttributeError):
        return False


def session_members(sid: int) -> list[tuple[int, str]]:
    """(pid, command line) of every live process in session `sid`."""
    members = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text()
            fields = stat[stat.rindex(")") + 2 :].split()
            if int(fields[3]) != sid or fields[0] == "Z":
                continue
            cmd = (entry / "cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace").strip()
        except (OSError, ValueError, IndexError):
            continue
        members.append((int(entry.name), cmd[:160]))
    return members


_CLK_TCK = os.sysconf("SC_CLK_TCK")

# (substring of the command line, role), first match wins.
_ROLES = (
    ("ProxyActor", "Serve proxy"),
    ("ServeController", "Serve controller"),
    ("Gateway", "Gateway replica"),
    ("LocalModel", "LocalModel replica"),
    ("EngineCore", "vLLM engine core"),
    ("Worker", "vLLM worker"),
    ("vllm.entrypoints", "vLLM api_server"),
    ("orchestrator.cli", "orchestrator CLI (Ray driver)"),
    ("benchmarks.plain_gateway", "plain uvicorn app"),
    ("ray::", "other Ray workers"),
    ("ray/", "Ray system (gcs, raylet, agents)"),
)


def role(cmd: str) -> str:
    """What a process is, from its command line (Ray and vLLM set process titles)."""
    for needle, name in _ROLES:
        if needle in cmd:
            return name
    return cmd.split(" ")[0][-40:] or "?"


def session_cpu(sid: int) -> dict[int, tuple[str, float]]:
    """pid -> (role, CPU seconds so far) for every live process in session `sid`."""
    out = {}
    for pid, cmd in session_members(sid):
        try:
            stat = Path(f"/proc/{pid}/stat").read_text()
            fields = stat[stat.rindex(")") + 2 :].split()
            out[pid] = (role(cmd), (int(fields[11]) + int(fields[12])) / _CLK_TCK)
        except (OSError, ValueError, IndexError):
            continue
    return out


def machine_busy_s() -> float:
    """CPU seconds the whole machine has spent busy (all cores, all processes) since boot."""
    with open("/proc/stat") as f:
        fields = [int(x) for x in f.readline().split()[1:]]
    user, nice, system, _idle, _iowait, irq, softirq, steal = fields[:8]
    return (user + nice + system + irq + softirq + steal) / _CLK_TCK


def cpu_delta(before: dict[int, tuple[str, float]], after: dict[int, tuple[str, float]]) -> dict[str, float]:
    """CPU seconds spent between two `session_cpu` snapshots, summed by role."""
    spent: dict[str, float] = {}
    for pid, (name, cpu) in after.items():
        spent[name] = spent.get(name, 0.0) + cpu - before.get(pid, (name, 0.0))[1]
    return {k: round(v, 3) for k, v in sorted(spent.items(), key=lambda kv: -kv[1])}


@dataclass
class StopReport:
    exit_code: int | None
    stop_s: float
    escalated: str | None = None  # "SIGTERM" / "SIGKILL" when SIGINT wasn't enough
    leftovers: list[str] = field(default_factory=list)  # processes of its session killed afterwards


class Server:
    """One server subprocess, with its output in a log file."""

    def __init__(self, name: str, argv: list[str], *, env: dict[str, str], log_path: Path, cwd: Path):
        self.name = name
        self.argv = argv
        self.env = env
        self.log_path = log_path
        self.cwd = cwd
        self.proc: subprocess.Popen[bytes] | None = None
        self.started_at = 0.0
        self.ready_s: float | None = None

    def start(self) -> Server:
        self.log_path.parent.mkdir(parents=True, exist_ok=True)
        log = self.log_path.open("wb")
        self.started_at = time.perf_counter()
        self.proc = subprocess.Popen(
            self.argv,
            env=self.env,
            cwd=self.cwd,
            stdin=subprocess.DEVNULL,
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        log.close()
        return self

    def log_tail(self, n: int = 30) -> str:
        try:
            return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-n:])
        except OSError:
            return ""

    def cpu(self) -> dict[int, tuple[str, float]]:
        assert self.proc is not None
        return session_cpu(self.proc.pid)

    def alive(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def wait_ready(self, base_url: str, model: str, timeout_s: float) -> float:
        """Wait for GET /health 200 and `model` in GET /v1/models; seconds since start."""
        deadline = time.perf_counter() + timeout_s
        while time.perf_counter() < deadline:
            if not self.alive():
                raise RuntimeError(f"{self.name} exited during start-up; log {self.log_path}:\n{self.log_tail()}")
            if http_get(f"{base_url}/health", 1.0)[0] == 200 and serves_model(base_url, model):
                self.ready_s = time.perf_counter() - self.started_at
                return self.ready_s
            time.sleep(0.5)
        raise TimeoutError(f"{self.name} not ready within {timeout_s:.0f} s; log {self.log_path}:\n{self.log_tail()}")

    def stop(self, timeout_s: float = 90.0) -> StopReport:
        """SIGINT, wait; SIGTERM, SIGKILL only if needed; then clear the session."""
        assert self.proc is not None
        t0 = time.perf_counter()
        escalated = None
        sid = self.proc.pid  # a session leader's sid is its pid
        for sig, wait_s in ((signal.SIGINT, timeout_s), (signal.SIGTERM, 15.0), (signal.SIGKILL, 10.0)):
            if self.proc.poll() is not None:
                break
            if sig != signal.SIGINT:
                escalated = sig.name
            self.proc.send_signal(sig)
            try:
                self.proc.wait(wait_s)
            except subprocess.TimeoutExpired:
                continue
        stop_s = time.perf_counter() - t0
        # Children may take a moment to notice their parent is gone.
        deadline = time.perf_counter() + 10.0
        while session_members(sid) and time.perf_counter() < deadline:
            time.sleep(0.25)
        leftovers = []
        for pid, cmd in session_members(sid):
            leftovers.append(f"{pid} {cmd}")
            try:
                os.kill(pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
        return StopReport(self.proc.returncode, stop_s, escalated, leftovers)


def describe(report: StopReport) -> dict[str, Any]:
    return {
        "exit_code": report.exit_code,
        "stop_s": round(report.stop_s, 2),
        "escalated": report.escalated,
        "leftovers": report.leftovers,
    }
