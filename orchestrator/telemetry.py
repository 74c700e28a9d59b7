"""OpenTelemetry traces: one span per model request, child spans for the flow's steps.

Off unless configured (`telemetry.otlp_endpoint`, or the standard OTEL_EXPORTER_OTLP_ENDPOINT /
OTEL_EXPORTER_OTLP_TRACES_ENDPOINT): then a `TracerProvider` of this gateway's own (never the global
one) batches spans to an OTLP/HTTP exporter. Off, `Telemetry.off()` costs a flag check per request.

    chat {model}        SERVER, the whole request (its stream too), child of a client's W3C `traceparent`
      cache lookup        the cache's answer: HIT, MISS or BYPASS
      plan                the routes in order under the load of now, and why the first leads
      attempt {provider}  CLIENT, one try of one route (to its first content, for a stream)

The request span carries the GenAI semantic conventions (`gen_ai.operation.name`,
`gen_ai.provider.name`, `gen_ai.request.model`, `gen_ai.response.model`, `gen_ai.usage.*`,
`error.type`) and the gateway's own `orchestrator.*` attributes (route reason, cache, request id).
Prompts and answers are never in a span unless `telemetry.capture_content` says so.
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterator, Mapping
from contextlib import AbstractContextManager, contextmanager, nullcontext
from typing import TYPE_CHECKING, Any

from opentelemetry import trace
from opentelemetry.trace import INVALID_SPAN, Span, SpanKind, StatusCode, Tracer
from opentelemetry.trace.propagation.tracecontext import TraceContextTextMapPropagator

if TYPE_CHECKING:
    from opentelemetry.sdk.trace import TracerProvider
    from opentelemetry.sdk.trace.export import SpanExporter

    from orchestrator.accounting.accounts import Tab
    from orchestrator.calls import Call
    from orchestrator.settings import TelemetrySettings

__all__ = ["OPERATIONS", "Telemetry", "build_telemetry", "traces_endpoint"]

# The front doors' paths traced, and their GenAI operation (/health, /metrics, admin: not traced).
OPERATIONS = {
    "/v1/chat/completions": "chat",
    "/v1/completions": "text_completion",
    "/v1/embeddings": "embeddings",
    "/v1/responses": "chat",
    "/v1/messages": "chat",
}
_KINDS = {"chat": "chat", "completion": "text_completion", "embedding": "embeddings"}
_PROPAGATOR = TraceContextTextMapPropagator()
_OFF: AbstractContextManager[Span] = nullcontext(INVALID_SPAN)


class Telemetry:
    """A gateway's tracer, or none (off); `capture_content` puts prompts in the request span."""

    def __init__(self, provider: TracerProvider | None = None, *, capture_content: bool = False):
        self.provider = provider
        self.tracer: Tracer | None = provider.get_tracer("orchestrator") if provider is not None else None
        self.capture_content = capture_content

    @classmethod
    def off(cls) -> Telemetry:
        return cls()

    @property
    def enabled(self) -> bool:
        return self.tracer is not None

    # ------------------------------------------------------------ the request

    @contextmanager
    def request(self, scope: Mapping[str, Any], tab: Tab) -> Iterator[None]:
        """The request span around an HTTP request to a front door (nothing for other paths), a child
        of the client's `traceparent`; its answer's attributes (from the tab) once it has ended."""
        operation = OPERATIONS.get(scope["path"]) if self.tracer is not None else None
        if self.tracer is None or operation is None:
            yield
            return
        parent = _PROPAGATOR.extract(_trace_headers(scope["headers"]))
        attributes = {"gen_ai.operation.name": operation, "orchestrator.request_id": tab.request_id}
        with self.tracer.start_as_current_span(
            operation, context=parent, kind=SpanKind.SERVER, attributes=attributes,
            record_exception=False, set_status_on_exception=False,
        ) as span:  # fmt: skip
            try:
                yield
            except BaseException as e:
                _failed(span, type(e).__qualname__)
                raise
            finally:
                _answered(span, tab)

    def called(self, call: Call) -> None:
        """The request span named for the call's model (`chat {model}`), and its prompt if captured."""
        span = trace.get_current_span()
        if not span.is_recording():
            return
        operation = _KINDS.get(call.kind.name, call.kind.name)
        span.update_name(f"{operation} {call.model}")
        span.set_attribute("gen_ai.request.model", call.model)
        if self.capture_content:
            body = call.body.model_dump(include={"messages", "prompt", "input"}, exclude_none=True)
            span.set_attribute("gen_ai.input.messages", json.dumps(body, ensure_ascii=False, default=str))

    # ------------------------------------------------------------- the steps

    def span(
        self, name: str, attributes: Mapping[str, Any] | None = None, kind: SpanKind = SpanKind.INTERNAL
    ) -> AbstractContextManager[Span]:
        """A child span of the current one (a no-op span when off); a failure inside sets `error.type`."""
        if self.tracer is None:
            return _OFF
        return _step(self.tracer, name, attributes, kind)

    def shutdown(self) -> None:
        if self.provider is not None:
            self.provider.shutdown()


@contextmanager
def _step(tracer: Tracer, name: str, attributes: Mapping[str, Any] | None, kind: SpanKind) -> Iterator[Span]:
    with tracer.start_as_current_span(
        name, kind=kind, attributes=attributes, record_exception=False, set_status_on_exception=False
    ) as span:
        try:
            yield span
        except BaseException as e:
            _failed(span, getattr(e, "code", None) or type(e).__qualname__)
            raise


def _failed(span: Span, error_type: str) -> None:
    # The type only: an upstream's message may quote the prompt.
    span.set_attribute("error.type", error_type)
    span.set_status(StatusCode.ERROR, error_type)


def _answered(span: Span, tab: Tab) -> None:
    if tab.status:
        span.set_attribute("http.response.status_code", tab.status)
    if (answer := tab.answer) is not None:
        span.set_attributes(
            {
                "gen_ai.request.model": answer.model,
                "gen_ai.provider.name": answer.provider,
                "gen_ai.response.model": answer.provider_model,
                "gen_ai.usage.input_tokens": answer.prompt_tokens,
                "gen_ai.usage.output_tokens": answer.completion_tokens,
                "orchestrator.route.reason": answer.route_reason,
                "orchestrator.cache": answer.cache,
                "orchestrator.cost_usd": answer.cost_usd,
            }
        )
        if not answer.complete:
            _failed(span, "incomplete")
    if tab.status >= 400:
        _failed(span, tab.error_code or str(tab.status))


def _trace_headers(headers: list[tuple[bytes, bytes]]) -> dict[str, str]:
    carrier: dict[str, str] = {}
    for name, value in headers:
        lower = name.lower()
        if lower == b"traceparent" or lower == b"tracestate":
            carrier[lower.decode()] = value.decode("latin-1")
    return carrier


# ------------------------------------------------------------------------------ building it


def traces_endpoint(settings: TelemetrySettings, env: Mapping[str, str] | None = None) -> str | None:
    """Where spans go: the setting's base URL + /v1/traces, else the standard variables; None: off."""
    env = os.environ if env is None else env
    if settings.otlp_endpoint:
        base = settings.otlp_endpoint.rstrip("/")
        return base if base.endswith("/v1/traces") else f"{base}/v1/traces"
    if env.get("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT"):
        return env["OTEL_EXPORTER_OTLP_TRACES_ENDPOINT"]
    if env.get("OTEL_EXPORTER_OTLP_ENDPOINT"):
        return env["OTEL_EXPORTER_OTLP_ENDPOINT"].rstrip("/") + "/v1/traces"
    return None


def build_telemetry(
    settings: TelemetrySettings | None,
    env: Mapping[str, str] | None = None,
    exporter: SpanExporter | None = None,
) -> Telemetry:
    """The gateway's telemetry: a provider batching to OTLP/HTTP where configured (or to `exporter`,
    for tests), else off. Built per replica, never at import: the global provider is left alone."""
    from orchestrator.settings import TelemetrySettings

    settings = settings or TelemetrySettings()
    endpoint = traces_endpoint(settings, env)
    if exporter is None and endpoint is None:
        return Telemetry.off()
    from opentelemetry.sdk.resources import Resource
    from opentelemetry.sdk.trace import TracerProvider
    from opentelemetry.sdk.trace.export import BatchSpanProcessor

    if exporter is None:
        from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter

        exporter = OTLPSpanExporter(endpoint=endpoint)
    provider = TracerProvider(resource=Resource.create({"service.name": settings.service_name}))
    provider.add_span_processor(BatchSpanProcessor(exporter))
    return Telemetry(provider, capture_content=settings.capture_content)
