"""What the fake provider saw: each request as received and how its answer went, and counts.

`RecordedRequest` is updated while its answer runs: the status once headers are sent, the fault applied, the
output events written, and its outcome, "in_flight" | "completed" | "disconnected" (the client went away
first: proof that a gateway cancels upstream work) | "fault" | "shutdown". `Recorder` keeps them (unless
`record` is off: counts only) and is thread-safe, since a test thread reads what the server's thread writes.
"""

from __future__ import annotations

import threading
import time
from collections import Counter
from dataclasses import dataclass
from typing import Any

from aiohttp import web


@dataclass
class RecordedRequest:
    """One request as received, and how its answer went (updated while it runs)."""

    seq: int
    method: str
    path: str
    headers: dict[str, str]  # lowercased names
    body: Any  # parsed JSON, or None
    time: float  # time.time() at arrival
    status: int | None = None  # None while nothing was sent (or never: reset, a non-stream stall)
    fault: str | None = None
    events_sent: int = 0  # output events (tokens, tool fragments) written
    outcome: str = "in_flight"  # in_flight | completed | disconnected | fault | shutdown
    ended: float | None = None


class Recorder:
    """The requests received, counts per path and per fault applied, disconnects, requests in flight."""

    def __init__(self, record: bool = True) -> None:
        self.record = record
        self._lock = threading.Lock()
        self._records: list[RecordedRequest] = []
        self.counts: Counter[str] = Counter()
        self.faults_applied: Counter[str] = Counter()
        self.disconnects = 0
        self.in_flight = 0
        self._seq = 0

    @property
    def requests(self) -> list[RecordedRequest]:
        with self._lock:
            return list(self._records)

    def reset(self) -> None:
        with self._lock:
            self._records.clear()
            self.counts.clear()
            self.faults_applied.clear()
            self.disconnects = 0

    def receive(self, request: web.Request, body: Any) -> RecordedRequest:
        """Number and keep a request as it arrives."""
        headers = {k.lower(): v for k, v in request.headers.items()}
        with self._lock:
            self._seq += 1
            rec = RecordedRequest(self._seq, request.method, request.path, headers, body, time.time())
            self.counts[request.path] += 1
            if self.record:
                self._records.append(rec)
        return rec

    def fault_applied(self, rec: RecordedRequest, mode: str) -> None:
        rec.fault = mode
        with self._lock:
            self.faults_applied[mode] += 1

    def completing(self, rec: RecordedRequest, response: web.StreamResponse) -> None:
        """Mark a prepared answer complete before its last bytes go out, so a client that has read them all
        never sees the record still in flight."""
        rec.status, rec.outcome = response.status, "completed"

    def went_away(self, rec: RecordedRequest, outcome: str) -> None:
        """The answer stopped early: the client left ("disconnected", counted) or the server stopped."""
        if rec.outcome == "in_flight":
            rec.outcome = outcome
            if outcome == "disconnected":
                self.disconnects += 1
