"""Engine death: one LocalModel replica's vLLM engine core killed mid-burst under Ray Serve.

    .venv/bin/python -m benchmarks.engine_death [--requests 48] [--spread-s 2.4] [--kill-after-s 1.0]

One node through `orchestrator.runtime` (as benchmarks/burst.py does): the LocalModel deployment
(`tiny-random` on vLLM's CPU build, eager, two replicas) and a fake remote provider on loopback
(`orchestrator.testing.provider`) as the alias's fallback, `death: [tiny-random, fake/m]`. Once both replicas
report to the load board, `--requests` streamed chat completions go out evenly over `--spread-s`; at
`--kill-after-s` the engine-core process of one replica is SIGKILLed: the child that vLLM titles
`VLLM::EngineCore_*` of a LocalModel replica among this process's own descendants, never another engine on
the machine.

Every request sent is counted once: answered (by the local model or the remote route; "after a failed
attempt" where `x-route-reason` names one), ended by an error event after its first token, failed before it
(lost: target 0), or hung (no end within `--timeout-s`: target 0). Timed from the kill: the replica whose
engine died gone, a new replica's engine core running, the board counting two replicas again, and the
deployment's replica states as Serve reported them. A request to the local model after it must be served
locally. Saves `benchmarks/results/engine_death-<stamp>.json`.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import signal
import tempfile
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import aiohttp
import psutil

from benchmarks.harness import chat_body, free_port, run_meta, save, stamp, stream_chat
from orchestrator.testing.provider import FakeProvider

MODEL = "tiny-random"
ALIAS = "death"
MASTER = "sk-engine-death-master"
KEY = "sk-orch-engine-death"  # the clients' virtual key
REMOTE_KEY = "sk-engine-death-remote"
AUTH = {"Authorization": f"Bearer {KEY}"}


@dataclass
class Sent:
    """One request of the burst, as its client saw it."""

    i: int
    sent_s: float  # since the burst began
    done_s: float
    served_by: str
    reason: str
    content_chunks: int
    ok: bool
    error: str | None

    @property
    def outcome(self) -> str:
        if self.ok:
            return "answered"
        if self.error is not None and self.error.split(":", 1)[0].endswith("TimeoutError"):
            return "hung"
        return "errored after first token" if self.content_chunks else "lost before first token"


@dataclass
class Watch:
    """What happened after the kill, in seconds from it (None: not seen before the watch ended)."""

    replica_gone_s: float | None = None
    new_engine_s: float | None = None
    board_two_s: float | None = None
    board_replicas: list[tuple[float, int | None]] = field(default_factory=list)  # each change
    serve_states: list[tuple[float, dict[str, int]]] = field(default_factory=list)  # each change


# ------------------------------------------------------------------------------ the processes


def engine_cores() -> dict[int, int]:
    """The vLLM engine cores among this process's descendants (Ray's workers are): core pid -> replica pid."""
    found = {}
    for p in psutil.Process().children(recursive=True):
        try:
            if "EngineCore" in p.name() or "EngineCore" in " ".join(p.cmdline()):
                found[p.pid] = p.ppid()
        except psutil.NoSuchProcess:
            continue
    return found


def gone(pid: int) -> bool:
    try:
        return bool(psutil.Process(pid).status() == psutil.STATUS_ZOMBIE)
    except psutil.NoSuchProcess:
        return True


def serve_states() -> dict[str, int]:
    from ray import serve

    from orchestrator.runtime import APP_NAME

    app = serve.status().applications.get(APP_NAME)
    deployment = app.deployments.get("LocalModel") if app is not None else None
    return {str(k): int(v) for k, v in (deployment.replica_states if deployment is not None else {}).items()}


# --------------------------------------------------------------------------------- the gateway


async def board_replicas(http: aiohttp.ClientSession, base: str) -> int | None:
    async with http.get(f"{base}/dashboard/data", headers={"Authorization": f"Bearer {MASTER}"}) as r:
        r.raise_for_status()
        load = (await r.json())["local"][0]["load"]
    return None if load is None else int(load["replicas"])


async def wait_for_two(http: aiohttp.ClientSession, base: str, timeout_s: float) -> None:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if len(engine_cores()) == 2 and await board_replicas(http, base) == 2:
            return
        await asyncio.sleep(0.5)
    raise TimeoutError(f"two replicas not reporting after {timeout_s:.0f} s")


async def burst(args: argparse.Namespace, base: str, kill: Any) -> tuple[list[Sent], float]:
    """The streamed requests, `kill()` at `--kill-after-s`: every outcome, and how far into the burst the
    kill was."""
    url = f"{base}/v1/chat/completions"
    timeout = aiohttp.ClientTimeout(total=args.timeout_s)
    connector = aiohttp.TCPConnector(limit=0)
    async with aiohttp.ClientSession(connector=connector, timeout=timeout, headers=AUTH) as http:
        start = time.monotonic()
        killed: list[float] = []

        async def one(i: int) -> Sent:
            await asyncio.sleep(i * args.spread_s / args.requests)
            sent = time.monotonic()
            r = await stream_chat(http, url, chat_body(ALIAS, f"Count to {i}.", args.max_tokens, temperature=0.7))
            return Sent(
                i,
                sent - start,
                time.monotonic() - start,
                r.served_by,
                r.route_reason,
                r.content_chunks,
                r.ok,
                r.error,
            )

        async def kill_later() -> None:
            await asyncio.sleep(args.kill_after_s)
            killed.append(time.monotonic())
            kill()

        results = await asyncio.gather(*(one(i) for i in range(args.requests)), kill_later())
    return [r for r in results if isinstance(r, Sent)], killed[0] - start


async def watch(base: str, killed_at: float, replica: int, replicas: set[int], timeout_s: float) -> Watch:
    """From the kill (alongside the burst) until the replacement of `replica` (one of `replicas`, by pid)
    reports to the board, or `timeout_s`: the processes every 0.1 s, the board and Serve every 0.25 s."""
    w = Watch()

    def since() -> float:
        return time.monotonic() - killed_at

    async def processes() -> None:
        while since() < timeout_s and w.new_engine_s is None:
            if w.replica_gone_s is None and gone(replica):
                w.replica_gone_s = since()
            if any(p not in replicas for p in (await asyncio.to_thread(engine_cores)).values()):
                w.new_engine_s = since()
            await asyncio.sleep(0.1)

    async def serve_and_board() -> None:
        async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=10)) as http:
            while since() < timeout_s:
                count = await board_replicas(http, base)
                if not w.board_replicas or w.board_replicas[-1][1] != count:
                    w.board_replicas.append((round(since(), 2), count))
                states = await asyncio.to_thread(serve_states)
                if not w.serve_states or w.serve_states[-1][1] != states:
                    w.serve_states.append((round(since(), 2), states))
                if w.new_engine_s is not None and w.replica_gone_s is not None and count == 2:
                    w.board_two_s = since()
                    return
                await asyncio.sleep(0.25)

    await asyncio.gather(processes(), serve_and_board())
    return w


async def served_locally(base: str) -> str:
    """Who served one request to the local model itself, after the replacement."""
    async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=60), headers=AUTH) as http:
        r = await stream_chat(http, f"{base}/v1/chat/completions", chat_body(MODEL, "Say something.", 8))
    return r.served_by if r.ok else f"failed: {r.error}"


# ------------------------------------------------------------------------------------ the run


def settings_for(fake: FakeProvider, port: int, data_dir: Path, tmp: Path) -> Any:
    from orchestrator.accounting.keys import hash_key
    from orchestrator.settings import load_settings

    return load_settings(
        data_dir=str(data_dir),
        server={"port": port},
        local={
            "model": MODEL,
            "num_replicas": 2,
            "engine_args": {"enforce_eager": True},
            "kv_cache_gib": 0.25,
        },
        embedding={"model": None},
        providers={
            "fake": {
                "base_url": fake.base_url + "/v1",
                "api_key_env": "ENGINE_DEATH_REMOTE_KEY",
                "models": {"m": {"id": "m"}},
            }
        },
        models={ALIAS: [MODEL, "fake/m"]},
        cache={"enabled": False},  # every request reaches a model
        ledger={"path": str(tmp / "ledger.sqlite")},
        keys={"bench": {"sha256": hash_key(KEY)}},
        responses={"directory": str(tmp / "responses")},
    )


async def measure(args: argparse.Namespace, base: str) -> dict[str, Any]:
    async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=10)) as http:
        await wait_for_two(http, base, timeout_s=300)
    await served_locally(base)  # warm
    cores = engine_cores()
    core, replica = sorted(cores.items())[0]
    print(f"two replicas reporting; killing engine core {core} (replica {replica}) mid-burst", flush=True)
    watching: list[asyncio.Task[Watch]] = []

    def kill() -> None:
        os.kill(core, signal.SIGKILL)
        w = watch(base, time.monotonic(), replica, set(cores.values()), args.replace_timeout_s)
        watching.append(asyncio.get_running_loop().create_task(w))

    sent, kill_s = await burst(args, base, kill)
    after = await watching[0]
    local = await served_locally(base)
    outcomes: dict[str, int] = {}
    for s in sent:
        outcomes[s.outcome] = outcomes.get(s.outcome, 0) + 1
    answered = [s for s in sent if s.ok]
    return {
        "sent": len(sent),
        "outcomes": outcomes,
        "answered_local": sum(s.served_by.startswith("local/") for s in answered),
        "answered_remote": sum(not s.served_by.startswith("local/") for s in answered),
        "answered_after_a_failed_attempt": sum("after" in s.reason for s in answered),
        "in_flight_at_kill": sum(s.sent_s <= kill_s < s.done_s for s in sent),
        "watch": asdict(after),
        "served_after": local,
        "killed_core_and_replica_gone": gone(core) and gone(replica),  # reaped: nothing orphaned
        "requests": [asdict(s) | {"outcome": s.outcome} for s in sent],
    }


def report(r: dict[str, Any]) -> str:
    o, w = r["outcomes"], r["watch"]

    def s(x: float | None) -> str:
        return "not seen" if x is None else f"{x:.1f} s"

    return "\n".join(
        [
            f"sent {r['sent']}, in flight at the kill {r['in_flight_at_kill']}",
            f"answered {o.get('answered', 0)} (local {r['answered_local']}, remote {r['answered_remote']}; "
            f"after a failed attempt {r['answered_after_a_failed_attempt']})",
            f"errored after the first token {o.get('errored after first token', 0)}, "
            f"lost before it {o.get('lost before first token', 0)}, hung {o.get('hung', 0)}",
            f"after the kill: replica gone {s(w['replica_gone_s'])}, new engine core {s(w['new_engine_s'])}, "
            f"board at two replicas {s(w['board_two_s'])}",
            f"board replicas {w['board_replicas']}",
            f"Serve's replica states {w['serve_states']}",
            f"a request to {MODEL} after: served by {r['served_after']}; "
            f"the killed engine core and its replica gone: {r['killed_core_and_replica_gone']}",
        ]
    )


def run(args: argparse.Namespace) -> dict[str, Any]:
    from orchestrator import runtime

    meta = run_meta("benchmarks.engine_death")
    fake = FakeProvider(api_key=REMOTE_KEY, reply=" ".join(["token"] * 200), ttft_ms=350, tokens_per_s=200)
    fake.start()
    os.environ["ENGINE_DEATH_REMOTE_KEY"] = REMOTE_KEY
    os.environ["ORCHESTRATOR_MASTER_KEY"] = MASTER
    port = free_port()
    with tempfile.TemporaryDirectory(prefix="orch-ed-", dir="/tmp") as tmp:
        settings = settings_for(fake, port, Path(args.data_dir).resolve(), Path(tmp))
        print(f"starting the orchestrator on :{port} (Ray Serve, two LocalModel replicas of {MODEL}) ...", flush=True)
        runtime.prepare_models(settings, progress=False)
        try:
            runtime.start(settings, timeout_s=900, verbose=False)
            figures = asyncio.run(measure(args, f"http://127.0.0.1:{port}"))
        finally:
            runtime.stop()
            fake.stop()
    left = engine_cores()
    result = {**meta, "args": vars(args), **figures, "engine_cores_left_after_stop": len(left)}
    text = report(figures)
    result["saved"] = str(save("engine_death", stamp(), result))
    print(text)
    return result


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--requests", type=int, default=48)
    p.add_argument("--spread-s", type=float, default=2.4, help="the requests go out evenly over this")
    p.add_argument("--kill-after-s", type=float, default=1.0, help="the engine core is killed this far in")
    p.add_argument("--max-tokens", type=int, default=96)
    p.add_argument("--timeout-s", type=float, default=180.0, help="per request: past it, a request hung")
    p.add_argument("--replace-timeout-s", type=float, default=240.0)
    p.add_argument("--data-dir", default=str(Path(__file__).resolve().parent.parent / ".data" / "bench"))
    args = p.parse_args()
    result = run(args)
    print(json.dumps({"saved": result["saved"]}))


if __name__ == "__main__":
    main()
