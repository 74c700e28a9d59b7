"""A real OTLP/HTTP receiver on loopback, for tests: what an OpenTelemetry collector would be sent.

`OtlpReceiver().start()` listens on 127.0.0.1 (a free port), answers every POST with 200, and
decodes what arrives: `spans()` from `/v1/traces` (`ExportTraceServiceRequest`), `metrics()` from
`/v1/metrics` (`ExportMetricsServiceRequest`), flattened to plain records a test can compare.
"""

from __future__ import annotations

import threading
import time
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

from opentelemetry.proto.collector.metrics.v1.metrics_service_pb2 import ExportMetricsServiceRequest
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest
from opentelemetry.proto.common.v1.common_pb2 import AnyValue, KeyValue


@dataclass(frozen=True)
class ReceivedSpan:
    name: str
    trace_id: str  # 32 hex digits
    span_id: str  # 16 hex digits
    parent_span_id: str  # "" for a root
    kind: int  # the protobuf's SpanKind: 2 SERVER, 3 CLIENT
    attributes: dict[str, Any]
    resource: dict[str, Any]
    events: list[str]
    status_code: int  # 2: ERROR


@dataclass(frozen=True)
class ReceivedPoint:
    metric: str
    unit: str
    attributes: dict[str, Any]
    count: int  # a histogram's count (1 for a sum or gauge point)
    sum: float
    resource: dict[str, Any] = field(default_factory=dict)


class OtlpReceiver:
    """An OTLP/HTTP (protobuf) receiver in a thread; `url` is its base URL."""

    def __init__(self) -> None:
        self.posts: list[tuple[str, str, bytes]] = []  # (path, content-type, body)
        self._lock = threading.Lock()
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:  # noqa: N802
                body = self.rfile.read(int(self.headers.get("content-length", 0)))
                with receiver._lock:
                    receiver.posts.append((self.path, self.headers.get("content-type", ""), body))
                self.send_response(200)
                self.send_header("content-type", "application/x-protobuf")
                self.send_header("content-length", "0")
                self.end_headers()

            def log_message(self, *args: Any) -> None:
                pass

        self._server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self._server.server_address[1]}"

    def start(self) -> OtlpReceiver:
        self._thread.start()
        return self

    def stop(self) -> None:
        self._server.shutdown()
        self._server.server_close()

    def _bodies(self, path: str) -> list[bytes]:
        with self._lock:
            return [body for p, _, body in self.posts if p == path]

    def spans(self) -> list[ReceivedSpan]:
        out = []
        for body in self._bodies("/v1/traces"):
            for rs in ExportTraceServiceRequest.FromString(body).resource_spans:
                resource = _attributes(rs.resource.attributes)
                for scope in rs.scope_spans:
                    for s in scope.spans:
                        out.append(
                            ReceivedSpan(
                                name=s.name,
                                trace_id=s.trace_id.hex(),
                                span_id=s.span_id.hex(),
                                parent_span_id=s.parent_span_id.hex(),
                                kind=s.kind,
                                attributes=_attributes(s.attributes),
                                resource=resource,
                                events=[e.name for e in s.events],
                                status_code=s.status.code,
                            )
                        )
        return out

    def metrics(self) -> list[ReceivedPoint]:
        out = []
        for body in self._bodies("/v1/metrics"):
            for rm in ExportMetricsServiceRequest.FromString(body).resource_metrics:
                resource = _attributes(rm.resource.attributes)
                for scope in rm.scope_metrics:
                    for m in scope.metrics:
                        for p in m.histogram.data_points:
                            out.append(
                                ReceivedPoint(m.name, m.unit, _attributes(p.attributes), p.count, p.sum, resource)
                            )
                        for q in [*m.sum.data_points, *m.gauge.data_points]:
                            value = q.as_double if q.HasField("as_double") else float(q.as_int)
                            out.append(ReceivedPoint(m.name, m.unit, _attributes(q.attributes), 1, value, resource))
        return out

    def wait_for_spans(self, trace_id: str, names: set[str], timeout_s: float = 30.0) -> list[ReceivedSpan]:
        """The trace's spans once every one of `names` has arrived (AssertionError after `timeout_s`)."""
        deadline = time.monotonic() + timeout_s
        while True:
            spans = [s for s in self.spans() if s.trace_id == trace_id]
            if names <= {s.name for s in spans}:
                return spans
            if time.monotonic() > deadline:
                raise AssertionError(f"spans {sorted(names)} of trace {trace_id} not received: {spans}")
            time.sleep(0.2)


def _attributes(kvs: Any) -> dict[str, Any]:
    return {kv.key: _value(kv.value) for kv in kvs if isinstance(kv, KeyValue)}


def _value(v: AnyValue) -> Any:
    kind = v.WhichOneof("value")
    if kind == "array_value":
        return [_value(x) for x in v.array_value.values]
    return getattr(v, kind) if kind else None
