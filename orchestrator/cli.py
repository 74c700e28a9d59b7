"""`orchestrator`: the command line.

orchestrator serve   [--config FILE]   run the endpoint in the foreground
orchestrator prepare [--config FILE]   prepare the configured models and exit
orchestrator report  [--config FILE] [--since 24h] [--json]   usage, spend and savings
orchestrator hash-key [ID] [--stdin]   make a virtual key; print its sha256 for config
orchestrator import-litellm PATH [-o OUT]   a LiteLLM proxy config as ours (what can't map: stderr)
orchestrator build-config [--config FILE] [--rayservice] [-o OUT]   a Serve config file (or a KubeRay RayService)
"""

from __future__ import annotations

import argparse
import os
import signal
import sys
import threading
from pathlib import Path

import yaml
from pydantic import ValidationError

from orchestrator.accounting import cli as ledger_cli
from orchestrator.settings import DEFAULT_CONFIG, UnknownNames, load_settings


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="orchestrator")
    sub = parser.add_subparsers(dest="command", required=True)
    for name, text in (
        ("serve", "run the endpoint in the foreground"),
        ("prepare", "prepare the configured models and exit"),
    ):
        p = sub.add_parser(name, help=text)
        p.add_argument("--config", type=Path, default=DEFAULT_CONFIG, help=f"YAML config (default: {DEFAULT_CONFIG})")
        if name == "serve":
            p.add_argument("--verbose", action="store_true", help="show the replicas' and engines' logs here too")
    report = sub.add_parser("report", help="usage, spend and savings by key, model, provider and route")
    report.add_argument("--config", type=Path, default=DEFAULT_CONFIG, help=f"YAML config (default: {DEFAULT_CONFIG})")
    hash_cmd = sub.add_parser("hash-key", help="make a virtual key and print its sha256 for config")
    ledger_cli.add_arguments(report, hash_cmd)
    imp = sub.add_parser("import-litellm", help="turn a LiteLLM proxy config.yaml into this project's config")
    imp.add_argument("path", type=Path, help="the LiteLLM config.yaml")
    imp.add_argument("-o", "--output", type=Path, default=None, help="write the config here (default: stdout)")
    build = sub.add_parser("build-config", help="a Ray Serve config file for serve run/deploy, or a KubeRay RayService")
    build.add_argument("--config", type=Path, default=DEFAULT_CONFIG, help=f"YAML config (default: {DEFAULT_CONFIG})")
    build.add_argument("--rayservice", action="store_true", help="a KubeRay RayService manifest embedding it")
    build.add_argument("-o", "--output", type=Path, default=None, help="write it here (default: stdout)")
    args = parser.parse_args(argv)
    if args.command == "hash-key":
        return ledger_cli.hash_cmd(args)
    if args.command == "import-litellm":
        return import_litellm(args.path, args.output)
    try:
        settings = load_settings(args.config)
    except (OSError, UnicodeDecodeError, yaml.YAMLError, ValidationError, UnknownNames) as exc:
        print(f"orchestrator {args.command}: {config_error(args.config, exc)}", file=sys.stderr)
        return 2
    if args.command == "build-config":
        from orchestrator.deploy import build_config

        return build_config(settings, kube=args.rayservice, output=args.output)
    if args.command == "report":
        return ledger_cli.report(settings, args)

    from orchestrator import runtime

    if args.command == "serve":
        try:  # at once, not after the models are prepared and Ray is up
            runtime.check_ports(settings)
        except runtime.PortUnavailable as exc:
            print(f"orchestrator serve: {exc}", file=sys.stderr)
            return 2
    runtime.prepare_models(settings)
    if args.command == "prepare":
        return 0
    from orchestrator.providers.factory import availability

    lines = availability(settings.providers, os.environ)
    for line in lines:
        print(line, file=sys.stderr)
    print("Starting Ray Serve and the local models (a few minutes on CPU)...", file=sys.stderr, flush=True)

    stopping = threading.Event()
    signal.signal(signal.SIGTERM, _interrupt)  # as Ctrl-C while starting: not after minutes of start-up
    try:
        runtime.start(settings, verbose=args.verbose)  # Ctrl-C or SIGTERM here: KeyboardInterrupt; finally cleans up
        for sig in (signal.SIGINT, signal.SIGTERM):
            signal.signal(sig, lambda *_: stopping.set())
        base = f"http://{settings.server.host}:{settings.server.port}/v1"
        problem, models = health_problem(base), runtime.served_models()
        text = ready_text(base, models, lines, verbose=args.verbose, problem=problem)
        print("\n" + text + "\n", file=sys.stderr, flush=True)
        stopping.wait()
    finally:
        signal.signal(signal.SIGTERM, lambda *_: stopping.set())  # another one can't cut the clean-up short
        print("Stopping...", file=sys.stderr, flush=True)
        runtime.stop()
    return 0


def _interrupt(*_: object) -> None:
    raise KeyboardInterrupt


def config_error(path: Path, exc: Exception) -> str:
    """What is wrong with the configuration, for a person: each invalid setting by its dotted name (an
    environment variable `ORCH_A__B` is setting `a.b`), never its value (it may be a secret)."""
    if isinstance(exc, ValidationError):
        lines = []
        for err in exc.errors():
            where = ".".join(str(part) for part in err["loc"]) or "(the file)"
            why = "not a setting (a typo, or one of another version?)" if err["type"] == "extra_forbidden" else None
            lines.append(f"  {where}: {why or err['msg'].removeprefix('Value error, ')}")
        return f"invalid configuration ({path} and ORCH_* variables):\n" + "\n".join(lines)
    if isinstance(exc, UnknownNames):
        return f"invalid configuration ({path} and ORCH_* variables):\n" + "\n".join(f"  {p}" for p in exc.problems)
    if isinstance(exc, yaml.YAMLError):
        return f"{path} is not valid YAML: {exc}"
    if isinstance(exc, UnicodeDecodeError):
        return f"{path} is not UTF-8 text (byte {exc.start})"
    return str(exc)


def health_problem(base: str, timeout_s: float = 10.0) -> str | None:
    """Why the endpoint at `base` (its `/v1` URL) doesn't answer `GET /health` (which takes no key) with a 200;
    None when it does."""
    import httpx

    url = base.removesuffix("/v1") + "/health"
    try:
        r = httpx.get(url, timeout=timeout_s)
    except httpx.HTTPError as e:
        return f"GET {url}: {type(e).__name__}: {e}"
    return None if r.status_code == 200 else f"GET {url}: HTTP {r.status_code}"


def ready_text(
    base: str, models: list[str] | None, availability: list[str], *, verbose: bool, problem: str | None = None
) -> str:
    """The ready line: where the endpoint is (or why it doesn't answer there: `problem`), what it serves,
    which providers it can spill to."""
    available = [line.split()[1].rstrip(":") for line in availability if ": available" in line]
    served = ", ".join(models) if models is not None else "unknown (no Gateway said; GET /v1/models with a key)"
    providers = ", ".join(available) if available else "none (set a provider's API key variable to spill)"
    logs = "" if verbose else "; engine logs: Ray's session logs (--verbose shows them here)"
    head = f"Ready: {base}" if problem is None else f"Started, but {base} does not answer ({problem})"
    return f"{head} (Ctrl-C stops)\n  models: {served}\n  remote providers: {providers}{logs}"


def import_litellm(path: Path, output: Path | None) -> int:
    """Print (or write) the converted config; the notes go to stderr. 2: the file can't be read."""
    import yaml

    from orchestrator import litellm_import

    try:
        text = path.read_text(encoding="utf-8")
        settings, notes = litellm_import.convert(yaml.safe_load(text))
        lines = litellm_import.key_lines(text)
    except (OSError, UnicodeDecodeError, yaml.YAMLError, ValueError, RecursionError) as exc:
        # The reason never quotes the file (a config may hold keys): no YAML snippet, only a line.
        if isinstance(exc, OSError):
            reason = exc.strerror or type(exc).__name__
        elif isinstance(exc, yaml.MarkedYAMLError) and exc.problem_mark is not None:
            reason = f"invalid YAML at line {exc.problem_mark.line + 1}"
        elif isinstance(exc, yaml.YAMLError | UnicodeDecodeError):
            reason = "invalid YAML" if isinstance(exc, yaml.YAMLError) else "not UTF-8 text"
        elif isinstance(exc, RecursionError):
            reason = "nested too deeply, or an alias that contains itself"
        else:
            reason = str(exc)
        print(f"orchestrator import-litellm: cannot import {path}: {reason}", file=sys.stderr)
        return 2
    body = litellm_import.render(settings, path.name)
    if output is None:
        sys.stdout.write(body)
    else:
        try:
            output.write_text(body, encoding="utf-8")
        except OSError as exc:
            print(f"orchestrator import-litellm: cannot write {output}: {exc.strerror or exc}", file=sys.stderr)
            return 2
        print(f"wrote {output}", file=sys.stderr)
    for note in notes:
        print(note.render(lines), file=sys.stderr)
    print(f"{len(notes)} note(s): what the lines above name was not mapped as is.", file=sys.stderr)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
