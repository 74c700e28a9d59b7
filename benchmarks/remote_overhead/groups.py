"""The Ray settings tried, and the groups of targets measured side by side under the same noise."""

from __future__ import annotations

from dataclasses import dataclass, field


@dataclass(frozen=True)
class RaySetting:
    """One way of running Ray Serve, applied to the trivial ingress and (unless `trivial_only`) to ours."""

    name: str
    label: str
    direct_ingress: bool = False  # measure at the ingress replica's own port
    # Ray's throughput bundle: ours through `server.throughput_optimized` (orchestrator.runtime.serve_env sets
    # the variables), the trivial ingress through the same variables in its environment.
    throughput_optimized: bool = False
    env: dict[str, str] = field(default_factory=dict)  # more environment, for both
    max_ongoing_requests: int = 512
    access_log: bool = False
    trivial_args: tuple[str, ...] = ()  # extra arguments for the trivial ingress's process
    trivial_only: bool = False
    # Ours only: Serve's HAProxy on server.port in front of `gateways` Gateway replicas (server.haproxy,
    # gateway.num_replicas); measured at server.port, HAProxy's.
    haproxy: bool = False
    gateways: int = 1
    short: str = ""  # ours' column in a group with several of ours


TPUT = {"RAY_SERVE_THROUGHPUT_OPTIMIZED": "1"}
# What orchestrator.runtime.serve_env sets with server.throughput_optimized (Serve's logs stay on stderr).
TPUT_AS_OURS = {**TPUT, "RAY_SERVE_LOG_TO_STDERR": "1"}
_TPUT_DI = {"direct_ingress": True, "throughput_optimized": True, "trivial_only": True}

SETTINGS = {
    s.name: s
    for s in (
        RaySetting("proxy", "Serve proxy (HTTP proxy actor → replica)"),
        RaySetting(
            "di",
            "direct ingress (at the ingress replica's port; ours: server.port, server.throughput_optimized false)",
            direct_ingress=True,
        ),
        RaySetting(
            "tput",
            "RAY_SERVE_THROUGHPUT_OPTIMIZED=1 (ours: server.throughput_optimized true; direct ingress, user code "
            "on the main loop, …)",
            direct_ingress=True,
            throughput_optimized=True,
            short="1 gateway, direct",
        ),
        # Ours only: gateway processes behind one port (issue 17, "more than one core per node").
        RaySetting(
            "tput_haproxy",
            "throughput-optimized, 1 Gateway replica behind Serve's HAProxy (server.haproxy)",
            direct_ingress=True,
            throughput_optimized=True,
            haproxy=True,
            short="1 gateway, HAProxy",
        ),
        RaySetting(
            "tput_haproxy2",
            "throughput-optimized, 2 Gateway replicas behind Serve's HAProxy (server.haproxy, gateway.num_replicas 2)",
            direct_ingress=True,
            throughput_optimized=True,
            haproxy=True,
            gateways=2,
            short="2 gateways, HAProxy",
        ),
        # One knob at a time, on the trivial ingress only:
        RaySetting(
            "proxy_mor5",
            "Serve proxy, max_ongoing_requests=5 (Serve's default)",
            max_ongoing_requests=5,
            trivial_only=True,
        ),
        RaySetting(
            "tput_proxy",
            "throughput-optimized bundle, direct ingress off (through the proxy)",
            env={**TPUT, "RAY_SERVE_ENABLE_DIRECT_INGRESS": "0"},
            trivial_only=True,
        ),
        RaySetting("tput_access_log", "throughput-optimized + access log on", access_log=True, **_TPUT_DI),
        RaySetting(
            "tput_no_uvloop",
            "throughput-optimized + uvloop off (RAY_USE_UVLOOP=0)",
            env={"RAY_USE_UVLOOP": "0"},
            **_TPUT_DI,
        ),
        RaySetting(
            "tput_httpx",
            "throughput-optimized, plain httpx upstream client (httpx's pool) instead of the gateway's",
            trivial_args=("--client", "httpx"),
            **_TPUT_DI,
        ),
        RaySetting(
            "tput_aiohttp",
            "throughput-optimized, plain aiohttp upstream client instead of the gateway's (httpx on aiohttp)",
            trivial_args=("--client", "aiohttp"),
            **_TPUT_DI,
        ),
    )
}


@dataclass(frozen=True)
class Group:
    """Ray-hosted targets started together and measured in alternating rounds, with direct (and the peers:
    LiteLLM's proxy and Portkey's gateway)."""

    members: tuple[tuple[str, str], ...]  # (kind, setting name)
    peers: bool = True
    reference: str | None = None  # option groups: the member ("kind@setting") every other one is compared with
    default: bool = True  # run without --groups


# Main groups: the trivial ingress and ours under one setting (the comparisons the issue asks for); `gateways`:
# ours with one gateway process at its own port, and one or two behind Serve's HAProxy on one port.
# Option groups: one knob changed against a reference in the same group (same noise): ours with and without
# server.throughput_optimized; trivial ingresses only, each with one Ray knob or HTTP client changed.
GROUPS: dict[str, Group] = {
    "proxy": Group((("trivial", "proxy"), ("ours", "proxy"))),
    "di": Group((("trivial", "di"), ("ours", "di"))),
    "tput": Group((("trivial", "tput"), ("ours", "tput"))),
    # The default setting without the peers: quick before/after checks and profiles of the hot path.
    "hot": Group((("trivial", "tput"), ("ours", "tput")), peers=False, default=False),
    "ours_tput": Group((("ours", "di"), ("ours", "tput")), peers=False, reference="ours@di"),
    # Issue 17: 1 vs 2 gateway processes on one node's port, against the peers in the same rounds: all three
    # side by side (three Ray instances at once: on 2 cores their idle work alone saturates the machine), or
    # one per group (one Ray instance each, the peers in every group).
    "gateways": Group((("ours", "tput"), ("ours", "tput_haproxy"), ("ours", "tput_haproxy2")), default=False),
    "gw_direct": Group((("ours", "tput"),), default=False),
    "gw_haproxy": Group((("ours", "tput_haproxy"),), default=False),
    "gw_haproxy2": Group((("ours", "tput_haproxy2"),), default=False),
    "options_tput": Group(
        (
            ("trivial", "tput"),
            ("trivial", "tput_httpx"),
            ("trivial", "tput_aiohttp"),
            ("trivial", "tput_access_log"),
            ("trivial", "tput_no_uvloop"),
        ),
        peers=False,
        reference="trivial@tput",
    ),
    "options_proxy": Group(
        (("trivial", "proxy"), ("trivial", "proxy_mor5"), ("trivial", "tput_proxy")),
        peers=False,
        reference="trivial@proxy",
    ),
}
