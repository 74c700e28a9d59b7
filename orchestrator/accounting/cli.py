"""The ledger's commands: `orchestrator report` and `orchestrator hash-key`.

`report` reads the usage database directly (`ledger.path`; sqlite allows
readers beside the running gateway's owner), so it works with or without
the endpoint running. `hash-key` makes a virtual key and prints the YAML to
put under `keys:` (the key itself is printed once, to the terminal, and
stored nowhere).
"""

from __future__ import annotations

import argparse
import json
import math
import re
import sqlite3
import sys
import time
from datetime import UTC, datetime

from orchestrator.accounting.keys import hash_key, new_key
from orchestrator.accounting.reports import render, usage_report
from orchestrator.settings import Settings

_UNITS = {"m": 60, "h": 3600, "d": 86400, "w": 7 * 86400}
KEY_ID = re.compile(r"^[A-Za-z0-9_.:-]{1,64}$")  # as the admin API takes them


def when(text: str) -> str:
    """`--since`/`--until` checked when the command line is read: a usage error, not a traceback later."""
    parse_when(text, time.time())
    return text


def key_id(text: str) -> str:
    if not KEY_ID.match(text):
        raise argparse.ArgumentTypeError("1 to 64 letters, digits or _ . : - (it goes under keys: in the config)")
    return text


def add_arguments(report: argparse.ArgumentParser, hash_cmd: argparse.ArgumentParser) -> None:
    report.add_argument(
        "--since", type=when, help="how long ago (90m, 24h, 7d, 4w), a date (2026-11-30, UTC), or a Unix time"
    )
    report.add_argument("--until", type=when, help="same forms as --since (default: now)")
    report.add_argument("--json", action="store_true", help="print the report as JSON")
    hash_cmd.add_argument(
        "id", nargs="?", default="my-team", type=key_id, help="the key's id (what logs and reports show)"
    )
    hash_cmd.add_argument("--stdin", action="store_true", help="hash a key read from stdin instead of making one")


def parse_when(text: str | None, now: float) -> float | None:
    """A time from how long ago it was, an ISO date or date-time (UTC unless it says), or a Unix time;
    `argparse.ArgumentTypeError` for anything else."""
    if text is None:
        return None
    try:
        unit = _UNITS.get(text[-1:])
        value = now - float(text[:-1]) * unit if unit is not None else float(text)
    except ValueError:
        try:
            at = datetime.fromisoformat(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"{text!r}: not 90m/24h/7d/4w, a date or a Unix time") from None
        return (at if at.tzinfo else at.replace(tzinfo=UTC)).timestamp()
    if not math.isfinite(value):
        raise argparse.ArgumentTypeError(f"{text!r}: not a time")
    return value


def report(settings: Settings, args: argparse.Namespace) -> int:
    path = settings.ledger.path or settings.data_dir / "ledger.sqlite"
    if not path.is_file():
        print(f"no usage recorded yet ({path} does not exist)", file=sys.stderr)
        return 1
    now = time.time()
    db = sqlite3.connect(f"file:{path}?mode=ro", uri=True)
    try:
        data = usage_report(
            db,
            since=parse_when(args.since, now),
            until=parse_when(args.until, now),
            reference_model=settings.ledger.reference_model,
        )
    except sqlite3.DatabaseError as e:
        print(f"{path} is not a usage ledger this version reads ({e})", file=sys.stderr)
        return 1
    finally:
        db.close()
    print(json.dumps(data, indent=2) if args.json else render(data))
    return 0


def hash_cmd(args: argparse.Namespace) -> int:
    key = sys.stdin.readline().strip() if args.stdin else new_key()
    if not key:
        print("no key on stdin", file=sys.stderr)
        return 1
    if not args.stdin:
        print(f"key (shown once; give it to the client): {key}", file=sys.stderr)
    print(f"keys:\n  {args.id}:\n    sha256: {hash_key(key)}\n    # budget_usd: 10\n    # period: month")
    return 0
