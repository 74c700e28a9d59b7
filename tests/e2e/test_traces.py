"""Traces and GenAI metrics from the real deployment (Ray Serve, vLLM on CPU) to a real OTLP/HTTP
receiver on loopback: one trace from the client's `traceparent` through the gateway's steps, across
the Serve handle into the LocalModel replica (another process), and to a remote provider."""

from __future__ import annotations

import secrets
import time

import openai
import pytest

from orchestrator.testing.otlp import OtlpReceiver, ReceivedSpan
from orchestrator.testing.provider import FakeProvider

pytestmark = pytest.mark.e2e

QUESTION = [{"role": "user", "content": "Name the capital of France, the secret city."}]
SERVER, CLIENT = 2, 3  # the protobuf's SpanKind


def _traceparent() -> tuple[str, str, str]:
    trace_id, parent_id = secrets.token_hex(16), secrets.token_hex(8)
    return trace_id, parent_id, f"00-{trace_id}-{parent_id}-01"


def _one(spans: list[ReceivedSpan], name: str) -> ReceivedSpan:
    [span] = [s for s in spans if s.name == name]
    return span


def test_a_local_request_is_one_trace_across_the_serve_handle(client: openai.OpenAI, otlp: OtlpReceiver) -> None:
    trace_id, parent_id, traceparent = _traceparent()
    r = client.chat.completions.create(
        model="local", messages=QUESTION, max_tokens=4, extra_headers={"traceparent": traceparent}
    )
    served = "smollm2-135m"  # the local engine's served name (config/default.yaml)
    assert r.usage is not None
    spans = otlp.wait_for_spans(trace_id, {"chat local", "plan", "attempt local", f"generate {served}"})

    request = _one(spans, "chat local")
    assert request.kind == SERVER and request.parent_span_id == parent_id
    assert request.attributes["gen_ai.provider.name"] == "local"
    assert request.attributes["gen_ai.usage.output_tokens"] == r.usage.completion_tokens
    assert "orchestrator.route.reason" in request.attributes
    for step in ("plan", "attempt local"):
        assert _one(spans, step).parent_span_id == request.span_id
    attempt = _one(spans, "attempt local")
    assert attempt.kind == CLIENT and attempt.attributes["orchestrator.outcome"] == "ok"

    # The replica's span: another process (its own resource), a child of the gateway's attempt.
    generate = _one(spans, f"generate {served}")
    assert generate.kind == SERVER and generate.parent_span_id == attempt.span_id
    assert generate.resource["orchestrator.component"] == "local-model"
    assert request.resource["orchestrator.component"] == "gateway"
    assert generate.attributes["gen_ai.usage.output_tokens"] == r.usage.completion_tokens
    assert "first batch" in generate.events
    assert all("secret" not in str(s.attributes) for s in spans)  # no prompt text by default


def test_a_remote_provider_is_sent_the_attempts_context(
    client: openai.OpenAI, otlp: OtlpReceiver, remote_fakes: dict[str, FakeProvider]
) -> None:
    trace_id, _, traceparent = _traceparent()
    client.chat.completions.create(
        model="llama-3.1-8b-instruct", messages=QUESTION, max_tokens=4, extra_headers={"traceparent": traceparent}
    )
    spans = otlp.wait_for_spans(trace_id, {"chat llama-3.1-8b-instruct", "attempt together"})
    attempt = _one(spans, "attempt together")
    sent = remote_fakes["together"].requests[-1].headers["traceparent"]
    assert sent == f"00-{trace_id}-{attempt.span_id}-01"


def test_genai_metrics_reach_the_collector(client: openai.OpenAI, otlp: OtlpReceiver) -> None:
    client.chat.completions.create(model="local", messages=QUESTION, max_tokens=2)
    deadline = time.monotonic() + 30
    while True:
        names = {p.metric for p in otlp.metrics()}
        wanted = {"gen_ai.client.token.usage", "gen_ai.server.request.duration"}
        if wanted <= names:
            break
        assert time.monotonic() < deadline, f"metrics not received: {sorted(names)}"
        time.sleep(0.5)
    usage = [p for p in otlp.metrics() if p.metric == "gen_ai.client.token.usage"]
    assert {p.attributes["gen_ai.token.type"] for p in usage} == {"input", "output"}
    assert any(p.attributes.get("gen_ai.provider.name") == "local" and p.sum > 0 for p in usage)
