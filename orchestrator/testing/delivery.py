"""Sending one answer at the fake provider's pace, and misbehaving on the way when a fault says so.

Headers and the opening events (OpenAI's role chunk; Anthropic's message_start, the text block's start and a
ping) go out at once; the first output ("paced") event `ttft` later, then one every `gap` (1 / tokens_per_s;
0 = no delay). A non-stream answer waits the time the stream would have taken. Mid-stream faults (stall,
malformed, drop, stream_error) strike after `stall_after` output events; `reset` closes the socket with a
TCP RST before any response bytes.
"""

from __future__ import annotations

import asyncio
import socket
import struct
from dataclasses import dataclass
from typing import Any

from aiohttp import web

from orchestrator.testing.faults import MIDSTREAM, Fault, broken_line, fault_response, stream_error_event
from orchestrator.testing.recorder import RecordedRequest, Recorder
from orchestrator.testing.replies import Api, Event, dumps, request_id

NOTHING_SENT = 499  # what a handler returns after closing the connection itself; never reaches a client


@dataclass(frozen=True)
class Pace:
    """Seconds before the first output event, and between output events."""

    ttft_s: float
    gap_s: float

    @classmethod
    def of(cls, ttft_ms: float, tokens_per_s: float, fault: Fault | None) -> Pace:
        ttft = fault.slow_ttft_s if fault and fault.mode == "slow_first_token" else ttft_ms / 1000
        return cls(ttft, 1 / tokens_per_s if tokens_per_s > 0 else 0.0)


def reset_connection(request: web.Request, rec: RecordedRequest) -> web.Response:
    """Close the connection with a TCP RST before any response bytes (the client sees a reset)."""
    transport = request.transport
    if transport is not None:
        sock = transport.get_extra_info("socket")
        if sock is not None:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        transport.abort()
    rec.outcome = "fault"
    return web.Response(status=NOTHING_SENT)


class Delivery:
    """One answer on its way: a JSON body or an SSE stream, paced, with the request's fault applied."""

    def __init__(
        self, request: web.Request, rec: RecordedRequest, api: Api, recorder: Recorder, pace: Pace, fault: Fault | None
    ) -> None:
        self.request, self.rec, self.api = request, rec, api
        self.recorder, self.pace, self.fault = recorder, pace, fault
        self.mode = fault.mode if fault else None

    def _headers(self) -> dict[str, str]:
        return {"x-request-id": request_id()} if self.api == "openai" else {"request-id": request_id()}

    def _abort(self) -> None:
        if self.request.transport is not None:
            self.request.transport.abort()

    async def _hang(self, fault: Fault) -> None:
        """Send nothing more until the client leaves (this task is cancelled) or the cap, then close."""
        await asyncio.sleep(fault.stall_cap_s)
        self.rec.outcome = "fault"
        self._abort()

    async def json(self, payload: dict[str, Any], tokens: int) -> web.StreamResponse:
        """A JSON answer after the time a stream of `tokens` would have taken; non-stream faults."""
        if self.fault is not None and self.mode == "stall":
            await self._hang(self.fault)
            return web.Response(status=NOTHING_SENT)
        if self.fault is not None and self.mode == "stream_error":
            return fault_response(self.api, self.fault)
        await asyncio.sleep(self.pace.ttft_s + max(0, tokens - 1) * self.pace.gap_s)
        text = dumps(payload).encode()
        if self.mode == "malformed":
            self.rec.outcome = "fault"
            half = text[: len(text) // 2]
            return web.Response(status=200, body=half, content_type="application/json", headers=self._headers())
        response = await self._write_json(text)
        self.rec.events_sent = tokens
        return response

    async def _write_json(self, text: bytes) -> web.StreamResponse:
        response = web.StreamResponse(status=200, headers={**self._headers(), "Content-Type": "application/json"})
        response.content_length = len(text)
        try:
            await response.prepare(self.request)
            self.rec.status = response.status
            if self.mode == "drop":
                await response.write(text[: len(text) // 2])
                self.rec.outcome = "fault"
                self._abort()
                return response
            self.recorder.completing(self.rec, response)
            await response.write(text)
            await response.write_eof()
        except ConnectionResetError:
            self.recorder.went_away(self.rec, "disconnected")
        return response

    async def stream(self, events: list[Event]) -> web.StreamResponse:
        """Write SSE events: paced ones after ttft, one per gap; a mid-stream fault after N of them."""
        headers = {**self._headers(), "Cache-Control": "no-cache", "Content-Type": "text/event-stream; charset=utf-8"}
        response = web.StreamResponse(status=200, headers=headers)
        try:
            await response.prepare(self.request)
            self.rec.status = response.status
            if await self._write_events(response, events):
                await response.write_eof()
        except ConnectionResetError:
            self.recorder.went_away(self.rec, "disconnected")
        return response

    async def _write_events(self, response: web.StreamResponse, events: list[Event]) -> bool:
        """Write the events; False when a mid-stream fault ended the stream instead."""
        loop = asyncio.get_running_loop()
        start = loop.time()
        rec = self.rec
        paced_total = sum(e.paced for e in events)
        fault = self.fault
        trigger = min(fault.stall_after, paced_total) if fault and fault.mode in MIDSTREAM else None
        for event in events:
            if fault and trigger == rec.events_sent and (event.paced or rec.events_sent == paced_total):
                await self._midstream(response, fault)
                return False
            if event.paced:
                delay = start + self.pace.ttft_s + rec.events_sent * self.pace.gap_s - loop.time()
                if delay > 0:
                    await asyncio.sleep(delay)
                rec.events_sent += 1
            if event is events[-1]:
                self.recorder.completing(rec, response)
            await response.write(event.data)
        return True

    async def _midstream(self, response: web.StreamResponse, fault: Fault) -> None:
        if fault.mode == "stall":
            await self._hang(fault)
            return
        self.rec.outcome = "fault"
        if fault.mode == "drop":
            self._abort()
            return
        await response.write(broken_line(self.api) if fault.mode == "malformed" else stream_error_event(self.api))
        await response.write_eof()
