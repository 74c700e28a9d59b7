"""Portkey's open-source gateway (`@portkey-ai/gateway` from npm, one Node process) as a peer target.

Installed, pinned, with npm into `benchmarks/out/<build>/` by the benchmark itself when missing (never a project
dependency), and started with `node .../build/start-server.js --port=N --headless` (the Docker image's
command, without the web console; its server takes a port but no host: `loopback.cjs`, preloaded, binds it to
127.0.0.1). Each request names the upstream in Portkey's own
headers: `x-portkey-provider: openai` and `x-portkey-custom-host: <fake>/v1` (the custom host replaces OpenAI's
base URL, `/v1` included; loopback hosts are on its default trusted list), and the fake's key goes through as
`Authorization`.

Two builds of the same release, side by side:

- **portkey**: what `npm install @portkey-ai/gateway@1.15.2` resolves: its server adapter (`hono`,
  `@hono/node-server`, declared `^4.9.7` and `^1.3.3`) at the newest versions, pinned here to those of
  2026-11-30. Its streams fail: on an OpenAI-compatible upstream Portkey wraps the upstream's `fetch` Response in
  `new Response(stream, upstreamResponse)`, and @hono/node-server 1.19's `Response` keeps the upstream's
  immutable headers, so adding its own headers throws `TypeError: immutable` and the client gets a 500
  ("Something went wrong"). Nothing about the fake is involved;
- **portkey_lock**: the same release with its repository's `package-lock.json` versions of those two (hono
  4.9.7, @hono/node-server 1.13.5), which its Docker image installs; its streams work.

Portkey waits 25 ms before relaying a stream's first event (`src/handlers/streamHandler.ts`, `isFirstChunk`), so
its first-chunk latency carries that on purpose.
"""

from __future__ import annotations

import json
import shutil
import subprocess
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from benchmarks.harness import OUT, Server, child_env

PORTKEY_VERSION = "1.15.2"
_PACKAGE = "@portkey-ai/gateway"
_ENTRY = f"node_modules/{_PACKAGE}/build/start-server.js"
_LOOPBACK = Path(__file__).with_name("loopback.cjs")


@dataclass(frozen=True)
class PortkeyBuild:
    """One install of Portkey's gateway: the target's key, and the versions its server adapter is pinned to."""

    key: str
    label: str
    adapter: dict[str, str]  # package -> version, forced with npm `overrides`

    @property
    def directory(self) -> Path:
        return OUT / self.key


BUILDS = (
    PortkeyBuild(
        "portkey",
        f"Portkey gateway {PORTKEY_VERSION} (node; hono as npm resolves it)",
        {"hono": "4.13.19", "@hono/node-server": "1.19.19"},
    ),
    PortkeyBuild(
        "portkey_lock",
        f"Portkey gateway {PORTKEY_VERSION} (node; its lockfile's hono)",
        {"hono": "4.9.7", "@hono/node-server": "1.13.5"},
    ),
)


def portkey_headers(fake_url: str) -> dict[str, str]:
    """What every request to Portkey carries (with the usual `Authorization`): which provider, and where it is."""
    return {"x-portkey-provider": "openai", "x-portkey-custom-host": f"{fake_url.rstrip('/')}/v1"}


def _installed(directory: Path, package: str) -> str | None:
    try:
        return str(json.loads((directory / "node_modules" / package / "package.json").read_text())["version"])
    except (OSError, ValueError, KeyError):
        return None


def ensure_portkey(build: PortkeyBuild, log: Callable[[str], None]) -> str:
    """`build` installed in its directory (created, or reused when the pinned versions are there); its versions,
    as one string for the results."""
    wanted = {_PACKAGE: PORTKEY_VERSION, **build.adapter}
    if any(_installed(build.directory, p) != v for p, v in wanted.items()):
        npm = shutil.which("npm")
        if npm is None or shutil.which("node") is None:
            raise RuntimeError("node and npm are needed for Portkey's gateway")
        log(f"installing {_PACKAGE}@{PORTKEY_VERSION} into {build.directory} (seconds, once)")
        build.directory.mkdir(parents=True, exist_ok=True)
        manifest = {"private": True, "dependencies": {_PACKAGE: PORTKEY_VERSION}, "overrides": build.adapter}
        (build.directory / "package.json").write_text(json.dumps(manifest, indent=1) + "\n")
        (build.directory / "package-lock.json").unlink(missing_ok=True)
        # --ignore-scripts: its one install script is patch-package, with no patches in the published package.
        subprocess.run(
            [npm, "install", "--prefix", str(build.directory), "--ignore-scripts", "--no-audit", "--no-fund"],
            check=True,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
        )
        missed = {p: _installed(build.directory, p) for p, v in wanted.items() if _installed(build.directory, p) != v}
        if missed:
            raise RuntimeError(f"npm installed {missed}, not {wanted}")
    return " + ".join(f"{p} {v}" for p, v in wanted.items())


def node_version() -> str | None:
    node = shutil.which("node")
    return subprocess.run([node, "--version"], capture_output=True, text=True).stdout.strip() if node else None


def portkey_server(build: PortkeyBuild, port: int, logs: Path, data_dir: Path) -> Server:
    node = shutil.which("node") or "node"
    env = child_env(data_dir, NODE_OPTIONS=f"--require {_LOOPBACK}")
    # --headless: no web console (its routes only; the per-request log middleware runs either way). The entry
    # path is relative, so that the process's command line names the package within the 160 characters kept.
    argv = [node, _ENTRY, f"--port={port}", "--headless"]
    return Server(build.key, argv, env=env, log_path=logs / f"{build.key}.log", cwd=build.directory)


def error_lines(log_text: str, limit: int = 5) -> list[str]:
    """The distinct lines of a server's log that report an error (what Portkey prints when a request fails; the
    client sees only its 500), first `limit`, spinner frames and terminal codes left out."""
    seen: list[str] = []
    for raw in log_text.replace("\r", "\n").splitlines():
        line = raw.strip()
        if "error" in line.lower() and line not in seen:
            seen.append(line[:300])
            if len(seen) == limit:
                break
    return seen
