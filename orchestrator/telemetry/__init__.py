"""OpenTelemetry for the gateway: traces of each request and the GenAI metrics, off unless configured.

    traces.py   `Telemetry`: the request span, its step spans, the context a route's call carries on
    metrics.py  `GenAiMetrics`: token usage, request duration and time to first token (GenAI semconv)
    setup.py    where telemetry goes (settings or the standard OTEL_* variables) and building it

Built per process (each gateway and local-model replica has its own providers), never at import:
the global OpenTelemetry providers are left alone.
"""

from orchestrator.telemetry.metrics import GenAiMetrics
from orchestrator.telemetry.setup import (
    build_telemetry,
    metrics_endpoint,
    replica_tracer_provider,
    tracer_provider,
    traces_endpoint,
)
from orchestrator.telemetry.traces import OPERATIONS, Telemetry, outgoing_traceparent

__all__ = [
    "OPERATIONS",
    "GenAiMetrics",
    "Telemetry",
    "build_telemetry",
    "metrics_endpoint",
    "outgoing_traceparent",
    "replica_tracer_provider",
    "traces_endpoint",
    "tracer_provider",
]
