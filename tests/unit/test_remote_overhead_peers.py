"""benchmarks.remote_overhead: Portkey's request headers, its log's errors, and ours against the peers (ratios)."""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

from benchmarks.remote_overhead.groups import SETTINGS
from benchmarks.remote_overhead.portkey import error_lines, portkey_headers
from benchmarks.remote_overhead.report import peers_table, rate_verdicts, ratios
from benchmarks.remote_overhead.targets import ours_server


def test_portkey_headers_name_openai_at_the_fakes_v1() -> None:
    assert portkey_headers("http://127.0.0.1:9100/") == {
        "x-portkey-provider": "openai",
        "x-portkey-custom-host": "http://127.0.0.1:9100/v1",
    }


def test_error_lines_are_distinct_and_skip_the_spinner() -> None:
    log = (
        "\r⠋ Starting AI Gateway...\r⠙ Starting AI Gateway...\n"
        "tryTargetsRecursively error:  immutable undefined TypeError: immutable\n"
        "    at appendHeader (node:internal/deps/undici/undici:8874:15)\n"
        "tryTargetsRecursively error:  immutable undefined TypeError: immutable\n"
    )
    assert error_lines(log) == ["tryTargetsRecursively error:  immutable undefined TypeError: immutable"]


def test_ratios_are_above_one_where_ours_is_better() -> None:
    ours = {"rate": 800.0, "cpu": 1.5, "seq_p50": 1.0, "seq_p99": 4.0, "chunk_p50": 1.0}
    peer = {"rate": 1000.0, "cpu": 1.0, "seq_p50": 2.0, "seq_p99": 8.0, "chunk_p50": math.nan}
    r = ratios(ours, peer)
    assert r["rate"] == 0.8
    assert r["cpu"] == 1.0 / 1.5
    assert r["seq_p50"] == 2.0 and r["seq_p99"] == 2.0
    assert math.isnan(r["chunk_p50"])  # the peer's streams failed
    assert math.isnan(ratios({**ours, "rate": 0.0}, {**peer, "rate": 0.0})["rate"])


def _target(seq: float, p99: float, chunk: float, rate: float, cpu: float, failed: int = 0) -> dict[str, Any]:
    return {
        "sequential_ms": {"p50": seq, "p99": p99},
        "first_chunk_ms": {"p50": chunk},
        "req_per_s": rate,
        "server_cpu_ms_per_req_total": cpu,
        "failed": failed,
    }


def test_peers_table_and_rate_verdicts() -> None:
    targets = {
        "direct": _target(0.5, 1.0, 0.6, 4000, 0.2),
        "portkey": _target(2.5, 9.0, math.nan, 1000, 1.0, failed=150),
        "litellm": _target(12.5, 21.0, 15.6, 100, 9.0),
        "ours@tput": _target(1.5, 5.0, 1.6, 800, 1.6),
    }
    table = peers_table(targets)
    assert table[0] == "|  | ours | Portkey | LiteLLM |"
    rows = {line.split(" | ")[0].lstrip("| "): line for line in table[2:]}
    assert rows["added seq p50 ms"] == "| added seq p50 ms | 1.00 | 2.00 | 12.00 |"
    assert rows["added seq p99 ms"] == "| added seq p99 ms | 4.00 | 8.00 | 20.00 |"
    assert rows["added 1st chunk p50 ms"] == "| added 1st chunk p50 ms | 1.00 | streams failed | 15.00 |"
    assert rows["req/s: ours ÷ peer"] == "| req/s: ours ÷ peer | | 0.80× | 8.00× |"
    assert rows["CPU/req: peer ÷ ours"] == "| CPU/req: peer ÷ ours | | 0.62× | 5.62× |"
    assert rate_verdicts(targets) == (
        "Throughput at 32 clients, ours: 0.80× Portkey (MISSED ≥ 1.5×), 8.00× LiteLLM (MISSED ≥ 10×)."
    )
    assert peers_table({"direct": targets["direct"], "ours@tput": targets["ours@tput"]}) == []


def test_ours_keeps_its_ledger_cache_and_responses_out_of_the_users_data_dir(tmp_path: Path) -> None:
    """A benchmark run's fake requests and spend must not land in the user's usage reports (they did:
    34k requests of fake spend in ~/.cache/burst-orchestrator/ledger.sqlite)."""
    from orchestrator.settings import load_settings

    setting = SETTINGS["tput"]
    ours_server("ours", setting, 8000, "http://127.0.0.1:9", tmp_path, tmp_path, range(8001, 8003), tmp_path / "d")
    settings = load_settings(tmp_path / "ours.yaml")
    state = tmp_path / "state-ours"
    assert settings.ledger.path == state / "ledger.sqlite"
    assert settings.cache.directory == state / "response-cache"
    assert settings.responses.directory == state / "responses"
