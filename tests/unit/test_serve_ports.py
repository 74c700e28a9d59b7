"""`orchestrator serve` on a port another program holds says so at once, instead of starting everything and
waiting out its start-up timeout while Serve retries a Gateway that can never listen."""

from __future__ import annotations

import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
import yaml

from orchestrator import runtime
from orchestrator.settings import load_settings


@pytest.fixture
def held() -> Iterator[int]:
    """A port another program listens on."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        s.listen()
        yield int(s.getsockname()[1])


def _free_ports(n: int) -> int:
    """The first of `n` consecutive ports free now."""
    while True:
        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            first = int(s.getsockname()[1])
        if not runtime.unusable_ports("127.0.0.1", range(first, first + n)):
            return first


def test_the_ports_each_layout_listens_on() -> None:
    assert runtime.gateway_ports(load_settings(server={"port": 9000})) == range(9000, 9001)
    two = load_settings(server={"port": 9000}, gateway={"num_replicas": 2})
    assert runtime.gateway_ports(two) == range(9000, 9002)  # direct ingress: one port per Gateway on the node
    haproxy = load_settings(server={"port": 9000, "haproxy": True}, gateway={"num_replicas": 2})
    assert runtime.gateway_ports(haproxy) == range(9000, 9003)  # HAProxy, then the Gateways after it
    proxy = load_settings(server={"port": 9000, "direct_ingress": False}, gateway={"num_replicas": 2})
    assert runtime.gateway_ports(proxy) == range(9000, 9001)  # Serve's proxy alone


def test_a_held_port_is_found_and_a_free_one_is_not(held: int) -> None:
    assert runtime.unusable_ports("127.0.0.1", range(held, held + 1)) == {held: "in use by another program"}
    first = _free_ports(2)
    assert runtime.unusable_ports("127.0.0.1", range(first, first + 2)) == {}


def test_a_port_left_with_lingering_connections_is_usable() -> None:
    """A server that stopped with a client connected leaves the connection on its port for up to a minute; the
    Gateways bind over it (orchestrator/rebind.py), so it doesn't count as taken."""
    server = socket.create_server(("127.0.0.1", 0))
    port = int(server.getsockname()[1])
    client = socket.create_connection(("127.0.0.1", port))
    accepted, _ = server.accept()
    accepted.close()  # the server's side closes first: its end lingers (FIN_WAIT_2, then TIME_WAIT)
    server.close()
    try:
        with socket.socket() as plain, pytest.raises(OSError):
            plain.bind(("127.0.0.1", port))  # what a bind without address reuse meets
        assert runtime.unusable_ports("127.0.0.1", range(port, port + 1)) == {}
    finally:
        client.close()


def test_a_cluster_elsewhere_is_not_checked_here(held: int) -> None:
    runtime.check_ports(load_settings(server={"port": held}, ray={"address": "ray://elsewhere:10001"}))
    with pytest.raises(runtime.PortUnavailable, match=f"{held}: in use by another program"):
        runtime.check_ports(load_settings(server={"port": held}))


def test_serve_on_a_held_port_stops_at_once_and_says_what_to_do(held: int, tmp_path: Path) -> None:
    config = tmp_path / "config.yaml"
    settings = {"server": {"port": held}, "embedding": {"model": None}}  # refused before any model is prepared
    config.write_text(yaml.safe_dump(settings))
    orchestrator = str(Path(sys.executable).with_name("orchestrator"))
    began = time.monotonic()
    done = subprocess.run([orchestrator, "serve", "--config", str(config)], capture_output=True, text=True, timeout=60)
    assert done.returncode == 2
    assert f"port {held}: in use by another program" in done.stderr
    assert "ORCH_SERVER__PORT" in done.stderr
    assert "Starting Ray Serve" not in done.stderr  # nothing was started
    assert time.monotonic() - began < 30
