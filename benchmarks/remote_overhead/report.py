"""The printed report: a table per group, ours against the peers (ratios), the targets' verdicts, the options,
CPU by process, the servers."""

from __future__ import annotations

import math
from typing import Any

from benchmarks.remote_overhead.bodies import MAX_TOKENS
from benchmarks.remote_overhead.groups import GROUPS, SETTINGS
from benchmarks.remote_overhead.portkey import BUILDS

LABEL = {
    "direct": "direct to the fake",
    "litellm": "LiteLLM proxy (1 worker)",
    **{b.key: b.label for b in BUILDS},
}
PEERS = (*(b.key for b in BUILDS), "litellm")
SHORT = {"ours": "ours", "portkey": "Portkey", "portkey_lock": "Portkey (lockfile's hono)", "litellm": "LiteLLM"}
# Issue 17's throughput targets at 32 clients: ours ≥ 1.5× Portkey's gateway and ≥ 10× LiteLLM's proxy.
RATE_TARGET = {"portkey": 1.5, "portkey_lock": 1.5, "litellm": 10.0}
_HEAD = [
    "target",
    "seq p50 ms",
    "seq p99 ms",
    "added p50",
    "1st chunk p50 ms",
    "1st chunk p99 ms",
    "added p50",
    "req/s @32",
    "p50 ms @32",
    "server CPU ms/req",
]


def label(key: str) -> str:
    if key in LABEL:
        return LABEL[key]
    kind, _, setting = key.partition("@")
    who = "trivial ingress" if kind == "trivial" else "ours"
    return f"{who}, {SETTINGS[setting].label}"


def _g(d: Any, *path: str) -> float:
    for p in path:
        if not isinstance(d, dict) or p not in d:
            return math.nan
        d = d[p]
    return float(d) if isinstance(d, int | float) else math.nan


def _f(x: float, digits: int = 2) -> str:
    return "–" if math.isnan(x) else f"{x:,.{digits}f}"


def _row(key: str, s: dict[str, Any], d_seq: float, d_chunk: float) -> str:
    seq, chunk = _g(s, "sequential_ms", "p50"), _g(s, "first_chunk_ms", "p50")
    cpu = _g(s, "server_cpu_ms_per_req_total") if key != "direct" else _g(s, "upstream_cpu_ms_per_req")
    cells = [
        label(key),
        _f(seq),
        _f(_g(s, "sequential_ms", "p99")),
        "" if key == "direct" else _f(seq - d_seq),
        _f(chunk),
        _f(_g(s, "first_chunk_ms", "p99")),
        "" if key == "direct" else _f(chunk - d_chunk),
        _f(_g(s, "req_per_s"), 0),
        _f(_g(s, "loaded_ms", "p50"), 1),
        _f(cpu),
    ]
    return "| " + " | ".join(cells) + " |"


def group_table(group: dict[str, Any]) -> str:
    t = group["targets"]
    direct = t.get("direct", {})
    d_seq, d_chunk = _g(direct, "sequential_ms", "p50"), _g(direct, "first_chunk_ms", "p50")
    lines = ["| " + " | ".join(_HEAD) + " |", "|" + "---|" * len(_HEAD)]
    return "\n".join(lines + [_row(key, s, d_seq, d_chunk) for key, s in t.items()])


def miss_text(group: dict[str, Any]) -> str:
    parts = []
    for key, s in group["targets"].items():
        if _g(s, "cacheable_miss_ms", "n") > 0:
            miss, bypass = _g(s, "cacheable_miss_ms", "p50"), _g(s, "sequential_ms", "p50")
            parts.append(
                f"{label(key)}, cacheable requests that miss the response cache (temperature 0, a new prompt each): "
                f"seq p50 {_f(miss)} ms, p99 {_f(_g(s, 'cacheable_miss_ms', 'p99'))} ms ({miss - bypass:+.2f} ms "
                "over the same request without temperature, which the cache passes by)."
            )
    return " ".join(parts)


def rounds_text(group: dict[str, Any]) -> str:
    parts = []
    for key, s in group["targets"].items():
        seq = " / ".join(_f(x) for x in s["sequential_p50_rounds"])
        rps = " / ".join(_f(x, 0) for x in s["req_per_s_rounds"])
        parts.append(f"{key}: seq p50 {seq} ms; {rps} req/s")
    return "Per round — " + "; ".join(parts) + "."


def _versus_litellm(o: dict[str, Any], lite: dict[str, Any], direct: dict[str, Any]) -> str:
    d_seq, d_chunk = _g(direct, "sequential_ms", "p50"), _g(direct, "first_chunk_ms", "p50")
    a_o, a_l = _g(o, "sequential_ms", "p50") - d_seq, _g(lite, "sequential_ms", "p50") - d_seq
    c_o, c_l = _g(o, "first_chunk_ms", "p50") - d_chunk, _g(lite, "first_chunk_ms", "p50") - d_chunk
    r = _g(o, "req_per_s") / _g(lite, "req_per_s")
    return (
        f"added latency vs LiteLLM's: seq {a_o:.2f} vs {a_l:.2f} ms = {a_l / a_o:.1f}× lower "
        f"({'met' if a_l >= 3 * a_o else 'MISSED'} ≥ 3×), first chunk {c_o:.2f} vs {c_l:.2f} ms = "
        f"{c_l / c_o:.1f}× lower; throughput {r:.1f}× LiteLLM's ({'met' if r >= 3 else 'MISSED'} ≥ 3×)"
    )


def added(s: dict[str, Any], direct: dict[str, Any], metric: str, q: str = "p50") -> float:
    """A target's percentile minus direct-to-the-fake's same percentile (same group)."""
    return _g(s, metric, q) - _g(direct, metric, q)


def peer_figures(s: dict[str, Any], direct: dict[str, Any]) -> dict[str, float]:
    """What ours and each peer are compared on."""
    return {
        "seq_p50": added(s, direct, "sequential_ms"),
        "seq_p99": added(s, direct, "sequential_ms", "p99"),
        "rate": _g(s, "req_per_s"),
        "chunk_p50": added(s, direct, "first_chunk_ms"),
        "cpu": _g(s, "server_cpu_ms_per_req_total"),
    }


def _div(a: float, b: float) -> float:
    return a / b if b and not math.isnan(a) and not math.isnan(b) else math.nan


def ratios(ours: dict[str, float], peer: dict[str, float]) -> dict[str, float]:
    """Ours against one peer, each ratio > 1 where ours is better: req/s ours ÷ peer; CPU per request and added
    latency peer ÷ ours."""
    return {
        "rate": _div(ours["rate"], peer["rate"]),
        "cpu": _div(peer["cpu"], ours["cpu"]),
        "seq_p50": _div(peer["seq_p50"], ours["seq_p50"]),
        "seq_p99": _div(peer["seq_p99"], ours["seq_p99"]),
        "chunk_p50": _div(peer["chunk_p50"], ours["chunk_p50"]),
    }


_PEER_ROWS = (
    ("added seq p50 ms", "seq_p50", 2),
    ("added seq p99 ms", "seq_p99", 2),
    ("req/s @32", "rate", 0),
    ("added 1st chunk p50 ms", "chunk_p50", 2),
    ("server CPU ms/req", "cpu", 2),
)
_RATIO_ROWS = (
    ("req/s: ours ÷ peer", "rate"),
    ("CPU/req: peer ÷ ours", "cpu"),
    ("added seq p50: peer ÷ ours", "seq_p50"),
    ("added seq p99: peer ÷ ours", "seq_p99"),
    ("added 1st chunk p50: peer ÷ ours", "chunk_p50"),
)


def _times(x: float) -> str:
    return "–" if math.isnan(x) else f"{x:,.2f}×"


def _ours(t: dict[str, Any]) -> list[str]:
    return [k for k in t if k.startswith("ours@")]


def _ours_name(key: str, several: bool) -> str:
    """'ours', or in a group with several of ours, 'ours (<its setting's short name>)'."""
    setting = SETTINGS[key.partition("@")[2]]
    return f"ours ({setting.short or setting.name})" if several else "ours"


def peers_table(t: dict[str, Any]) -> list[str]:
    """Ours (each of ours) against every peer of one group, figures then ratios ('added' over direct's same
    percentile); empty without ours, direct or a peer."""
    ours = _ours(t)
    peers = [k for k in PEERS if k in t]
    if not ours or "direct" not in t or not peers:
        return []
    several = len(ours) > 1
    figs = {k: peer_figures(t[k], t["direct"]) for k in (*ours, *peers)}
    head = ["", *(_ours_name(o, several) for o in ours), *(SHORT[k] for k in peers)]
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for name, key, digits in _PEER_ROWS:
        cells = []
        for k in (*ours, *peers):
            failed = key == "chunk_p50" and math.isnan(figs[k][key]) and _g(t[k], "failed") > 0
            cells.append("streams failed" if failed else _f(figs[k][key], digits))
        lines.append(f"| {name} | " + " | ".join(cells) + " |")
    blank = "| " * len(ours)
    for o in ours:
        for name, key in _RATIO_ROWS:
            row = name.replace("ours", _ours_name(o, several))
            cells = [_times(ratios(figs[o], figs[k])[key]) for k in peers]
            lines.append(f"| {row} {blank}| " + " | ".join(cells) + " |")
    return lines


def rate_verdicts(t: dict[str, Any]) -> str:
    """Issue 17's throughput targets, in one group (for each of ours)."""
    ours = _ours(t)
    lines = []
    for o in ours:
        parts = []
        for k in PEERS:
            if k not in t:
                continue
            r = _div(_g(t[o], "req_per_s"), _g(t[k], "req_per_s"))
            parts.append(f"{_f(r)}× {SHORT[k]} ({'met' if r >= RATE_TARGET[k] else 'MISSED'} ≥ {RATE_TARGET[k]:g}×)")
        if parts:
            lines.append(f"Throughput at 32 clients, {_ours_name(o, len(ours) > 1)}: " + ", ".join(parts) + ".")
    return " ".join(lines)


def peers_section(result: dict[str, Any]) -> list[str]:
    """Per group with peers: the table, the throughput targets, and what each peer's failures were."""
    out = []
    for name, group in result["groups"].items():
        table = peers_table(group["targets"])
        if not table:
            continue
        out += ["", f"### {name}", "", *table, "", rate_verdicts(group["targets"])]
        for k in PEERS:
            s = group["targets"].get(k)
            if s and s["failed"]:
                out.append(f"- {LABEL[k]}: {s['failed']} failed requests; the client saw {s['errors']}")
    if not out:
        return []
    logged = [(k, lines) for k, lines in result.get("server_log_errors", {}).items() if lines]
    if logged:
        out += ["", "Errors in the peers' logs over the whole run (distinct lines):", ""]
        out += [f"- {LABEL.get(k, k)}: " + " / ".join(f"`{line}`" for line in lines) for k, lines in logged]
    head = [
        "",
        "## Ours against the peers",
        "",
        "'added' = the percentile minus direct-to-the-fake's same percentile in the group; ratios > 1 where ours "
        "is better.",
    ]
    return head + out


def verdicts(result: dict[str, Any]) -> list[str]:
    """The issue's targets, evaluated inside each main group (same Ray setting, same noise)."""
    out = []
    for name, group in result["groups"].items():
        t = group["targets"]
        trivial = next((k for k in t if k.startswith("trivial@")), None)
        if (name in GROUPS and GROUPS[name].reference is not None) or "direct" not in t:
            continue
        for ours in _ours(t):
            parts = []
            if trivial:
                dv = _g(t[ours], "sequential_ms", "p50") - _g(t[trivial], "sequential_ms", "p50")
                dc = _g(t[ours], "first_chunk_ms", "p50") - _g(t[trivial], "first_chunk_ms", "p50")
                parts.append(
                    f"ours − trivial ingress: {dv:+.2f} ms seq p50 ({'met' if dv <= 1 else 'MISSED'} ≤ 1 ms), "
                    f"{dc:+.2f} ms first-chunk p50"
                )
            if "litellm" in t:
                parts.append(_versus_litellm(t[ours], t["litellm"], t["direct"]))
            parts.append(_issue17(t[ours], t["direct"]))
            out.append(f"- **{name}** ({SETTINGS[ours.partition('@')[2]].label}): " + "; ".join(parts))
    return out


# Issue 17's latency and CPU targets: added p50 / p99 over direct, server CPU per request (all ours' processes).
ADDED_P50_MS, ADDED_P99_MS, CPU_MS = 0.8, 2.0, 0.8


def _issue17(o: dict[str, Any], direct: dict[str, Any]) -> str:
    p50, p99 = added(o, direct, "sequential_ms"), added(o, direct, "sequential_ms", "p99")
    cpu = _g(o, "server_cpu_ms_per_req_total")
    return (
        f"issue 17: added seq p50 {p50:.2f} ms ({'met' if p50 <= ADDED_P50_MS else 'MISSED'} ≤ {ADDED_P50_MS:g}), "
        f"p99 {p99:.2f} ms ({'met' if p99 <= ADDED_P99_MS else 'MISSED'} ≤ {ADDED_P99_MS:g}), server CPU "
        f"{cpu:.2f} ms/req ({'met' if cpu <= CPU_MS else 'MISSED'} ≤ {CPU_MS:g})"
    )


def _option_line(key: str, s: dict[str, Any], ref: str, r: dict[str, Any]) -> str:
    dv = _g(s, "sequential_ms", "p50") - _g(r, "sequential_ms", "p50")
    dc = _g(s, "first_chunk_ms", "p50") - _g(r, "first_chunk_ms", "p50")
    ratio = _g(s, "req_per_s") / _g(r, "req_per_s")
    return (
        f"- {label(key)} vs {label(ref)}: seq p50 {dv:+.2f} ms, first chunk p50 {dc:+.2f} ms, "
        f"throughput {ratio:.2f}×, server CPU/req {_g(s, 'server_cpu_ms_per_req_total'):.2f} vs "
        f"{_g(r, 'server_cpu_ms_per_req_total'):.2f} ms"
    )


def options_lines(result: dict[str, Any]) -> list[str]:
    """Each option against its group's reference (same noise), and the fastest setting for ours."""
    out = []
    for name, g in GROUPS.items():
        t = result["groups"].get(name, {}).get("targets", {})
        if g.reference is None or g.reference not in t:
            continue
        out += [
            _option_line(k, s, g.reference, t[g.reference]) for k, s in t.items() if k not in ("direct", g.reference)
        ]
    ours = [(k, s) for g in result["groups"].values() for k, s in g["targets"].items() if k.startswith("ours@")]
    if ours:
        key, s = min(ours, key=lambda o: _g(o[1], "sequential_ms", "p50"))
        fast_key, fast = max(ours, key=lambda o: _g(o[1], "req_per_s"))
        fastest, busiest = SETTINGS[key.partition("@")[2]].label, SETTINGS[fast_key.partition("@")[2]].label
        out.append(
            f"- Fastest for ours: {fastest} (seq p50 {_g(s, 'sequential_ms', 'p50'):.2f} ms); highest throughput: "
            f"{busiest} ({_g(fast, 'req_per_s'):.0f} req/s)."
        )
    return out


def cpu_lines(result: dict[str, Any]) -> list[str]:
    lines = []
    for name, group in result["groups"].items():
        for key, s in group["targets"].items():
            if key == "direct":
                continue
            by_role = sorted(s["server_cpu_ms_per_req"].items(), key=lambda kv: -kv[1])
            roles = ", ".join(f"{k} {v:.2f}" for k, v in by_role if v >= 0.01)
            lines.append(
                f"- {name} / {key}: {roles} (upstream fake {s['upstream_cpu_ms_per_req']:.2f}, client "
                f"{s['client_cpu_ms_per_req']:.2f}; other processes {s['foreign_cpu_cores']:.2f} cores)"
            )
    return lines


def _header(result: dict[str, Any]) -> list[str]:
    meta, load = result["meta"], result["meta"]["load"]
    la = meta["loadavg_start"]
    return [
        "# Gateway overhead on a remote route (fake provider, 0 ms)",
        "",
        f"Command: `{meta['command']}` — started {meta['started']}, took {meta.get('total_s', '?')} s, at commit "
        f"{meta['git']['head']} ({meta['git']['dirty_package_files']} package files modified), "
        f"{meta['machine']['cpus']} CPUs. Per target and round: {load['sequential']} sequential non-stream chats and "
        f"{load['streams']} sequential streams (max_tokens {MAX_TOKENS}, after {load['warmup']} warm-up each), then "
        f"{load['duration_s']:g} s of {load['concurrency']} closed-loop clients; {load['rounds']} rounds per group, "
        f"after {load.get('warm_s', 0):g} s of unmeasured closed loop per target, "
        f"alternating targets. Load average at start {la[0]:.2f}, end {meta.get('loadavg_end', [math.nan])[0]:.2f}. "
        f"Versions: {', '.join(f'{k} {v}' for k, v in meta['versions'].items())}. Percentiles: nearest-rank.",
        "",
        "'added' = the target's p50 minus direct-to-the-fake's p50 in the same group. 'server CPU ms/req' = CPU of "
        "all the target's processes during the throughput phases per completed request (for direct: the fake's).",
    ]


def _groups(result: dict[str, Any]) -> list[str]:
    parts = []
    for name, group in result["groups"].items():
        before, after = group["loadavg_before"][0], group["loadavg_after"][0]
        parts += ["", f"## Group {name} (load average {before:.2f} → {after:.2f})", "", group_table(group)]
        parts += ["", rounds_text(group), "", miss_text(group)]
    return parts


def _profiles(result: dict[str, Any]) -> list[str]:
    if not result.get("profiles"):
        return []
    parts = ["", "## Profiles (py-spy, ingress replica, throughput phase; % of samples on the stack)", ""]
    for key, p in result["profiles"].items():
        if "error" in p:
            parts.append(f"- {key}: {p['error']}")
            continue
        buckets = ", ".join(f"{k} {v}%" for k, v in p["inclusive_pct"].items())
        parts.append(f"- {key} ({p['busy_samples']} busy samples): {buckets}")
    return parts


def _servers(result: dict[str, Any]) -> list[str]:
    parts = [
        "",
        "## Servers",
        "",
        "| server | ready s | stop s | exit | escalated | leftovers |",
        "|---|---|---|---|---|---|",
    ]
    for name, s in result["servers"].items():
        ready = "–" if s.get("ready_s") is None else f"{s['ready_s']:.0f}"
        if "error" in s:
            parts.append(f"| {name} | {ready} | – | – | – | {s['error']} |")
            continue
        escalated = s["escalated"] or "–"
        parts.append(
            f"| {name} | {ready} | {s['stop_s']:.1f} | {s['exit_code']} | {escalated} | {len(s['leftovers'])} |"
        )
    if result["errors"]:
        parts += ["", "## Errors", ""] + [f"- {k}: {v}" for k, v in result["errors"].items()]
    for name, group in result["groups"].items():
        for key, s in group["targets"].items():
            if s["failed"]:
                parts.append(f"- {name}/{key}: {s['failed']} failed requests: {s['errors']}")
    return parts


def long_stream_lines(result: dict[str, Any]) -> list[str]:
    """The long-stream phase (`--long-streams N`), where it ran: per group, each target's whole streams a second
    and the CPU they cost its processes, per stream and per token, and ours against each."""
    tokens = result["meta"]["load"].get("long_tokens") or 0
    if not tokens:
        return []
    pace = result["meta"]["load"].get("long_pace") or 0
    paced = f", the fake's tokens paced at {pace:g} a second each" if pace else ", the fake's tokens unpaced"
    parts = [
        "",
        f"## Long streams: {tokens}-token answers, streamed ({result['meta']['load']['concurrency']} closed-loop "
        f"clients, after each round's throughput phase{paced})",
    ]
    for name, group in result["groups"].items():
        t = group["targets"]
        ours = next((s for key, s in t.items() if key.startswith("ours")), None)
        parts += [
            "",
            f"### {name}",
            "",
            "| target | whole streams/s | tokens/s | server CPU ms/stream | server CPU µs/token | ours ÷ it |",
            "|---|---|---|---|---|---|",
        ]
        for key, s in t.items():
            rate, cpu = _g(s, "long_streams", "streams_per_s"), _g(s, "long_streams", "server_cpu_ms_per_stream")
            if key == "direct":
                cpu = _g(s, "long_streams", "upstream_cpu_ms_per_stream")
            if not rate:  # no stream came whole: no CPU per stream to tell
                cpu = math.nan
            versus = "" if ours is None or ours is s else _times(_div(_g(ours, "long_streams", "streams_per_s"), rate))
            failed = int(_g(s, "long_streams", "failed"))
            cells = [label(key) + (f" ({failed} failed)" if failed else ""), _f(rate, 1), _f(rate * tokens, 0)]
            parts.append("| " + " | ".join([*cells, _f(cpu), _f(cpu * 1000 / tokens, 1), versus]) + " |")
    return parts


def report(result: dict[str, Any]) -> str:
    parts = [*_header(result), *_groups(result), *peers_section(result), *long_stream_lines(result)]
    parts += ["", "## Targets", "", *verdicts(result), ""]
    parts += ["## Options, one at a time (against a reference in the same group)", "", *options_lines(result)]
    parts += ["", "## Server CPU per request (throughput phases, ms)", "", *cpu_lines(result)]
    return "\n".join(parts + _profiles(result) + _servers(result)) + "\n"
