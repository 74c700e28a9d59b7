"""Several gateway processes behind one node port: `server.haproxy` (Ray Serve's HAProxy mode).

One Ray node on this machine (`ray start --head`, see ray_nodes.py), the Serve environment from
`orchestrator build-config`'s header, the generated Serve config sent with `serve deploy`, as a Ray user
deploys: two Gateway replicas on the node, Serve's HAProxy on `server.port` in front of them, each
replica on its own port after it (`server.port + 1`, `+ 2`), where it serves its own `/metrics`, as a
Prometheus scrape config reaches it. HAProxy's side listeners (stats page, exporter, the head's backup
Serve proxy) take free ports, as anyone running several Ray instances on one machine sets them.

Through the official openai client on the one port: requests reach both processes (each replica's
`/metrics` counts its share), a client's `x-request-id` comes back, streams pass; a Gateway process
killed is not seen by clients (HAProxy retries on the other), and Serve's replacement takes the dead one's
port back, though HAProxy's connections to the dead one linger on it (orchestrator/rebind.py; before it, the
replacement's bind failed, Serve blocked the port and retried the replica forever), and serves through the
one port again.
"""

from __future__ import annotations

import asyncio
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import openai
import psutil
import pytest
import yaml
from openai.types.chat import ChatCompletion, ChatCompletionMessageParam
from ray_nodes import SERVE, Cluster, free_port

from orchestrator import runtime
from orchestrator.settings import load_settings
from orchestrator.testing.provider import FakeProvider

pytestmark = pytest.mark.cluster

MODEL = "fake/chat"  # a provider on loopback (orchestrator.testing.FakeProvider)
QUESTION: list[ChatCompletionMessageParam] = [{"role": "user", "content": "Say something."}]
GATEWAYS = 2
SIDE_PORTS = ("RAY_SERVE_HAPROXY_STATS_PORT", "RAY_SERVE_HAPROXY_METRICS_PORT", "RAY_SERVE_FALLBACK_PROXY_HTTP_PORT")


@dataclass
class Node:
    cluster: Cluster
    port: int  # HAProxy's: the one clients use

    @property
    def replica_ports(self) -> list[int]:
        return [self.port + 1 + i for i in range(GATEWAYS)]

    def client(self) -> openai.OpenAI:
        return openai.OpenAI(base_url=f"http://127.0.0.1:{self.port}/v1", api_key="unused", max_retries=0, timeout=30)

    def gateway_processes(self) -> list[psutil.Process]:
        return [p for node in self.cluster.nodes for p in node.tree() if "ServeReplica:orchestrator:Gateway" in _cmd(p)]


def _cmd(p: psutil.Process) -> str:
    try:
        return " ".join(p.cmdline())
    except psutil.Error:
        return ""


def orchestrator_config(tmp: Path, port: int, fake: FakeProvider) -> dict[str, Any]:
    return {
        "server": {"port": port, "haproxy": True},
        "gateway": {"num_replicas": GATEWAYS},
        "local": {"model": "tiny-random", "engine_args": {"enforce_eager": True}, "kv_cache_gib": 0.25},
        "embedding": {"model": None},
        "providers": {
            "fake": {
                "base_url": f"{fake.base_url}/v1",
                "api_key_env": "FAKE_PROVIDER_KEY",
                "models": {"chat": {"id": "fake-model"}},
            }
        },
        "models": {},
        "cache": {"enabled": False},  # every request reaches a gateway's route
        "ledger": {"path": str(tmp / "ledger.sqlite"), "reference_model": None},
        "responses": {"directory": str(tmp / "responses")},
    }


def header_env(serve_config: str) -> dict[str, str]:
    """The variables the generated config's header says every node must have before `ray start`."""
    line = next(line for line in serve_config.splitlines() if line.startswith("#") and "ray start --head" in line)
    return dict(a.split("=", 1) for a in line.lstrip("# ").split(" ray start")[0].split())


@pytest.fixture(scope="module")
def node() -> Iterator[Node]:
    tmp = Path(tempfile.mkdtemp(prefix="orch-hx-", dir="/tmp"))  # short: Ray's unix sockets live under it
    port = free_port(1 + GATEWAYS)  # HAProxy's, then one per Gateway replica
    fake = FakeProvider(reply="Paris is the capital of France.", record=False).start()
    cluster = Cluster(tmp, {})
    try:
        config = tmp / "orchestrator.yaml"
        config.write_text(yaml.safe_dump(orchestrator_config(tmp, port, fake)))
        runtime.prepare_models(load_settings(config), progress=False)
        serve_yaml = tmp / "serve.yaml"
        orchestrator = str(Path(sys.executable).with_name("orchestrator"))
        subprocess.run([orchestrator, "build-config", "--config", str(config), "-o", str(serve_yaml)], check=True)
        env = header_env(serve_yaml.read_text())
        assert env["RAY_SERVE_ENABLE_HA_PROXY"] == "1"
        cluster.env = {
            **env,
            **{name: str(free_port()) for name in SIDE_PORTS},
            "HF_HUB_OFFLINE": "1",
            "VLLM_HOST_IP": "127.0.0.1",
            "FAKE_PROVIDER_KEY": "sk-haproxy-test",
            # An open endpoint (no key, /metrics open), whatever this process's environment holds.
            "ORCHESTRATOR_MASTER_KEY": "",
            "ORCHESTRATOR_METRICS_KEY": "",
        }
        cluster.start_head({"head": 1})
        cluster.wait_for_nodes(1, timeout_s=60)
        cluster.cli(SERVE, "deploy", str(serve_yaml), "--address", cluster.dashboard)
        started = Node(cluster, port)
        _wait_until(lambda: all(_requests_served(p) is not None for p in started.replica_ports), 360, cluster)
        # HAProxy in front of both: it adds a replica once Serve reports it and its health checks pass.
        _wait_until(lambda: _answers(started) and _both_take_requests(started), 180, cluster)
        yield started
    finally:
        cluster.stop()
        fake.stop()
        shutil.rmtree(tmp, ignore_errors=True)


def _wait_until(ready: Any, timeout_s: float, cluster: Cluster) -> None:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if ready():
            return
        time.sleep(1)
    status = cluster.cli(SERVE, "status", "--address", cluster.dashboard)
    raise TimeoutError(f"not serving after {timeout_s:.0f} s:\n{status}")


def _answers(node: Node) -> bool:
    try:
        with node.client() as client:
            return bool(client.chat.completions.create(model=MODEL, messages=QUESTION).choices)
    except openai.OpenAIError:
        return False


def _requests_served(port: int) -> float | None:
    """The requests one Gateway replica answered, from its own `/metrics`; None while it doesn't answer."""
    try:
        r = httpx.get(f"http://127.0.0.1:{port}/metrics", timeout=5)
    except httpx.HTTPError:
        return None
    if r.status_code != 200:
        return None
    samples = [line.rsplit(" ", 1) for line in r.text.splitlines() if line.startswith("orchestrator_requests_total")]
    return sum(float(value) for _, value in samples)


async def _burst(node: Node, n: int, concurrency: int) -> list[int]:
    """`n` chat requests through the one port, `concurrency` at a time; their HTTP statuses."""
    gate = asyncio.Semaphore(concurrency)
    base = f"http://127.0.0.1:{node.port}/v1"
    async with openai.AsyncOpenAI(base_url=base, api_key="unused", max_retries=0, timeout=60) as client:

        async def one() -> int:
            async with gate:
                raw = await client.chat.completions.with_raw_response.create(model=MODEL, messages=QUESTION)
                raw.parse()
                return raw.status_code

        return list(await asyncio.gather(*(one() for _ in range(n))))


def _spread(node: Node, n: int) -> list[float]:
    """`n` requests through the one port (all answered 200); how many each Gateway replica counted."""
    before = [_requests_served(p) or 0.0 for p in node.replica_ports]
    assert asyncio.run(_burst(node, n, concurrency=min(n, 16))) == [200] * n
    return [(_requests_served(p) or 0.0) - b for p, b in zip(node.replica_ports, before, strict=True)]


def _both_take_requests(node: Node) -> bool:
    try:
        return all(n > 0 for n in _spread(node, 16))
    except (AssertionError, openai.OpenAIError):  # a request failed: not yet
        return False


def test_one_port_reaches_both_gateway_processes(node: Node) -> None:
    served = _spread(node, 64)
    assert sum(served) == 64  # every request through HAProxy counted by exactly one replica
    assert all(s >= 8 for s in served), served  # least connections: both processes take a share


def test_request_ids_and_streams_pass_through(node: Node) -> None:
    with node.client() as client:
        raw = client.chat.completions.with_raw_response.create(
            model=MODEL,
            messages=QUESTION,
            extra_headers={"x-request-id": "haproxy-check-1"},
        )
        assert raw.headers["x-request-id"] == "haproxy-check-1"
        assert raw.headers["x-served-by"] == "fake/fake-model"
        answer: ChatCompletion = raw.parse()
        assert answer.choices[0].message.content == "Paris is the capital of France."
        stream = client.chat.completions.create(model=MODEL, messages=QUESTION, stream=True)
        text = "".join(c.choices[0].delta.content or "" for c in stream if c.choices)
        assert text == "Paris is the capital of France."


def test_a_killed_gateway_is_not_seen_by_clients(node: Node) -> None:
    gateways = node.gateway_processes()
    assert len(gateways) == GATEWAYS
    victim = gateways[0]
    victim.send_signal(signal.SIGKILL)
    victim.wait(timeout=10)
    # At once: HAProxy still lists the dead replica until Serve tells it otherwise; it retries a refused
    # connection on the other one (and marks the dead one down), so no client sees the death.
    assert asyncio.run(_burst(node, 32, concurrency=8)) == [200] * 32


def test_the_killed_gateways_replacement_serves_through_the_port(node: Node) -> None:
    # Serve replaces the killed replica on its port (its own, port + 1 or + 2: the pool has no other); HAProxy
    # adds it back once Serve reports it.
    _wait_until(lambda: all(_requests_served(p) is not None for p in node.replica_ports), 180, node.cluster)
    _wait_until(lambda: _both_take_requests(node), 120, node.cluster)
