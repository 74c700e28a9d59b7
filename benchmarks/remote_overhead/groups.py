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


# Main groups: the trivial ingress and ours under one setting (the comparisons the issue asks for).
# Option groups: one knob changed against a reference in the same group (same noise): ours with and without
# server.throughput_optimized; trivial ingresses only, each with one Ray knob or HTTP client changed.
GROUPS: dict[str, Group] = {
    "proxy": Group((("trivial", "proxy"), ("ours", "proxy"))),
    "di": Group((("trivial", "di"), ("ours", "di"))),
    "tput": Group((("trivial", "tput"), ("ours", "tput"))),
    "ours_tput": Group((("ours", "di"), ("ours", "tput")), peers=False, reference="ours@di"),
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
