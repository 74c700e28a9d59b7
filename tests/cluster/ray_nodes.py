"""A multi-node Ray cluster on this one machine, the way a user starts one: `ray start --head`, then
`ray start --address` for each worker, each node with its own resources, every Ray process of the
cluster under one temp dir of its own.

Each node is a `ray start --block` process in a session of its own: the node's processes (its raylet,
agents, workers and their vLLM engines) are its descendants, so one node can be removed alone (`kill`),
and every process the cluster started is ended at `stop` by walking those trees, never by name: another
Ray may be running on the machine (`ray stop` would end it too).
"""

from __future__ import annotations

import json
import os
import random
import secrets
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import psutil

RAY = str(Path(sys.executable).with_name("ray"))
SERVE = str(Path(sys.executable).with_name("serve"))


_HANDED_OUT: set[int] = set()
_RANDOM = random.SystemRandom()


def free_port(count: int = 1, also: tuple[int, ...] = ()) -> int:
    """A free port (the first of `count` consecutive free ones), never one this process handed out before;
    the ports `also` above each of them (another listener's offset: Serve's proxy with direct ingress,
    `orchestrator.deploy.PROXY_PORT_OFFSET`) free and held back too.

    Drawn from 20000-32767: above Ray's worker ports (10002-19999) and below the kernel's ephemeral range
    (32768+), where any outgoing connection (Ray's own, by the hundred) may take a port between our check
    and the moment a node or a gateway binds it.
    """
    while True:
        first = _RANDOM.randrange(20000, 32768 - count - max(also, default=0))
        ports = {p + offset for p in range(first, first + count) for offset in (0, *also)}
        if ports & _HANDED_OUT or not all(_bindable(p) for p in ports):
            continue
        _HANDED_OUT.update(ports)
        return first


def _bindable(port: int) -> bool:
    with socket.socket() as s:
        try:
            s.bind(("127.0.0.1", port))
        except OSError:
            return False
    return True


@dataclass
class Node:
    name: str
    resources: dict[str, float]
    process: subprocess.Popen[bytes]
    log: Path
    descendants: set[int] = field(default_factory=set)

    def tree(self) -> list[psutil.Process]:
        """The node's processes now (and any seen before that still run: a reparented orphan too)."""
        found: dict[int, psutil.Process] = {}
        try:
            root = psutil.Process(self.process.pid)
            for p in [root, *root.children(recursive=True)]:
                found[p.pid] = p
        except psutil.NoSuchProcess:
            pass
        for pid in self.descendants - set(found):
            try:
                found[pid] = psutil.Process(pid)
            except psutil.NoSuchProcess:
                pass
        self.descendants |= set(found)
        return list(found.values())

    def kill(self) -> None:
        """Every process of the node at once (SIGKILL): the node is gone, as a machine that died."""
        procs = self.tree()
        for p in procs:
            try:
                p.send_signal(signal.SIGKILL)
            except psutil.NoSuchProcess:
                pass
        psutil.wait_procs(procs, timeout=10)
        self.process.wait(timeout=10)


@dataclass
class Cluster:
    """`ray start` nodes under `temp_dir`, in `env` (the Serve variables every node must have)."""

    temp_dir: Path
    env: Mapping[str, str]
    nodes: list[Node] = field(default_factory=list)
    gcs_port: int = 0
    dashboard_port: int = 0
    token: str = field(default_factory=lambda: secrets.token_hex(32))

    @property
    def address(self) -> str:
        return f"127.0.0.1:{self.gcs_port}"

    @property
    def dashboard(self) -> str:
        return f"http://127.0.0.1:{self.dashboard_port}"

    def environ(self) -> dict[str, str]:
        env = {k: v for k, v in os.environ.items() if not k.startswith("RAY_")}
        # Token auth (Ray's default), with the cluster's own token: ~/.ray/auth_token is neither read nor made.
        auth = {"RAY_AUTH_MODE": "token", "RAY_AUTH_TOKEN": self.token}
        return {**env, **self.env, **auth, "RAY_TMPDIR": str(self.temp_dir)}

    def _start(self, name: str, args: list[str], resources: dict[str, float]) -> Node:
        log = self.temp_dir / f"{name}.log"
        common = [
            "--block",
            "--num-cpus=1",
            "--num-gpus=0",
            f"--resources={json.dumps(resources)}",
            f"--object-store-memory={200 << 20}",
            "--node-ip-address=127.0.0.1",
            f"--node-manager-port={free_port()}",
            f"--object-manager-port={free_port()}",
            f"--dashboard-agent-listen-port={free_port()}",
            f"--dashboard-agent-grpc-port={free_port()}",
            f"--runtime-env-agent-port={free_port()}",
            f"--metrics-export-port={free_port()}",
            "--disable-usage-stats",
        ]
        with log.open("wb") as out:
            process = subprocess.Popen(
                [RAY, "start", *args, *common],
                env=self.environ(),
                stdout=out,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )
        node = Node(name, resources, process, log)
        self.nodes.append(node)
        return node

    def start_head(self, resources: dict[str, float]) -> Node:
        self.gcs_port, self.dashboard_port = free_port(), free_port()
        return self._start(
            "head",
            [
                "--head",
                f"--port={self.gcs_port}",
                f"--temp-dir={self.temp_dir}",
                "--include-dashboard=true",
                "--dashboard-host=127.0.0.1",
                f"--dashboard-port={self.dashboard_port}",
                f"--ray-client-server-port={free_port()}",
            ],
            resources,
        )

    def add_worker(self, name: str, resources: dict[str, float]) -> Node:
        return self._start(name, [f"--address={self.address}"], resources)

    def cli(self, *args: str, timeout_s: float = 120) -> str:
        """A Ray CLI command against this cluster; its output (it must succeed)."""
        env = {**self.environ(), "RAY_ADDRESS": self.address}
        done = subprocess.run(list(args), env=env, capture_output=True, text=True, timeout=timeout_s)
        if done.returncode != 0:
            raise RuntimeError(f"{' '.join(args)} failed ({done.returncode}):\n{done.stdout}\n{done.stderr}")
        return done.stdout

    def state(self, kind: str, *filters: str) -> list[dict[str, Any]]:
        """`ray list <kind>` (alive ones, in detail) as data; the state API answers through the dashboard."""
        out = self.cli(RAY, "list", kind, "--format=json", "--filter=state=ALIVE", "--detail", "--limit=1000", *filters)
        start = out.find("[")
        if start < 0:
            raise RuntimeError(f"ray list {kind}: no list in its answer: {out[-500:]!r}")
        found: list[dict[str, Any]] = json.loads(out[start:])
        return found

    def alive_nodes(self) -> list[dict[str, Any]]:
        return self.state("nodes")

    def actors(self, **filters: str) -> list[dict[str, Any]]:
        """Alive actors matching `filters` (the state API's fields), each with its node_id."""
        return self.state("actors", *(f"--filter={k}={v}" for k, v in filters.items()))

    def wait_for_nodes(self, count: int, timeout_s: float) -> list[dict[str, Any]]:
        deadline = time.monotonic() + timeout_s
        seen: list[dict[str, Any]] = []
        while time.monotonic() < deadline:
            for node in self.nodes:
                if node.process.poll() is not None:
                    raise RuntimeError(f"ray start for {node.name} exited:\n{node.log.read_text()[-3000:]}")
            try:
                seen = self.alive_nodes()
            except (RuntimeError, subprocess.TimeoutExpired):
                seen = []
            if len(seen) >= count:
                return seen
            time.sleep(1)
        raise TimeoutError(f"{len(seen)} of {count} Ray nodes alive after {timeout_s:.0f} s")

    def node_id(self, node: Node) -> str:
        """The Ray node id of `node` (by its custom resources, which each node has its own of)."""
        mine = set(node.resources)
        for n in self.alive_nodes():
            if mine <= set(n.get("resources_total", {})) and all(
                n["resources_total"][k] == v for k, v in node.resources.items()
            ):
                return str(n["node_id"])
        raise LookupError(f"{node.name} is not alive")

    def stop(self) -> None:
        """Every process this cluster started, the head last; then nothing of it is left."""
        for node in [*self.nodes[1:], *self.nodes[:1]]:
            procs = node.tree()
            for p in procs:
                try:
                    p.terminate()
                except psutil.NoSuchProcess:
                    pass
            _, alive = psutil.wait_procs(procs, timeout=5)
            for p in alive:
                try:
                    p.kill()
                except psutil.NoSuchProcess:
                    pass
            psutil.wait_procs(alive, timeout=5)
            try:
                node.process.wait(timeout=5)
            except subprocess.TimeoutExpired:
                node.process.kill()
                node.process.wait(timeout=5)
        # What Ray started outside the nodes' trees (daemonised: the GCS, the dashboard) by its session dir.
        for p in psutil.process_iter(["pid", "cmdline"]):
            try:
                if any(str(self.temp_dir) in part for part in p.info["cmdline"] or []):
                    p.kill()
            except (psutil.NoSuchProcess, psutil.AccessDenied):
                pass
