"""`runtime.stop` leaves no process of the Ray instance it started: which processes are Ray's, and how what
outlives `ray.shutdown()` is ended. Real processes; under Ray: tests/e2e/test_serve_command.py."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from collections.abc import Iterator

import psutil
import pytest
import ray

from orchestrator import runtime

SLEEP = "import signal, sys, time; signal.signal(signal.SIGTERM, signal.SIG_IGN); time.sleep(60)"


@pytest.fixture
def started() -> Iterator[list[subprocess.Popen[bytes]]]:
    procs: list[subprocess.Popen[bytes]] = []
    yield procs
    for p in procs:
        p.kill()
        p.wait()


def test_rays_processes_are_the_children_running_rays_programs_and_all_under_them(
    started: list[subprocess.Popen[bytes]],
) -> None:
    """The GCS, the raylet and the monitors run programs from Ray's package; another child (a test's own
    engine) is not Ray's, nor under it."""
    program = os.path.join(os.path.dirname(ray.__file__), "raylet-like")
    ours = subprocess.Popen(
        [sys.executable, "-c", f"import subprocess, sys; subprocess.run([sys.executable, '-c', {SLEEP!r}])", program]
    )
    other = subprocess.Popen([sys.executable, "-c", SLEEP])
    started += [ours, other]
    for _ in range(100):  # its own child started
        if psutil.Process(ours.pid).children():
            break
        time.sleep(0.05)
    found = {p.pid for p in runtime.ray_processes()}
    assert ours.pid in found and other.pid not in found
    assert {c.pid for c in psutil.Process(ours.pid).children()} <= found


def test_what_outlives_the_grace_is_killed(started: list[subprocess.Popen[bytes]]) -> None:
    """Ray's agents were seen to ignore SIGTERM and outlive `ray.shutdown()` as orphans."""
    deaf = subprocess.Popen([sys.executable, "-c", SLEEP])
    started.append(deaf)
    time.sleep(0.3)  # its SIGTERM handler set
    begun = time.monotonic()
    runtime.end_processes([psutil.Process(deaf.pid)], grace_s=0.5)
    assert deaf.poll() is not None and 0.5 <= time.monotonic() - begun < 5


def test_what_ends_within_the_grace_is_not_waited_for(started: list[subprocess.Popen[bytes]]) -> None:
    quick = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(0.3)"])
    started.append(quick)
    begun = time.monotonic()
    runtime.end_processes([psutil.Process(quick.pid)], grace_s=10)
    assert quick.wait(timeout=1) == 0 and time.monotonic() - begun < 5  # it ended by itself, not killed
