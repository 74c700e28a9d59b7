"""Where results go and what each records: the command, when, the commit, the machine.

Each run saves `benchmarks/results/<name>-<YYYYmmdd-HHMMSS>.json` (and `.md` where it prints a report); logs,
plots in progress and the LiteLLM virtualenv go to `benchmarks/out/` (not committed).
"""

from __future__ import annotations

import datetime
import importlib.metadata
import json
import os
import platform
import subprocess
import sys
from collections.abc import Iterable
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[2]
RESULTS = ROOT / "benchmarks" / "results"
OUT = ROOT / "benchmarks" / "out"
LOGS = OUT / "logs"


def stamp() -> str:
    return datetime.datetime.now().strftime("%Y%m%d-%H%M%S")


def versions(dists: Iterable[str]) -> dict[str, str | None]:
    out: dict[str, str | None] = {}
    for d in dists:
        try:
            out[d] = importlib.metadata.version(d)
        except importlib.metadata.PackageNotFoundError:
            out[d] = None
    return out


def git_state() -> dict[str, Any]:
    """The commit measured, and how many package files differed from it (others may edit concurrently)."""

    def git(*argv: str) -> str:
        try:
            return subprocess.run(["git", *argv], cwd=ROOT, capture_output=True, text=True, timeout=10).stdout.strip()
        except (OSError, subprocess.SubprocessError):
            return ""

    dirty = git("status", "--porcelain", "--", "orchestrator", "local_models", "config")
    return {"head": git("rev-parse", "--short", "HEAD"), "dirty_package_files": len(dirty.splitlines())}


def cpu_model() -> str:
    """The CPU's model name and its widest vector units (a model's prefill speed on the CPU follows them,
    and two hosts "of the same kind" may differ there: benchmarks/README.md, "Simulator")."""
    try:
        info = Path("/proc/cpuinfo").read_text()
    except OSError:
        return platform.processor()
    model = next((line.split(":", 1)[1].strip() for line in info.splitlines() if line.startswith("model name")), "")
    flags = next((line.split(":", 1)[1].split() for line in info.splitlines() if line.startswith("flags")), [])
    wide = [f for f in ("avx2", "avx512f", "avx512_bf16", "avx512_vnni", "amx_bf16") if f in flags]
    return f"{model} ({' '.join(wide) or 'no avx2'})"


def run_meta(module: str) -> dict[str, Any]:
    """What every result records: the command, when, at which commit, on what machine."""
    exe = Path(sys.executable)
    python = str(exe.relative_to(ROOT)) if exe.is_relative_to(ROOT) else exe.name
    return {
        "command": " ".join([python, "-m", module, *sys.argv[1:]]),
        "started": datetime.datetime.now().isoformat(timespec="seconds"),
        "git": git_state(),
        "machine": {
            "cpus": os.cpu_count(),
            "cpu": cpu_model(),
            "platform": platform.platform(),
            "python": platform.python_version(),
        },
        "loadavg_start": os.getloadavg(),
    }


def save(name: str, run_stamp: str, result: dict[str, Any], text: str | None = None) -> Path:
    """`benchmarks/results/<name>-<stamp>.json` (and `.md` with `text`); the JSON's path."""
    RESULTS.mkdir(parents=True, exist_ok=True)
    path = RESULTS / f"{name}-{run_stamp}.json"
    path.write_text(json.dumps(result, indent=1, default=str) + "\n")
    if text is not None:
        path.with_suffix(".md").write_text(text)
    return path
