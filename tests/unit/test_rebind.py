"""A Gateway's listener, started as Serve starts it, binds again at once over its predecessor's connections."""

from __future__ import annotations

import asyncio
import contextlib
import gc
import socket
import warnings
from collections.abc import Iterator
from typing import Any

import httpx
import pytest
from ray.serve._private import http_util
from ray.serve.config import HTTPOptions

from orchestrator.rebind import rebind_at_once


async def _hello(scope: dict[str, Any], receive: Any, send: Any) -> None:
    if scope["type"] != "http":
        return
    await send({"type": "http.response.start", "status": 200, "headers": [(b"content-type", b"text/plain")]})
    await send({"type": "http.response.body", "body": b"hello"})


HELLO: Any = _hello


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


async def _listen(port: int) -> tuple[asyncio.Task[None], Any]:
    """A listener started the way Serve starts a direct-ingress replica's (`replica.py`)."""
    loop = asyncio.get_running_loop()
    started = await http_util.start_asgi_http_server(HELLO, HTTPOptions(host="127.0.0.1", port=port), event_loop=loop)
    while not started[1].started:  # uvicorn told to exit before it started never closes its socket
        await asyncio.sleep(0.01)
    return started


async def _serve_and_leave(port: int) -> None:
    """A listener on `port`, one keep-alive client, then the server goes first: its end of the connection
    lingers on the port (FIN_WAIT_2, TIME_WAIT), as after a Gateway dies with clients connected."""
    task, server = await _listen(port)
    async with httpx.AsyncClient() as client:
        assert (await client.get(f"http://127.0.0.1:{port}/")).text == "hello"
        server.should_exit = True
        await asyncio.wait_for(task, 10)


@contextlib.contextmanager
def _serve_leaks_its_socket_when_bind_fails() -> Iterator[None]:
    """Serve 2.60 doesn't close the socket whose bind failed; the garbage collector does, with a warning."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ResourceWarning)
        yield
        gc.collect()


@pytest.fixture
def serve_socket() -> Iterator[None]:
    original = http_util.socket  # type: ignore[attr-defined]
    yield
    http_util.socket = original  # type: ignore[attr-defined]


def test_without_it_serves_own_bind_fails_on_the_port_a_dead_listener_left(serve_socket: None) -> None:
    """What the module is for: Serve's own bind, as 2.60 does it, can't take the port back."""
    port = _free_port()
    asyncio.run(_serve_and_leave(port))
    with _serve_leaks_its_socket_when_bind_fails(), pytest.raises(RuntimeError, match="Failed to bind"):
        asyncio.run(_serve_and_leave(port))


def test_with_it_the_port_is_taken_back_at_once(serve_socket: None) -> None:
    assert rebind_at_once()
    assert rebind_at_once()  # idempotent
    port = _free_port()
    asyncio.run(_serve_and_leave(port))
    asyncio.run(_serve_and_leave(port))  # the predecessor's connection still lingers on the port


def test_with_it_a_live_listeners_port_is_still_refused(serve_socket: None) -> None:
    """Reuse of lingering connections only: a second listener never shares a live one's port (several Ray nodes
    on one host each find their own port in the same range)."""
    assert rebind_at_once()

    async def two_on_one_port() -> str:
        port = _free_port()
        task, server = await _listen(port)
        try:
            await _listen(port)
        except RuntimeError as e:
            return str(e)
        finally:
            server.should_exit = True
            await asyncio.wait_for(task, 10)
        return "bound"

    with _serve_leaks_its_socket_when_bind_fails():
        assert asyncio.run(two_on_one_port()).startswith("Failed to bind")
