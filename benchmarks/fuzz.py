"""The fuzz benchmark: generated hostile bodies against the real deployment while a canary keeps asking (issue 11).

    python -m benchmarks.fuzz                  # 10,000 bodies (about 5 minutes on two cores, start-up included)
    python -m benchmarks.fuzz --bodies 500     # a quick run

What runs: `python -m orchestrator.cli serve` as a subprocess (Ray Serve + vLLM's CPU build) with a
generated config: the `tiny-random` local model (eager, `max_model_len` 512), the all-minilm-l6-v2 embedder,
a fake paid provider on loopback speaking OpenAI's and Anthropic's wire formats (`orchestrator.testing`),
aliases with local and remote routes, the response cache on, virtual keys and a master key (so `/admin/*` is
live), and the default resilience settings (three failures open a route's circuit for 30 s).

Traffic: the strategies of the in-process fuzz suite (`tests/fuzz_bodies.py`, `any_request`): mutated
chat, completion, embedding, Anthropic Messages and count_tokens, and admin bodies, raw non-JSON bodies,
GET routes, unknown paths and wrong methods, each with fuzzed routing headers (`x-data-class`,
`x-ttft-slo-ms`, `x-tags`, `cache-control`, `authorization`, `anthropic-version`), drawn with a fixed seed;
plus `--known` copies of each known case (`known_requests`: the inputs that once got a 5xx, which here meet
the real engine) and `--big-bodies` large ones (1 to 50 MB). `--concurrency` aiohttp workers send them over
loopback with the fuzzer's key. Meanwhile a canary with a key of its own sends valid chat requests to the
local model in a loop (streamed and whole, alternately), and a prober GETs `/health` twice a second.

Reported, printed and saved as `benchmarks/results/fuzz-<stamp>.json`: status counts (overall and per
generator), property violations (`fuzz_bodies.violation`: a 5xx, a 4xx not in OpenAI's error shape
(Anthropic's on its routes), a 200 that isn't strict JSON or a well-ended stream) with a reproduction each,
connection errors and client timeouts, streams that ended in an error event, the canary's success rate and
latency, `/health` latency during the run, `/health`, `/v1/models` and a valid chat after it, and the
tracebacks in the server's log (`benchmarks/out/logs/fuzz-<stamp>.log`). Targets: 0 5xx, 0 connection
errors, canary 100 % 200, `/health` up after.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import random
import re
import sys
import tempfile
import time
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import aiohttp
import yaml
from hypothesis import HealthCheck, Phase, given, settings
from hypothesis import seed as with_seed
from yarl import URL

from benchmarks.harness.progress import bar
from benchmarks.harness.runs import git_state
from benchmarks.harness.servers import Server, describe, free_port
from benchmarks.harness.stats import percentile
from orchestrator.testing.provider import FakeProvider
from tests.fuzz_bodies import (
    Answer,
    FuzzRequest,
    Models,
    Target,
    any_request,
    encode,
    fake_providers,
    known_requests,
    stream_ended_in_error,
    valid_chat,
    violation,
)

ROOT = Path(__file__).resolve().parents[1]
RESULTS = ROOT / "benchmarks" / "results"
LOGS = ROOT / "benchmarks" / "out" / "logs"
LOCAL, EMBED = "tiny-random", "all-minilm-l6-v2"
UPSTREAM_KEY = "sk-fuzz-upstream"
FUZZ_KEY = "sk-orch-fuzzer-AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA1"
CANARY_KEY = "sk-orch-canary-CCCCCCCCCCCCCCCCCCCCCCCCCCCCCCCCCCCCCCCCCCCCCCC3"
TIGHT_KEY = "sk-orch-tight-TTTTTTTTTTTTTTTTTTTTTTTTTTTTTTTTTTTTTTTTTTTTTTTT2"
MASTER_KEY = "sk-orch-master-MMMMMMMMMMMMMMMMMMMMMMMMMMMMMMMMMMMMMMMMMMMMMMM9"
MODELS = Models(
    chat=[LOCAL, "auto", "paid/big", "claude/haiku"],
    completion=[LOCAL, "auto", "paid/big"],
    embedding=[EMBED, "paid/embed", "embed-any"],
)
TARGET = Target(
    MODELS,
    keys=[FUZZ_KEY, TIGHT_KEY, MASTER_KEY],  # never the canary's
    master_key=MASTER_KEY,
    protected_key_ids=["fuzzer", "canary", "tight"],
)
BIG_MB = (1, 5, 9, 50)


# ------------------------------------------------------------------------------ traffic


def generate(n: int, seed: int, big: int, known: int) -> list[FuzzRequest]:
    """`n` generated requests (hypothesis, seeded: the same every run), `known` times each known case
    (`fuzz_bodies.known_requests`) and `big` large bodies, shuffled."""
    out: list[FuzzRequest] = []
    round_ = 0
    while len(out) < n:

        @settings(
            max_examples=n - len(out),
            database=None,
            deadline=None,
            phases=[Phase.generate],
            suppress_health_check=list(HealthCheck),
        )
        @with_seed(seed + round_)
        @given(any_request(TARGET, admin=True))
        def draw(request: FuzzRequest) -> None:
            out.append(request)

        draw()
        round_ += 1
    # The classes that once got a 5xx, a few times each: here they meet the real engine.
    out += known_requests(TARGET, LOCAL, "paid/big", EMBED, "paid/embed", "claude/haiku") * known
    rng = random.Random(seed)
    headers = (("authorization", f"Bearer {FUZZ_KEY}".encode()), ("content-type", b"application/json"))
    for i in range(big):
        mb = BIG_MB[i % len(BIG_MB)]
        body = encode(valid_chat(LOCAL, "lorem ipsum " * (mb * (1 << 20) // 12)))
        out.append(FuzzRequest("POST", "/v1/chat/completions", headers, body, f"big {mb} MB"))
    rng.shuffle(out)
    return out


# ------------------------------------------------------------------------------ the client


@dataclass
class Outcome:
    request: FuzzRequest
    status: int | None  # None: no answer (connection error or timeout)
    latency_s: float
    problem: str | None = None  # a property violation, or why there was no answer
    stream_error: bool = False
    kind: str = "answer"  # answer | connection | timeout


async def send(session: aiohttp.ClientSession, base: str, request: FuzzRequest, timeout_s: float) -> Outcome:
    t0 = time.perf_counter()
    # aiohttp takes header values as text; latin-1 keeps every generated byte (it sends them as UTF-8).
    headers = {k: v.decode("latin-1") for k, v in request.headers}
    try:
        async with session.request(
            request.method,
            URL(base + request.path, encoded=True),
            data=request.body,
            headers=headers,
            skip_auto_headers=("Content-Type",),
            timeout=aiohttp.ClientTimeout(total=timeout_s),
        ) as resp:
            answer = Answer(resp.status, resp.headers.get("content-type", ""), await resp.read())
    except TimeoutError:
        return Outcome(request, None, time.perf_counter() - t0, f"no answer within {timeout_s:.0f} s", kind="timeout")
    except (aiohttp.ClientError, ValueError, OSError) as e:
        return Outcome(request, None, time.perf_counter() - t0, f"{type(e).__name__}: {e}", kind="connection")
    return Outcome(
        request, answer.status, time.perf_counter() - t0, violation(request, answer), stream_ended_in_error(answer)
    )


async def fuzz(base: str, requests: Sequence[FuzzRequest], concurrency: int, timeout_s: float) -> list[Outcome]:
    queue: asyncio.Queue[FuzzRequest] = asyncio.Queue()
    for r in requests:
        queue.put_nowait(r)
    outcomes: list[Outcome] = []
    started = time.perf_counter()

    async def worker(session: aiohttp.ClientSession) -> None:
        while not queue.empty():
            outcomes.append(await send(session, base, queue.get_nowait(), timeout_s))
            progress.update(1)
            if len(outcomes) % 1000 == 0:
                bad = sum(o.status is not None and o.status >= 500 for o in outcomes)
                rate = len(outcomes) / (time.perf_counter() - started)
                _log(f"{len(outcomes)}/{len(requests)} sent ({rate:.0f}/s), 5xx so far: {bad}")

    connector = aiohttp.TCPConnector(limit=concurrency, force_close=False)
    async with aiohttp.ClientSession(connector=connector) as session:
        with bar(len(requests), "fuzzing") as progress:
            await asyncio.gather(*(worker(session) for _ in range(concurrency)))
    return outcomes


@dataclass
class Canary:
    """Valid chat requests to the local model, one after another, with a key no fuzzed request uses."""

    sent: int = 0
    ok: int = 0
    latencies_s: list[float] = field(default_factory=list)
    failures: list[str] = field(default_factory=list)

    async def run(self, base: str, stop: asyncio.Event, pause_s: float) -> None:
        headers = {"Authorization": f"Bearer {CANARY_KEY}", "Content-Type": "application/json"}
        async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=60)) as session:
            while not stop.is_set():
                body = {**valid_chat(LOCAL, f"Tell me about the number {self.sent}."), "stream": self.sent % 2 == 1}
                t0 = time.perf_counter()
                try:
                    async with session.post(f"{base}/v1/chat/completions", json=body, headers=headers) as resp:
                        answer = Answer(resp.status, resp.headers.get("content-type", ""), await resp.read())
                        served_by = resp.headers.get("x-served-by", "")
                    problem = _canary_problem(answer, served_by, bool(body["stream"]))
                except (aiohttp.ClientError, TimeoutError) as e:
                    problem = f"{type(e).__name__}: {e}"
                self.sent += 1
                if problem is None:
                    self.ok += 1
                    self.latencies_s.append(time.perf_counter() - t0)
                elif len(self.failures) < 20:
                    self.failures.append(f"t={time.time():.1f} {problem}")
                await asyncio.sleep(pause_s)

    def summary(self) -> dict[str, Any]:
        return {
            "sent": self.sent,
            "ok": self.ok,
            "success_rate": self.ok / self.sent if self.sent else None,
            "latency_p50_ms": round(percentile(self.latencies_s, 50) * 1000, 1) if self.latencies_s else None,
            "latency_p99_ms": round(percentile(self.latencies_s, 99) * 1000, 1) if self.latencies_s else None,
            "failures": self.failures,
        }


def _canary_problem(answer: Answer, served_by: str, stream: bool) -> str | None:
    if answer.status != 200:
        return f"status {answer.status}: {answer.body[:200]!r}"
    if not served_by.startswith("local/"):
        return f"served by {served_by!r}, not the local model"
    if stream and not answer.body.rstrip().endswith(b"data: [DONE]"):
        return f"stream without [DONE]: {answer.body[-200:]!r}"
    return violation(FuzzRequest("POST", "/v1/chat/completions"), answer)


@dataclass
class HealthProbe:
    """GET /health at a fixed interval: its latency while the fuzz runs."""

    latencies_s: list[float] = field(default_factory=list)
    failures: list[str] = field(default_factory=list)

    async def run(self, base: str, stop: asyncio.Event, interval_s: float) -> None:
        async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=30)) as session:
            while not stop.is_set():
                t0 = time.perf_counter()
                try:
                    async with session.get(f"{base}/health") as resp:
                        await resp.read()
                        if resp.status == 200:
                            self.latencies_s.append(time.perf_counter() - t0)
                        else:
                            self.failures.append(f"status {resp.status}")
                except (aiohttp.ClientError, TimeoutError) as e:
                    self.failures.append(f"{type(e).__name__}: {e}")
                await asyncio.sleep(interval_s)

    def summary(self) -> dict[str, Any]:
        lat = self.latencies_s
        return {
            "probes": len(lat) + len(self.failures),
            "failures": len(self.failures),
            "failure_samples": self.failures[:10],
            "p50_ms": round(percentile(lat, 50) * 1000, 1) if lat else None,
            "p99_ms": round(percentile(lat, 99) * 1000, 1) if lat else None,
            "max_ms": round(max(lat) * 1000, 1) if lat else None,
        }


async def after(base: str) -> dict[str, Any]:
    """What a client sees once the fuzz is over: /health, /v1/models, one valid chat to the local model."""
    headers = {"Authorization": f"Bearer {CANARY_KEY}"}
    out: dict[str, Any] = {}
    calls = (
        ("health", "GET", "/health", None),
        ("models", "GET", "/v1/models", None),
        ("chat", "POST", "/v1/chat/completions", valid_chat(LOCAL)),
    )
    async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=60)) as s:
        for name, method, path, body in calls:
            try:
                async with s.request(method, base + path, json=body, headers=headers) as resp:
                    out[name] = {"status": resp.status, "served_by": resp.headers.get("x-served-by")}
            except (aiohttp.ClientError, TimeoutError) as e:
                out[name] = {"status": None, "error": f"{type(e).__name__}: {e}"}
    return out


# ------------------------------------------------------------------------------ the deployment


def config(port: int, data_dir: Path, tmp: Path, fake: FakeProvider, embed: bool) -> dict[str, Any]:
    from orchestrator.accounting.keys import hash_key

    eager = {"engine_args": {"enforce_eager": True}}  # engines start in seconds instead of minutes on two cores
    return {
        "data_dir": str(data_dir),
        "server": {"host": "127.0.0.1", "port": port, "access_log": False},
        "local": {"model": LOCAL, "max_model_len": 512, "max_num_seqs": 32, **eager},
        "embedding": {"model": EMBED, "max_model_len": 256, "dtype": "float32", "kv_cache_gib": 0.25, **eager}
        if embed
        else {"model": None},
        "providers": fake_providers(fake.base_url),
        "models": {
            "auto": {"routes": [LOCAL, "paid/big"], "ttft_slo_ms": 1000},
            "embed-any": [EMBED, "paid/embed"] if embed else ["paid/embed"],
        },
        "cache": {"directory": str(tmp / "response-cache")},
        "ledger": {"path": str(tmp / "ledger.sqlite"), "reference_model": "paid/big"},
        "keys": {
            "fuzzer": {"sha256": hash_key(FUZZ_KEY)},
            "canary": {"sha256": hash_key(CANARY_KEY)},
            "tight": {"sha256": hash_key(TIGHT_KEY), "budget_usd": 0.0001, "rpm": 5, "models": [LOCAL]},
        },
    }


def start_server(cfg: dict[str, Any], tmp: Path, data_dir: Path, log_path: Path) -> Server:
    path = tmp / "fuzz.yaml"
    path.write_text(yaml.safe_dump(cfg, sort_keys=False))
    (tmp / "ray").mkdir()
    env = {k: v for k, v in os.environ.items() if not k.startswith("ORCH_") and k != "RAY_ADDRESS"}
    env.update(
        HF_HUB_OFFLINE="1",
        VLLM_HOST_IP="127.0.0.1",
        VLLM_CACHE_ROOT=str(data_dir / "vllm-cache"),
        RAY_USAGE_STATS_ENABLED="0",
        RAY_DEDUP_LOGS="0",  # every traceback whole in the log, for server_tracebacks
        RAY_TMPDIR=str(tmp / "ray"),
        PYTHONUNBUFFERED="1",
        # Ray's workers import this checkout's packages (not another that an editable install points at).
        PYTHONPATH=os.pathsep.join([str(ROOT), *filter(None, [os.environ.get("PYTHONPATH")])]),
        FUZZ_PAID_KEY=UPSTREAM_KEY,
        ORCHESTRATOR_MASTER_KEY=MASTER_KEY,
    )
    argv = [sys.executable, "-m", "orchestrator.cli", "serve", "--config", str(path)]
    return Server("orchestrator", argv, env=env, log_path=log_path, cwd=ROOT).start()


def wait_ready(server: Server, base: str, timeout_s: float) -> float:
    """Seconds from start until a valid chat with the canary's key is a 200 (keys guard /v1/models too)."""
    import urllib.error
    import urllib.request

    body = json.dumps(valid_chat(LOCAL)).encode()
    headers = {"Authorization": f"Bearer {CANARY_KEY}", "Content-Type": "application/json"}
    deadline = time.perf_counter() + timeout_s
    while time.perf_counter() < deadline:
        if not server.alive():
            raise RuntimeError(f"the server exited during start-up; log {server.log_path}:\n{server.log_tail()}")
        request = urllib.request.Request(f"{base}/v1/chat/completions", data=body, headers=headers)
        try:
            with urllib.request.urlopen(request, timeout=30) as resp:
                if resp.status == 200:
                    return time.perf_counter() - server.started_at
        except (urllib.error.URLError, OSError):
            pass
        time.sleep(1.0)
    raise TimeoutError(f"not ready within {timeout_s:.0f} s; log {server.log_path}:\n{server.log_tail()}")


_ANSI = re.compile(r"\x1b\[[0-9;]*m")
_RAY_PREFIX = re.compile(r"^(\([^)]*pid=\d+[^)]*\) ?)+")  # "(ServeReplica:app:LocalModel pid=1) " and nested ones
_REPEATED = re.compile(r"\s*\[repeated \d+x across cluster\]")
_EXCEPTION = re.compile(r"^[A-Za-z_][\w.]*(\([\w.]*\))?(:|$)")  # "pkg.Error: ..." ends a traceback


def server_tracebacks(log_path: Path) -> dict[str, int]:
    """The exception line ending every traceback in the server's log, counted (Ray's prefixes removed)."""
    try:
        raw = log_path.read_text(errors="replace").splitlines()
    except OSError:
        return {}
    found: Counter[str] = Counter()
    in_frames = False
    for line in (_REPEATED.sub("", _RAY_PREFIX.sub("", _ANSI.sub("", r))) for r in raw):
        if line.startswith("  File "):
            in_frames = True
        elif in_frames and not line.startswith(" "):
            in_frames = False
            if _EXCEPTION.match(line):
                found[line.strip()[:240]] += 1
    return dict(found.most_common())


# ------------------------------------------------------------------------------ the run


def summarize(outcomes: Sequence[Outcome]) -> dict[str, Any]:
    statuses = Counter(str(o.status) if o.status is not None else o.kind for o in outcomes)
    by_label: dict[str, Counter[str]] = {}
    for o in outcomes:
        by_label.setdefault(o.request.label, Counter())[str(o.status) if o.status is not None else o.kind] += 1
    violations: dict[str, list[Outcome]] = {}
    for o in outcomes:
        if o.problem is not None:
            violations.setdefault(_signature(o), []).append(o)
    samples = [
        {
            "count": len(group),
            "status": group[0].status,
            "kind": group[0].kind,
            "problem": group[0].problem,
            # The shortest reproduction of its kind.
            "request": min(group, key=lambda o: len(o.request.body or b"")).request.describe(1200),
        }
        for group in sorted(violations.values(), key=lambda g: (-(g[0].status or 600), -len(g)))
    ]
    latencies = [o.latency_s for o in outcomes]
    return {
        "requests": len(outcomes),
        "unique_requests": len(
            {(o.request.method, o.request.path, o.request.headers, o.request.body) for o in outcomes}
        ),
        "status_counts": dict(sorted(statuses.items())),
        "by_generator": {k: dict(sorted(v.items())) for k, v in sorted(by_label.items())},
        "5xx": sum(o.status is not None and o.status >= 500 for o in outcomes),
        "connection_errors": sum(o.kind == "connection" for o in outcomes),
        "timeouts": sum(o.kind == "timeout" for o in outcomes),
        "violations": sum(o.problem is not None for o in outcomes),
        "streams_ended_in_error": sum(o.stream_error for o in outcomes),
        "latency_p50_ms": round(percentile(latencies, 50) * 1000, 1),
        "latency_p99_ms": round(percentile(latencies, 99) * 1000, 1),
        "violation_samples": samples[:40],
    }


def _signature(o: Outcome) -> str:
    problem = re.sub(r"\d+", "N", (o.problem or "")[:100])
    return f"{o.kind} {o.status} {o.request.label} {problem}"


async def exercise(base: str, requests: Sequence[FuzzRequest], args: argparse.Namespace) -> dict[str, Any]:
    stop = asyncio.Event()
    canary, probe = Canary(), HealthProbe()
    background = [
        asyncio.create_task(canary.run(base, stop, args.canary_pause_s)),
        asyncio.create_task(probe.run(base, stop, 0.5)),
    ]
    t0 = time.perf_counter()
    outcomes = await fuzz(base, requests, args.concurrency, args.timeout_s)
    fuzz_s = time.perf_counter() - t0
    stop.set()
    await asyncio.gather(*background)
    return {
        "fuzz_s": round(fuzz_s, 1),
        "requests_per_s": round(len(outcomes) / fuzz_s, 1),
        "fuzz": summarize(outcomes),
        "canary": canary.summary(),
        "health_during": probe.summary(),
        "after": await after(base),
    }


def targets(report: dict[str, Any]) -> dict[str, bool]:
    f, after_ = report["fuzz"], report["after"]
    return {
        "no_5xx": f["5xx"] == 0,
        "no_connection_errors": f["connection_errors"] == 0,
        "canary_all_200": report["canary"]["sent"] > 0 and report["canary"]["ok"] == report["canary"]["sent"],
        "health_up_after": after_["health"]["status"] == 200,
        "valid_chat_after": after_["chat"]["status"] == 200,
    }


def run(args: argparse.Namespace) -> dict[str, Any]:
    stamp = time.strftime("%Y%m%d-%H%M%S")
    data_dir = Path(args.data_dir).resolve()
    log_path = LOGS / f"fuzz-{stamp}.log"
    with (
        tempfile.TemporaryDirectory(prefix="fuzz-") as tmp_name,
        FakeProvider(api_key=UPSTREAM_KEY, reply="Paris is the capital of France.") as fake,
    ):
        tmp = Path(tmp_name)
        port = free_port()
        base = f"http://127.0.0.1:{port}"
        _log(f"starting the orchestrator on :{port} (Ray Serve + vLLM CPU, {LOCAL}); log {log_path}")
        server = start_server(config(port, data_dir, tmp, fake, not args.no_embedding), tmp, data_dir, log_path)
        try:
            t_gen = time.perf_counter()  # while the deployment starts
            requests = generate(args.bodies, args.seed, args.big_bodies, args.known)
            _log(f"generated {len(requests)} requests in {time.perf_counter() - t_gen:.0f} s")
            ready_s = wait_ready(server, base, args.start_timeout_s)
            _log(f"ready after {ready_s:.0f} s; sending {len(requests)} requests, {args.concurrency} at a time")
            report = asyncio.run(exercise(base, requests, args))
            report["ready_s"] = round(ready_s, 1)
        finally:
            stopped = server.stop()
    report["stop"] = describe(stopped)
    report["server_log"] = str(log_path.relative_to(ROOT))
    report["server_tracebacks"] = server_tracebacks(log_path)
    report["targets"] = targets(report)
    report["meta"] = {
        "command": "python -m benchmarks.fuzz " + " ".join(sys.argv[1:]),
        "stamp": stamp,
        "bodies": args.bodies,
        "big_bodies": args.big_bodies,
        "known_copies": args.known,
        "seed": args.seed,
        "concurrency": args.concurrency,
        "embedding": not args.no_embedding,
        "git": git_state(),
        "loadavg_end": os.getloadavg(),
    }
    RESULTS.mkdir(parents=True, exist_ok=True)
    out = RESULTS / f"fuzz-{stamp}.json"
    out.write_text(json.dumps(report, indent=1))
    report["saved"] = str(out.relative_to(ROOT))
    return report


def _log(message: str) -> None:
    print(f"[fuzz] {message}", file=sys.stderr, flush=True)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--bodies", type=int, default=10_000, help="generated requests to send (default 10,000)")
    p.add_argument(
        "--big-bodies", type=int, default=8, help=f"large chat bodies besides ({', '.join(map(str, BIG_MB))} MB)"
    )
    p.add_argument("--known", type=int, default=3, help="copies of each known case (fuzz_bodies.known_requests)")
    p.add_argument("--concurrency", type=int, default=16)
    p.add_argument("--seed", type=int, default=11)
    p.add_argument("--timeout-s", type=float, default=180.0, help="per fuzzed request")
    p.add_argument("--canary-pause-s", type=float, default=0.1)
    p.add_argument("--start-timeout-s", type=float, default=900.0)
    p.add_argument("--no-embedding", action="store_true", help="no local embedder (a faster start)")
    p.add_argument("--data-dir", default=str(ROOT / ".data" / "bench"), help="prepared models and vLLM's cache")
    args = p.parse_args(argv)
    report = run(args)
    f = report["fuzz"]
    brief = {
        "requests": f["requests"],
        "status_counts": f["status_counts"],
        "5xx": f["5xx"],
        "connection_errors": f["connection_errors"],
        "timeouts": f["timeouts"],
        "violations": f["violations"],
        "streams_ended_in_error": f["streams_ended_in_error"],
        "canary": {k: v for k, v in report["canary"].items() if k != "failures"},
        "health_during": {k: v for k, v in report["health_during"].items() if k != "failure_samples"},
        "after": report["after"],
        "targets": report["targets"],
        "saved": report["saved"],
    }
    print(json.dumps(brief, indent=1))
    for sample in f["violation_samples"][:10]:
        print(
            f"\n--- {sample['count']} x {sample['kind']} {sample['status']}: {sample['problem']}\n{sample['request']}"
        )
    return 0 if all(report["targets"].values()) else 1


if __name__ == "__main__":
    raise SystemExit(main())
