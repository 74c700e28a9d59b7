"""The HTTP edge: routes, the request body's size limit, and errors in each front door's shape.

The only place that knows HTTP. For every request the `RequestScope`
middleware opens a tab; a front-door route then authenticates the key
(the request holds one of the key's places among its requests in progress
until its response has ended: `Accounts.hold_request`), reads the body (at
most `max_body_bytes`: 413 past it, before it is read whole), lets its
front door parse it into a `Call`, asks the flow
(`Pipeline.serve`), and lets the front door encode the answer. A POST to
a door's path goes to its route straight from the middleware (`DoorsFirst`),
not through Starlette's router and exception layers; every other request
takes those. A WebSocket at the Responses door's path is OpenAI's WebSocket
mode, answered through the same door (`orchestrator.websocket`). An error
from anywhere becomes the error shape of the front door it came in by
(OpenAI's JSON on OpenAI's routes) here and nowhere else (`answer_error`).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping
from functools import partial

from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse, Response
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.routing import WebSocketRoute
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from orchestrator.accounting.accounts import CLIENT_GONE, Accounts, Tab
from orchestrator.accounting.admin import add_admin_routes
from orchestrator.accounting.keys import KeyPolicy
from orchestrator.accounting.metrics import CONTENT_TYPE_LATEST
from orchestrator.calls import Call
from orchestrator.dashboard import add_dashboard_routes
from orchestrator.errors import (
    MethodNotAllowed,
    NotFound,
    OrchestratorError,
    RequestTimeout,
    RequestTooLarge,
    UnsupportedEncoding,
)
from orchestrator.frontdoors.anthropic import AnthropicMessages, AnthropicTokenCount
from orchestrator.frontdoors.anthropic import error_response as anthropic_error
from orchestrator.frontdoors.base import FrontDoor, SideDoor
from orchestrator.frontdoors.models import list_response, model_response, speaks_anthropic, visible
from orchestrator.frontdoors.openai import error_response, openai_doors
from orchestrator.frontdoors.responses import (
    CompactDoor,
    ConversationStore,
    DiskConversations,
    DiskResponses,
    InProcessConversations,
    InProcessStore,
    Limits,
    ResponsesDoor,
    ResponsesTokenCount,
    ResponseStore,
    WriteBehind,
    add_conversation_routes,
    add_stored_routes,
    limits,
)
from orchestrator.frontdoors.sse import until_gone
from orchestrator.pipeline import Pipeline
from orchestrator.scope import RequestScope
from orchestrator.settings import ConversationsSettings
from orchestrator.websocket import ResponsesSocket

log = logging.getLogger(__name__)

DEFAULT_MAX_BODY_BYTES = 8 << 20  # server.max_body_mb
LARGE_BODY_BYTES = 1 << 20  # bodies over this are read and parsed a few at a time (`LargeBodies`)
LARGE_BODY_GRACE_S = 10.0  # a large body holding a slot: all of it within this long, plus its size at...
LARGE_BODY_MIN_BYTES_PER_S = 128 << 10  # ...this rate (a client that stalls loses its slot: 408)


Lifespan = Callable[[FastAPI], contextlib.AbstractAsyncContextManager[None]]


def _stopping(on_stop: Callable[[], Awaitable[None]]) -> Lifespan:
    @contextlib.asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        yield
        await on_stop()

    return lifespan


def build_app(
    pipeline: Pipeline,
    accounts: Accounts | None = None,
    *,
    max_body_bytes: int = DEFAULT_MAX_BODY_BYTES,
    responses: ResponseStore | None = None,
    conversations: ConversationStore | None = None,
    conversation_room: Limits | None = None,
    ingress_request_ids: bool = False,
    large_bodies: LargeBodies | None = None,
    on_stop: Callable[[], Awaitable[None]] | None = None,
) -> FastAPI:
    """The ASGI app over one pipeline: its front doors (OpenAI's chat, completions, embeddings and
    Responses, and Anthropic's Messages), the stored responses, `/v1/models`, `/health`,
    `/metrics`, the admin API and the dashboard. `accounts` checks keys and budgets and accounts for every request
    (default: an open endpoint that logs and meters); bodies over `max_body_bytes` get a 413;
    `responses` keeps what the Responses door answered and `conversations` the conversations (default:
    each on this process's disk, in a temporary directory), none grown past `conversation_room` (default:
    `conversations.max_items` and `max_mb`'s defaults); `ingress_request_ids`: an ingress in front (Ray
    Serve) gives every request its `x-request-id` and answers with it, so the app adds none of its own;
    `large_bodies`: how bodies over 1 MB share the event loop (`LargeBodies`); `on_stop`: awaited when the
    server stops the app (its ASGI lifespan's shutdown, which Serve awaits when it stops a replica). With
    the pipeline's telemetry on, every front-door request is a span (`Telemetry.request`). The Responses door also
    answers over a WebSocket at its path (OpenAI's WebSocket mode: `orchestrator.websocket`)."""
    lifespan = _stopping(on_stop) if on_stop is not None else None
    app = FastAPI(title="burst-orchestrator", docs_url=None, redoc_url=None, openapi_url=None, lifespan=lifespan)
    app.router.redirect_slashes = False  # `/v1/chat/completions/` is a 404 in OpenAI's shape, as OpenAI answers
    acct = accounts or Accounts(registry=pipeline.registry, prices=pipeline.prices)
    store = responses or WriteBehind(InProcessStore(DiskResponses()))
    talks = conversations or InProcessConversations(DiskConversations())
    defaults = ConversationsSettings()
    room = conversation_room or limits(defaults.max_items, defaults.max_mb)
    responses_door = ResponsesDoor(store, talks, room)
    doors: list[FrontDoor] = [*openai_doors(), responses_door, CompactDoor(store), AnthropicMessages()]
    sides: list[SideDoor] = [AnthropicTokenCount(), ResponsesTokenCount(responses_door)]  # answered without the flow
    large = large_bodies or LargeBodies()  # shared by every door
    first = {responses_door.path: responses_door.compacted}  # compacted first where it asks (`context_management`)
    posts: dict[str, DoorRoute] = {
        door.path: _serving(door, pipeline, acct, max_body_bytes, large, first.get(door.path)) for door in doors
    }
    posts.update((side.path, _answering(side, pipeline, acct, max_body_bytes, large)) for side in sides)
    # Added first, so it runs inside RequestScope (the tab is open) and ahead of Starlette's layers.
    app.add_middleware(DoorsFirst, posts=posts)  # type: ignore[arg-type]
    app.add_middleware(
        RequestScope,  # type: ignore[arg-type]
        accounts=acct,
        ingress_ids=ingress_request_ids,
        telemetry=pipeline.telemetry,
    )
    # The same routes in Starlette's router (its 405s, HEAD, OPTIONS), first: Ray Serve names every request's
    # route for its metrics by matching the app's routes in order (`get_asgi_route_name`), a regex each.
    for path, route in posts.items():
        app.add_route(path, route.handle, methods=["POST"])
    add_admin_routes(app, acct)
    add_dashboard_routes(app, pipeline, acct)
    by_path: dict[str, FrontDoor | SideDoor] = {door.path: door for door in doors}
    by_path.update((side.path, side) for side in sides)

    _answer_errors(app, by_path)

    _info_routes(app, pipeline, acct)
    add_stored_routes(app, store, partial(_authenticated, acct))
    read = partial(_read_limited, max_body_bytes, large)
    add_conversation_routes(app, talks, partial(_authenticated, acct), read, room)
    socket = ResponsesSocket(  # OpenAI's Responses API in WebSocket mode, at the door's own path
        responses_door, pipeline, acct, large, max_message_bytes=max_body_bytes, ingress_ids=ingress_request_ids
    )
    app.router.routes.append(WebSocketRoute(responses_door.path, socket))
    return app


# Ray Serve's header for a request whose client leaving it should not watch (`x-request-disconnect-disabled:
# ?1`, `ray.serve._private.http_util.parse_disconnect_disabled_header`): Serve then never cancels its work, and a
# client could leave a whole answer generating on the shared engine. The edge watches such a request itself.
UNWATCHED = (b"x-request-disconnect-disabled", b"?1")


class DoorRoute:
    """One door's POST route: its handler, and its errors in its own shape (`answer_error`)."""

    def __init__(self, door: FrontDoor | SideDoor, handle: Callable[[Request], Awaitable[Response]]):
        self.door = door
        self.handle = handle

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        """The route as plain ASGI: what Starlette's router, `request_response` and exception
        middleware would do for it, without their layers. An error before the response has started
        is answered in the door's shape; one after it is raised (the response is already going out)."""
        request = Request(scope, receive, send)
        started = False

        async def sending(message: Message) -> None:
            nonlocal started
            started = started or message["type"] == "http.response.start"
            await send(message)

        try:
            response = await self.handle(request)
            await response(scope, receive, sending)
        except Exception as exc:
            if started:
                raise
            await answer_error(request, exc, self.door)(scope, receive, send)


class DoorsFirst:
    """Plain ASGI middleware: a POST to a door's path goes straight to its `DoorRoute`, every other
    request on to the app. The doors carry every request that asks a model; Starlette's router,
    exception middleware and FastAPI's exit stack cost each of them time for nothing they use."""

    def __init__(self, app: ASGIApp, posts: dict[str, DoorRoute]):
        self.app = app
        self.posts = posts

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http" and scope["method"] == "POST" and (route := self.posts.get(scope["path"])):
            await route(scope, receive, send)
        else:
            await self.app(scope, receive, send)


def _serving(
    door: FrontDoor,
    pipeline: Pipeline,
    acct: Accounts,
    max_body_bytes: int,
    large: LargeBodies,
    first: Callable[[Call, Pipeline], Awaitable[Call]] | None = None,
) -> DoorRoute:
    """A front door's route: key, body (size-limited), the door's parse, `first` (once the body's slot is
    given back: the Responses door's compaction asks a model), the flow, the door's encoding."""

    async def handle(request: Request) -> Response:
        tab = _tab(request)
        key = await _keyed(acct, tab, request.headers)
        async with large.slot(key.id if key else None) as slot:
            call = await door.parse(await read_body(request, max_body_bytes, slot), request.headers, tab)
        if UNWATCHED in request.scope["headers"]:  # Serve won't cancel its work when its client leaves: we do
            return await until_gone(answer(call), request.receive) or Response(status_code=CLIENT_GONE)
        return await answer(call)

    async def answer(call: Call) -> Response:
        if first is not None:
            call = await first(call, pipeline)
        return await door.encode(call, await pipeline.serve(call))

    return DoorRoute(door, handle)


def _answering(
    door: SideDoor, pipeline: Pipeline, acct: Accounts, max_body_bytes: int, large: LargeBodies
) -> DoorRoute:
    """A side door's route: key and body as for a front door, then the door's own answer (a large
    body keeps its slot until it is answered, as a front door's does until it is parsed)."""

    async def handle(request: Request) -> Response:
        tab = _tab(request)
        key = await _keyed(acct, tab, request.headers)
        async with large.slot(key.id if key else None) as slot:
            return await door.answer(await read_body(request, max_body_bytes, slot), request.headers, tab, pipeline)

    return DoorRoute(door, handle)


def _info_routes(app: FastAPI, pipeline: Pipeline, acct: Accounts) -> None:
    """`/health`, `/metrics` (the master or metrics key once keys exist), and `/v1/models` and
    `/v1/models/{model}` (a key's own models, in OpenAI's shape or Anthropic's: `frontdoors.models`).

    Starlette's own routes: the handlers take the request and return a response, so FastAPI's
    per-request dependency solving would only cost time."""

    async def health(_: Request) -> Response:
        return JSONResponse({"status": "ok"})

    async def metrics(request: Request) -> Response:
        acct.check_metrics_reader(request.headers)  # it shows key ids and per-key spend
        return Response(acct.metrics.exposition(), media_type=CONTENT_TYPE_LATEST)

    async def models(request: Request) -> Response:
        key = await _keyed(acct, _tab(request), request.headers)
        return list_response(visible(pipeline.models(), key), request.headers, request.query_params)

    async def model(request: Request) -> Response:
        name = request.path_params["model"]
        if not name:  # `/v1/models/`: a trailing slash, as on every other path
            raise StarletteHTTPException(404)
        key = await _keyed(acct, _tab(request), request.headers)
        return model_response(visible(pipeline.models(), key), name, request.headers)

    app.add_route("/health", health, methods=["GET"])
    app.add_route("/metrics", metrics, methods=["GET"])
    app.add_route("/v1/models", models, methods=["GET"])
    app.add_route("/v1/models/{model:path}", model, methods=["GET"])  # ids may hold a slash


def _answer_errors(app: FastAPI, by_path: dict[str, FrontDoor | SideDoor]) -> None:
    """Every error, from anywhere, in the shape of the front door the request came in by (a door's own
    routes answer theirs in `DoorRoute`, the same way)."""

    async def handler(request: Request, exc: Exception) -> Response:
        return answer_error(request, exc, by_path.get(request.url.path))

    for kind in (OrchestratorError, StarletteHTTPException, Exception):
        app.add_exception_handler(kind, handler)


def answer_error(request: Request, exc: Exception, door: FrontDoor | SideDoor | None) -> Response:
    """The response for an error raised while answering `request`, in `door`'s shape (without one:
    OpenAI's, but Anthropic's under `/v1/messages` (`/v1/messages/batches`, a trailing slash), and on
    `/v1/models` for a request with `anthropic-version`, as its SDKs send): the gateway's own errors as
    they are, Starlette's 404 and 405 as ours, anything else a 500 that says nothing of its cause (which
    goes to the log)."""
    if isinstance(exc, OrchestratorError):
        _tab(request).error_code = exc.code
    elif isinstance(exc, StarletteHTTPException):
        where = f"{request.method} {request.url.path}"
        if exc.status_code == 405:
            exc = MethodNotAllowed(f"Method {request.method} is not allowed for {request.url.path}.")
        else:
            exc = NotFound(f"Unknown request URL: {where}.")
    else:
        log.error("unhandled error", exc_info=exc)
        exc = OrchestratorError("The server had an error processing your request.")
    if door is not None:
        return door.error(exc)
    path = request.url.path
    if path.startswith("/v1/messages/") or (path.startswith("/v1/models") and speaks_anthropic(request.headers)):
        return anthropic_error(exc)  # Anthropic's paths; on the one route both APIs share, the asking client's
    return error_response(exc)


async def _authenticated(acct: Accounts, request: Request) -> Tab:
    tab = _tab(request)
    await _keyed(acct, tab, request.headers)
    return tab


async def _keyed(acct: Accounts, tab: Tab, headers: Mapping[str, str]) -> KeyPolicy | None:
    """The request's key (401 without a valid one, once keys exist), holding one of its places among its
    requests in progress on this replica until the response has ended (429 past its `parallel_requests`)."""
    key = await acct.authenticate(tab, headers)
    acct.hold_request(tab)
    return key


async def _read_limited(max_body_bytes: int, large: LargeBodies, request: Request, tab: Tab) -> bytes:
    """A body read as a door's is: within the limit, a large one in its key's turn (`LargeBodies`)."""
    async with large.slot(tab.key.id if tab.key else None) as slot:
        return await read_body(request, max_body_bytes, slot)


def _tab(request: Request) -> Tab:
    """The request's tab, opened by `RequestScope`; an app without it gets a detached one."""
    state = request.scope.setdefault("state", {})
    tab = state.get("tab")
    if tab is None:
        tab = state["tab"] = Tab(Accounts(), "", request.method, request.url.path)
    assert isinstance(tab, Tab)
    return tab


class LargeBodies:
    """At most `slots` bodies over `threshold` bytes read and parsed at once, at most one of them per
    key; the others wait unread (the server stops reading their sockets, so TCP pushes back on their
    senders). A few clients posting huge bodies then cost the event loop a bounded share, and every
    other request (and `/health`) still gets through at once. A body holding a slot must arrive within
    `grace_s` plus its size at `min_bytes_per_s`, or it gets a 408 and the slot goes to the next: a
    client that stalls mid-body, or two keys' worth of them, can't keep everyone else's large bodies out."""

    def __init__(
        self,
        slots: int = 2,
        threshold: int = LARGE_BODY_BYTES,
        grace_s: float = LARGE_BODY_GRACE_S,
        min_bytes_per_s: float = LARGE_BODY_MIN_BYTES_PER_S,
    ):
        self.threshold = threshold
        self.grace_s, self.min_bytes_per_s = grace_s, min_bytes_per_s
        self._slots = asyncio.Semaphore(slots)
        self._keys: dict[str, tuple[asyncio.Semaphore, int]] = {}  # a key's own one slot, and who wants it

    @contextlib.asynccontextmanager
    async def slot(self, key: str | None = None) -> AsyncIterator[_Slot]:
        """A request's claim (taken only once its body turns out large); `key`: whose (None: no key)."""
        slot = _Slot(self, key)
        try:
            yield slot
        finally:
            slot.release()

    def _claim(self, key: str) -> asyncio.Semaphore:
        own, users = self._keys.get(key) or (asyncio.Semaphore(1), 0)
        self._keys[key] = (own, users + 1)
        return own

    def _unclaim(self, key: str) -> None:
        own, users = self._keys[key]
        if users > 1:
            self._keys[key] = (own, users - 1)
        else:
            del self._keys[key]


class _Slot:
    """One request's claim on a large-body slot, taken only once its body turns out large."""

    def __init__(self, bodies: LargeBodies, key: str | None):
        self._bodies = bodies
        self._key = key
        self._own: asyncio.Semaphore | None = None  # its key's one slot, while it holds it
        self._held = False
        self._taken_at = 0.0

    @property
    def held(self) -> bool:
        return self._held

    async def take(self) -> None:
        """Its key's slot (if it has a key), then one of the shared ones."""
        if self._held:
            return
        key, bodies = self._key, self._bodies
        own = bodies._claim(key) if key is not None else None
        try:
            if own is not None:
                await own.acquire()
            try:
                await bodies._slots.acquire()
            except BaseException:
                if own is not None:
                    own.release()
                raise
        except BaseException:
            if key is not None:
                bodies._unclaim(key)
            raise
        self._own, self._held = own, True
        self._taken_at = asyncio.get_running_loop().time()

    def deadline(self, size: int) -> float:
        """When a body holding this slot must have its next bytes, at `size` bytes so far (the loop's clock)."""
        return self._taken_at + self._bodies.grace_s + size / self._bodies.min_bytes_per_s

    def small_deadline(self) -> float:
        """When a body must be whole while it is no larger than the threshold (the loop's clock): the grace
        plus the threshold's size at the least pace, counted from now."""
        b = self._bodies
        return asyncio.get_running_loop().time() + b.grace_s + b.threshold / b.min_bytes_per_s

    def too_slow(self) -> RequestTimeout:
        b = self._bodies
        return RequestTimeout(
            f"The request body arrived too slowly: a body must arrive within {b.grace_s:g} s plus its size "
            f"at {b.min_bytes_per_s / 1024:g} KB/s."
        )

    def release(self) -> None:
        if self._held:
            self._held = False
            self._bodies._slots.release()
            if self._own is not None and self._key is not None:
                self._own.release()
                self._bodies._unclaim(self._key)
                self._own = None


async def read_body(request: Request, limit: int, slot: _Slot | None = None) -> bytes:
    """The whole body, or `RequestTooLarge` as soon as it is known to be over `limit` bytes
    (from its Content-Length, else while it arrives): a huge body is never held in memory.
    A large one waits for a large-body `slot` before more of it is read, and then must keep
    arriving at the slot's pace (`RequestTimeout`); with a slot, a small one must be whole within
    the time its slot would give a body of the threshold's size (a client that sends headers and
    then a body it never finishes held its request, and a place among the replica's ongoing ones,
    for as long as it liked)."""
    encoding = request.headers.get("content-encoding", "identity").strip().lower()
    if encoding not in ("", "identity"):
        raise UnsupportedEncoding(
            f"The request body is encoded ({encoding[:40]!r}); this gateway takes it as JSON, not compressed: "
            "send it without 'Content-Encoding'."
        )
    declared = request.headers.get("content-length", "")
    if declared.isdigit() and int(declared) > limit:
        raise RequestTooLarge.over(limit)
    if slot is not None and declared.isdigit() and int(declared) > LARGE_BODY_BYTES:
        await slot.take()
    parts: list[bytes] = []
    size = 0
    stream = aiter(request.stream())
    alarm = _Alarm(slot.small_deadline()) if slot is not None and not slot.held else None  # a small body's time
    try:
        while True:
            try:
                if slot is not None and slot.held:
                    async with asyncio.timeout_at(slot.deadline(size)):
                        part = await anext(stream)
                else:
                    part = await anext(stream)
            except StopAsyncIteration:
                break
            except TimeoutError:
                assert slot is not None
                raise slot.too_slow() from None
            size += len(part)
            if size > limit:
                raise RequestTooLarge.over(limit)
            if slot is not None and size > LARGE_BODY_BYTES:
                if alarm is not None:  # a large body: its slot's pace from now on, and no clock while it waits for one
                    alarm.stop()
                    alarm = None
                await slot.take()
            parts.append(part)
    except asyncio.CancelledError:
        if alarm is not None and alarm.rang():
            assert slot is not None
            raise slot.too_slow() from None
        raise
    finally:
        if alarm is not None:
            alarm.stop()
    return b"".join(parts)


class _Alarm:
    """The running task cancelled at `deadline` (the loop's clock) unless stopped first: one timer for a
    whole small body (an `asyncio.timeout` costs twice as much, and a body is read on every request)."""

    def __init__(self, deadline: float):
        self._task = asyncio.current_task()
        self._rang = False
        self._handle = asyncio.get_running_loop().call_at(deadline, self._ring)

    def _ring(self) -> None:
        self._rang = True
        if self._task is not None:
            self._task.cancel()

    def rang(self) -> bool:
        """Whether the cancellation is this alarm's (then it is taken back: the task goes on to answer)."""
        if self._rang and self._task is not None:
            self._task.uncancel()
        return self._rang

    def stop(self) -> None:
        self._handle.cancel()
