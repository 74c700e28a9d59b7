"""The WebSocket edge: OpenAI's Responses API in WebSocket mode, at the Responses door's path.

A client (the openai SDK's `responses.connect()`, Codex) opens a WebSocket to
`/v1/responses` with its key in the handshake's headers, sends `response.create`
messages (a POST's body with a `type`: `frontdoors.responses.websocket_wire`)
and gets, as one JSON text message each, the events a streamed POST sends.
Per connection:

    handshake  the key checked as a POST's is (`Accounts.authenticate`); refused as OpenAI refuses it:
               an HTTP error (401) in OpenAI's JSON instead of the upgrade; a key's open sockets are counted
               (`Accounts.sockets_per_key`, a quarter of the replica's places: past them, a 429)
    read       every message read as it comes (so a client gone is seen at once): over `server.max_body_mb`,
               not JSON, not a client event: an `error` event, and the socket goes on
    lanes      the messages of one `stream_id` (none: the default lane) answered in order, lanes at once;
               at most 16 messages waiting or being answered, 32 lanes (`websocket_stream_limit_reached`)
    answer     each `response.create` on its own tab, as a POST is: its key (a revoked key stops an open
               socket too), the door's parse and `compacted`, `Pipeline.serve`, the door's events
               (`ResponsesDoor.socket_events`); an error before the first event: the `error` event with a
               POST's status
    recent     the connection's latest responses, stored or not, found by a `previous_response_id`
               (`store.Recent`, OpenAI's connection-local state: Codex chains `store: false` turns so), their
               conversations within four messages' worth (`server.max_body_mb` each), the oldest going first
    close      the client gone: every answer in progress is cancelled, so the model's work stops
    age        60 minutes, as OpenAI's connections: a message after that is refused
               (`websocket_connection_limit_reached`, on which clients open a new one and send the whole
               conversation), and once no answer is in progress the socket is closed (1000); an idle socket
               held one of the replica's ongoing requests, and its memory, for as long as its client liked

Large messages share the event loop as large bodies do (`api.LargeBodies`): one over 1 MB is
parsed in its key's turn. Behind Ray Serve every open socket holds one of the Gateway's
`max_ongoing_requests` for as long as it is open, and Serve's uvicorn closes a socket sent a
message over 16 MB itself (1009), whatever `server.max_body_mb` says.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator
from typing import TYPE_CHECKING

from starlette.types import Message, Receive, Scope, Send
from starlette.websockets import WebSocket, WebSocketDisconnect, WebSocketDisconnected

from orchestrator.accounting.accounts import Accounts, Tab
from orchestrator.errors import InvalidRequest, OrchestratorError, RequestTooLarge
from orchestrator.frontdoors.openai import error_response
from orchestrator.frontdoors.responses.door import ResponsesDoor
from orchestrator.frontdoors.responses.store import Recent
from orchestrator.frontdoors.responses.websocket_wire import Create, Refused, error_event, read
from orchestrator.pipeline import Pipeline
from orchestrator.scope import ingress_id

if TYPE_CHECKING:
    from orchestrator.api import LargeBodies

log = logging.getLogger(__name__)

MAX_WAITING = 16  # messages waiting or being answered on one connection (OpenAI's "in flight")
MAX_LANES = 32  # distinct stream_ids one connection may name
MAX_AGE_S = 3600.0  # a connection's life, as OpenAI's (`websocket_connection_limit_reached`)
RECENT_BODIES = 4  # a connection's latest responses are kept within this many messages' worth (`store.Recent`)
METHOD = "WS"  # what a tab says its request came by


class ResponsesSocket:
    """The WebSocket route at the Responses door's path: a connection's handshake, then its `Connection`."""

    def __init__(
        self,
        door: ResponsesDoor,
        pipeline: Pipeline,
        accounts: Accounts,
        large: LargeBodies,
        *,
        max_message_bytes: int,
        ingress_ids: bool = False,
        max_age_s: float = MAX_AGE_S,
    ):
        self.door = door
        self.pipeline = pipeline
        self.accounts = accounts
        self.large = large
        self.max_message_bytes = max_message_bytes
        self.ingress_ids = ingress_ids
        self.max_age_s = max_age_s

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        ws = WebSocket(scope, receive, send)
        socket = Tab(self.accounts, "", METHOD, self.door.path)  # the connection's own: in flight while it is open
        try:
            key = await self.accounts.authenticate(socket, ws.headers)
            self.accounts.hold_socket(socket)
        except OrchestratorError as e:
            await self._refuse(ws, e)
            return
        try:
            await ws.accept()
            await Connection(self, ws, key.id if key is not None else None).run()
        finally:
            self.accounts.release_socket(socket)

    async def _refuse(self, ws: WebSocket, exc: OrchestratorError) -> None:
        """No upgrade: the HTTP error a POST would get, in OpenAI's JSON (a server without the denial
        response extension can only close: 1008, its message the reason), accounted as a POST's is."""
        with self.accounts.open(METHOD, self.door.path) as tab:
            tab.error_code = exc.code
            self.accounts.response_started(tab, exc.status_code)
            if "websocket.http.response" in ws.scope.get("extensions", {}):
                await ws.send_denial_response(error_response(exc))
            else:
                await ws.close(1008, exc.message.encode()[:123].decode(errors="ignore"))


class Connection:
    """One client's socket: its messages read as they come and answered lane by lane."""

    def __init__(self, edge: ResponsesSocket, ws: WebSocket, key_id: str | None):
        self.edge = edge
        self.ws = ws
        self.key_id = key_id  # whose turn a large message is parsed in
        self.door = edge.door.remembering(Recent(MAX_LANES, RECENT_BODIES * edge.max_message_bytes))
        self.lanes: dict[str | None, asyncio.Queue[Create | Refused]] = {}
        self.workers: list[asyncio.Task[None]] = []
        self.waiting = 0
        self.ends_at = asyncio.get_running_loop().time() + edge.max_age_s  # its age limit, on the loop's clock
        self.aged = False
        self.closing = False

    async def run(self) -> None:
        """Read until the client leaves (or Serve, seeing it leave, cancels this); then stop every answer."""
        try:
            while (message := await self._receive())["type"] == "websocket.receive":
                if self.closing:
                    continue  # closed at its age: its client's close is all that is left to read
                raw = message.get("bytes") or (message.get("text") or "").encode()
                job = await self._read(raw)
                if isinstance(job, Create) and self.aged:
                    job = Refused(_connection_limit(self.edge.max_age_s), job.stream_id)
                if job is not None:
                    await self._queue(job)
        except (WebSocketDisconnect, WebSocketDisconnected):
            pass  # gone while refusing a message
        finally:
            for worker in self.workers:
                worker.cancel()
            await asyncio.gather(*self.workers, return_exceptions=True)

    async def _receive(self) -> Message:
        """The client's next message; at the connection's age limit it is aged, and closed if idle."""
        if not self.aged:
            try:
                async with asyncio.timeout_at(self.ends_at):
                    return await self.ws.receive()
            except TimeoutError:
                self.aged = True
                await self._close_if_done()
        return await self.ws.receive()

    async def _close_if_done(self) -> None:
        """An aged connection closed once no answer is in progress (its client opens another)."""
        if self.aged and self.waiting == 0 and not self.closing:
            self.closing = True
            with contextlib.suppress(WebSocketDisconnect, WebSocketDisconnected, RuntimeError):  # gone already
                await self.ws.close(1000, "websocket_connection_limit_reached")

    async def _read(self, raw: bytes) -> Create | Refused | None:
        """A message as what to do, read as a body is: none over the limit, a large one in its key's turn."""
        if len(raw) > self.edge.max_message_bytes:
            return Refused(RequestTooLarge.over(self.edge.max_message_bytes, "WebSocket message"))
        async with self.edge.large.slot(self.key_id) as slot:
            if len(raw) > self.edge.large.threshold:
                await slot.take()
            return read(raw)

    async def _queue(self, job: Create | Refused) -> None:
        """`job` in its lane's queue, or refused at once past the connection's limits."""
        lane = job.stream_id
        if self.waiting >= MAX_WAITING:
            full = f"at most {MAX_WAITING} responses may wait or be in progress on one connection"
            await self._send(error_event(_stream_limit(full, None), lane))
            return
        queue = self.lanes.get(lane)
        if queue is None:
            if lane is not None and sum(name is not None for name in self.lanes) >= MAX_LANES:
                await self._send(error_event(_stream_limit(f"at most {MAX_LANES} stream_ids", "stream_id"), lane))
                return
            queue = self.lanes[lane] = asyncio.Queue()
            self.workers.append(asyncio.create_task(self._work(queue)))
        self.waiting += 1
        queue.put_nowait(job)

    async def _work(self, queue: asyncio.Queue[Create | Refused]) -> None:
        """One lane: its messages answered one after another, in the order they came."""
        while True:
            job = await queue.get()
            try:
                await self._answer(job)
            except (WebSocketDisconnect, WebSocketDisconnected):
                return  # the client is gone: `run` sees it and stops the other lanes
            except Exception:  # never the lane's end for one answer's fault
                log.exception("answering a WebSocket message failed")
            finally:
                self.waiting -= 1
            await self._close_if_done()

    async def _answer(self, job: Create | Refused) -> None:
        """One message on its own tab, as a POST is: its events, or the `error` event."""
        edge = self.edge
        with edge.accounts.open(METHOD, edge.door.path) as tab, edge.pipeline.telemetry.request(self.ws.scope, tab):
            if edge.ingress_ids:
                tab.ingress_id = ingress_id(self.ws.scope["headers"])
            try:
                events = await self._events(job, tab)
            except Exception as e:
                error = _as_error(e)
                tab.error_code = error.code
                edge.accounts.response_started(tab, error.status_code)
                await self._send(error_event(error, job.stream_id))
                return
            await self._stream(tab, events)
            if isinstance(job, Create) and not job.generate:
                edge.accounts.finish(tab)  # no model was asked: no usage record will come

    async def _events(self, job: Create | Refused, tab: Tab) -> AsyncIterator[bytes]:
        """What answers a message: its events (lines of JSON), once the flow has an answer."""
        if isinstance(job, Refused):
            raise job.error
        await self.edge.accounts.authenticate(tab, self.ws.headers)
        if not job.generate:
            tab.check_model(job.request.model)  # as admission would: a model the key may not use, or none such
            await tab.admit_unasked()  # a request of its key's minute, as a token count is
            return self.door.unasked(await self.door.turn(job.request, tab), job.stream_id)
        call = await self.door.compacted(await self.door.call(job.request, self.ws.headers, tab), self.edge.pipeline)
        return self.door.socket_events(call, await self.edge.pipeline.serve(call), job.stream_id)

    async def _stream(self, tab: Tab, events: AsyncIterator[bytes]) -> None:
        """Each event its own text message; the answer stops (and its upstream work) if sending fails."""
        async with contextlib.aclosing(events):  # type: ignore[type-var]
            async for lines in events:
                for line in lines.split(b"\n"):
                    if not line:
                        continue
                    if tab.first_byte_s is None:
                        self.edge.accounts.response_started(tab, 200)
                        tab.first_byte_s = tab.elapsed()
                    await self._send(line.decode())

    async def _send(self, text: str) -> None:
        await self.ws.send_text(text)


def _stream_limit(limit: str, param: str | None) -> InvalidRequest:
    return InvalidRequest(
        f"This WebSocket connection has reached its stream limit: {limit}.",
        param=param,
        code="websocket_stream_limit_reached",
    )


def _connection_limit(max_age_s: float) -> InvalidRequest:
    return InvalidRequest(
        f"This WebSocket connection has reached its limit of {max_age_s / 60:g} minutes: open a new one and send "
        "the whole conversation (this connection's responses that were not stored went with it).",
        code="websocket_connection_limit_reached",
    )


def _as_error(exc: Exception) -> OrchestratorError:
    """The gateway's own error as it is; anything else a 500 that says nothing of its cause (logged)."""
    if isinstance(exc, OrchestratorError):
        return exc
    log.error("unhandled error", exc_info=exc)
    return OrchestratorError("The server had an error processing your request.")
