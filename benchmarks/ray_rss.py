"""What grows Ray's GCS: RSS of Ray's own processes on a Ray with nothing, with Serve, or with Serve and
board-like polling, for M minutes (the soak's gcs_server grew ~0.7 MB a minute; benchmarks/README.md, Soak).

    python -m benchmarks.ray_rss --minutes 12 --mode bare     # Ray alone
    python -m benchmarks.ray_rss --minutes 12 --mode serve    # + serve.start() and one trivial deployment
    python -m benchmarks.ray_rss --minutes 12 --mode actors   # + board-like handle calls, 10/s and 1/s
    python -m benchmarks.ray_rss --minutes 12 --mode plain    # + plain Ray actor calls, 10/s and 1/s
    python -m benchmarks.ray_rss --minutes 12 --mode actors --env RAY_enable_metrics_collection=0

Ray is started here, in this process, as the product starts it (`orchestrator.runtime`: the environment of
`runtime.serve_env` for the default settings, in this process and in the job's runtime_env; no dashboard), in a
fresh short temp dir under /tmp (Ray's unix sockets have a 108-byte path limit), and stopped at the end.

Modes:

    bare    nothing but Ray
    serve   serve.start() and one trivial ingress deployment (`Echo`), direct ingress as the product has it
    actors  serve, plus what the product keeps doing when idle: an ingress replica (`Poller`, like a Gateway)
            reads a one-replica `Board` deployment (like the LoadBoard) through its handle `--poll-hz` times a
            second, and a `Reporter` replica (like a LocalModel, with an autoscaling config so Serve's autoscaling
            metrics flow) reports to it `--report-hz` times a second. Serve's handle calls record no task events
            (Ray Serve's RAY_SERVE_ENABLE_TASK_EVENTS is off by default)
    plain   serve, plus two plain Ray actors (like the product's LedgerActor and DiskResponses, called per
            request): `Client` calls `Board` `--poll-hz` times a second, `Board` calls `Client` `--report-hz`
            times a second; every call is a task whose events the GCS keeps (up to
            RAY_task_events_max_num_task_in_gcs, 10,000 in `runtime.serve_env`)

No traffic in any mode. VmRSS of every process under this one (Ray's gcs_server, raylet, agents, the Serve
controller and proxy, the replicas) every `--every-s`; start = the first sample after `--warmup-s`, end = the last.
Per process: start, end, growth %, and the least-squares slope over the samples from the start on, MB a minute.
Saved as `benchmarks/results/ray-rss-<mode>-<stamp>.json` (every sample) and `.md`.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import shutil
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from benchmarks.harness import free_port, run_meta, save
from benchmarks.harness import stamp as new_stamp
from benchmarks.soak import RssLog, growth, program, rss_kb
from orchestrator.runtime import serve_env
from orchestrator.settings import ServerSettings, Settings

MODES = ("bare", "serve", "actors", "plain")
KEY = ("gcs_server", "raylet", "ray::ServeController")  # the processes the table leads with
_WORKERS_ONLY = frozenset({"RAY_SERVE_THROUGHPUT_OPTIMIZED", "RAY_SERVE_LOG_TO_STDERR"})  # as runtime.start


# ------------------------------------------------------------------------------ processes (/proc)


def descendants(root: int) -> list[tuple[int, str]]:
    """(pid, command line) of every live process below `root` (Ray's processes are children of this driver or of
    its raylet)."""
    parent: dict[int, int] = {}
    cmds: dict[int, str] = {}
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text()
            fields = stat[stat.rindex(")") + 2 :].split()
            if fields[0] == "Z":
                continue
            parent[int(entry.name)] = int(fields[1])
            cmds[int(entry.name)] = (entry / "cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
        except (OSError, ValueError, IndexError):
            continue
    below: set[int] = set()
    frontier = {root}
    while frontier:
        frontier = {p for p, pp in parent.items() if pp in frontier and p not in below}
        below |= frontier
    return [(p, cmds[p].strip()[:160]) for p in sorted(below)]


def sample(log: RssLog, root: int, at_s: float) -> None:
    taken: dict[int, int] = {}
    for pid, cmd in descendants(root):
        kb = rss_kb(pid)
        if kb is not None:
            taken[pid] = kb
            name = program(cmd)
            log.who.setdefault(pid, (name, name))
    log.samples.append((round(at_s, 1), taken))


# ------------------------------------------------------------------------------ figures (pure)


def slope_mb_per_min(points: list[tuple[float, int]]) -> float | None:
    """Least-squares slope of (seconds, kB) points, in MB a minute; None under two points."""
    if len(points) < 2:
        return None
    n = len(points)
    mt = sum(t for t, _ in points) / n
    mk = sum(k for _, k in points) / n
    var = sum((t - mt) ** 2 for t, _ in points)
    if var == 0:
        return None
    cov = sum((t - mt) * (k - mk) for t, k in points)
    return round(cov / var * 60 / 1024, 3)


def rows(log: RssLog, baseline_s: float) -> list[dict[str, Any]]:
    """`soak.growth`'s rows, each with its slope, the key processes first."""
    out = growth(log, baseline_s)
    for r in out:
        pts = [(t, s[r["pid"]]) for t, s in log.samples if t >= baseline_s and r["pid"] in s]
        r["slope_mb_per_min"] = slope_mb_per_min(pts)

    def rank(r: dict[str, Any]) -> tuple[int, str, int]:
        first = next((i for i, name in enumerate(KEY) if r["role"].startswith(name)), len(KEY))
        return first, r["role"], r["pid"]

    return sorted(out, key=rank)


def table(result: dict[str, Any]) -> str:
    lines = [
        f"# ray_rss, mode `{result['mode']}`",
        "",
        f"`{result['meta']['command']}` at {result['meta']['git']['head']}, Ray {result['ray']}; "
        f"{result['minutes']} min, start = first sample after {result['warmup_s']:.0f} s, "
        f"load average {result['meta']['loadavg_start'][0]:.1f} at the start, "
        f"{result['loadavg_end'][0]:.1f} at the end.",
        "",
    ]
    if result.get("env_extra"):
        lines += [f"Extra environment: `{' '.join(f'{k}={v}' for k, v in result['env_extra'].items())}`", ""]
    if result.get("calls"):
        lines += [f"Calls: {result['calls']}", ""]
    lines += ["| process | start MB | end MB | max MB | growth | MB/min (slope) |", "|---|---|---|---|---|---|"]
    for r in result["rows"]:
        pct = f"{r['growth_pct']:+.1f} %" if r["growth_pct"] is not None else r["note"]
        slope = f"{r['slope_mb_per_min']:+.3f}" if r["slope_mb_per_min"] is not None else "-"
        lines.append(f"| {r['program']} | {r['start_mb']} | {r['end_mb']} | {r['max_mb']} | {pct} | {slope} |")
    return "\n".join(lines) + "\n"


# ------------------------------------------------------------------------------ the deployments


async def every(period_s: float, call: Any) -> None:
    """`call()` every `period_s`, for ever (inside the actors and replicas below)."""
    while True:
        t0 = time.monotonic()
        try:
            await call()
        except Exception:  # a benchmark's loop: keep going, the counts tell
            pass
        await asyncio.sleep(max(0.0, period_s - (time.monotonic() - t0)))


def deploy(mode: str, poll_hz: float, report_hz: float) -> Any:
    """Run the mode's Serve application; the handle to ask for call counts (actors) or None."""
    from ray import serve

    @serve.deployment(num_replicas=1, ray_actor_options={"num_cpus": 0})
    class Echo:
        async def __call__(self, request: Any) -> str:
            return "ok"

    if mode in ("serve", "plain"):
        serve.run(Echo.bind(), name="rss", route_prefix="/")  # type: ignore[attr-defined]
        return plain_actors(poll_hz, report_hz) if mode == "plain" else None

    @serve.deployment(num_replicas=1, max_ongoing_requests=1000, ray_actor_options={"num_cpus": 0})
    class Board:
        def __init__(self) -> None:
            self.reads = 0
            self.reports = 0
            self.load = 0.0

        def read(self, who: str) -> dict[str, float]:
            self.reads += 1
            return {"load": self.load, "at": time.time()}

        def report(self, load: float) -> None:
            self.reports += 1
            self.load = load

        def counts(self) -> dict[str, int]:
            return {"reads": self.reads, "reports": self.reports}

    @serve.deployment(
        autoscaling_config={"min_replicas": 1, "max_replicas": 1, "target_ongoing_requests": 2},
        ray_actor_options={"num_cpus": 0},
    )
    class Reporter:
        def __init__(self, board: Any) -> None:
            self._task = asyncio.get_running_loop().create_task(every(1 / report_hz, lambda: board.report.remote(0.5)))

        def ping(self) -> str:
            return "ok"

    @serve.deployment(num_replicas=1, ray_actor_options={"num_cpus": 0})
    class Poller:
        def __init__(self, board: Any, reporter: Any) -> None:
            self._board = board
            self._task = asyncio.get_running_loop().create_task(every(1 / poll_hz, lambda: board.read.remote("p")))

        async def __call__(self, request: Any) -> dict[str, int]:
            counts: dict[str, int] = await self._board.counts.remote()
            return counts

    board = Board.bind()  # type: ignore[attr-defined]
    app = Poller.bind(board, Reporter.bind(board))  # type: ignore[attr-defined]
    serve.run(app, name="rss", route_prefix="/")
    return serve.get_app_handle("rss")


def plain_actors(poll_hz: float, report_hz: float) -> Any:
    """Two plain Ray actors (not Serve deployments, so every call is a task with task events): `Client` calls
    `Board.read` `poll_hz` times a second, `Board` calls `Client.ping` `report_hz` times a second. The board."""
    import ray

    @ray.remote(num_cpus=0)
    class Client:
        def __init__(self) -> None:
            self.pings = 0

        async def start(self, board: Any) -> None:
            self._task = asyncio.get_running_loop().create_task(every(1 / poll_hz, lambda: board.read.remote("c")))

        async def ping(self) -> None:
            self.pings += 1

        async def count(self) -> int:
            return self.pings

    @ray.remote(num_cpus=0)
    class Board:
        def __init__(self) -> None:
            self.reads = 0

        async def start(self, client: Any) -> None:
            self._client = client
            self._task = asyncio.get_running_loop().create_task(every(1 / report_hz, lambda: client.ping.remote()))

        async def read(self, who: str) -> dict[str, float]:
            self.reads += 1
            return {"load": 0.5, "at": time.time()}

        async def counts(self) -> dict[str, int]:
            return {"reads": self.reads, "reports": await self._client.count.remote()}

    client, board = Client.remote(), Board.remote()  # type: ignore[attr-defined]
    ray.get([client.start.remote(board), board.start.remote(client)])
    return board


# ------------------------------------------------------------------------------ the run


def run(args: argparse.Namespace) -> dict[str, Any]:
    settings = Settings(server=ServerSettings(port=free_port()))
    env = serve_env(settings) | dict(kv.split("=", 1) for kv in args.env)
    os.environ.update({k: v for k, v in env.items() if k not in _WORKERS_ONLY})
    meta = run_meta("benchmarks.ray_rss")
    temp = tempfile.mkdtemp(prefix="rr-", dir="/tmp")  # short: Ray's socket paths
    import ray

    log = RssLog()
    calls: dict[str, int] | None = None
    handle: Any = None
    t0 = time.monotonic()
    try:
        ray.init(
            num_cpus=2,
            include_dashboard=args.dashboard,
            log_to_driver=False,
            runtime_env={"env_vars": env},
            _temp_dir=temp,
        )
        if args.mode != "bare":
            from ray import serve

            serve.start(http_options={"host": "127.0.0.1", "port": free_port()})
            handle = deploy(args.mode, args.poll_hz, args.report_hz)
        t0 = time.monotonic()  # the clock starts once everything is up
        duration_s = args.minutes * 60
        next_at = 0.0
        while (now := time.monotonic() - t0) <= duration_s + 0.5:
            if now >= next_at:
                sample(log, os.getpid(), now)
                last = log.samples[-1][1]
                by = {log.who[p][1]: kb for p, kb in last.items()}
                gcs = next((kb for name, kb in by.items() if name.startswith("gcs_server")), 0)
                print(f"{now:6.0f} s  gcs_server {gcs / 1024:6.1f} MB  ({len(last)} processes)", flush=True)
                next_at += args.every_s
            time.sleep(max(0.0, min(1.0, next_at - (time.monotonic() - t0))))
        if args.mode == "actors":
            calls = handle.remote(None).result(timeout_s=60)
        elif args.mode == "plain":
            calls = ray.get(handle.counts.remote(), timeout=60)
    finally:
        try:
            if args.mode != "bare" and ray.is_initialized():
                from ray import serve

                serve.shutdown()  # type: ignore[no-untyped-call]
        finally:
            ray.shutdown()
            time.sleep(2)
            left = descendants(os.getpid())
            shutil.rmtree(temp, ignore_errors=True)
    return {
        "mode": args.mode,
        "minutes": args.minutes,
        "warmup_s": args.warmup_s,
        "every_s": args.every_s,
        "poll_hz": args.poll_hz if args.mode in ("actors", "plain") else None,
        "report_hz": args.report_hz if args.mode in ("actors", "plain") else None,
        "dashboard": args.dashboard,
        "env": env,
        "env_extra": dict(kv.split("=", 1) for kv in args.env),
        "calls": calls,
        "ray": ray.__version__,
        "meta": meta,
        "loadavg_end": os.getloadavg(),
        "leftover_processes": left,
        "rows": rows(log, args.warmup_s),
        "samples": [{"at_s": t, "kb": s} for t, s in log.samples],
        "who": {str(p): w for p, w in log.who.items()},
    }


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--minutes", type=float, default=12.0)
    p.add_argument("--mode", choices=MODES, default="bare")
    p.add_argument("--warmup-s", type=float, default=60.0)
    p.add_argument("--every-s", type=float, default=15.0)
    p.add_argument("--poll-hz", type=float, default=10.0, help="actors, plain: board reads a second")
    p.add_argument("--report-hz", type=float, default=1.0, help="actors, plain: calls the other way a second")
    p.add_argument("--dashboard", action="store_true", help="start Ray's dashboard (the product does not)")
    p.add_argument("--env", action="append", default=[], metavar="KEY=VALUE", help="one more Ray variable")
    args = p.parse_args(argv)
    if any("=" not in kv for kv in args.env):
        p.error("--env takes KEY=VALUE")
    result = run(args)
    text = table(result)
    print(text)
    tag = args.mode + "".join(f"-{kv.split('=', 1)[0].removeprefix('RAY_')}" for kv in args.env)
    tag += "-dashboard" if args.dashboard else ""
    path = save(f"ray-rss-{tag}", new_stamp(), result, text)
    print(f"saved {path} and .md", file=sys.stderr)
    if result["leftover_processes"]:
        print(f"left over after ray.shutdown: {result['leftover_processes']}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
