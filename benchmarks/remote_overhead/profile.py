"""py-spy on an ingress replica during a throughput phase: where its busy time goes, by layer."""

from __future__ import annotations

import asyncio
import shutil
import subprocess
import time
from pathlib import Path
from typing import Any

from benchmarks.remote_overhead.measure import Load, rate
from benchmarks.remote_overhead.targets import LITELLM_VENV, Target, ingress_pids

# Buckets for the profile, first match wins (a frame is "file:function" in py-spy's raw format).
_BUCKETS = (
    ("orchestrator/api.py", "orchestrator.api (parse, encode, SSE)"),
    ("orchestrator/pipeline.py", "orchestrator.pipeline"),
    ("orchestrator/failover.py", "orchestrator.failover"),
    ("orchestrator/streams.py", "orchestrator.streams (fold)"),
    ("orchestrator/frontdoors", "orchestrator.frontdoors (parse, encode, SSE)"),
    ("orchestrator/accounting", "orchestrator.accounting"),
    ("orchestrator/scheduling", "orchestrator.scheduling"),
    ("orchestrator/caching", "orchestrator.caching"),
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


def profile_replica(target: Target, load: Load, out: Path, seconds: float) -> dict[str, Any]:
    """py-spy on `target`'s ingress replica during a throughput phase: where its time goes."""
    py_spy = shutil.which("py-spy", path=str(LITELLM_VENV / "bin")) or shutil.which("py-spy")
    assert target.server is not None
    pids = ingress_pids(target.server)
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


def _add(counts: dict[str, int], keys: set[str] | list[str], n: int) -> None:
    for key in keys:
        counts[key] = counts.get(key, 0) + n


def _frame_name(frame: str) -> str:
    """`function (file:line)` -> `function (file)`."""
    name, _, where = frame.partition(" (")
    return f"{name} ({where.split(':')[0]})"


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
        n, frames = int(count), stack.split(";")
        if frames[-1].startswith(_IDLE_LEAVES):
            idle += n
            continue
        busy += n
        buckets = (next((b for needle, b in _BUCKETS if needle in frame), None) for frame in frames)
        _add(inclusive, {b for b in buckets if b is not None}, n)
        _add(frames_in, {_frame_name(f) for f in frames if " (" in f}, n)
        _add(own, [frames[-1]], n)

    def pct(d: dict[str, int], k: int) -> list[tuple[str, float]]:
        return [(name, round(100 * v / busy, 1)) for name, v in sorted(d.items(), key=lambda kv: -kv[1])[:k]]

    return {
        "busy_samples": busy,
        "idle_samples": idle,
        "inclusive_pct": dict(pct(inclusive, len(inclusive))) if busy else {},
        "top_inclusive_frames": pct(frames_in, 60) if busy else [],
        "top_own_frames": pct(own, 30) if busy else [],
    }
