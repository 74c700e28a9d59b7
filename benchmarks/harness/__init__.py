"""What every benchmark shares: percentiles, server processes, CPU accounting, load generation, results.

- `stats`: **one percentile definition, nearest-rank** (`percentile`, and `dist`: n, p50, p90, p95, p99,
  mean, min, max), used by every benchmark and document;
- `servers`: subprocesses in sessions of their own, started, awaited, stopped and swept; free ports; the CPU
  each process of a session spent, by role, and the machine's busy time;
- `load`: the aiohttp load client (streamed chats with TTFT and usage, closed loops, GET latency and rate);
- `runs`: what a result records (command, commit, machine) and where it goes (`benchmarks/results/`).

Import from here: `from benchmarks.harness import Server, percentile, closed_loop`.
"""

from __future__ import annotations

from benchmarks.harness.inprocess import asgi_client, sequential_p50_us
from benchmarks.harness.load import (
    JSON_HEADERS,
    StreamResult,
    chat_body,
    closed_loop,
    get_rate,
    get_sequential,
    session,
    stream_chat,
    summarize_streams,
)
from benchmarks.harness.runs import LOGS, OUT, RESULTS, ROOT, git_state, run_meta, save, stamp, versions
from benchmarks.harness.servers import (
    ROLES,
    Server,
    StopReport,
    child_env,
    cpu_delta,
    describe,
    free_port,
    free_port_ranges,
    http_get,
    machine_busy_s,
    own_state,
    own_state_config,
    role,
    serves_model,
    session_cpu,
    session_members,
    stop_all,
)
from benchmarks.harness.stats import dist, percentile

__all__ = [
    "JSON_HEADERS",
    "LOGS",
    "asgi_client",
    "sequential_p50_us",
    "OUT",
    "RESULTS",
    "ROLES",
    "ROOT",
    "Server",
    "StopReport",
    "StreamResult",
    "chat_body",
    "child_env",
    "own_state",
    "own_state_config",
    "closed_loop",
    "cpu_delta",
    "describe",
    "dist",
    "free_port",
    "free_port_ranges",
    "get_rate",
    "get_sequential",
    "git_state",
    "http_get",
    "machine_busy_s",
    "percentile",
    "role",
    "run_meta",
    "save",
    "serves_model",
    "session",
    "session_cpu",
    "session_members",
    "stamp",
    "stop_all",
    "stream_chat",
    "summarize_streams",
    "versions",
]
