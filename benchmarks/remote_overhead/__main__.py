"""`python -m benchmarks.remote_overhead [--groups ...]`: run, print the report, save it under benchmarks/results/.

`python -m benchmarks.remote_overhead trivial-serve ...` is the trivial ingress's own process (the run starts it).
"""

from __future__ import annotations

import argparse
import signal
import sys

from benchmarks.harness import save, stamp
from benchmarks.remote_overhead import __doc__ as summary
from benchmarks.remote_overhead.groups import GROUPS
from benchmarks.remote_overhead.measure import Load, log


def parse_args(argv: list[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="benchmarks.remote_overhead", description=(summary or "").split("\n")[0])
    parser.add_argument(
        "--groups", nargs="+", choices=list(GROUPS), default=[name for name, g in GROUPS.items() if g.default]
    )
    parser.add_argument("--rounds", type=int, default=Load.rounds)
    parser.add_argument("--sequential", type=int, default=Load.sequential)
    parser.add_argument("--streams", type=int, default=Load.streams)
    parser.add_argument("--concurrency", type=int, default=Load.concurrency)
    parser.add_argument("--duration", type=float, default=Load.duration_s, help="seconds of each throughput phase")
    parser.add_argument(
        "--warm", type=float, default=Load.warm_s, help="seconds of unmeasured closed loop per target, per group"
    )
    parser.add_argument(
        "--long-streams",
        type=int,
        default=Load.long_tokens,
        metavar="TOKENS",
        help="also a closed loop of streamed answers this long per round (the fake answers filler words; 0: none)",
    )
    parser.add_argument(
        "--long-pace",
        type=float,
        default=Load.long_pace,
        metavar="TOKENS_PER_S",
        help="the long streams' tokens paced at this many a second each, a read each as a live model's (0: unpaced)",
    )
    parser.add_argument("--ready-timeout", type=float, default=240.0)
    parser.add_argument(
        "--no-profile",
        dest="profile",
        action="store_false",
        help="skip py-spy on the ingress replicas of --profile-group",
    )
    parser.add_argument("--profile-group", default="di", choices=list(GROUPS))
    args = parser.parse_args(argv)
    if args.long_pace and not args.long_streams:
        parser.error("--long-pace paces the long streams: give --long-streams too")
    if not 0 <= args.long_pace < float("inf"):
        parser.error("--long-pace must be a number of tokens a second, >= 0")
    return args


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    if argv[:1] == ["trivial-serve"]:
        from benchmarks.remote_overhead.trivial import serve_trivial

        return serve_trivial(argv[1:])
    args = parse_args(argv)

    def terminate(*_: object) -> None:
        raise KeyboardInterrupt  # unwinds through every `finally`, which stops the servers

    signal.signal(signal.SIGTERM, terminate)
    from benchmarks.remote_overhead.report import report
    from benchmarks.remote_overhead.run import run

    run_stamp = stamp()
    result = run(args, run_stamp)
    text = report(result)
    path = save("remote_overhead", run_stamp, result, text)
    print(text)
    log(f"saved {path} and {path.with_suffix('.md')}")
    return 0 if not result["errors"] else 1


if __name__ == "__main__":
    raise SystemExit(main())
