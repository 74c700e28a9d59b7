"""The soak benchmark: mixed traffic for N minutes against the real deployment; errors by class, RSS per process
(issue 14, part 5).

    python -m benchmarks.soak --minutes 30     # the run the target is about (~32 minutes, start-up included)
    python -m benchmarks.soak --minutes 2      # a check

What runs: the fuzz benchmark's deployment (`benchmarks.fuzz.config` and `start_server`: `orchestrator serve`
as a subprocess, Ray Serve + vLLM's CPU build with the `tiny-random` model, the response cache and the ledger
on, virtual keys), without the embedder, plus: a second fake provider (`backup`, the same models) behind the
first (`paid`), the aliases `spill` = [tiny-random, paid/big, backup/big] and `remote` = [paid/big,
backup/big], the body limit at 1 MB, and per window of `--window-s` a fresh pair of keys with small budgets.

Traffic, open loop (Poisson at `--rate` requests/s, drawn from `--seed`: the same plan every run; `plan`),
chat completions, half of the answerable ones streamed:

    local         tiny-random, sampled (never cached)           -> 200 from the local model
    cached        tiny-random at temperature 0, six prompts     -> 200, a cache hit after the first of each
    spill-slo     `spill` with x-ttft-slo-ms: 1                 -> 200 from a remote (no local TTFT fits)
    spill-image   `spill` with an image                         -> 200 from a remote (the local model has no vision)
    spill-long    `spill` with a prompt over the local context  -> 200 from a remote
    remote        `remote` (a model only the remotes have)      -> 200
    budget-tokens the window's key with budget_tokens, local    -> 200 until it is spent, then 429 insufficient_quota
    budget-usd    the window's key with budget_usd, `remote`    -> the same
    bad-*         malformed JSON, wrong types, an unknown model, a body over the limit, a prompt over the local
                  model's context, an unknown key               -> the 4xx that says so, in OpenAI's error shape

Meanwhile the `paid` fake fails `--fault-times` requests (those of them that come within `--fault-s`) every
`--fault-every-s` seconds (429 with Retry-After, 500, 503 in turn), so retries, the circuit breaker and failover
to `backup` run all along.

Every outcome is classified (`classify`): expected are `ok`, `rejected` (bad input, the right 4xx) and
`over_budget` (a budget key's 429); anything else is unexpected: a 5xx, a timeout, a transport error, a stream
cut short (no finish_reason, no [DONE], an error event), a 4xx where a 200 (or another 4xx) was expected, a 200
where a 4xx was, a 200 whose body is wrong. Every request sent is one outcome: sent == the sum of the classes.

RSS (VmRSS from /proc) of every process of the server's session (`harness.session_members`, the role from its
title) is sampled every `--rss-every-s`; the baseline is taken after the warm-up (10 % of the run or 60 s,
whichever is smaller, at least 20 s), the end once the last request is answered. Reported per process: start,
end, max, growth %; growth of 10 % or more is flagged. Targets: 0 unexpected, RSS growth < 10 % per process.

Printed as tables and saved as `benchmarks/results/soak-<stamp>.json` and `.md`; the server's log is
`benchmarks/out/logs/soak-<stamp>.log` (its tracebacks counted in the report).
"""

from __future__ import annotations

import argparse
import asyncio
import hashlib
import json
import math
import os
import random
import sys
import tempfile
import time
from collections import Counter
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import aiohttp

from benchmarks.burst import PROMPTS as BURST_PROMPTS
from benchmarks.fuzz import config as fuzz_config
from benchmarks.fuzz import server_tracebacks, start_server, wait_ready
from benchmarks.harness import LOGS, ROOT, describe, free_port, percentile, role, run_meta, save, session_members
from benchmarks.harness import stamp as new_stamp
from benchmarks.harness.progress import bar
from orchestrator.testing.provider import FakeProvider
from tests.fuzz_bodies import Answer, FuzzRequest, fake_providers, strict_json, violation

LOCAL = "tiny-random"
UPSTREAM_KEY = "sk-fuzz-upstream"  # what fuzz.start_server puts in FUZZ_PAID_KEY for the fakes
MAX_BODY_MB = 1.0
TOKEN_BUDGET = 300  # tokens per budget-tokens key: a dozen small requests
USD_BUDGET = 0.0002  # $ per budget-usd key at the fake's prices ($1 / $2 per Mtok): about ten requests
FAULTS = ("rate_limit", "server_error", "overloaded")
PROMPTS = (
    *BURST_PROMPTS,
    "Summarize the plot of a detective story in one line.",
    "What is the difference between a list and a tuple?",
)
CACHED_PROMPTS = PROMPTS[:6]
TINY_PNG = (  # a 1 x 1 PNG
    "data:image/png;base64,"
    "iVBORw0KGgoAAAANSUhEUgAAAAEAAAABCAYAAAAfFcSJAAAADUlEQVR42mNkYPhfDwAChwGA60e6kgAAAABJRU5ErkJggg=="
)
LONG_TEXT = "lorem ipsum dolor sit amet " * 600  # ~3,000 words: past tiny-random's 512-token context
OVERSIZED = b'{"model": "tiny-random", "messages": [{"role": "user", "content": "' + b"x" * int(1.2 * 2**20) + b'"}]}'
EXPECTED = ("ok", "rejected", "over_budget")
UNEXPECTED = (
    "unexpected_5xx",
    "unexpected_timeout",
    "unexpected_transport",
    "unexpected_truncated_stream",
    "unexpected_4xx",
    "unexpected_accepted",
    "unexpected_bad_body",
    "unexpected_status",
)
CLASSES = EXPECTED + UNEXPECTED


def key_for(name: str) -> str:
    """A virtual key of the soak's own, the same every run (`sk-orch-` and 43 URL-safe characters)."""
    return "sk-orch-" + hashlib.sha256(f"soak-{name}".encode()).hexdigest()[:43]


MAIN_KEY = key_for("main")
UNKNOWN_KEY = key_for("nobody")  # not in the config


# ------------------------------------------------------------------------------ the plan (pure)


@dataclass(frozen=True)
class Expect:
    """What a right answer is: a 200 (`ok`), and/or a 4xx of `statuses` in OpenAI's error shape (with `code` as
    its code or type when given)."""

    ok: bool
    statuses: frozenset[int] = frozenset()
    code: str | None = None


ANSWER = Expect(ok=True)
BUDGET = Expect(ok=True, statuses=frozenset({429}), code="insufficient_quota")


def reject(*statuses: int) -> Expect:
    return Expect(ok=False, statuses=frozenset(statuses))


@dataclass(frozen=True)
class Planned:
    """One request of the plan: when (seconds after the traffic starts), what, and the right answer."""

    at_s: float
    kind: str
    key: str
    body: bytes
    stream: bool
    expect: Expect
    headers: tuple[tuple[str, str], ...] = ()

    @property
    def budget_key(self) -> bool:
        return self.expect.code == "insufficient_quota"


Draw = tuple[dict[str, Any] | bytes, Expect, tuple[tuple[str, str], ...]]


def _chat(model: str, content: Any, *, max_tokens: int = 16, temperature: float = 0.7) -> dict[str, Any]:
    return {
        "model": model,
        "messages": [{"role": "user", "content": content}],
        "max_tokens": max_tokens,
        "temperature": temperature,
    }


def _wrong_type(rng: random.Random) -> dict[str, Any]:
    good = _chat(LOCAL, "Hello")
    field_, value = rng.choice(
        [("messages", "hello"), ("max_tokens", "many"), ("temperature", "hot"), ("messages", [{"role": 7}])]
    )
    return {**good, field_: value}


def _prompt(rng: random.Random, i: int) -> str:
    return f"{rng.choice(PROMPTS)} (request {i})"


# kind -> (weight, draw(rng, request number) -> (body, expect, extra headers)). Weights sum to 1.
KINDS: dict[str, tuple[float, Callable[[random.Random, int], Draw]]] = {
    "local": (0.26, lambda rng, i: (_chat(LOCAL, _prompt(rng, i), max_tokens=rng.randint(8, 32)), ANSWER, ())),
    "cached": (0.20, lambda rng, i: (_chat(LOCAL, rng.choice(CACHED_PROMPTS), temperature=0.0), ANSWER, ())),
    "spill-slo": (0.07, lambda rng, i: (_chat("spill", _prompt(rng, i)), ANSWER, (("x-ttft-slo-ms", "1"),))),
    "spill-image": (
        0.03,
        lambda rng, i: (
            _chat(
                "spill",
                [{"type": "text", "text": "What is this?"}, {"type": "image_url", "image_url": {"url": TINY_PNG}}],
            ),
            ANSWER,
            (),
        ),
    ),
    "spill-long": (0.03, lambda rng, i: (_chat("spill", LONG_TEXT), ANSWER, ())),
    "remote": (0.10, lambda rng, i: (_chat("remote", _prompt(rng, i)), ANSWER, ())),
    "budget-tokens": (0.06, lambda rng, i: (_chat(LOCAL, _prompt(rng, i), max_tokens=16), BUDGET, ())),
    "budget-usd": (0.06, lambda rng, i: (_chat("remote", _prompt(rng, i)), BUDGET, ())),
    "bad-json": (0.04, lambda rng, i: (b'{"model": "tiny-random", "messages": [{"role": "user", ', reject(400), ())),
    "bad-type": (0.04, lambda rng, i: (_wrong_type(rng), reject(400), ())),
    "bad-model": (0.04, lambda rng, i: (_chat("no-such-model", "Hello"), reject(404), ())),
    "bad-oversized": (0.01, lambda rng, i: (OVERSIZED, reject(413), ())),
    "bad-too-long": (0.03, lambda rng, i: (_chat(LOCAL, LONG_TEXT), reject(400), ())),
    "bad-key": (0.03, lambda rng, i: (_chat(LOCAL, "Hello"), reject(401), ())),
}


def plan(seed: int, duration_s: float, rate: float, window_s: float) -> list[Planned]:
    """Poisson arrivals at `rate` over `duration_s`, each of a kind drawn by KINDS' weights; the same for a seed.
    Budget requests use the key of their window (`window_s`): each key is driven to its limit in its window."""
    rng = random.Random(seed)
    names = list(KINDS)
    weights = [KINDS[k][0] for k in names]
    out: list[Planned] = []
    t = rng.expovariate(rate)
    while t < duration_s:
        kind = rng.choices(names, weights)[0]
        body, expect, headers = KINDS[kind][1](rng, len(out))
        stream = expect.ok and rng.random() < 0.5
        if isinstance(body, dict):
            body = json.dumps({**body, "stream": True} if stream else body).encode()
        window = int(t // window_s)
        key = {"budget-tokens": f"tokens-{window:03d}", "budget-usd": f"usd-{window:03d}"}.get(kind, "main")
        out.append(Planned(round(t, 3), kind, key, body, stream, expect, headers))
        t += rng.expovariate(rate)
    return out


def windows(duration_s: float, window_s: float) -> int:
    return max(1, math.ceil(duration_s / window_s))


# ------------------------------------------------------------------------------ classification (pure)


@dataclass(frozen=True)
class Received:
    """What came back: an answer, or why none did (`failure`: "timeout" or "transport")."""

    status: int | None
    content_type: str = ""
    body: bytes = b""
    failure: str | None = None
    detail: str = ""


def classify(p: Planned, r: Received) -> tuple[str, str | None]:
    """The outcome's class (CLASSES) and, when it is not the expected one, why."""
    if r.failure == "timeout":
        return "unexpected_timeout", r.detail
    if r.failure is not None or r.status is None:
        if r.status == 200 and p.stream:
            return "unexpected_truncated_stream", f"the stream broke off: {r.detail}"
        return "unexpected_transport", r.detail
    answer = Answer(r.status, r.content_type, r.body)
    shape = violation(FuzzRequest("POST", "/v1/chat/completions"), answer)
    if r.status >= 500:
        return "unexpected_5xx", f"{r.status}: {r.body[:300]!r}"
    if 400 <= r.status < 500:
        if shape is not None:
            return "unexpected_4xx", shape
        code = _error_code(r.body)
        if r.status in p.expect.statuses and (p.expect.code is None or p.expect.code in code):
            return ("over_budget" if p.expect.code else "rejected"), None
        return "unexpected_4xx", f"{r.status} {code}: {r.body[:300]!r}"
    if r.status != 200:
        return "unexpected_status", f"{r.status}: {r.body[:300]!r}"
    if not p.expect.ok:
        return "unexpected_accepted", f"200 where {sorted(p.expect.statuses)} was expected"
    problem = shape or (_stream_problem(r.body) if p.stream else _body_problem(r.body))
    if problem is not None:
        return ("unexpected_truncated_stream" if p.stream else "unexpected_bad_body"), problem
    return "ok", None


def _error_code(body: bytes) -> tuple[str, str]:
    error = strict_json(body)["error"]  # the shape is checked before
    return str(error.get("code")), str(error.get("type"))


def _body_problem(body: bytes) -> str | None:
    data = strict_json(body)
    choices = data.get("choices")
    if not isinstance(choices, list) or not choices:
        return f"no choices: {body[:300]!r}"
    if not choices[0].get("finish_reason"):
        return f"no finish_reason: {body[:300]!r}"
    if not isinstance((choices[0].get("message") or {}).get("content"), str):
        return f"no message content: {body[:300]!r}"
    return None


def _stream_problem(body: bytes) -> str | None:
    """A well-formed stream (`violation` checked that) must end in [DONE], not an error, with a finish_reason."""
    events = body.decode("utf-8", "replace").rstrip("\n").split("\n\n")
    if events[-1] != "data: [DONE]":
        return f"ends without [DONE]: {body[-300:]!r}"
    finishes = [
        c.get("finish_reason")
        for e in events[:-1]
        for c in (strict_json(e.removeprefix("data: ")).get("choices") or [])
        if isinstance(c, dict)
    ]
    return None if any(finishes) else f"no finish_reason in {len(events)} events: {body[-300:]!r}"


# ------------------------------------------------------------------------------ RSS (pure parts and /proc)


def rss_kb(pid: int) -> int | None:
    """A process's resident set (VmRSS, kB), or None once it is gone."""
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    except (OSError, ValueError, IndexError):
        pass
    return None


@dataclass
class RssLog:
    """RSS samples of a session's processes: when (seconds into the traffic), pid -> kB; who each pid is."""

    samples: list[tuple[float, dict[int, int]]] = field(default_factory=list)
    who: dict[int, tuple[str, str]] = field(default_factory=dict)  # pid -> (role, program)

    def sample(self, sid: int, at_s: float) -> None:
        taken: dict[int, int] = {}
        for pid, cmd in session_members(sid):
            kb = rss_kb(pid)
            if kb is not None:
                taken[pid] = kb
                self.who.setdefault(pid, (role(cmd), program(cmd)))
        self.samples.append((round(at_s, 1), taken))


def program(cmd: str) -> str:
    """A short name for a process: Ray's title ("ray::ServeReplica:app:Gateway"), else the executable's name and
    the module, script or code it runs."""
    argv = cmd.split()
    if not argv:
        return "?"
    if argv[0].startswith("ray::"):
        return argv[0][:60]
    for flag in ("-m", "-c"):
        if flag in argv[:-1]:
            return f"{Path(argv[0]).name} {flag} {' '.join(argv[argv.index(flag) + 1 :])[:50]}"
    script = next((Path(a).name for a in argv[1:4] if a.endswith(".py")), "")
    return f"{Path(argv[0]).name[:40]} {script}".strip()


def growth(log: RssLog, baseline_s: float, limit_pct: float = 10.0) -> list[dict[str, Any]]:
    """Per process: RSS at the first sample at or after `baseline_s` (start), at the last sample (end), the most
    after the baseline, growth in %, and whether it is flagged (growth >= `limit_pct`, or a process that was there
    at the start and is gone at the end: a replica restarted)."""
    after = [(t, s) for t, s in log.samples if t >= baseline_s] or log.samples[-1:]
    if not after:
        return []
    start, end = after[0][1], after[-1][1]
    rows = []
    for pid in sorted({*start, *end}, key=lambda p: (log.who.get(p, ("?", ""))[0], p)):
        kinds, name = log.who.get(pid, ("?", "?"))
        peak = max((s[pid] for _, s in after if pid in s), default=0)
        s_kb, e_kb = start.get(pid), end.get(pid)
        pct = 100.0 * (e_kb - s_kb) / s_kb if s_kb and e_kb is not None else None
        note = "appeared after the start" if s_kb is None else "gone before the end" if e_kb is None else ""
        rows.append(
            {
                "pid": pid,
                "role": kinds,
                "program": name,
                "start_mb": _mb(s_kb),
                "end_mb": _mb(e_kb),
                "max_mb": _mb(peak),
                "growth_pct": round(pct, 1) if pct is not None else None,
                "flag": (pct is not None and pct >= limit_pct) or e_kb is None,
                "note": note,
            }
        )
    return rows


def _mb(kb: int | None) -> float | None:
    return round(kb / 1024, 1) if kb is not None else None


def warmup_s(duration_s: float) -> float:
    """10 % of the run or 60 s, whichever is smaller, but at least 20 s (and never past the run)."""
    return min(duration_s, max(20.0, min(0.1 * duration_s, 60.0)))


# ------------------------------------------------------------------------------ the client


@dataclass
class Outcome:
    kind: str
    at_s: float
    stream: bool
    key: str
    cls: str
    status: int | None
    latency_s: float
    served_by: str
    cache: str
    problem: str | None = None


async def send(session: aiohttp.ClientSession, base: str, p: Planned, timeout_s: float) -> Outcome:
    key = UNKNOWN_KEY if p.kind == "bad-key" else MAIN_KEY if p.key == "main" else key_for(p.key)
    headers = {"Authorization": f"Bearer {key}", "Content-Type": "application/json", **dict(p.headers)}
    t0 = time.perf_counter()
    status, ctype, served_by, cache, body = None, "", "", "", b""
    try:
        async with session.post(
            f"{base}/v1/chat/completions", data=p.body, headers=headers, timeout=aiohttp.ClientTimeout(total=timeout_s)
        ) as resp:
            status, ctype = resp.status, resp.headers.get("content-type", "")
            served_by, cache = resp.headers.get("x-served-by", ""), resp.headers.get("x-cache", "")
            body = await resp.read()
        received = Received(status, ctype, body)
    except TimeoutError:
        received = Received(status, ctype, body, "timeout", f"no whole answer within {timeout_s:.0f} s")
    except (aiohttp.ClientError, OSError, ValueError) as e:
        received = Received(status, ctype, body, "transport", f"{type(e).__name__}: {e}")
    cls, problem = classify(p, received)
    return Outcome(p.kind, p.at_s, p.stream, p.key, cls, status, time.perf_counter() - t0, served_by, cache, problem)


@dataclass
class Run:
    """What happens while the traffic runs: outcomes, RSS samples, faults set."""

    outcomes: list[Outcome] = field(default_factory=list)
    rss: RssLog = field(default_factory=RssLog)
    faults_set: list[tuple[float, str]] = field(default_factory=list)


async def traffic(
    base: str, requests: Sequence[Planned], args: argparse.Namespace, sid: int, fake: FakeProvider
) -> Run:
    """Send the plan open loop; sample RSS and set the primary fake's faults meanwhile; wait for every answer."""
    run = Run()
    loop = asyncio.get_running_loop()
    start = loop.time()
    done = asyncio.Event()

    def now() -> float:
        return loop.time() - start

    async def sampler() -> None:
        last_log = 0.0
        while not done.is_set():
            run.rss.sample(sid, now())
            if now() - last_log >= 60:
                last_log = now()
                _progress(run, len(requests), now())
            try:
                await asyncio.wait_for(done.wait(), args.rss_every_s)
            except TimeoutError:
                pass

    async def faults() -> None:
        n = 0
        while not done.is_set():
            try:
                await asyncio.wait_for(done.wait(), args.fault_every_s)
                return
            except TimeoutError:
                pass
            mode = FAULTS[n % len(FAULTS)]
            fake.set_fault(mode, fail_times=args.fault_times, retry_after=0.2)
            run.faults_set.append((round(now(), 1), mode))
            n += 1
            # An outage has an end in time: what `fail_times` has left is not kept for the circuit's probes
            # (run 20261130-085445 kept it, and every probe met it: `paid` stayed out after two minutes).
            await asyncio.sleep(min(args.fault_s, args.fault_every_s / 2))
            fake.clear_fault()

    async def one(session: aiohttp.ClientSession, p: Planned) -> None:
        run.outcomes.append(await send(session, base, p, args.timeout_s))
        progress.update(1)

    background = [asyncio.create_task(sampler()), asyncio.create_task(faults())]
    # The baseline sample after the warm-up, at its time exactly.
    baseline = loop.call_later(warmup_s(args.minutes * 60), lambda: run.rss.sample(sid, now()))
    tasks = []
    with bar(len(requests), "soak") as progress:
        async with aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=0)) as session:
            for p in requests:
                delay = start + p.at_s - loop.time()
                if delay > 0:
                    await asyncio.sleep(delay)
                tasks.append(asyncio.create_task(one(session, p)))
            await asyncio.gather(*tasks)
    baseline.cancel()
    done.set()
    await asyncio.gather(*background)
    run.rss.sample(sid, now())  # the end: every request answered
    fake.clear_fault()
    return run


def _progress(run: Run, total: int, at_s: float) -> None:
    classes = Counter(o.cls for o in run.outcomes)
    unexpected = sum(n for c, n in classes.items() if c not in EXPECTED)
    rss = sum(run.rss.samples[-1][1].values()) / 1024 if run.rss.samples else 0.0
    _log(f"{at_s:5.0f} s: {len(run.outcomes)}/{total} answered, unexpected {unexpected}, session RSS {rss:,.0f} MB")


async def health(base: str) -> int | None:
    try:
        async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=30)) as s, s.get(f"{base}/health") as r:
            return r.status
    except (aiohttp.ClientError, TimeoutError):
        return None


# ------------------------------------------------------------------------------ the deployment


def config(port: int, data_dir: Path, tmp: Path, paid: FakeProvider, backup: FakeProvider, n: int) -> dict[str, Any]:
    """The fuzz benchmark's deployment without the embedder, with a backup provider, the soak's aliases and keys."""
    from orchestrator.accounting.keys import hash_key

    cfg = fuzz_config(port, data_dir, tmp, paid, embed=False)
    cfg["server"]["max_body_mb"] = MAX_BODY_MB
    cfg["providers"]["backup"] = fake_providers(backup.base_url)["paid"]
    cfg["models"].update(
        spill={"routes": [LOCAL, "paid/big", "backup/big"], "ttft_slo_ms": 1000},
        remote=["paid/big", "backup/big"],
    )
    keys = cfg["keys"]
    keys["soak"] = {"sha256": hash_key(MAIN_KEY)}
    for i in range(n):
        keys[f"tokens-{i:03d}"] = {
            "sha256": hash_key(key_for(f"tokens-{i:03d}")),
            "budget_tokens": TOKEN_BUDGET,
            "period": "total",
            "models": [LOCAL],
        }
        keys[f"usd-{i:03d}"] = {
            "sha256": hash_key(key_for(f"usd-{i:03d}")),
            "budget_usd": USD_BUDGET,
            "period": "total",
        }
    return cfg


# ------------------------------------------------------------------------------ the report


def summarize(outcomes: Sequence[Outcome], sent: int) -> dict[str, Any]:
    classes = Counter(o.cls for o in outcomes)
    by_kind: dict[str, Counter[str]] = {}
    served: dict[str, Counter[str]] = {}
    for o in outcomes:
        by_kind.setdefault(o.kind, Counter())[o.cls] += 1
        if o.status == 200:
            served.setdefault(o.kind, Counter())[o.served_by.split("/")[0] or "?"] += 1
    cached = [o for o in outcomes if o.kind == "cached" and o.status == 200]
    samples: dict[str, dict[str, Any]] = {}
    for o in outcomes:
        if o.cls not in EXPECTED:
            s = samples.setdefault(f"{o.cls} {o.kind}", {"count": 0, "first": asdict(o)})
            s["count"] += 1
    latency = {
        kind: {
            "p50_ms": round(percentile(ls, 50) * 1000, 1),
            "p99_ms": round(percentile(ls, 99) * 1000, 1),
        }
        for kind in KINDS
        if (ls := [o.latency_s for o in outcomes if o.kind == kind and o.cls in EXPECTED])
    }
    return {
        "sent": sent,
        "answered": len(outcomes),
        "classes": {c: classes.get(c, 0) for c in CLASSES},
        "unexpected": sum(classes.get(c, 0) for c in UNEXPECTED),
        "by_kind": {k: dict(sorted(by_kind[k].items())) for k in KINDS if k in by_kind},
        "served_by": {k: dict(sorted(served[k].items())) for k in KINDS if k in served},
        "cache_hits": {"cached_200": len(cached), "hit": sum(o.cache == "HIT" for o in cached)},
        "latency_expected": latency,
        "unexpected_samples": list(samples.values())[:40],
    }


def targets(summary: Mapping[str, Any], rss_rows: Iterable[Mapping[str, Any]]) -> dict[str, bool]:
    rows = list(rss_rows)
    return {
        "every_request_accounted": summary["sent"] == sum(summary["classes"].values()),
        "no_unexpected": summary["unexpected"] == 0,
        "rss_growth_under_10pct": bool(rows) and not any(r["flag"] for r in rows),
    }


def render(report: Mapping[str, Any]) -> str:
    s, m = report["summary"], report["meta"]
    lines = [
        f"# Soak, {report['minutes']} minutes ({m['started']}, at {m['git']['head']})",
        "",
        f"`{m['command']}` on {m['machine']['cpus']} CPUs; {s['sent']} requests at {report['rate']} req/s "
        f"(seed {report['seed']}), load average {m['loadavg_start'][0]:.1f} at the start, "
        f"{report['loadavg_end'][0]:.1f} at the end; faults set on `paid`: {len(report['faults_set'])} x "
        f"{report['fault_times']} requests; /health after: {report['health_after']}.",
        "",
        "| class | requests |",
        "|---|---|",
        *(f"| {c} | {n} |" for c, n in s["classes"].items() if n or c in EXPECTED),
        f"| **sent** | **{s['sent']}** (classified {sum(s['classes'].values())}) |",
        "",
        "| kind | outcomes | served by (200s) | p50 / p99 ms (expected outcomes) |",
        "|---|---|---|---|",
    ]
    for kind, outcome in s["by_kind"].items():
        lat = s["latency_expected"].get(kind, {})
        served = ", ".join(f"{k} {n}" for k, n in s["served_by"].get(kind, {}).items())
        cls = ", ".join(f"{k} {n}" for k, n in outcome.items())
        lines.append(f"| {kind} | {cls} | {served} | {lat.get('p50_ms', '–')} / {lat.get('p99_ms', '–')} |")
    hits = s["cache_hits"]
    lines += [
        "",
        f"Cache: {hits['hit']} of {hits['cached_200']} answered `cached` requests were hits.",
        "",
        f"RSS per process of the server's session, start = after {report['warmup_s']:.0f} s of warm-up, "
        f"end = once the last request was answered ({len(report['rss_samples'])} samples):",
        "",
        "| role | program | pid | start MB | end MB | max MB | growth | |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for r in report["rss"]:
        pct = "–" if r["growth_pct"] is None else f"{r['growth_pct']:+.1f} %"
        flag = ("**≥ 10 %** " if r["flag"] and r["growth_pct"] is not None else "") + r["note"]
        row = (r["role"], r["program"], r["pid"], r["start_mb"], r["end_mb"], r["max_mb"], pct, flag)
        lines.append("| " + " | ".join("–" if v is None else str(v) for v in row) + " |")
    lines += ["", "Targets: " + ", ".join(f"{k} {'met' if v else 'MISSED'}" for k, v in report["targets"].items())]
    if report["server_tracebacks"]:
        lines += ["", "Tracebacks in the server's log:", ""]
        lines += [f"- {n} x `{line}`" for line, n in list(report["server_tracebacks"].items())[:15]]
    if s["unexpected_samples"]:
        lines += ["", "Unexpected outcomes (first of each class and kind):", ""]
        lines += [
            f"- {x['count']} x {x['first']['cls']} {x['first']['kind']}: {x['first']['problem']}"
            for x in s["unexpected_samples"]
        ]
    return "\n".join(lines) + "\n"


# ------------------------------------------------------------------------------ the run


def run(args: argparse.Namespace) -> dict[str, Any]:
    meta = run_meta("benchmarks.soak")
    run_stamp = new_stamp()
    duration_s = args.minutes * 60
    n_windows = windows(duration_s, args.window_s)
    requests = plan(args.seed, duration_s, args.rate, args.window_s)
    log_path = LOGS / f"soak-{run_stamp}.log"
    with (
        tempfile.TemporaryDirectory(prefix="soak-") as tmp_name,
        FakeProvider(api_key=UPSTREAM_KEY, reply="Paris is the capital of France.", record=False) as paid,
        FakeProvider(api_key=UPSTREAM_KEY, reply="Paris is the capital of France.", record=False) as backup,
    ):
        tmp, port = Path(tmp_name), free_port()
        base = f"http://127.0.0.1:{port}"
        cfg = config(port, Path(args.data_dir).resolve(), tmp, paid, backup, n_windows)
        _log(f"starting the orchestrator on :{port} (Ray Serve + vLLM CPU, {LOCAL}); log {log_path}")
        server = start_server(cfg, tmp, Path(args.data_dir).resolve(), log_path)
        try:
            ready_s = wait_ready(server, base, args.start_timeout_s)
            assert server.proc is not None
            _log(
                f"ready after {ready_s:.0f} s; {len(requests)} requests over {args.minutes:g} min at {args.rate} req/s"
            )
            done = asyncio.run(traffic(base, requests, args, server.proc.pid, paid))
            health_after = asyncio.run(health(base))
        finally:
            stopped = server.stop()
        fakes = {
            name: {"counts": dict(f.counts), "faults_applied": dict(f.faults_applied)}
            for name, f in (("paid", paid), ("backup", backup))
        }
    warm = warmup_s(duration_s)
    rows = growth(done.rss, warm)
    summary = summarize(done.outcomes, len(requests))
    report: dict[str, Any] = {
        "meta": meta,
        "minutes": args.minutes,
        "rate": args.rate,
        "seed": args.seed,
        "window_s": args.window_s,
        "fault_times": args.fault_times,
        "ready_s": round(ready_s, 1),
        "warmup_s": warm,
        "summary": summary,
        "rss": rows,
        "targets": targets(summary, rows),
        "health_after": health_after,
        "faults_set": done.faults_set,
        "fakes": fakes,
        "stop": describe(stopped),
        "server_log": str(log_path.relative_to(ROOT)),
        "server_tracebacks": server_tracebacks(log_path),
        "loadavg_end": os.getloadavg(),
        "rss_samples": [[t, {str(p): kb for p, kb in s.items()}] for t, s in done.rss.samples],
        "rss_who": {str(p): list(w) for p, w in done.rss.who.items()},
    }
    text = render(report)
    report["saved"] = str(save("soak", run_stamp, {**report, "outcomes": [asdict(o) for o in done.outcomes]}, text))
    print(text)
    return report


def _log(message: str) -> None:
    print(f"[soak] {message}", file=sys.stderr, flush=True)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--minutes", type=float, default=30.0, help="how long the traffic runs (default 30)")
    p.add_argument("--rate", type=float, default=3.0, help="requests per second, open loop (Poisson)")
    p.add_argument("--seed", type=int, default=14)
    p.add_argument("--window-s", type=float, default=120.0, help="each pair of budget keys' time in the plan")
    p.add_argument("--fault-every-s", type=float, default=60.0, help="how often the `paid` fake starts failing")
    p.add_argument("--fault-times", type=int, default=4, help="how many requests it fails each time")
    p.add_argument("--fault-s", type=float, default=5.0, help="how long each time, at most (then it heals)")
    p.add_argument("--rss-every-s", type=float, default=15.0)
    p.add_argument("--timeout-s", type=float, default=60.0, help="per request, the whole answer")
    p.add_argument("--start-timeout-s", type=float, default=900.0)
    p.add_argument("--data-dir", default=str(ROOT / ".data" / "bench"), help="prepared models and vLLM's cache")
    args = p.parse_args(argv)
    report = run(args)
    print(json.dumps({"targets": report["targets"], "saved": report["saved"]}, indent=1))
    return 0 if all(report["targets"].values()) else 1


if __name__ == "__main__":
    raise SystemExit(main())
