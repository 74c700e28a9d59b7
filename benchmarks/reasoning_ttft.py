"""When a reasoning model's first words reach the client: directly from the provider, and through the gateway.

    .venv/bin/python -m benchmarks.reasoning_ttft [--streams 30] [--reasoning-words 40] [--tokens-per-s 20]

A fake reasoning provider (`orchestrator.testing.provider`, OpenAI's wire format: `reasoning_content` deltas
for `--reasoning-words` words, then the answer, one word every 1/`--tokens-per-s` s after a 100 ms first
token) on a loopback socket (its own thread and loop), asked sequentially in alternation: **direct** (the
fake itself) and **gateway** (the gateway's app under uvicorn in a process of its own, the fake as its remote
route through the production HTTP client, the default resilience settings: a 30 s first-token timeout).
For each stream the client records when the first reasoning and the first content arrive.

Target: through the gateway the first reasoning arrives within one chunk interval (1/tokens-per-s) of its
arrival directly, p50 and p95 (a gateway that held streams back until their first content would add the
whole reasoning time, ~2 s here). Prints both distributions and saves
`benchmarks/results/reasoning_ttft-<stamp>.json`.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import logging
import os
import sys
import tempfile
import time
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import aiohttp

from benchmarks.harness import LOGS, Server, dist, free_port, run_meta, save, stamp

KEY = "sk-bench-reasoner"
BODY = {"messages": [{"role": "user", "content": "Why is the sky blue?"}], "stream": True}


async def first_arrivals(http: aiohttp.ClientSession, url: str, model: str) -> tuple[float, float]:
    """(seconds to the first reasoning delta, seconds to the first content delta) of one stream."""
    t0 = time.perf_counter()
    reasoning = content = None
    headers = {"Authorization": f"Bearer {KEY}", "Content-Type": "application/json"}
    async with http.post(url, data=json.dumps({**BODY, "model": model}), headers=headers) as resp:
        assert resp.status == 200, await resp.text()
        async for line in resp.content:
            if not line.startswith(b"data: {"):
                continue
            for choice in json.loads(line[6:]).get("choices") or ():
                delta = choice.get("delta") or {}
                now = time.perf_counter() - t0
                if reasoning is None and (delta.get("reasoning_content") or delta.get("reasoning")):
                    reasoning = now
                if content is None and delta.get("content"):
                    content = now
    assert reasoning is not None and content is not None, "a stream without reasoning or content"
    return reasoning, content


@contextlib.asynccontextmanager
async def gateway(fake_url: str) -> AsyncIterator[str]:
    """This module's `--gateway-for` mode in a process of its own (so the gateway, the fake and the
    client share no event loop), on a free loopback port: started, awaited and stopped by the harness."""
    port = free_port()
    argv = [sys.executable, "-m", "benchmarks.reasoning_ttft", "--gateway-for", fake_url, "--port", str(port)]
    server = Server("gateway", argv, env=dict(os.environ), log_path=LOGS / "reasoning_ttft-gateway.log").start()
    url = f"http://127.0.0.1:{port}"
    try:
        await asyncio.to_thread(server.wait_ready, url, "deep/r1", 60)
        yield url + "/v1/chat/completions"
    finally:
        stopped = server.stop(timeout_s=10)
        assert not stopped.leftovers, stopped.leftovers


async def serve_gateway(fake_url: str, port: int) -> None:
    """The gateway's app over the fake (its only remote route, with the production HTTP client), under
    uvicorn on `port`, until terminated."""
    import uvicorn

    from orchestrator.api import build_app
    from orchestrator.app import build_pipeline
    from orchestrator.providers.factory import http_client
    from orchestrator.settings import load_settings
    from orchestrator.testing.engine import FakeEngine

    logging.disable(logging.WARNING)
    with tempfile.TemporaryDirectory() as tmp:
        settings = load_settings(
            data_dir=tmp,
            providers={
                "deep": {"base_url": fake_url + "/v1", "api_key_env": "DEEP_KEY", "models": {"r1": {"id": "r1"}}}
            },
            models={},
            cache={"enabled": False},
            ledger={"path": str(Path(tmp) / "ledger.sqlite"), "owner": "process"},
        )
        engine = FakeEngine("fake-chat")
        async with http_client(settings.resilience) as upstream:
            pipeline = await build_pipeline(
                {"local": (engine, engine.info())}, settings, env={"DEEP_KEY": KEY}, client=upstream
            )
            config = uvicorn.Config(
                build_app(pipeline), port=port, lifespan="off", log_level="warning", access_log=False
            )
            await uvicorn.Server(config).serve()


async def main(streams: int, words: int, tokens_per_s: float) -> None:
    from orchestrator.testing.provider import FakeProvider

    meta = run_meta("benchmarks.reasoning_ttft")
    logging.disable(logging.WARNING)
    interval = 1 / tokens_per_s
    fake = FakeProvider(api_key=KEY, reply="Rayleigh scattering.", reasoning_tokens=words, ttft_ms=100)
    fake.tokens_per_s = tokens_per_s
    results: dict[str, dict[str, list[float]]] = {t: {"reasoning": [], "content": []} for t in ("direct", "gateway")}
    with fake:  # on a thread and loop of its own
        async with gateway(fake.base_url) as gateway_url:
            async with aiohttp.ClientSession() as http:
                targets = {
                    "direct": (fake.base_url + "/v1/chat/completions", "r1"),
                    "gateway": (gateway_url, "deep/r1"),
                }
                for url, model in targets.values():
                    await first_arrivals(http, url, model)  # warm up
                for _ in range(streams):
                    for target, (url, model) in targets.items():
                        reasoning, content = await first_arrivals(http, url, model)
                        results[target]["reasoning"].append(reasoning)
                        results[target]["content"].append(content)
    figures: dict[str, Any] = {t: {k: dist(v) for k, v in r.items()} for t, r in results.items()}
    added = {q: figures["gateway"]["reasoning"][q] - figures["direct"]["reasoning"][q] for q in ("p50", "p95")}
    print(f"{streams} streams each, {words} words of reasoning at {tokens_per_s:g} words/s", end="")
    print(f" (chunk interval {interval * 1000:.0f} ms)")
    print(f"{'target':<10}{'first reasoning p50 / p95 ms':>32}{'first content p50 / p95 ms':>30}")
    for t, f in figures.items():
        r, c = f["reasoning"], f["content"]
        print(
            f"{t:<10}{r['p50'] * 1000:>20.1f} / {r['p95'] * 1000:<9.1f}{c['p50'] * 1000:>19.1f} / {c['p95'] * 1000:.1f}"
        )
    verdicts = {q: "met" if added[q] <= interval else "missed" for q in added}
    print(
        f"gateway adds to the first reasoning: p50 {added['p50'] * 1000:+.1f} ms ({verdicts['p50']}), "
        f"p95 {added['p95'] * 1000:+.1f} ms ({verdicts['p95']}); "
        f"target <= one chunk interval ({interval * 1000:.0f} ms)"
    )
    result = {
        **meta,
        "streams": streams,
        "reasoning_words": words,
        "tokens_per_s": tokens_per_s,
        "chunk_interval_s": interval,
        "figures": figures,
        "added_to_first_reasoning_s": added,
        "verdicts": verdicts,
        "samples": results,
    }
    print(f"saved {save('reasoning_ttft', stamp(), result)}")


if __name__ == "__main__":
    parser = argparse.ArgumentParser()
    parser.add_argument("--streams", type=int, default=30)
    parser.add_argument("--reasoning-words", type=int, default=40)
    parser.add_argument("--tokens-per-s", type=float, default=20.0)
    parser.add_argument("--gateway-for", help=argparse.SUPPRESS)  # the gateway process: the fake's URL
    parser.add_argument("--port", type=int, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.gateway_for:
        asyncio.run(serve_gateway(args.gateway_for, args.port))
    else:
        asyncio.run(main(args.streams, args.reasoning_words, args.tokens_per_s))
