"""One run: the fake and the peers (LiteLLM, Portkey) once, then each group's Ray-hosted targets started, awaited,
measured, stopped."""

from __future__ import annotations

import argparse
import asyncio
import os
import shutil
import subprocess
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from benchmarks.harness import LOGS, Server, free_port, free_port_ranges, run_meta, stop_all, versions
from benchmarks.harness.progress import bar
from benchmarks.remote_overhead.bodies import MAX_TOKENS, MODEL
from benchmarks.remote_overhead.groups import GROUPS, SETTINGS, RaySetting
from benchmarks.remote_overhead.measure import Load, log, measure_group, server_url
from benchmarks.remote_overhead.portkey import (
    BUILDS,
    ensure_portkey,
    error_lines,
    node_version,
    portkey_headers,
    portkey_server,
)
from benchmarks.remote_overhead.profile import profile_replica
from benchmarks.remote_overhead.targets import (
    Target,
    direct_ingress_port,
    ensure_litellm,
    fake_server,
    litellm_server,
    ours_server,
    trivial_server,
    wait_answering,
)


@dataclass
class Bench:
    """What every group of one run shares: the fake, the peers, where logs and scratch go, the figures so far."""

    args: argparse.Namespace
    load: Load
    logs: Path
    tmp: Path
    data_dir: Path
    result: dict[str, Any]
    fake: Server
    peers: list[Target]  # LiteLLM's proxy and Portkey's builds: started once, measured in every group with peers
    peers_ready: bool = False
    servers: list[Server] = field(default_factory=list)  # the fake and the peers, stopped at the very end


def _launch(bench: Bench, name: str, kind: str, setting: RaySetting, di_ports: range, into: list[Server]) -> Target:
    """Start one Ray-hosted target (it is stopped with its group, whatever happens)."""
    # Behind HAProxy ours' Gateways take the ports after server.port: the start of a free range.
    port = di_ports.start if setting.haproxy else free_port()
    make = trivial_server if kind == "trivial" else ours_server
    server, ray_tmp = make(name, setting, port, server_url(bench.fake), bench.logs, bench.tmp, di_ports, bench.data_dir)
    into.append(server)
    server.start()
    return Target(f"{kind}@{setting.name}", kind, setting, server, f"http://127.0.0.1:{port}", ray_tmp, di_ports)


def _ready(bench: Bench, group: str, targets: list[Target], into: list[Server]) -> None:
    """Wait until every target answers (one more try for one that exits: Ray's start-up can time out on a loaded
    machine); point direct-ingress targets at their replica's own port."""
    for i, t in enumerate(targets):
        if t.setting is None:
            continue
        assert t.server is not None and t.di_ports is not None
        try:
            wait_answering(t.server, t.base_url, bench.args.ready_timeout)
        except RuntimeError as e:
            kept = _keep_serve_logs(t, bench.logs)
            log(f"{t.server.name} failed to start ({str(e).splitlines()[0]}; Serve's logs: {kept}); one more try")
            targets[i] = t = _launch(bench, f"{t.server.name}-retry", t.kind, t.setting, t.di_ports, into)
            assert t.server is not None
            wait_answering(t.server, t.base_url, bench.args.ready_timeout)
        if t.setting.direct_ingress and not t.setting.haproxy:  # behind HAProxy: measured at server.port
            proxy_url = t.base_url
            t.base_url = f"http://127.0.0.1:{direct_ingress_port(t.server, prefer=int(proxy_url.rsplit(':', 1)[1]))}"
            found = bench.result["meta"].setdefault("direct_ingress", {})
            found[f"{group}/{t.key}"] = {"server_port": proxy_url, "replica": t.base_url}


def _keep_serve_logs(t: Target, logs: Path) -> Path | None:
    """A failed start's Serve logs (the replicas' own, which say why), kept beside the run's logs: its Ray
    directory goes with the run's scratch."""
    found = sorted(t.ray_tmp.glob("ray/session_*/logs/serve")) if t.ray_tmp is not None else []
    if not found:
        return None
    assert t.server is not None
    into = logs / f"{t.server.name}-serve-logs"
    shutil.copytree(found[-1], into, dirs_exist_ok=True)
    return into


def _await_peers(bench: Bench) -> None:
    """Once: wait until each peer answers; one that doesn't is reported and left out of the run."""
    if bench.peers_ready:
        return
    for peer in list(bench.peers):
        assert peer.server is not None
        try:
            wait_answering(peer.server, peer.base_url, bench.args.ready_timeout, peer.headers)
        except (RuntimeError, TimeoutError) as e:
            bench.result["errors"][peer.key] = f"{type(e).__name__}: {e}"
            log(f"{peer.key} left out: {str(e).splitlines()[0]}")
            bench.peers.remove(peer)
    bench.peers_ready = True


def _run_group(bench: Bench, group: str) -> None:
    members = GROUPS[group].members
    log(f"group {group}: starting {', '.join(f'{k}@{s}' for k, s in members)}")
    t0 = time.perf_counter()
    hosted: list[Target] = []
    group_servers: list[Server] = []
    try:
        for (kind, setting), di_ports in zip(members, free_port_ranges(8, len(members)), strict=True):
            name = f"{group}-{kind}-{setting}"
            hosted.append(_launch(bench, name, kind, SETTINGS[setting], di_ports, group_servers))
        peers: list[Target] = []
        if GROUPS[group].peers:
            _await_peers(bench)
            peers = bench.peers
        targets = [Target("direct", "direct", None, None, server_url(bench.fake)), *peers, *hosted]
        _ready(bench, group, targets, group_servers)
        log(f"group {group}: ready in {time.perf_counter() - t0:.0f} s; measuring")
        _measure(bench, group, targets)
    except Exception as e:  # one group failing must not lose the others' figures
        bench.result["errors"][group] = f"{type(e).__name__}: {e}"
        log(f"group {group} FAILED: {e}")
    finally:
        stop_all(group_servers, bench.result["servers"])
        log(f"group {group}: done in {time.perf_counter() - t0:.0f} s")


def _measure(bench: Bench, group: str, targets: list[Target]) -> None:
    la0 = os.getloadavg()
    figures = asyncio.run(measure_group(targets, bench.load, bench.fake))
    bench.result["groups"][group] = {
        "targets": {k: f.summary() for k, f in figures.items()},
        "loadavg_before": la0,
        "loadavg_after": os.getloadavg(),
        "ready_s": {t.key: t.server.ready_s for t in targets if t.server is not None},
    }
    if bench.args.profile and group == bench.args.profile_group:
        for t in targets:
            if t.kind in ("trivial", "ours"):
                log(f"profiling {t.key}")
                bench.result.setdefault("profiles", {})[t.key] = profile_replica(t, bench.load, bench.logs, 8.0)


def run(args: argparse.Namespace, stamp: str) -> dict[str, Any]:
    load = Load(
        args.rounds,
        args.sequential,
        args.streams,
        args.concurrency,
        args.duration,
        warm_s=args.warm,
        long_tokens=args.long_streams,
        long_pace=args.long_pace,
    )
    logs = LOGS / f"remote-{stamp}"
    logs.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix="rob-", dir="/tmp"))  # short: Ray's socket paths must stay < 108 chars
    from orchestrator.settings import load_settings

    data_dir = load_settings().data_dir
    t_run = time.perf_counter()
    result: dict[str, Any] = {"meta": meta(load, logs, args), "groups": {}, "servers": {}, "errors": {}}
    result["meta"]["versions"]["litellm"] = ensure_litellm(log)
    fake = fake_server(free_port(), logs, data_dir, reply_tokens=args.long_streams or None)
    lite = litellm_server(free_port(), server_url(fake), logs, tmp, data_dir)
    peers = [
        Target("litellm", "litellm", None, lite, server_url(lite)),
        *_portkey_peers(result, server_url(fake), logs, data_dir),
    ]
    bench = Bench(args, load, logs, tmp, data_dir, result, fake, peers)
    try:
        bench.servers.append(fake.start())
        wait_answering(fake, server_url(fake), 30)
        for peer in peers:
            assert peer.server is not None
            bench.servers.append(peer.server.start())
        with bar(len(args.groups), "groups", unit="group") as progress:
            for group in args.groups:
                _run_group(bench, group)
                progress.update(1)
    finally:
        stop_all(bench.servers, result["servers"])
        shutil.rmtree(tmp, ignore_errors=True)
    result["server_log_errors"] = {
        p.key: error_lines(p.server.log_path.read_text(errors="replace"))
        for p in peers
        if p.server is not None and p.server.log_path.exists()
    }
    result["meta"]["total_s"] = round(time.perf_counter() - t_run, 1)
    result["meta"]["loadavg_end"] = os.getloadavg()
    return result


def _portkey_peers(result: dict[str, Any], fake_url: str, logs: Path, data_dir: Path) -> list[Target]:
    """Portkey's builds, installed (or reused) and made into targets; one that can't be installed is reported."""
    result["meta"]["versions"]["node"] = node_version()
    peers = []
    for build in BUILDS:
        try:
            result["meta"]["versions"][build.key] = ensure_portkey(build, log)
        except (OSError, RuntimeError, subprocess.CalledProcessError) as e:
            stderr = getattr(e, "stderr", None)
            detail = f" {stderr.decode(errors='replace')[-500:]}" if isinstance(stderr, bytes) else ""
            result["errors"][build.key] = f"{type(e).__name__}: {e}{detail}"
            log(f"{build.key} left out: {e}")
            continue
        port = free_port()
        server = portkey_server(build, port, logs, data_dir)
        url = f"http://127.0.0.1:{port}"
        peers.append(Target(build.key, build.key, None, server, url, headers=portkey_headers(fake_url)))
    return peers


def meta(load: Load, logs: Path, args: argparse.Namespace) -> dict[str, Any]:
    dists = ("ray", "fastapi", "uvicorn", "httpx", "httpx-aiohttp", "aiohttp", "uvloop", "pydantic")
    return {
        **run_meta("benchmarks.remote_overhead"),
        "versions": versions(dists),
        "load": load.__dict__,
        "groups": args.groups,
        "model": MODEL,
        "max_tokens": MAX_TOKENS,
        "logs": str(logs),
    }
