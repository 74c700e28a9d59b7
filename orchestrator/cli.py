"""`orchestrator`: the command line.

orchestrator serve   [--config FILE]   run the endpoint in the foreground
orchestrator prepare [--config FILE]   prepare the configured models and exit
"""

from __future__ import annotations

import argparse
import os
import signal
import sys
import threading
from pathlib import Path

from orchestrator.settings import DEFAULT_CONFIG, load_settings


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="orchestrator")
    sub = parser.add_subparsers(dest="command", required=True)
    for name, text in (
        ("serve", "run the endpoint in the foreground"),
        ("prepare", "prepare the configured models and exit"),
    ):
        p = sub.add_parser(name, help=text)
        p.add_argument("--config", type=Path, default=DEFAULT_CONFIG, help=f"YAML config (default: {DEFAULT_CONFIG})")
    args = parser.parse_args(argv)
    settings = load_settings(args.config)

    from orchestrator import runtime

    runtime.prepare_models(settings)
    if args.command == "prepare":
        return 0
    from orchestrator.providers.factory import availability

    for line in availability(settings.providers, os.environ):
        print(line, file=sys.stderr)

    stopping = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stopping.set())
    try:
        runtime.start(settings)  # Ctrl-C here raises KeyboardInterrupt; finally cleans up
        signal.signal(signal.SIGINT, lambda *_: stopping.set())
        base = f"http://{settings.server.host}:{settings.server.port}/v1"
        print(f"\nReady: OpenAI-compatible endpoint at {base} (Ctrl-C stops)\n", file=sys.stderr, flush=True)
        stopping.wait()
    finally:
        print("Stopping...", file=sys.stderr, flush=True)
        runtime.stop()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
