"""A Gateway restarted on its node takes its port back at once, whatever connections its predecessor left.

Ray Serve (2.60) binds each direct-ingress replica's listener without `SO_REUSEADDR`
(`ray/serve/_private/replica.py` calls `http_util.start_asgi_http_server(..., enable_so_reuseport=False)`).
A Gateway that dies with connections open (a client's keep-alive pool, HAProxy's) leaves them lingering on
its port (FIN_WAIT_2, TIME_WAIT) for up to 60 s, so its replacement's bind fails with "address in use"; Serve
then blocks that port for good (`release_replica_port(block_port=True)`), and the node's pool, one port per
Gateway, has none left: the replacement fails and is retried forever, and the port stays dark until a redeploy.
Serve's own proxy binds with reuse; this asks the same, `SO_REUSEADDR` only, for the Gateway's listener: a bind
over connections that merely linger, never beside another listener (so several Ray nodes on one host still get
a port each).
"""

from __future__ import annotations

import logging
import socket
import types
from typing import Any

logger = logging.getLogger(__name__)


class _ReusingSocket(socket.socket):
    """A new TCP socket with `SO_REUSEADDR` set (what uvicorn, asyncio and Serve's proxy set on their own)."""

    def __init__(self, family: Any = -1, type: Any = -1, proto: int = -1, fileno: int | None = None) -> None:
        super().__init__(family, type, proto, fileno)
        if fileno is None:
            self.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)


def rebind_at_once() -> bool:
    """Make this process's direct-ingress listeners bind with `SO_REUSEADDR`; True if Serve's binding was found.

    Call it in the replica before Serve starts the listener (the Gateway's constructor runs first). Idempotent.
    It replaces the `socket` module as Serve's `http_util` sees it (where Serve creates and binds the listener)
    by one whose `socket()` sets the option.
    """
    from ray.serve._private import http_util

    seen = getattr(http_util, "socket", None)
    if getattr(seen, "socket", None) is _ReusingSocket:
        return True
    if seen is not socket or not callable(getattr(http_util, "start_asgi_http_server", None)):
        logger.warning("Ray Serve binds differently than expected: a restarted Gateway may wait 60 s for its port")
        return False
    reusing = types.ModuleType("socket", "The socket module, whose socket() sets SO_REUSEADDR (orchestrator.rebind)")
    reusing.__dict__.update({k: v for k, v in vars(socket).items() if not k.startswith("__")})
    reusing.socket = _ReusingSocket  # type: ignore[attr-defined]
    http_util.socket = reusing  # type: ignore[attr-defined]
    return True
