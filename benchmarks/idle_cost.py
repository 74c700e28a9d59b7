"""`python -m benchmarks.idle_cost`: what the deployment spends while nobody asks it anything.

Starts `orchestrator serve` on the default configuration (Ray Serve, the local SmolLM2 and the
embedder on vLLM's CPU build, the load board, the ledger; its port free, its data under
`.data/bench`), waits until it answers and then `--settle-s` more (the engines' stats windows run
empty), and reads the CPU time of every process of the server's session over `--seconds` with no
request at all. Prints and saves the CPU per role, as a share of one core
(`benchmarks/results/idle_cost-<stamp>.json`). Compare checkouts by running it from each
(`benchmarks/README.md`); one machine, one sitting: a fixed cost, so its figures are the ratio's
two sides, not absolutes.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

from benchmarks.harness import LOGS, ROOT, Server, child_env, cpu_delta, free_port, role, run_meta, save, stamp


def _role(cmd: str) -> str:
    """Each Serve deployment's replicas by name (the load board, the embedder: the harness lumps them)."""
    if "ServeReplica:" in cmd:
        return cmd.split("ServeReplica:", 1)[1].split()[0].rsplit(":", 1)[-1] + " replica"
    return role(cmd)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--seconds", type=float, default=30.0, help="how long to measure")
    p.add_argument("--settle-s", type=float, default=15.0, help="idle time after ready before measuring")
    p.add_argument("--ready-timeout", type=float, default=600.0)
    p.add_argument("--data-dir", default=str(ROOT / ".data" / "bench"))
    args = p.parse_args()
    import yaml

    from orchestrator.settings import DEFAULT_CONFIG

    data_dir = Path(args.data_dir).resolve()
    port = free_port()
    config = yaml.safe_load(DEFAULT_CONFIG.read_text())
    config["server"]["host"], config["server"]["port"] = "127.0.0.1", port
    config["data_dir"] = str(data_dir)
    with tempfile.TemporaryDirectory(prefix="idle-", dir="/tmp") as tmp:
        path = Path(tmp) / "config.yaml"
        path.write_text(yaml.safe_dump(config, sort_keys=False))
        ray_tmp = Path(tmp) / "r"  # short: Ray's socket paths below it must stay < 108 bytes
        ray_tmp.mkdir()
        argv = [sys.executable, "-m", "orchestrator.cli", "serve", "--config", str(path)]
        server = Server("ours", argv, env=child_env(data_dir, RAY_TMPDIR=str(ray_tmp)), log_path=LOGS / "idle.log")
        server.start()
        try:
            ready_s = server.wait_ready(f"http://127.0.0.1:{port}", "auto", args.ready_timeout)
            print(f"ready in {ready_s:.0f} s; idle for {args.settle_s:.0f} s, then measuring {args.seconds:.0f} s")
            time.sleep(args.settle_s)
            before, t0 = server.cpu(_role), time.perf_counter()
            time.sleep(args.seconds)
            after, wall = server.cpu(_role), time.perf_counter() - t0
        finally:
            server.stop()
    spent = {name: s / wall for name, s in sorted(cpu_delta(before, after).items(), key=lambda kv: -kv[1])}
    total = sum(spent.values())
    for name, share in spent.items():
        if share >= 0.001:
            print(f"{100 * share:6.1f} %  {name}")
    print(f"{100 * total:6.1f} %  of one core in all, idle ({wall:.0f} s)")
    result = {**run_meta("benchmarks.idle_cost"), "args": vars(args), "wall_s": wall, "cores": spent, "total": total}
    print(save("idle_cost", stamp(), result))


if __name__ == "__main__":
    main()
