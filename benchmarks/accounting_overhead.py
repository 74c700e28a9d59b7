"""What accounting adds to a request: the edge's tab, keys, reservations and settlement.

    .venv/bin/python -m benchmarks.accounting_overhead [--requests 500] [--rounds 5]

The gateway's ASGI app in-process (no sockets, no Ray Serve: only the gateway's own work differs) over a
fake local engine that answers at once, asked the same small chat request sequentially, in four setups
that alternate round by round so the machine's noise hits them alike:

- **none**: the app with its accounting middleware taken out (the pipeline still writes its usage log line);
- **open**: no keys: a tab per request, the JSON log line, metrics, settlement batched to an in-process book;
- **keys**: a virtual key with a budget and rpm: authentication, a reservation and a settlement per request,
  in-process book;
- **keys+actor**: the same with the ledger's owner the real named Ray actor (one actor call per admission,
  carrying the settlements waiting since the last one), Ray started once with one CPU;
- **free+actor**: a key without limits, actor owner: authenticated from the replica's lookup cache, nothing to
  reserve, settlements batched in the background.

Prints median microseconds per request per setup (median over rounds of each round's median; medians are the
harness's nearest-rank p50) and saves them as `benchmarks/results/accounting_overhead-<stamp>.json`.
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import tempfile
from pathlib import Path
from typing import Any

from benchmarks.harness import asgi_client, percentile, run_meta, save, sequential_p50_us, stamp

KEY = "sk-orch-benchmark-0000000000000000000000000000000000000000"
BODY = {"model": "fake-chat", "messages": [{"role": "user", "content": "hello there"}], "max_tokens": 5}


async def build(setup: str, tmp: Path) -> tuple[Any, Any]:
    from orchestrator.accounting.keys import hash_key
    from orchestrator.accounting.setup import build_accounts
    from orchestrator.api import build_app
    from orchestrator.app import build_pipeline
    from orchestrator.settings import load_settings
    from orchestrator.testing.engine import FakeEngine

    engine = FakeEngine("fake-chat")
    keyed = setup.startswith("keys")
    limits: dict[str, Any] = {"budget_usd": 1e9, "rpm": 10**9} if keyed else {}
    settings = load_settings(
        providers={},
        models={},
        cache={"enabled": False},
        ledger={"path": str(tmp / f"{setup}.sqlite"), "owner": "actor" if setup.endswith("+actor") else "process"},
        keys={"bench": {"sha256": hash_key(KEY), **limits}} if setup != "open" and setup != "none" else {},
    )
    pipeline = await build_pipeline({"local": (engine, engine.info())}, settings, env={})

    async def stats() -> Any:
        return engine.stats()

    accounts = await build_accounts(settings, pipeline, local={"local": (stats, engine.info())}, env={})
    app = build_app(pipeline, accounts)
    if setup == "none":
        app.user_middleware = [m for m in app.user_middleware if m.cls.__name__ != "RequestScope"]
    return app, accounts


async def round_of(app: Any, n: int) -> float:
    async with asgi_client(app) as c:
        return await sequential_p50_us(c, "/v1/chat/completions", BODY, n, {"Authorization": f"Bearer {KEY}"})


async def main(requests: int, rounds: int) -> None:
    import ray

    meta = run_meta("benchmarks.accounting_overhead")
    logging.disable(logging.WARNING)  # the per-request INFO lines are still formatted, not printed
    setups = ["none", "open", "keys", "keys+actor", "free+actor"]
    with tempfile.TemporaryDirectory() as tmp:
        ray.init(num_cpus=1, include_dashboard=False, log_to_driver=False)
        try:
            apps = {s: await build(s, Path(tmp)) for s in setups}
            for app, _ in apps.values():
                await round_of(app, 50)  # warm up
            results: dict[str, list[float]] = {s: [] for s in setups}
            for _ in range(rounds):
                for s in setups:
                    results[s].append(await round_of(apps[s][0], requests))
            for _, accounts in apps.values():
                await accounts.drain()
                await accounts.background.stop()
        finally:
            ray.shutdown()
    medians = {s: percentile(results[s], 50) for s in setups}
    print(f"{'setup':<12}{'µs/request':>12}{'vs none':>10}   (median of {rounds} rounds x {requests} sequential)")
    for s in setups:
        print(f"{s:<12}{medians[s]:>12.0f}{medians[s] - medians['none']:>+10.0f}")
    result = {**meta, "requests": requests, "rounds": rounds, "median_us": medians, "round_medians_us": results}
    print(f"saved {save('accounting_overhead', stamp(), result)}")


if __name__ == "__main__":
    parser = argparse.ArgumentParser()
    parser.add_argument("--requests", type=int, default=500)
    parser.add_argument("--rounds", type=int, default=5)
    args = parser.parse_args()
    asyncio.run(main(args.requests, args.rounds))
