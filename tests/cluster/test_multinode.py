"""The orchestrator on a real multi-node Ray cluster, deployed the way a Ray user deploys it.

Three Ray nodes on this machine (`ray start --head`, two `ray start --address` workers, each with its
own custom resources; see ray_nodes.py), the Serve environment from `orchestrator build-config`'s
header on every node, the generated Serve config sent with `serve deploy`:

    head  {head, gateway}             Gateway replica, LoadBoard, ledger actor (and Serve's controller)
    w1    {w1, gateway, local_model}  Gateway replica, LocalModel replica (tiny-random): its gateway killed,
                                      then its engine core, each replaced by Serve
    w2    {w2, local_model}           LocalModel replica: removed mid-run by the last test

Everything is asked through the official openai client (and the admin/dashboard routes over HTTP),
against both gateways' ports. This process never joins the cluster (it holds no Ray of its own:
tests/e2e starts one in-process later in the same session).
"""

from __future__ import annotations

import asyncio
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import openai
import psutil
import pytest
import yaml
from ray_nodes import SERVE, Cluster, free_port

from orchestrator import runtime
from orchestrator.accounting.keys import hash_key
from orchestrator.deploy import PROXY_PORT_OFFSET
from orchestrator.protocol import ChatCompletionRequest
from orchestrator.scheduling.tokens import prompt_upper_bound
from orchestrator.settings import load_settings

pytestmark = pytest.mark.cluster

MASTER = "sk-cluster-master"
BUDGET_KEY = "sk-orch-cluster-budget"
OPEN_KEY = "sk-orch-cluster-open"
BUDGET_TOKENS = 1500
MODEL = "tiny-random"
QUESTION = [{"role": "user", "content": "Say something."}]
LOCAL_NODES = ("w1", "w2")


@dataclass
class Deployment:
    cluster: Cluster
    ports: tuple[int, int]
    node_names: dict[str, str]  # Ray node id -> head / w1 / w2

    def url(self, port: int) -> str:
        return f"http://127.0.0.1:{port}"

    def client(self, port: int, key: str = OPEN_KEY) -> openai.OpenAI:
        return openai.OpenAI(base_url=self.url(port) + "/v1", api_key=key, max_retries=0, timeout=60)

    def aclient(self, port: int, key: str) -> openai.AsyncOpenAI:
        return openai.AsyncOpenAI(base_url=self.url(port) + "/v1", api_key=key, max_retries=0, timeout=120)

    def admin(self, port: int, path: str) -> Any:
        r = httpx.get(self.url(port) + path, headers={"Authorization": f"Bearer {MASTER}"}, timeout=30)
        r.raise_for_status()
        return r.json()

    def placed(self, class_suffix: str) -> list[str]:
        """The node names of the alive actors whose class name ends with `class_suffix`."""
        actors = self.cluster.actors()
        return sorted(self.node_names[a["node_id"]] for a in actors if a["class_name"].endswith(class_suffix))


def orchestrator_config(tmp: Path, port: int) -> dict[str, Any]:
    return {
        "server": {"port": port},
        "local": {
            "model": MODEL,
            "num_replicas": 2,
            "resources": {"local_model": 1},  # only the workers offer it: one replica on each
            "engine_args": {"enforce_eager": True},
            "kv_cache_gib": 0.25,
        },
        "embedding": {"model": None},
        "gateway": {"num_replicas": 2, "resources": {"gateway": 1}, "max_replicas_per_node": 1},
        "providers": {},
        "models": {},
        "cache": {"enabled": False},  # every request reaches an engine
        "ledger": {"path": str(tmp / "ledger.sqlite"), "reference_model": None},
        "responses": {"directory": str(tmp / "responses")},
        "keys": {
            # Its burst is 250 requests at once on each gateway: past the default share of a replica (128).
            "budget": {
                "sha256": hash_key(BUDGET_KEY),
                "budget_tokens": BUDGET_TOKENS,
                "period": "total",
                "parallel_requests": 500,
            },
            "open": {"sha256": hash_key(OPEN_KEY)},
        },
    }


def header_env(serve_config: str) -> dict[str, str]:
    """The variables the generated config's header says every node must have before `ray start`."""
    line = next(line for line in serve_config.splitlines() if line.startswith("#") and "ray start --head" in line)
    assignments = line.lstrip("# ").split(" ray start")[0].split()
    return dict(a.split("=", 1) for a in assignments)


@pytest.fixture(scope="module")
def deployment() -> Iterator[Deployment]:
    # Short: Ray's unix sockets live under it (108-byte path limit).
    tmp = Path(tempfile.mkdtemp(prefix="orch-mn-", dir="/tmp"))
    # A gateway per node: with direct ingress, port and port + 1 on this one host, Serve's proxies 1000 above.
    port = free_port(2, also=(PROXY_PORT_OFFSET,))
    config = tmp / "orchestrator.yaml"
    config.write_text(yaml.safe_dump(orchestrator_config(tmp, port)))
    runtime.prepare_models(load_settings(config), progress=False)  # the model, built once, before any node
    serve_yaml = tmp / "serve.yaml"
    orchestrator = str(Path(sys.executable).with_name("orchestrator"))
    subprocess.run([orchestrator, "build-config", "--config", str(config), "-o", str(serve_yaml)], check=True)
    env = {
        **header_env(serve_yaml.read_text()),
        "HF_HUB_OFFLINE": "1",
        "VLLM_HOST_IP": "127.0.0.1",
        "ORCHESTRATOR_MASTER_KEY": MASTER,
    }
    cluster = Cluster(tmp, env)
    try:
        cluster.start_head({"head": 1, "gateway": 1})
        cluster.wait_for_nodes(1, timeout_s=60)
        # One at a time: two raylets starting together under one session dir can miss each other's start.
        cluster.add_worker("w1", {"w1": 1, "gateway": 1, "local_model": 1})
        cluster.wait_for_nodes(2, timeout_s=60)
        cluster.add_worker("w2", {"w2": 1, "local_model": 1})
        nodes = cluster.wait_for_nodes(3, timeout_s=60)
        names = {}
        for n in nodes:
            total = n.get("resources_total", {})
            names[n["node_id"]] = next(name for name in ("head", "w1", "w2") if name in total)
        cluster.cli(SERVE, "deploy", str(serve_yaml), "--address", cluster.dashboard)
        deployed = Deployment(cluster, (port, port + 1), names)
        _wait_until_serving(deployed, timeout_s=360)  # a loaded 2-core host: up to ~3 min seen
        yield deployed
    finally:
        cluster.stop()
        shutil.rmtree(tmp, ignore_errors=True)


def _wait_until_serving(d: Deployment, timeout_s: float) -> None:
    deadline = time.monotonic() + timeout_s
    waiting = set(d.ports)
    while waiting and time.monotonic() < deadline:
        for port in sorted(waiting):
            if _answers(d, port):
                waiting.discard(port)
        time.sleep(1)
    if waiting:
        status = d.cluster.cli(SERVE, "status", "--address", d.cluster.dashboard)
        raise TimeoutError(f"gateways on {sorted(waiting)} not serving after {timeout_s:.0f} s:\n{status}")


def test_each_piece_is_on_its_node(deployment: Deployment) -> None:
    d = deployment
    gateways = d.placed(":Gateway")
    assert gateways == ["head", "w1"]  # two gateways, two nodes
    assert d.placed(":LocalModel") == list(LOCAL_NODES)  # placed by the custom resource only workers offer
    assert d.placed(":LoadBoard") == ["head"]
    ledger = [a for a in d.cluster.actors() if (a.get("name") or "").startswith("ledger-")]
    assert [d.node_names[a["node_id"]] for a in ledger] == ["head"]


def test_both_gateways_serve_and_see_every_replica(deployment: Deployment) -> None:
    d = deployment
    for port in d.ports:
        with d.client(port) as client:
            reply = client.chat.completions.create(model=MODEL, messages=QUESTION, max_tokens=8)  # type: ignore[arg-type]
            assert reply.choices[0].finish_reason in ("stop", "length") and reply.usage is not None
            assert reply.usage.completion_tokens > 0
    # The load board sums the reports of the replicas on w1 and w2; both gateways read the same sum.
    deadline = time.monotonic() + 30
    seen: list[Any] = []
    while time.monotonic() < deadline:
        seen = [d.admin(port, "/dashboard/data")["local"][0]["load"] for port in d.ports]
        if all(load is not None and load["replicas"] == 2 for load in seen):
            break
        time.sleep(0.5)
    assert all(load is not None and load["replicas"] == 2 for load in seen), seen


def test_one_budget_holds_across_gateways_on_two_nodes(deployment: Deployment) -> None:
    d = deployment
    max_tokens = 8
    body = {"model": MODEL, "messages": QUESTION, "max_tokens": max_tokens}
    reservation = prompt_upper_bound(ChatCompletionRequest.model_validate(body)) + max_tokens

    async def burst() -> list[int]:
        clients = [d.aclient(port, BUDGET_KEY) for port in d.ports]

        async def one(i: int) -> int:
            await asyncio.sleep((i % 50) / 100)  # arriving over half a second, alternating gateways
            try:
                await clients[i % 2].chat.completions.create(**body)  # type: ignore[call-overload]
                return 200
            except openai.RateLimitError as e:
                assert e.code == "insufficient_quota", e
                return 429

        try:
            return await asyncio.gather(*(one(i) for i in range(500)))
        finally:
            for c in clients:
                await c.close()

    statuses = asyncio.run(burst())
    served = statuses.count(200)
    assert set(statuses) == {200, 429}
    spend = _settled_spend(d, "budget")
    assert spend["reserved_tokens"] == 0
    assert spend["tokens"] <= BUDGET_TOKENS + reservation, (spend, reservation)
    # Nobody was refused before the reservations alone reached the budget.
    assert served >= BUDGET_TOKENS // reservation, (served, reservation)
    print(f"budget: {served} of 500 served, {spend['tokens']} tokens spent of {BUDGET_TOKENS} (+{reservation})")
    # Both gateways read the one ledger: the same spend through either.
    assert _settled_spend(d, "budget", port=d.ports[1])["tokens"] == spend["tokens"]


def _settled_spend(d: Deployment, key: str, port: int | None = None) -> dict[str, Any]:
    deadline = time.monotonic() + 30
    while True:
        keys = {k["id"]: k for k in d.admin(port or d.ports[0], "/admin/keys")["data"]}
        spend: dict[str, Any] = keys[key]["spend"]
        if spend["reserved_tokens"] == 0 or time.monotonic() > deadline:
            return spend
        time.sleep(0.5)


def test_a_gateway_killed_is_back_on_its_port_within_a_minute(deployment: Deployment) -> None:
    """Serve restarts the replica on its node; the port the dead one held is free for it again at once
    (Serve would hold it out of the node's pool for 150 s, for an HAProxy this deployment doesn't have), though
    a client's kept-alive connection to the dead one lingers on it (orchestrator/rebind.py)."""
    d = deployment
    w1 = next(n for n in d.cluster.nodes if n.name == "w1")
    [gateway] = d.cluster.actors(node_id=d.cluster.node_id(w1), class_name="ServeReplica:orchestrator:Gateway")
    with d.client(d.ports[1]) as held:  # the SDK's pool keeps its connection to w1's Gateway open
        assert held.models.list().data
        os.kill(int(gateway["pid"]), signal.SIGKILL)
        killed = time.monotonic()
        deadline = killed + 60
        while time.monotonic() < deadline:  # it goes: one port stops answering
            if not all(_answers(d, port) for port in d.ports):
                break
            time.sleep(0.2)
        _wait_until_serving(d, timeout_s=max(1.0, deadline - time.monotonic()))
        print(f"gateway on w1 killed: both ports serving again after {time.monotonic() - killed:.1f} s")
        assert d.placed(":Gateway") == ["head", "w1"]
        with d.client(d.ports[1]) as client:
            assert client.chat.completions.create(model=MODEL, messages=QUESTION, max_tokens=4).choices  # type: ignore[arg-type]


def _answers(d: Deployment, port: int) -> bool:
    try:
        r = httpx.get(d.url(port) + "/v1/models", headers={"Authorization": f"Bearer {OPEN_KEY}"}, timeout=2)
    except httpx.HTTPError:
        return False
    return r.status_code == 200


@dataclass
class Outcome:
    sent: float = 0.0
    done: float = 0.0
    chunks: int = 0
    finished: bool = False
    error: str | None = None


@dataclass
class Burst:
    """Every streamed request of a burst with a fault made mid-way, as its client saw it."""

    outcomes: list[Outcome]
    fault_at: float  # time.monotonic() when the fault was made

    @property
    def in_flight(self) -> list[Outcome]:
        return [o for o in self.outcomes if o.sent < self.fault_at < o.done]

    @property
    def lost(self) -> list[Outcome]:
        """Requests that failed before their first token: they should have fallen over."""
        return [o for o in self.outcomes if not o.finished and o.chunks == 0]

    @property
    def broken(self) -> list[Outcome]:
        return [o for o in self.outcomes if not o.finished]


def _burst(d: Deployment, count: int, fault: Callable[[], object], fault_after_s: float = 1.0) -> Burst:
    """`count` streamed requests over ~2.4 s, alternating over both gateways; `fault()` at `fault_after_s`.

    Each request comes back, answered or failed explicitly (the openai client raises `APIError` on
    the SSE error event), or it hangs and the test fails on the client's timeout.
    """

    async def run() -> tuple[list[Outcome], float]:
        clients = [d.aclient(port, OPEN_KEY) for port in d.ports]
        fault_at: list[float] = []

        async def one(i: int) -> Outcome:
            out = Outcome()
            await asyncio.sleep(i * 0.05)  # in flight over ~2.4 s: the fault comes mid-way
            out.sent = time.monotonic()
            try:
                stream = await clients[i % 2].chat.completions.create(
                    model=MODEL,
                    messages=[{"role": "user", "content": f"Count to {i}."}],
                    max_tokens=96,
                    stream=True,
                )
                async for _chunk in stream:
                    out.chunks += 1
                out.finished = True
            except openai.APITimeoutError:
                raise  # a request that hung: never an answer
            except openai.APIError as e:
                out.error = f"{type(e).__name__}: {e}"
            out.done = time.monotonic()
            return out

        async def make_fault() -> None:
            await asyncio.sleep(fault_after_s)
            fault_at.append(time.monotonic())
            await asyncio.to_thread(fault)

        try:
            outcomes = await asyncio.gather(*(one(i) for i in range(count)), make_fault())
        finally:
            for c in clients:
                await c.close()
        return [o for o in outcomes if isinstance(o, Outcome)], fault_at[0]

    outcomes, fault_at = asyncio.run(run())
    assert len(outcomes) == count  # every request came back: answered, or failed explicitly
    return Burst(outcomes, fault_at)


def _board_replicas(d: Deployment, port: int) -> int | None:
    load = d.admin(port, "/dashboard/data")["local"][0]["load"]
    return None if load is None else int(load["replicas"])


def _local_replica(d: Deployment, node: str) -> dict[str, Any]:
    """The LocalModel replica actor on `node` (the state API's record: actor_id, pid)."""
    w = next(n for n in d.cluster.nodes if n.name == node)
    found = [a for a in d.cluster.actors(node_id=d.cluster.node_id(w)) if a["class_name"].endswith(":LocalModel")]
    assert len(found) == 1, found
    return found[0]


def _engine_core(replica_pid: int) -> psutil.Process:
    """The vLLM engine-core process of the replica `replica_pid`: its one child process that vLLM
    titled EngineCore (VLLM::EngineCore_DP0); every other engine on the machine is another's child."""
    cores = [
        p
        for p in psutil.Process(replica_pid).children(recursive=True)
        if "EngineCore" in p.name() or "EngineCore" in " ".join(p.cmdline())
    ]
    assert len(cores) == 1, [(p.pid, p.name(), p.cmdline()) for p in cores]
    return cores[0]


def _gone(p: psutil.Process) -> bool:
    try:
        return not p.is_running() or p.status() == psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess:
        return True


def test_an_engine_killed_mid_burst_loses_no_request_and_serve_replaces_its_replica(deployment: Deployment) -> None:
    """The vLLM engine core of w1's LocalModel replica SIGKILLed mid-burst: requests without a first token
    fall over to w2's replica, streams past it end with an error event, nothing hangs; the replica ends its
    process (its health check would fail too) and Serve replaces it on w1 (a new actor), which then serves."""
    d = deployment
    before = _local_replica(d, "w1")
    replica = psutil.Process(int(before["pid"]))
    core = _engine_core(replica.pid)
    burst = _burst(d, 48, lambda: core.send_signal(signal.SIGKILL))
    print(
        f"engine core killed with {len(burst.in_flight)} of {len(burst.outcomes)} streams in flight: "
        f"{sum(o.finished for o in burst.outcomes)} answered, {len(burst.broken) - len(burst.lost)} ended with "
        f"an error event after their first token, {len(burst.lost)} failed before it"
    )
    assert len(burst.in_flight) >= 8, burst.in_flight  # killed while many were running (about half on it)
    assert not burst.lost, burst.lost  # a request without its first token fell over to w2's replica
    assert all(o.error for o in burst.broken)  # a stream past its first token ended with an error event

    # Serve sees the failed health check and starts a new replica on w1; the board counts it.
    deadline = burst.fault_at + 180
    replaced: float | None = None
    while time.monotonic() < deadline:
        if replaced is None:
            found = [a for a in d.cluster.actors() if a["class_name"].endswith(":LocalModel")]
            if {d.node_names[a["node_id"]] for a in found} == set(LOCAL_NODES) and before["actor_id"] not in {
                a["actor_id"] for a in found
            }:
                replaced = time.monotonic()
        if replaced is not None and all(_board_replicas(d, port) == 2 for port in d.ports):
            break
        time.sleep(1)
    reported = time.monotonic()
    assert replaced is not None, "the replica with the dead engine was not replaced within 180 s"
    assert all(_board_replicas(d, port) == 2 for port in d.ports)
    assert d.placed(":LocalModel") == list(LOCAL_NODES)
    after = _local_replica(d, "w1")
    assert after["actor_id"] != before["actor_id"]
    assert _gone(core) and _gone(replica)  # the old replica ended, nothing orphaned
    print(
        f"after the kill: a new replica on w1 after {replaced - burst.fault_at:.1f} s, "
        f"both reporting to the board after {reported - burst.fault_at:.1f} s"
    )
    # Served by the local model again, on either gateway (two replicas behind it).
    for port in d.ports:
        with d.client(port) as client:
            raw = client.chat.completions.with_raw_response.create(model=MODEL, messages=QUESTION, max_tokens=4)  # type: ignore[arg-type]
            assert raw.headers["x-served-by"] == f"local/{MODEL}" and raw.parse().choices


def test_a_node_removed_mid_run_loses_no_request_before_its_first_token(deployment: Deployment) -> None:
    d = deployment
    w2 = next(n for n in d.cluster.nodes if n.name == "w2")
    burst = _burst(d, 48, w2.kill)
    assert len(burst.in_flight) >= 8, burst.in_flight  # the node went while many were running (half of them on it)
    assert not burst.lost, burst.lost  # a request without its first token fell over to w1's replica
    assert all(o.error for o in burst.broken)
    print(
        f"node removed with {len(burst.in_flight)} of {len(burst.outcomes)} streams in flight: "
        f"{len(burst.broken)} ended with an error event"
    )
    # Traffic goes on, on what is left; the board counts one replica now.
    with d.client(d.ports[0]) as client:
        assert client.chat.completions.create(model=MODEL, messages=QUESTION, max_tokens=4).choices  # type: ignore[arg-type]
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        load = d.admin(d.ports[1], "/dashboard/data")["local"][0]["load"]
        if load is not None and load["replicas"] == 1:
            break
        time.sleep(0.5)
    assert load is not None and load["replicas"] == 1, load
