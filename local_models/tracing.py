"""A replica's span for one generation: across the Serve handle, a child of the caller's span.

The gateway's `attempt local` span travels in the request as a W3C `traceparent`
(`GenerateRequest.traceparent`); a replica with a tracer provider (the deployment's
`tracing` factory) answers with

    generate {model}    SERVER: queue, prefill and decode of one request in this replica's engine
                        (an event at the first batch out; token usage and finish reasons at the end;
                        `error.type` when it fails, `cancelled` when the caller went away)

A request without a `traceparent` (tracing off at the gateway) costs a key lookup.
Never the prompt or the answer.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncGenerator, AsyncIterator
from typing import TYPE_CHECKING

from opentelemetry.trace import SpanKind, StatusCode
from opentelemetry.trace.propagation.tracecontext import TraceContextTextMapPropagator

from .interface import Batch, GenerateRequest

if TYPE_CHECKING:
    from opentelemetry.trace import Span, TracerProvider

_PROPAGATOR = TraceContextTextMapPropagator()
_OPERATIONS = {"chat": "chat", "completion": "text_completion"}


class GenerationTracer:
    """Spans for one replica's generations of `model`."""

    def __init__(self, provider: TracerProvider, model: str):
        self._tracer = provider.get_tracer("local_models")
        self._model = model

    async def traced(self, request: GenerateRequest, batches: AsyncIterator[Batch]) -> AsyncGenerator[Batch, None]:
        """`batches` as they come, inside the request's span (a child of its `traceparent`)."""
        parent = _PROPAGATOR.extract({"traceparent": request["traceparent"]})
        span = self._tracer.start_span(
            f"generate {self._model}", parent, SpanKind.SERVER,
            {
                "gen_ai.operation.name": _OPERATIONS.get(request["kind"], request["kind"]),
                "gen_ai.request.model": self._model,
                "gen_ai.response.model": self._model,
                "orchestrator.local_request_id": request["request_id"],
            },
            record_exception=False, set_status_on_exception=False,
        )  # fmt: skip
        first, finish_reasons = True, set[str]()
        try:
            async for batch in batches:
                if first:
                    span.add_event("first batch")
                    first = False
                finish_reasons.update(d["finish_reason"] for d in batch["deltas"] if d["finish_reason"])
                if "usage" in batch:
                    usage = batch["usage"]
                    span.set_attributes(
                        {
                            "gen_ai.usage.input_tokens": usage["prompt_tokens"],
                            "gen_ai.usage.output_tokens": usage["completion_tokens"],
                        }
                    )
                yield batch
        except GeneratorExit:
            _failed(span, "cancelled")  # the caller closed the stream (its client went away)
            raise
        except BaseException as e:
            _failed(span, "cancelled" if isinstance(e, asyncio.CancelledError) else type(e).__qualname__)
            raise
        finally:
            if finish_reasons:
                span.set_attribute("gen_ai.response.finish_reasons", sorted(finish_reasons))
            span.end()


def _failed(span: Span, error_type: str) -> None:
    span.set_attribute("error.type", error_type)
    span.set_status(StatusCode.ERROR, error_type)
