"""The dashboard's HTTP side: the page, its two static files, and the JSON it draws.

    GET /dashboard                 the page (public: a shell with no figures in it)
    GET /dashboard/dashboard.js    its script (plain JS, no build step, nothing fetched from elsewhere)
    GET /dashboard/dashboard.css   its styles
    GET /dashboard/data            the figures (`summary.summarize`): ?minutes=1..60 (default 60)

Once keys are required, `/dashboard/data` takes the master key (Bearer or
x-api-key; the page asks for it once and keeps it for the browser tab); an
open endpoint keeps it open. Errors are OpenAI-shaped (the edge's handler).
The files are read once, when the routes are added, from the package.
"""

from __future__ import annotations

import time
from collections.abc import Awaitable, Callable, Mapping
from importlib import resources
from typing import Protocol

from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse, Response

from orchestrator.accounting.accounts import Accounts
from orchestrator.accounting.admin import check_master_key
from orchestrator.dashboard.reader import SharedWindows
from orchestrator.dashboard.summary import summarize
from orchestrator.errors import InvalidRequest
from orchestrator.scheduling.router import RoutingState

MAX_MINUTES = 60
PARAMS = frozenset({"minutes"})
ASSETS = {"dashboard.js": "text/javascript", "dashboard.css": "text/css"}
# Only this origin's own files; no inline script or style, no framing, no referrer carrying the URL away.
PAGE_HEADERS = {
    "Content-Security-Policy": (
        "default-src 'none'; script-src 'self'; style-src 'self'; connect-src 'self'; img-src 'self' data:; "
        "base-uri 'none'; form-action 'none'; frame-ancestors 'none'"
    ),
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "no-referrer",
    "Cache-Control": "no-cache",
}


class Routing(Protocol):
    """What the dashboard needs of the flow (the `Pipeline`): the scheduler's state of now."""

    def routing(self) -> RoutingState: ...


def add_dashboard_routes(
    app: FastAPI,
    flow: Routing,
    accounts: Accounts,
    *,
    read_interval_s: float = 2.0,
    clock: Callable[[], float] = time.time,
) -> None:
    """The dashboard's routes on `app`; the ledger's window is read at most once per `read_interval_s`
    (per window length) by this replica, however many viewers ask (`reader.SharedWindows`)."""
    windows = SharedWindows(accounts, max_age_s=read_interval_s, clock=clock)
    static = resources.files("orchestrator.dashboard") / "static"
    # The page knows whether to ask for a key before its first read (a 401 would be an error in its console).
    page = (
        (static / "index.html")
        .read_bytes()
        .replace(b"{{key_required}}", b"true" if accounts.require_keys else b"false")
    )
    files = {name: (static / name).read_bytes() for name in ASSETS}

    async def index(_: Request) -> Response:
        return Response(page, media_type="text/html; charset=utf-8", headers=PAGE_HEADERS)

    def asset(name: str) -> Callable[[Request], Awaitable[Response]]:
        async def serve(_: Request) -> Response:
            return Response(files[name], media_type=f"{ASSETS[name]}; charset=utf-8", headers=PAGE_HEADERS)

        return serve

    async def data(request: Request) -> Response:
        if accounts.require_keys:  # the figures show key ids and per-key spend
            check_master_key(accounts, request.headers, "The dashboard")
        minutes = parse_minutes(request.query_params)
        window = await windows.read(minutes)
        return JSONResponse(summarize(window, flow.routing(), clock()), headers={"Cache-Control": "no-store"})

    app.add_route("/dashboard", index, methods=["GET"])
    for name in ASSETS:
        app.add_route(f"/dashboard/{name}", asset(name), methods=["GET"])
    app.add_route("/dashboard/data", data, methods=["GET"])


def parse_minutes(params: Mapping[str, str]) -> int:
    """`?minutes=` (whole minutes, 1 to 60; default 60); anything else in the query is a 400."""
    unknown = sorted(set(params) - PARAMS)
    if unknown:
        raise InvalidRequest(
            f"Unknown query parameter '{unknown[0]}' (GET /dashboard/data takes only 'minutes').",
            param=unknown[0],
            code="unknown_parameter",
        )
    raw = params.get("minutes")
    if raw is None:
        return MAX_MINUTES
    if not (raw.isascii() and raw.isdigit() and len(raw) <= 3 and 1 <= int(raw) <= MAX_MINUTES):
        raise InvalidRequest(
            f"Invalid 'minutes': {raw[:32]!r}; expected a whole number from 1 to {MAX_MINUTES}.", param="minutes"
        )
    return int(raw)
