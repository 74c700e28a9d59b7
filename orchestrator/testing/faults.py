"""How the fake provider fails: the fault table, and errors in each wire format's own shape.

A fault applies to the instance (`FaultSwitch.set`, or `POST /_fake/fault`) or to one request (header
`x-fake-fault: stall; stall_after=3`, which does not use up `fail_times`), and only to authenticated POSTs:

    rate_limit          429 + Retry-After (`retry_after`; a fraction also sets retry-after-ms); OpenAI code
                        "rate_limit_exceeded", Anthropic "rate_limit_error"
    insufficient_quota  OpenAI 429 type/code "insufficient_quota"; Anthropic 402 "billing_error"
    server_error        500 (OpenAI "server_error", Anthropic "api_error")
    overloaded          OpenAI 503 "server_error"; Anthropic 529 "overloaded_error"
    bad_request         400 "invalid_request_error" (not retryable)
    reset               reads the request, then closes the socket with RST before any response bytes
    stall               stream: `stall_after` output events, then silence with the connection open until the
                        client goes away (recorded as "disconnected") or `stall_cap_s` (then the socket is
                        closed); non-stream: no response at all, same ending
    malformed           stream: `stall_after` output events, then `data: {not json` and a clean end (no
                        [DONE] / message_stop); non-stream: 200 application/json with a truncated body
    drop                stream: `stall_after` output events, then the socket closes mid-body (the client sees
                        an incomplete chunked read); non-stream: headers and half the body, then closed
    stream_error        stream: `stall_after` output events, then the provider's in-stream error (OpenAI
                        `data: {"error": ...}`, Anthropic `event: error` overloaded_error) and a clean end;
                        non-stream: OpenAI 500 / Anthropic 529
    slow_first_token    normal, but the first output event waits `slow_ttft_s`

`fail_times=N` applies the instance fault to the next N requests only, then the provider is healthy again.
"""

from __future__ import annotations

import dataclasses
import re
import threading
from dataclasses import dataclass
from typing import Any

from aiohttp import web

from orchestrator.testing import anthropic_wire, openai_wire
from orchestrator.testing.replies import Api, Problem, dumps

FAULT_MODES = (
    "rate_limit",
    "insufficient_quota",
    "server_error",
    "overloaded",
    "bad_request",
    "reset",
    "stall",
    "malformed",
    "drop",
    "stream_error",
    "slow_first_token",
)
STATUS_FAULTS = ("rate_limit", "insufficient_quota", "server_error", "overloaded", "bad_request")  # an HTTP error
MIDSTREAM = ("stall", "malformed", "drop", "stream_error")  # after `stall_after` output events


@dataclass(frozen=True)
class Fault:
    """How to misbehave, and for how many requests (`fail_times` None: every request)."""

    mode: str
    fail_times: int | None = None
    retry_after: float = 1.0
    stall_after: int = 2
    stall_cap_s: float = 60.0
    slow_ttft_s: float = 5.0

    def __post_init__(self) -> None:
        if self.mode not in FAULT_MODES:
            raise ValueError(f"unknown fault mode {self.mode!r}; expected one of {', '.join(FAULT_MODES)}")
        if self.fail_times is not None and self.fail_times < 0:
            raise ValueError("fail_times must be >= 0")
        if self.stall_after < 0:
            raise ValueError("stall_after must be >= 0")

    @classmethod
    def parse(cls, spec: str) -> Fault:
        """`"stall; stall_after=3"` -> Fault("stall", stall_after=3) (the `x-fake-fault` header's syntax)."""
        mode, *options = [part.strip() for part in re.split(r"[;,]", spec) if part.strip()] or [""]
        types = {f.name: (int if f.name in ("fail_times", "stall_after") else float) for f in dataclasses.fields(cls)}
        kwargs: dict[str, Any] = {}
        for option in options:
            name, _, value = option.partition("=")
            name = name.strip()
            if name not in types or name == "mode":
                raise ValueError(f"unknown fault option {name!r}")
            kwargs[name] = types[name](value.strip())
        return cls(mode, **kwargs)


class FaultSwitch:
    """The instance fault and how many more requests it applies to; thread-safe."""

    def __init__(self, fault: Fault | None = None) -> None:
        self._lock = threading.Lock()
        self._fault, self._left = fault, fault.fail_times if fault else None

    def set(self, fault: Fault | None) -> None:
        with self._lock:
            self._fault, self._left = fault, fault.fail_times if fault else None

    @property
    def current(self) -> Fault | None:
        """The fault still in force (None once `fail_times` is used up)."""
        with self._lock:
            return self._fault if self._left != 0 else None

    def take(self, header: str | None) -> Fault | None:
        """The fault for one request: the header's (raises ValueError if unreadable), else the instance's,
        counting it against `fail_times`."""
        if header:
            return Fault.parse(header)
        with self._lock:
            if self._fault is None or self._left == 0:
                return None
            if self._left is not None:
                self._left -= 1
            return self._fault


def problem_response(api: Api, problem: Problem, headers: dict[str, str] | None = None) -> web.Response:
    """An error in the provider's own body shape."""
    body = openai_wire.error_body(problem) if api == "openai" else anthropic_wire.error_body(problem)
    return web.Response(status=problem.status, text=dumps(body), content_type="application/json", headers=headers)


def error_response(
    api: Api,
    status: int,
    kind: str,
    message: str,
    *,
    code: str | None = None,
    param: str | None = None,
    headers: dict[str, str] | None = None,
) -> web.Response:
    """An error in the provider's own body shape."""
    return problem_response(api, Problem(status, kind, message, code, param), headers)


def fault_response(api: Api, fault: Fault) -> web.Response:
    """The HTTP error a status-code fault (or non-stream `stream_error`) answers with."""
    headers: dict[str, str] = {}
    if fault.mode == "rate_limit":
        seconds = fault.retry_after
        headers["Retry-After"] = str(int(seconds)) if float(seconds).is_integer() else f"{seconds:g}"
        if not float(seconds).is_integer():
            headers["retry-after-ms"] = str(round(seconds * 1000))
    table = openai_wire.FAULT_ERRORS if api == "openai" else anthropic_wire.FAULT_ERRORS
    return problem_response(api, table[fault.mode], headers)


def broken_line(api: Api) -> bytes:
    """The `malformed` fault's line: an SSE event whose data is not JSON."""
    return openai_wire.BROKEN_LINE if api == "openai" else anthropic_wire.BROKEN_LINE


def stream_error_event(api: Api) -> bytes:
    """The `stream_error` fault's in-stream error, as each provider sends it."""
    return openai_wire.stream_error_event() if api == "openai" else anthropic_wire.stream_error_event()
