"""On a lent GPU: our endpoint against `vllm serve`, same 8B-shaped model, same load (issue 16).

    bash benchmarks/gpu_check.sh        # installs vLLM and Ray, then runs this and the engine profile

1. `make_model`: an 8B model directory vLLM can load with `load_format="dummy"` (random weights:
   speed, not answers): Llama-3.1-8B-Instruct's published config.json, with the byte-level BPE
   tokenizer and ChatML template of the catalog's `tiny-random` (no model hub here). Its
   `vocab_size` is the tokenizer's (~1k, not 128,256): every sampled id must decode to text, or
   the streams would carry no content; the LM head is then 0.5 B parameters (1 GB) lighter, ~6 %
   of a decode step's weight reads.
2. vLLM's own OpenAI server (`python -m vllm.entrypoints.openai.api_server`), then our endpoint
   (`orchestrator serve`, Ray Serve, the model as `local.model`, `engine_args: {load_format: dummy}`,
   the response cache off), each with the same engine settings (`--max-num-seqs`,
   `--max-model-len`, KV cache bytes, bf16), each warmed up, then measured: a sequential TTFT
   probe (short chats, 16 tokens) and closed loops of streamed chats at each `--concurrency`.
3. Targets: our throughput >= 0.97 x vLLM's at every concurrency, our TTFT p50 within 5 ms of
   vLLM's in the probe. Saves `benchmarks/results/gpu_check-<stamp>.json` (and into $OUT).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import shutil
import sys
import tempfile
from pathlib import Path
from typing import Any

from benchmarks.harness import (
    ROOT,
    Server,
    chat_body,
    child_env,
    closed_loop,
    free_port,
    run_meta,
    save,
    stamp,
    summarize_streams,
)

NAME = "llama-8b-dummy"
# meta-llama/Llama-3.1-8B-Instruct's config.json as published (vocab_size replaced, see the docstring).
LLAMA_31_8B = {
    "architectures": ["LlamaForCausalLM"],
    "attention_bias": False,
    "attention_dropout": 0.0,
    "bos_token_id": 128000,
    "eos_token_id": [128001, 128008, 128009],
    "hidden_act": "silu",
    "hidden_size": 4096,
    "initializer_range": 0.02,
    "intermediate_size": 14336,
    "max_position_embeddings": 131072,
    "mlp_bias": False,
    "model_type": "llama",
    "num_attention_heads": 32,
    "num_hidden_layers": 32,
    "num_key_value_heads": 8,
    "pretraining_tp": 1,
    "rms_norm_eps": 1e-05,
    "rope_scaling": {
        "factor": 8.0,
        "low_freq_factor": 1.0,
        "high_freq_factor": 4.0,
        "original_max_position_embeddings": 8192,
        "rope_type": "llama3",
    },
    "rope_theta": 500000.0,
    "tie_word_embeddings": False,
    "torch_dtype": "bfloat16",
    "use_cache": True,
    "vocab_size": 128256,
}
PROMPTS = [
    "Give me three tips for staying focused while studying.",
    "Explain in two sentences what a hash table is.",
    "Write a haiku about autumn leaves.",
    "Summarise the plot of a detective story you invent, in one paragraph, with a twist at the end.",
]


def make_model(data_dir: Path) -> Path:
    """The 8B-shaped directory (config + the tiny tokenizer); built once."""
    from local_models import catalog

    target = data_dir / "models" / NAME
    if (target / "config.json").is_file():
        return target
    tiny = catalog.prepare("tiny-random", data_dir, progress=False).path
    target.mkdir(parents=True, exist_ok=True)
    for f in Path(tiny).iterdir():
        if f.name.startswith("tokenizer") or f.name in ("special_tokens_map.json", "chat_template.jinja"):
            shutil.copy(f, target / f.name)
    small = json.loads((Path(tiny) / "config.json").read_text())
    ids = {k: small[k] for k in ("vocab_size", "bos_token_id", "eos_token_id", "pad_token_id") if k in small}
    config = {**LLAMA_31_8B, **ids}
    (target / "config.json").write_text(json.dumps(config, indent=1))
    return target


def bodies(model: str, n: int, max_tokens: int) -> list[bytes]:
    return [chat_body(model, f"{PROMPTS[i % len(PROMPTS)]} (#{i})", max_tokens, temperature=0.7) for i in range(n)]


async def measure(url: str, model: str, args: argparse.Namespace) -> dict[str, Any]:
    await closed_loop(url, bodies(model, 16, 32), 8)  # warm-up
    probe, wall = await closed_loop(url, bodies(model, args.probe, 16), 1)
    out: dict[str, Any] = {"probe": summarize_streams(probe, wall, 1), "loops": []}
    for c in args.concurrency:
        results, wall = await closed_loop(url, bodies(model, c * args.rounds, args.max_tokens), c)
        out["loops"].append(summarize_streams(results, wall, c))
        r = out["loops"][-1]
        print(
            f"  {c:>4} streams: {r['output_tokens_per_s']:,.0f} tok/s, TTFT p50 {r['ttft_ms']['p50']:.1f} ms",
            flush=True,
        )
    return out


def vllm_server(model_dir: Path, port: int, args: argparse.Namespace, logs: Path, data_dir: Path) -> Server:
    argv = [
        sys.executable,
        "-m",
        "vllm.entrypoints.openai.api_server",
        "--model",
        str(model_dir),
        "--served-model-name",
        NAME,
        "--load-format",
        "dummy",
        "--dtype",
        "bfloat16",
        "--max-model-len",
        str(args.max_model_len),
        "--max-num-seqs",
        str(args.max_num_seqs),
        "--kv-cache-memory-bytes",
        str(int(args.kv_cache_gib * (1 << 30))),
        "--host",
        "127.0.0.1",
        "--port",
        str(port),
        "--disable-uvicorn-access-log",
    ]
    return Server("vllm", argv, env=child_env(data_dir), log_path=logs / "vllm.log", cwd=ROOT)


def our_server(model_dir: Path, port: int, args: argparse.Namespace, logs: Path, data_dir: Path, tmp: Path) -> Server:
    import yaml

    config = {
        "data_dir": str(data_dir),
        "server": {"host": "127.0.0.1", "port": port, "access_log": False},
        "local": {
            "model": str(model_dir),
            "served_name": NAME,
            "max_model_len": args.max_model_len,
            "kv_cache_gib": args.kv_cache_gib,
            "max_num_seqs": args.max_num_seqs,
            "dtype": args.dtype,
            "max_ongoing_requests": max(64, 2 * args.max_num_seqs),
            "engine_args": {"load_format": "dummy"},
        },
        "embedding": {"model": None},
        "cache": {"enabled": False},
        "gateway": {"max_ongoing_requests": 2048},
    }
    path = tmp / "gpu.yaml"
    path.write_text(yaml.safe_dump(config, sort_keys=False))
    env = child_env(data_dir, RAY_TMPDIR=str(tmp / "ray"))
    argv = [sys.executable, "-m", "orchestrator.cli", "serve", "--config", str(path)]
    return Server("ours", argv, env=env, log_path=logs / "ours.log", cwd=ROOT)


def run_one(server: Server, port: int, args: argparse.Namespace) -> dict[str, Any]:
    server.start()
    try:
        ready = server.wait_ready(f"http://127.0.0.1:{port}", NAME, args.start_timeout_s)
        print(f"{server.name} ready in {ready:.0f} s", flush=True)
        figures = asyncio.run(measure(f"http://127.0.0.1:{port}/v1/chat/completions", NAME, args))
        return {"ready_s": ready, **figures}
    finally:
        server.stop()


def verdict(vllm: dict[str, Any], ours: dict[str, Any]) -> dict[str, Any]:
    ratios = [
        o["output_tokens_per_s"] / v["output_tokens_per_s"] for v, o in zip(vllm["loops"], ours["loops"], strict=True)
    ]
    overhead = ours["probe"]["ttft_ms"]["p50"] - vllm["probe"]["ttft_ms"]["p50"]
    return {
        "throughput_ratio": ratios,
        "ttft_p50_overhead_ms": overhead,
        "throughput_at_least_0_97": min(ratios) >= 0.97,
        "ttft_overhead_at_most_5_ms": overhead <= 5.0,
    }


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--data-dir", default=str(ROOT / ".data" / "gpu"))
    p.add_argument("--concurrency", type=int, nargs="+", default=[1, 32, 128])
    p.add_argument("--rounds", type=int, default=3, help="requests per stream in each closed loop")
    p.add_argument("--probe", type=int, default=20)
    p.add_argument("--max-tokens", type=int, default=128)
    p.add_argument("--max-num-seqs", type=int, default=256)
    p.add_argument("--max-model-len", type=int, default=4096)
    p.add_argument("--kv-cache-gib", type=float, default=40.0)
    p.add_argument("--start-timeout-s", type=float, default=300.0)
    p.add_argument("--only", choices=["model", "vllm", "ours"], default=None)
    p.add_argument("--dtype", default="bfloat16")
    p.add_argument("--model-dir", default=None, help="another model directory (a CPU smoke test: tiny-random)")
    args = p.parse_args()
    data_dir = Path(args.data_dir).resolve()
    model_dir = Path(args.model_dir).resolve() if args.model_dir else make_model(data_dir)
    print(f"model: {model_dir}", flush=True)
    if args.only == "model":
        return
    logs = data_dir / "logs"
    report: dict[str, Any] = {**run_meta("benchmarks.gpu_check"), "args": vars(args)}
    with tempfile.TemporaryDirectory() as tmp:
        if args.only in (None, "vllm"):
            port = free_port()
            report["vllm"] = run_one(vllm_server(model_dir, port, args, logs, data_dir), port, args)
        if args.only in (None, "ours"):
            port = free_port()
            report["ours"] = run_one(our_server(model_dir, port, args, logs, data_dir, Path(tmp)), port, args)
    if "vllm" in report and "ours" in report:
        report["verdict"] = verdict(report["vllm"], report["ours"])
        print(json.dumps(report["verdict"], indent=1))
    path = save("gpu_check", stamp(), report)
    out = os.environ.get("OUT")
    if out:
        shutil.copy(path, Path(out) / path.name)
    print(f"saved {path}")


if __name__ == "__main__":
    main()
