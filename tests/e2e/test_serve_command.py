"""`orchestrator serve` as a user runs it (`make serve`): a process of its own, stopped by a signal.

The tiny model and no embedder, so it is ready in well under a minute; its own Ray (its own temp dir), its
own port, and the ledger, cache and stored responses in the test's directory. Keys are required (a master
key is set), as an operator runs it.
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import psutil
import pytest
import yaml

from orchestrator.settings import load_settings

pytestmark = pytest.mark.e2e

READY_S = 300


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _running(procs: list[psutil.Process]) -> list[str]:
    left = []
    for p in procs:
        try:
            if p.is_running() and p.status() != psutil.STATUS_ZOMBIE:
                left.append(f"{p.pid} {p.name()}")
        except psutil.Error:
            pass
    return left


def _service_priorities(procs: list[psutil.Process]) -> dict[str, int]:
    """The nice value of each Serve replica and vLLM process among `procs`, by its title."""
    found = {}
    for p in procs:
        try:
            title = " ".join(p.cmdline()) or p.name()
            if title.startswith(("ray::ServeReplica", "VLLM::")):
                found[f"{p.pid} {title[:60]}"] = p.nice()
        except psutil.Error:
            pass
    return found


def test_sigterm_stops_serve_and_every_process_of_its_ray(
    tmp_path: Path, tmp_path_factory: pytest.TempPathFactory
) -> None:
    """SIGTERM (what `kill`, systemd and Kubernetes send) ended the process with SIGABRT 3 s into its shutdown
    (Ray's own SIGTERM handler), and Ray's DashboardAgent and RuntimeEnvAgent lived on as orphans. The ready
    line listed no model where keys are required."""
    port = _free_port()
    config = tmp_path / "config.yaml"
    config.write_text(
        yaml.safe_dump(
            {
                "data_dir": str(load_settings().data_dir),  # the prepared-model cache, shared with `make serve`
                "server": {"port": port},
                "local": {"model": "tiny-random", "engine_args": {"enforce_eager": True}},
                "embedding": {"model": None},
                "ledger": {"path": str(tmp_path / "ledger.sqlite")},
                "cache": {"directory": str(tmp_path / "cache")},
                "responses": {"directory": str(tmp_path / "responses")},
            }
        )
    )
    env = {k: v for k, v in os.environ.items() if not k.endswith("_API_KEY") and not k.startswith("RAY_")}
    ray_dir = tmp_path_factory.mktemp("ray")  # short: Ray's socket paths under it must fit in 107 bytes
    env.update(RAY_TMPDIR=str(ray_dir), ORCHESTRATOR_MASTER_KEY="sk-serve-test-master")
    log = (tmp_path / "serve.log").open("w+")
    serve = subprocess.Popen(
        [sys.executable, "-m", "orchestrator.cli", "serve", "--config", str(config)],
        stderr=log,
        stdout=log,
        env=env,
        start_new_session=True,
    )
    seen: list[psutil.Process] = []
    try:
        deadline = time.monotonic() + READY_S
        while "remote providers:" not in (text := Path(log.name).read_text()):
            assert serve.poll() is None and time.monotonic() < deadline, text[-3000:]
            time.sleep(0.5)
        assert f"Ready: http://127.0.0.1:{port}/v1 (Ctrl-C stops)" in text, text[-3000:]
        [models] = [line for line in text.splitlines() if line.startswith("  models: ")]
        assert "tiny-random" in models.split(": ", 1)[1].split(", "), models
        seen = psutil.Process(serve.pid).children(recursive=True)
        assert any(p.name() == "raylet" for p in seen) and len(seen) > 5
        # Ray starts its workers at nice 15, behind its own daemons: the Gateway and the engine's processes
        # lost their CPU to them. They run at the priority `orchestrator serve` was started with.
        service = _service_priorities(seen)
        assert any("Gateway" in title for title in service) and any("VLLM::" in title for title in service), service
        assert set(service.values()) == {os.getpriority(os.PRIO_PROCESS, serve.pid)}, service

        serve.send_signal(signal.SIGTERM)
        assert serve.wait(timeout=120) == 0, Path(log.name).read_text()[-3000:]
        deadline = time.monotonic() + 5  # a process killed at the end may take a moment to go
        while _running(seen) and time.monotonic() < deadline:
            time.sleep(0.2)
        assert _running(seen) == []
    finally:
        if serve.poll() is None:  # it failed before its end: end it and all under it here
            seen += psutil.Process(serve.pid).children(recursive=True)
            serve.kill()
        for p in seen:
            try:
                p.kill()
            except psutil.Error:
                pass
        serve.wait(timeout=30)
        log.close()
