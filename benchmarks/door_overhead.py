"""What a front door adds to a request: the Responses and Messages doors against chat completions.

    .venv/bin/python -m benchmarks.door_overhead [--requests 400] [--rounds 5]

The gateway's ASGI app in-process (no sockets, no Ray Serve: only the doors' own work differs), over a
fake local engine that answers at once, asked the same small question sequentially through each door,
whole and streamed; the doors alternate round by round so the machine's noise hits them alike:

- **chat**: `POST /v1/chat/completions` (the baseline);
- **messages**: `POST /v1/messages` (Anthropic's body parsed and translated to chat, the answer back);
- **responses**: `POST /v1/responses` with `store: false` (parsed, translated, the answer back);
- **responses+store**: the same, stored (the default), with the in-process disk store (`responses.owner:
  process`): the write is off the answer's path but its CPU is this process's;
- **responses+actor**: stored in the named Ray actor, as a deployment stores them (`responses.owner: actor`,
  the default): the replica only sends the write.

Prints the median microseconds per request per door and stream mode (median over rounds of each round's
nearest-rank p50) and each door's cost: the median over rounds of its p50 minus chat's p50 in the same
round. Target: a door adds ≤ 0.3 ms p50 over chat on the same route. Saves
`benchmarks/results/door_overhead-<stamp>.json`.
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import tempfile
from pathlib import Path
from typing import Any

import httpx

from benchmarks.harness import asgi_client, percentile, run_meta, save, sequential_p50_us, stamp

QUESTION = "hello there"
DOORS: dict[str, tuple[str, dict[str, Any]]] = {
    "chat": (
        "/v1/chat/completions",
        {"model": "fake-chat", "messages": [{"role": "user", "content": QUESTION}], "max_tokens": 5},
    ),
    "messages": (
        "/v1/messages",
        {"model": "fake-chat", "messages": [{"role": "user", "content": QUESTION}], "max_tokens": 5},
    ),
    "responses": ("/v1/responses", {"model": "fake-chat", "input": QUESTION, "max_output_tokens": 5, "store": False}),
    "responses+store": ("/v1/responses", {"model": "fake-chat", "input": QUESTION, "max_output_tokens": 5}),
    "responses+actor": ("/v1/responses", {"model": "fake-chat", "input": QUESTION, "max_output_tokens": 5}),
}
TARGET_MS = 0.3


async def build(tmp: Path, owner: str) -> tuple[Any, Any]:
    from orchestrator.accounting.setup import build_accounts
    from orchestrator.api import build_app
    from orchestrator.app import build_pipeline
    from orchestrator.frontdoors.responses.store import store_for
    from orchestrator.settings import load_settings
    from orchestrator.testing.engine import FakeEngine

    engine = FakeEngine("fake-chat")
    settings = load_settings(
        providers={},
        models={},
        cache={"enabled": False},
        ledger={"path": str(tmp / "ledger.sqlite"), "owner": "process"},
        responses={"directory": str(tmp / f"responses-{owner}"), "owner": owner},
    )
    pipeline = await build_pipeline({"local": (engine, engine.info())}, settings, env={})
    accounts = await build_accounts(settings, pipeline, env={})
    return build_app(pipeline, accounts, responses=store_for(settings)), accounts


async def round_of(c: httpx.AsyncClient, door: str, stream: bool, n: int) -> float:
    path, body = DOORS[door]
    return await sequential_p50_us(c, path, {**body, "stream": stream}, n)


async def main(requests: int, rounds: int) -> None:
    import ray

    meta = run_meta("benchmarks.door_overhead")
    logging.disable(logging.WARNING)  # the per-request INFO lines are still formatted, not printed
    cells = [(door, stream) for stream in (False, True) for door in DOORS]
    results: dict[str, list[float]] = {f"{d}{' stream' if s else ''}": [] for d, s in cells}
    with tempfile.TemporaryDirectory() as tmp:
        ray.init(num_cpus=1, include_dashboard=False, log_to_driver=False)
        try:
            apps = {owner: await build(Path(tmp), owner) for owner in ("process", "actor")}
            clients = {owner: asgi_client(app) for owner, (app, _) in apps.items()}

            def client(door: str) -> httpx.AsyncClient:
                return clients["actor" if door.endswith("+actor") else "process"]

            for door, stream in cells:
                await round_of(client(door), door, stream, 50)  # warm up
            for _ in range(rounds):
                for door, stream in cells:
                    value = await round_of(client(door), door, stream, requests)
                    results[f"{door}{' stream' if stream else ''}"].append(value)
            for c in clients.values():
                await c.aclose()
            for _, accounts in apps.values():
                await accounts.drain()
                await accounts.background.stop()
        finally:
            ray.shutdown()
    medians = {name: percentile(values, 50) for name, values in results.items()}
    # A door's cost: the median over rounds of its difference from chat in the same round (the rounds
    # see different machine noise; a difference within one round doesn't).
    added = {}
    print(f"{'door':<24}{'µs/request':>12}{'vs chat':>10}   (median of {rounds} rounds x {requests} sequential)")
    for name, values in results.items():
        base = results["chat stream" if name.endswith(" stream") else "chat"]
        added[name] = percentile([v - b for v, b in zip(values, base, strict=True)], 50) / 1000
        verdict = "" if name.startswith("chat") else ("  met" if added[name] <= TARGET_MS else "  missed")
        print(f"{name:<24}{medians[name]:>12.0f}{added[name] * 1000:>+10.0f}{verdict}")
    print(f"target: a door adds <= {TARGET_MS} ms p50 over chat completions on the same route")
    result = {
        **meta,
        "requests": requests,
        "rounds": rounds,
        "median_us": medians,
        "added_ms_vs_chat": added,
        "target_ms": TARGET_MS,
        "round_medians_us": results,
    }
    print(f"saved {save('door_overhead', stamp(), result)}")


if __name__ == "__main__":
    parser = argparse.ArgumentParser()
    parser.add_argument("--requests", type=int, default=400)
    parser.add_argument("--rounds", type=int, default=5)
    args = parser.parse_args()
    asyncio.run(main(args.requests, args.rounds))
