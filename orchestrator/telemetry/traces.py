"""Traces: one span per model request, child spans for the flow's steps, and the context a call carries.

    chat {model}          SERVER, the whole request (its stream too), child of a client's W3C `traceparent`
      cache lookup          the cache's answer: HIT, MISS or BYPASS
      plan                  the routes in order under the load of now, and why the first leads
      attempt {provider}    CLIENT, one try of one route (to its first content, for a stream)
        generate {model}    SERVER, in the LocalModel replica across the Serve handle (local_models/tracing.py)

The request span carries the GenAI semantic conventions (`gen_ai.operation.name`,
`gen_ai.provider.name`, `gen_ai.request.model`, `gen_ai.response.model`, `gen_ai.usage.*`,
`error.type`) and the gateway's own `orchestrator.*` attributes (route reason, cache, request id).
Prompts and answers are never in a span unless `telemetry.capture_content` says so.

An attempt's span is the current one while its route is called: a local call carries it as the
request's `traceparent` across the Serve handle (`outgoing_traceparent`), and an HTTP provider gets
it as a `traceparent` header. Leaf steps (cache lookup, plan) are never current and nothing carries
them, so inside a request they are only noted (name, times, attributes) and made into spans once the
answer has gone out: the SDK's span-making is most of what tracing costs
(benchmarks/telemetry_overhead.py), and this keeps two spans' worth of it off the answer's path.

Cost: off, a flag check per step. On, spans are made with the SDK's `start_span` and their context
attached by hand (no generator-based context managers per step).
"""

from __future__ import annotations

import json
import time
from collections.abc import Iterator, Mapping
from contextlib import AbstractContextManager, contextmanager, nullcontext
from types import TracebackType
from typing import TYPE_CHECKING, Any, Protocol

from opentelemetry import context as otel_context
from opentelemetry import trace
from opentelemetry.context import Context
from opentelemetry.trace import INVALID_SPAN, Span, SpanKind, StatusCode, Tracer
from opentelemetry.trace.propagation.tracecontext import TraceContextTextMapPropagator

if TYPE_CHECKING:
    import httpx
    from opentelemetry.sdk.metrics import MeterProvider
    from opentelemetry.sdk.trace import TracerProvider

    from orchestrator.accounting.accounts import Tab
    from orchestrator.calls import Call
    from orchestrator.telemetry.metrics import GenAiMetrics

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
_OFF: AbstractContextManager[Any] = nullcontext(INVALID_SPAN)
_ROOT = Context()  # no client traceparent: the request starts a trace of its own
_MAX_NAME = 200  # a span's name carries the client's model name: bounded
_MAX_CAPTURE = 16_384  # characters of a captured prompt (telemetry.capture_content) kept in its span
_LEAVES = "orchestrator.trace.leaves"  # the request's noted leaf steps, in its OpenTelemetry context


class StepSpan(Protocol):
    """What a step sets on its span (an SDK span, a noted leaf, or the no-op span when off)."""

    def is_recording(self) -> bool: ...

    def set_attribute(self, key: str, value: Any) -> None: ...

    def set_attributes(self, attributes: Mapping[str, Any]) -> None: ...


class Telemetry:
    """A gateway's tracer and GenAI metrics, or none (off); `capture_content` puts prompts in the request span."""

    def __init__(
        self,
        provider: TracerProvider | None = None,
        *,
        meters: MeterProvider | None = None,
        metrics: GenAiMetrics | None = None,
        capture_content: bool = False,
    ):
        self.provider = provider
        self.meters = meters
        self.metrics = metrics
        self.tracer: Tracer | None = provider.get_tracer("orchestrator") if provider is not None else None
        self.capture_content = capture_content

    @classmethod
    def off(cls) -> Telemetry:
        return cls()

    @property
    def enabled(self) -> bool:
        return self.tracer is not None or self.metrics is not None

    # ------------------------------------------------------------ the request

    @contextmanager
    def request(self, scope: Mapping[str, Any], tab: Tab) -> Iterator[None]:
        """The request span around an HTTP request to a front door (nothing for other paths), a child
        of the client's `traceparent`; its answer's attributes (from the tab) once it has ended, and
        the request's GenAI metrics."""
        operation = OPERATIONS.get(scope["path"]) if self.enabled else None
        if operation is None:
            yield
            return
        if self.tracer is None:
            try:
                yield
            finally:
                self._measured(operation, tab)
            return
        carrier = _trace_headers(scope["headers"])
        parent = _PROPAGATOR.extract(carrier) if carrier else _ROOT
        span = self.tracer.start_span(
            operation, parent, SpanKind.SERVER,
            {"gen_ai.operation.name": operation, "orchestrator.request_id": tab.request_id},
            record_exception=False, set_status_on_exception=False,
        )  # fmt: skip
        leaves: list[_Leaf] = []
        context = trace.set_span_in_context(span, parent)
        token = otel_context.attach(otel_context.set_value(_LEAVES, leaves, context))
        try:
            yield
        except BaseException as e:
            _failed(span, type(e).__qualname__)
            raise
        finally:
            otel_context.detach(token)
            for leaf in leaves:
                leaf.made(self.tracer, context)
            _answered(span, tab)
            span.end()
            self._measured(operation, tab)

    def _measured(self, operation: str, tab: Tab) -> None:
        if self.metrics is not None:
            self.metrics.record(operation, tab)

    def called(self, call: Call) -> None:
        """The request span named for the call's model (`chat {model}`), and its prompt if captured."""
        if self.tracer is None:
            return
        span = trace.get_current_span()
        if not span.is_recording():
            return
        operation = _KINDS.get(call.kind.name, call.kind.name)
        span.update_name(f"{operation} {call.model}"[:_MAX_NAME])
        span.set_attribute("gen_ai.request.model", call.model)
        if self.capture_content:
            body = call.body.model_dump(include={"messages", "prompt", "input"}, exclude_none=True)
            text = json.dumps(body, ensure_ascii=False, default=str)
            # Bounded: a client's 8 MB body must not become an 8 MB span for the exporter and the collector.
            span.set_attribute("gen_ai.input.messages", text[:_MAX_CAPTURE] + ("…" if len(text) > _MAX_CAPTURE else ""))

    # ------------------------------------------------------------- the steps

    def step(self, name: str, attributes: Mapping[str, Any] | None = None) -> AbstractContextManager[StepSpan]:
        """A leaf child span of the current one, never current: inside a request, noted and made when the
        request ends; outside one, made at once (a no-op span when off). A failure inside sets `error.type`."""
        if self.tracer is None:
            return _OFF
        leaves = otel_context.get_value(_LEAVES)
        if isinstance(leaves, list):
            return _Leaf(name, attributes, leaves)
        return _Step(self.tracer, name, attributes, SpanKind.INTERNAL, current=False)

    def span(
        self, name: str, attributes: Mapping[str, Any] | None = None, kind: SpanKind = SpanKind.INTERNAL
    ) -> AbstractContextManager[Span]:
        """A child span of the current one, current while it lasts (what it calls carries it); a
        no-op span when off; a failure inside sets `error.type`."""
        if self.tracer is None:
            return _OFF
        return _Step(self.tracer, name, attributes, kind, current=True)

    def shutdown(self) -> None:
        """Flush and stop: what is batched is exported now."""
        if self.provider is not None:
            self.provider.shutdown()
        if self.meters is not None:
            self.meters.shutdown()


class _Step:
    """A started span as a context manager, current (attached) or not, ended on exit."""

    __slots__ = ("_span", "_token")

    def __init__(
        self, tracer: Tracer, name: str, attributes: Mapping[str, Any] | None, kind: SpanKind, *, current: bool
    ):
        self._span = tracer.start_span(
            name, kind=kind, attributes=attributes, record_exception=False, set_status_on_exception=False
        )
        self._token = otel_context.attach(trace.set_span_in_context(self._span)) if current else None

    def __enter__(self) -> Span:
        return self._span

    def __exit__(self, kind: type[BaseException] | None, error: BaseException | None, tb: TracebackType | None) -> None:
        if error is not None:
            _failed(self._span, getattr(error, "code", None) or type(error).__qualname__)
        if self._token is not None:
            otel_context.detach(self._token)
        self._span.end()


class _Leaf:
    """A leaf step noted in a request (its name, wall-clock times and attributes), a span once made."""

    __slots__ = ("_leaves", "attributes", "end", "error", "name", "start")

    def __init__(self, name: str, attributes: Mapping[str, Any] | None, leaves: list[_Leaf]):
        self.name, self.attributes, self._leaves = name, dict(attributes or {}), leaves
        self.error: str | None = None
        self.start = time.time_ns()
        self.end = self.start

    def is_recording(self) -> bool:
        return True

    def set_attribute(self, key: str, value: Any) -> None:
        self.attributes[key] = value

    def set_attributes(self, attributes: Mapping[str, Any]) -> None:
        self.attributes.update(attributes)

    def __enter__(self) -> _Leaf:
        return self

    def __exit__(self, kind: type[BaseException] | None, error: BaseException | None, tb: TracebackType | None) -> None:
        self.end = time.time_ns()
        if error is not None:
            self.error = getattr(error, "code", None) or type(error).__qualname__
        self._leaves.append(self)

    def made(self, tracer: Tracer, parent: Context) -> None:
        span = tracer.start_span(
            self.name, parent, attributes=self.attributes, start_time=self.start,
            record_exception=False, set_status_on_exception=False,
        )  # fmt: skip
        if self.error is not None:
            _failed(span, self.error)
        span.end(self.end)


def outgoing_traceparent() -> str | None:
    """The W3C `traceparent` of the current span, for a call that leaves this process; None when
    nothing is traced (tracing off, or no request span)."""
    if not trace.get_current_span().is_recording():
        return None
    carrier: dict[str, str] = {}
    _PROPAGATOR.inject(carrier)
    return carrier.get("traceparent")


async def traceparent_header(request: httpx.Request) -> None:
    """An httpx request hook: a provider's request carries the attempt's `traceparent`."""
    if (value := outgoing_traceparent()) is not None:
        request.headers["traceparent"] = value


def _failed(span: Span, error_type: str) -> None:
    # The type only: an upstream's message may quote the prompt.
    span.set_attribute("error.type", error_type)
    span.set_status(StatusCode.ERROR, error_type)


def _answered(span: Span, tab: Tab) -> None:
    attributes: dict[str, Any] = {}
    if tab.status:
        attributes["http.response.status_code"] = tab.status
    if (answer := tab.answer) is not None:
        attributes["gen_ai.request.model"] = answer.model
        attributes["gen_ai.provider.name"] = answer.provider
        attributes["gen_ai.response.model"] = answer.provider_model
        attributes["gen_ai.usage.input_tokens"] = answer.prompt_tokens
        attributes["gen_ai.usage.output_tokens"] = answer.completion_tokens
        attributes["orchestrator.route.reason"] = answer.route_reason
        attributes["orchestrator.cache"] = answer.cache
        attributes["orchestrator.cost_usd"] = answer.cost_usd
    span.set_attributes(attributes)
    if answer is not None and not answer.complete:
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
