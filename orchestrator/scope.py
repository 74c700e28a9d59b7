"""A request's scope at the edge: its tab opened and closed, and its headers.

`RequestScope` is plain ASGI middleware: it opens a `Tab` for every HTTP
request (`Accounts.open`) and, with tracing on, a front door's request span
(`Telemetry.request`, the pipeline's step spans its children), adds `x-request-id` and `x-gateway-overhead-ms`
when the response starts, notes the first byte out, and tells `Accounts`
when the response has ended. (Not Starlette's BaseHTTPMiddleware: that runs
the app in another task.) Behind an ingress that gives every request an id
and answers with it (Ray Serve's `x-request-id`: `ingress_ids`), that id is
the one the client sees, and the request's log line carries it beside the
gateway's own (which the ledger keys on: a client can't choose it).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from orchestrator.accounting.accounts import Accounts
from orchestrator.telemetry import Telemetry

# ------------------------------------------------------------------------------ the middleware


class RequestScope:
    """Plain ASGI middleware: a tab per HTTP request, its headers, and its end."""

    def __init__(
        self, app: Callable[..., Any], accounts: Accounts, ingress_ids: bool = False, telemetry: Telemetry | None = None
    ):
        self.app = app
        self.accounts = accounts
        self.ingress_ids = ingress_ids
        self.telemetry = telemetry or Telemetry.off()

    async def __call__(self, scope: dict[str, Any], receive: Callable[..., Any], send: Callable[..., Any]) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        with self.accounts.open(scope["method"], scope["path"]) as tab, self.telemetry.request(scope, tab):
            scope.setdefault("state", {})["tab"] = tab
            if self.ingress_ids:
                tab.ingress_id = ingress_id(scope["headers"])

            async def tracking_send(message: dict[str, Any]) -> None:
                if message["type"] == "http.response.start":
                    extra = self.accounts.response_started(tab, message["status"])
                    headers = list(message.get("headers", []))
                    headers.extend((k.encode(), v.encode()) for k, v in extra.items())
                    message = {**message, "headers": headers}
                elif message["type"] == "http.response.body" and tab.first_byte_s is None and message.get("body"):
                    tab.first_byte_s = tab.elapsed()
                await send(message)

            await self.app(scope, receive, tracking_send)


def ingress_id(headers: list[tuple[bytes, bytes]]) -> str | None:
    """The ingress's `x-request-id` (at most 200 printable characters of it, for the log line)."""
    for name, value in headers:
        if name.lower() == b"x-request-id":
            text = value.decode("latin-1")[:200]
            return "".join(c for c in text if c.isprintable()) or None
    return None
