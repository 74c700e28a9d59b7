"""Where telemetry goes, and building it.

Off unless configured: `telemetry.otlp_endpoint` (a collector's base URL: traces to `<it>/v1/traces`,
metrics to `<it>/v1/metrics`), else the standard OTEL_EXPORTER_OTLP_ENDPOINT and its per-signal
OTEL_EXPORTER_OTLP_TRACES_ENDPOINT / OTEL_EXPORTER_OTLP_METRICS_ENDPOINT. Spans are batched
(`BatchSpanProcessor`) and metrics exported every `telemetry.metric_interval_s` over OTLP/HTTP, from
providers of this process's own (the global ones are left alone).
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from typing import TYPE_CHECKING

from orchestrator.telemetry.metrics import GenAiMetrics
from orchestrator.telemetry.traces import Telemetry

if TYPE_CHECKING:
    from opentelemetry.sdk.metrics import MeterProvider
    from opentelemetry.sdk.metrics.export import MetricReader
    from opentelemetry.sdk.resources import Resource
    from opentelemetry.sdk.trace import TracerProvider
    from opentelemetry.sdk.trace.export import SpanExporter

    from orchestrator.settings import TelemetrySettings


def traces_endpoint(settings: TelemetrySettings, env: Mapping[str, str] | None = None) -> str | None:
    """Where spans go: the setting's base URL + /v1/traces, else the standard variables; None: off."""
    return _endpoint(settings, os.environ if env is None else env, "traces")


def metrics_endpoint(settings: TelemetrySettings, env: Mapping[str, str] | None = None) -> str | None:
    """Where metrics go: the setting's base URL + /v1/metrics, else the standard variables; None: off."""
    return _endpoint(settings, os.environ if env is None else env, "metrics")


def _endpoint(settings: TelemetrySettings, env: Mapping[str, str], signal: str) -> str | None:
    if settings.otlp_endpoint:
        base = settings.otlp_endpoint.rstrip("/")
        for suffix in ("/v1/traces", "/v1/metrics"):  # a signal's own URL given: its collector's base
            base = base.removesuffix(suffix)
        return f"{base}/v1/{signal}"
    if env.get(f"OTEL_EXPORTER_OTLP_{signal.upper()}_ENDPOINT"):
        return env[f"OTEL_EXPORTER_OTLP_{signal.upper()}_ENDPOINT"]
    if env.get("OTEL_EXPORTER_OTLP_ENDPOINT"):
        return env["OTEL_EXPORTER_OTLP_ENDPOINT"].rstrip("/") + f"/v1/{signal}"
    return None


def _resource(settings: TelemetrySettings, component: str) -> Resource:
    from opentelemetry.sdk.resources import Resource

    return Resource.create({"service.name": settings.service_name, "orchestrator.component": component})


def tracer_provider(
    settings: TelemetrySettings,
    env: Mapping[str, str] | None = None,
    exporter: SpanExporter | None = None,
    component: str = "gateway",
) -> TracerProvider | None:
    """A provider batching spans to OTLP/HTTP where configured (or to `exporter`, for tests); None: off."""
    endpoint = traces_endpoint(settings, env)
    if exporter is None and endpoint is None:
        return None
    from opentelemetry.sdk.trace import TracerProvider
    from opentelemetry.sdk.trace.export import BatchSpanProcessor

    if exporter is None:
        from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter

        exporter = OTLPSpanExporter(endpoint=endpoint)
    provider = TracerProvider(resource=_resource(settings, component))
    provider.add_span_processor(BatchSpanProcessor(exporter))
    return provider


def replica_tracer_provider(settings: TelemetrySettings) -> TracerProvider | None:
    """A LocalModel replica's provider (its spans are children of the gateway's attempts); a picklable
    factory for the deployment: `functools.partial(replica_tracer_provider, settings.telemetry)`."""
    return tracer_provider(settings, component="local-model")


def _meter_provider(
    settings: TelemetrySettings, env: Mapping[str, str] | None, reader: MetricReader | None
) -> MeterProvider | None:
    endpoint = metrics_endpoint(settings, env)
    if reader is None and endpoint is None:
        return None
    from opentelemetry.sdk.metrics import MeterProvider

    if reader is None:
        from opentelemetry.exporter.otlp.proto.http.metric_exporter import OTLPMetricExporter
        from opentelemetry.sdk.metrics.export import PeriodicExportingMetricReader

        reader = PeriodicExportingMetricReader(
            OTLPMetricExporter(endpoint=endpoint), export_interval_millis=settings.metric_interval_s * 1000
        )
    return MeterProvider(metric_readers=[reader], resource=_resource(settings, "gateway"))


def build_telemetry(
    settings: TelemetrySettings | None,
    env: Mapping[str, str] | None = None,
    exporter: SpanExporter | None = None,
    metric_reader: MetricReader | None = None,
) -> Telemetry:
    """The gateway's telemetry: traces and GenAI metrics where configured (or to `exporter` /
    `metric_reader`, for tests), else off. Built per replica, never at import."""
    from orchestrator.settings import TelemetrySettings

    settings = settings or TelemetrySettings()
    traces = tracer_provider(settings, env, exporter)
    meters = _meter_provider(settings, env, metric_reader)
    metrics = GenAiMetrics(meters.get_meter("orchestrator")) if meters is not None else None
    return Telemetry(traces, meters=meters, metrics=metrics, capture_content=settings.capture_content)
