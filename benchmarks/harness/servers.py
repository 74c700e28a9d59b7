"""Server subprocesses and their CPU: start, wait until ready, stop, leave nothing behind, account.

Each server runs in its own session (`start_new_session`), so everything it starts — vLLM's engine-core
process, Ray's GCS, raylet and workers — can be found by session id, even the Ray workers that move to process
groups of their own. `stop()` sends SIGINT (what Ctrl-C sends; the orchestrator CLI and vLLM's api_server shut
down cleanly on it), waits, escalates only if needed, then kills, one pid at a time, whatever of that session
is still alive, and reports it.

CPU accounting: CPU seconds per process of a session from /proc, summed by role (what a process is, from the
title Ray and vLLM give it), and the whole machine's busy time, so that a benchmark can say how much CPU other
people's work took while it measured ("noise").
"""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from benchmarks.harness.runs import ROOT


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _is_free(port: int) -> bool:
    with socket.socket() as s:
        try:
            s.bind(("127.0.0.1", port))
        except OSError:
            return False
    return True


def free_port_ranges(n: int, k: int) -> list[range]:
    """`k` non-overlapping ranges of `n` consecutive free ports."""
    out: list[range] = []
    for _ in range(50 * k):
        start = free_port()
        r = range(start, start + n)
        if r.stop < 65535 and all(_is_free(p) for p in r) and all(r.stop <= o.start or o.stop <= r.start for o in out):
            out.append(r)
            if len(out) == k:
                return out
    raise RuntimeError("no free port range")


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


def own_state(workdir: Path) -> dict[str, str]:
    """`ORCH_*` variables that keep a benchmark deployment's ledger, response cache and stored responses
    in `workdir`: a run's fake requests and spend never land in the user's usage reports, budgets or cache
    (`data_dir` stays where the prepared models are). For a config file: `own_state_config`."""
    return {
        "ORCH_LEDGER__PATH": str(workdir / "ledger.sqlite"),
        "ORCH_CACHE__DIRECTORY": str(workdir / "response-cache"),
        "ORCH_RESPONSES__DIRECTORY": str(workdir / "responses"),
    }


def own_state_config(config: dict[str, Any], workdir: Path) -> dict[str, Any]:
    """`config` (a settings dict) with its ledger, response cache and stored responses in `workdir`."""
    for name, value in own_state(workdir).items():
        section, key = name.removeprefix("ORCH_").lower().split("__")
        config[section] = {**(config.get(section) or {}), key: value}
    return config


def child_env(data_dir: Path, **extra: str) -> dict[str, str]:
    """This environment without anything that would redirect a child (ORCH_*, RAY_ADDRESS), offline."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("ORCH_") and k != "RAY_ADDRESS"}
    env.update(
        HF_HUB_OFFLINE="1",
        VLLM_CPU_KVCACHE_SPACE="1",
        VLLM_HOST_IP="127.0.0.1",
        VLLM_CACHE_ROOT=str(data_dir / "vllm-cache"),
        RAY_USAGE_STATS_ENABLED="0",
        PYTHONUNBUFFERED="1",
    )
    env.update(extra)
    return env


@dataclass
class StopReport:
    exit_code: int | None
    stop_s: float
    escalated: str | None = None  # "SIGTERM" / "SIGKILL" when SIGINT wasn't enough
    leftovers: list[str] = field(default_factory=list)  # processes of its session killed afterwards


def describe(report: StopReport) -> dict[str, Any]:
    return {
        "exit_code": report.exit_code,
        "stop_s": round(report.stop_s, 2),
        "escalated": report.escalated,
        "leftovers": report.leftovers,
    }


class Server:
    """One server subprocess in a session of its own, with its output in a log file."""

    def __init__(self, name: str, argv: list[str], *, env: dict[str, str], log_path: Path, cwd: Path = ROOT):
        self.name, self.argv, self.env, self.log_path, self.cwd = name, argv, env, log_path, cwd
        self.proc: subprocess.Popen[bytes] | None = None
        self.started_at = 0.0
        self.ready_s: float | None = None

    def start(self) -> Server:
        self.log_path.parent.mkdir(parents=True, exist_ok=True)
        with self.log_path.open("wb") as log:
            self.started_at = time.perf_counter()
            self.proc = subprocess.Popen(
                self.argv, env=self.env, cwd=self.cwd, stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT,
                start_new_session=True,
            )  # fmt: skip
        return self

    def log_tail(self, n: int = 30) -> str:
        try:
            return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-n:])
        except OSError:
            return ""

    def alive(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def cpu(self, role_of: Callable[[str], str] | None = None) -> dict[int, tuple[str, float]]:
        """pid -> (role, CPU seconds so far) for every live process of this server's session."""
        return session_cpu(self.proc.pid, role_of or role) if self.proc is not None else {}

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
        for sig, wait_s in ((signal.SIGINT, timeout_s), (signal.SIGTERM, 15.0), (signal.SIGKILL, 10.0)):
            if self.proc.poll() is not None:
                break
            escalated = None if sig == signal.SIGINT else sig.name
            self.proc.send_signal(sig)
            try:
                self.proc.wait(wait_s)
            except subprocess.TimeoutExpired:
                continue
        stop_s = time.perf_counter() - t0
        return StopReport(self.proc.returncode, stop_s, escalated, _clear_session(self.proc.pid))


def _clear_session(sid: int) -> list[str]:
    """Kill, one pid at a time, what is left of session `sid` (children may take a moment to notice)."""
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
    return leftovers


def stop_all(servers: Iterable[Server], into: dict[str, Any]) -> None:
    """Stop servers in parallel (each SIGINT, then escalation), recording how each went under its name."""

    def stop(s: Server) -> None:
        if s.proc is None:
            return
        try:
            into[s.name] = {"ready_s": s.ready_s, **describe(s.stop())}
        except Exception as e:  # keep stopping the others
            into[s.name] = {"ready_s": s.ready_s, "error": repr(e)}

    threads = [threading.Thread(target=stop, args=(s,)) for s in servers]
    for t in threads:
        t.start()
    for t in threads:
        t.join()


_CLK_TCK = os.sysconf("SC_CLK_TCK")
# (substring of the command line, role), first match wins.
ROLES = (
    ("ProxyActor", "Serve proxy"),
    ("ServeController", "Serve controller"),
    ("Gateway", "Gateway replica"),
    ("LocalModel", "LocalModel replica"),
    ("LoadBoard", "LoadBoard replica"),
    ("LedgerActor", "ledger actor"),
    ("EngineCore", "vLLM engine core"),
    ("Worker", "vLLM worker"),
    ("vllm.entrypoints", "vLLM api_server"),
    ("orchestrator.cli", "orchestrator CLI (Ray driver)"),
    ("benchmarks.plain_gateway", "plain uvicorn app"),
    ("orchestrator.testing.provider", "fake provider"),
    ("ray::", "other Ray workers"),
    ("ray/", "Ray system (gcs, raylet, agents)"),
)


def role(cmd: str) -> str:
    """What a process is, from its command line (Ray and vLLM set process titles)."""
    for needle, name in ROLES:
        if needle in cmd:
            return name
    return cmd.split(" ")[0][-40:] or "?"


def _stat_fields(pid: int | str) -> list[str]:
    stat = Path(f"/proc/{pid}/stat").read_text()
    return stat[stat.rindex(")") + 2 :].split()


def session_members(sid: int) -> list[tuple[int, str]]:
    """(pid, command line) of every live process in session `sid`."""
    members = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            fields = _stat_fields(entry.name)
            if int(fields[3]) != sid or fields[0] == "Z":
                continue
            cmd = (entry / "cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace").strip()
        except (OSError, ValueError, IndexError):
            continue
        members.append((int(entry.name), cmd[:160]))
    return members


def session_cpu(sid: int, role_of: Callable[[str], str] = role) -> dict[int, tuple[str, float]]:
    """pid -> (role, CPU seconds so far) for every live process in session `sid`."""
    out = {}
    for pid, cmd in session_members(sid):
        try:
            fields = _stat_fields(pid)
            out[pid] = (role_of(cmd), (int(fields[11]) + int(fields[12])) / _CLK_TCK)
        except (OSError, ValueError, IndexError):
            continue
    return out


def cpu_delta(before: dict[int, tuple[str, float]], after: dict[int, tuple[str, float]]) -> dict[str, float]:
    """CPU seconds spent between two `session_cpu` snapshots, summed by role."""
    spent: dict[str, float] = {}
    for pid, (name, cpu) in after.items():
        spent[name] = spent.get(name, 0.0) + cpu - before.get(pid, (name, 0.0))[1]
    return spent


def machine_busy_s() -> float:
    """CPU seconds the whole machine has spent busy (all cores, all processes) since boot."""
    with open("/proc/stat") as f:
        fields = [int(x) for x in f.readline().split()[1:]]
    user, nice, system, _idle, _iowait, irq, softirq, steal = fields[:8]
    return (user + nice + system + irq + softirq + steal) / _CLK_TCK
