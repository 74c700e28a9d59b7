"""OpenTelemetry traces: the request span (GenAI semantic conventions), its step spans, a client's
`traceparent`, failures, no prompt text by default, and spans reaching a real OTLP/HTTP receiver."""

from __future__ import annotations

import json
import threading
from collections.abc import AsyncIterator, Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import httpx
import pytest
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest
from opentelemetry.sdk.trace import ReadableSpan
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.trace import SpanKind, StatusCode

from orchestrator.api import build_app
from orchestrator.app import build_pipeline
from orchestrator.settings import TelemetrySettings, load_settings
from orchestrator.telemetry import Telemetry, build_telemetry, traces_endpoint
from orchestrator.testing.engine import FakeEngine

MODEL = "fake-chat"
PROMPT = "the secret prompt words"
TRACE_ID = "0af7651916cd43dd8448eb211c80319c"
PARENT_ID = "b7ad6b7169203331"


class Traced:
    def __init__(self, client: httpx.AsyncClient, telemetry: Telemetry, exporter: InMemorySpanExporter):
        self.client, self.telemetry, self.exporter = client, telemetry, exporter

    async def chat(self, text: str = PROMPT, headers: dict[str, str] | None = None, **fields: Any) -> httpx.Response:
        body = {"model": MODEL, "messages": [{"role": "user", "content": text}], **fields}
        return await self.client.post("/v1/chat/completions", json=body, headers=headers or {})

    def spans(self) -> list[ReadableSpan]:
        assert self.telemetry.provider is not None
        self.telemetry.provider.force_flush()
        return list(self.exporter.get_finished_spans())

    def request_span(self) -> ReadableSpan:
        [span] = [s for s in self.spans() if s.kind is SpanKind.SERVER]
        return span


async def _traced(tmp_path: Path, engine: FakeEngine, capture_content: bool = False) -> AsyncIterator[Traced]:
    exporter = InMemorySpanExporter()
    telemetry = build_telemetry(TelemetrySettings(capture_content=capture_content), env={}, exporter=exporter)
    settings = load_settings(providers={}, models={}, cache={"directory": str(tmp_path / "cache")}, data_dir=tmp_path)
    pipeline = await build_pipeline({"local": (engine, engine.info())}, settings, env={}, telemetry=telemetry)
    transport = httpx.ASGITransport(app=build_app(pipeline))
    async with httpx.AsyncClient(transport=transport, base_url="http://gateway") as client:
        yield Traced(client, telemetry, exporter)
    telemetry.shutdown()


@pytest.fixture
async def traced(tmp_path: Path) -> AsyncIterator[Traced]:
    async for t in _traced(tmp_path, FakeEngine(MODEL)):
        yield t


def _attributes(span: ReadableSpan) -> dict[str, Any]:
    return dict(span.attributes or {})


async def test_request_span_has_genai_attributes_and_step_children(traced: Traced) -> None:
    r = await traced.chat(temperature=0)
    assert r.status_code == 200
    spans = traced.spans()
    request = traced.request_span()
    assert request.name == f"chat {MODEL}"
    attrs = _attributes(request)
    assert attrs["gen_ai.operation.name"] == "chat"
    assert attrs["gen_ai.request.model"] == MODEL
    assert attrs["gen_ai.provider.name"] == "local"
    assert attrs["gen_ai.response.model"] == MODEL
    usage = r.json()["usage"]
    assert attrs["gen_ai.usage.input_tokens"] == usage["prompt_tokens"]
    assert attrs["gen_ai.usage.output_tokens"] == usage["completion_tokens"]
    assert attrs["orchestrator.route.reason"] == "local: the only route"
    assert attrs["orchestrator.cache"] == "MISS"
    assert attrs["http.response.status_code"] == 200
    assert attrs["orchestrator.request_id"].startswith("req_")
    assert "error.type" not in attrs
    assert request.parent is None  # no traceparent: a new trace

    children = {s.name: s for s in spans if s.parent is not None}
    assert set(children) == {"cache lookup", "plan", "attempt local"}
    for child in children.values():
        assert child.parent is not None and child.parent.span_id == request.context.span_id
        assert child.context.trace_id == request.context.trace_id
    assert _attributes(children["cache lookup"])["orchestrator.cache"] == "MISS"
    plan = _attributes(children["plan"])
    assert plan["orchestrator.route.reason"] == attrs["orchestrator.route.reason"]
    assert list(plan["orchestrator.routes"]) == [f"local/{MODEL}"]
    attempt = children["attempt local"]
    assert attempt.kind is SpanKind.CLIENT
    assert _attributes(attempt)["gen_ai.provider.name"] == "local"
    assert _attributes(attempt)["orchestrator.outcome"] == "ok"


async def test_cache_hit_is_its_own_provider(traced: Traced) -> None:
    await traced.chat(temperature=0)
    traced.spans()  # flushed
    traced.exporter.clear()
    await traced.chat(temperature=0)
    spans = traced.spans()
    attrs = _attributes(traced.request_span())
    assert attrs["gen_ai.provider.name"] == "cache" and attrs["orchestrator.cache"] == "HIT"
    assert {s.name for s in spans if s.parent is not None} == {"cache lookup"}


async def test_stream_span_ends_with_its_usage(traced: Traced) -> None:
    r = await traced.chat(stream=True, stream_options={"include_usage": True})
    assert r.status_code == 200 and "[DONE]" in r.text
    attrs = _attributes(traced.request_span())
    assert attrs["gen_ai.usage.output_tokens"] > 0 and attrs["gen_ai.provider.name"] == "local"


async def test_client_traceparent_is_the_parent(traced: Traced) -> None:
    r = await traced.chat(headers={"traceparent": f"00-{TRACE_ID}-{PARENT_ID}-01"})
    assert r.status_code == 200
    request = traced.request_span()
    assert request.context.trace_id == int(TRACE_ID, 16)
    assert request.parent is not None and request.parent.span_id == int(PARENT_ID, 16)
    assert request.parent.is_remote
    assert all(s.context.trace_id == int(TRACE_ID, 16) for s in traced.spans())


async def test_a_malformed_traceparent_starts_a_new_trace(traced: Traced) -> None:
    r = await traced.chat(headers={"traceparent": "00-nonsense"})
    assert r.status_code == 200
    assert traced.request_span().parent is None


async def test_unknown_model_sets_error_type(traced: Traced) -> None:
    body = {"model": "nope", "messages": [{"role": "user", "content": "x"}]}
    r = await traced.client.post("/v1/chat/completions", json=body)
    assert r.status_code == 404
    request = traced.request_span()
    assert _attributes(request)["error.type"] == r.json()["error"]["code"]
    assert _attributes(request)["http.response.status_code"] == 404
    assert request.status.status_code is StatusCode.ERROR


async def test_engine_failure_sets_error_type_on_attempt_and_request(tmp_path: Path) -> None:
    async for traced in _traced(tmp_path, FakeEngine(MODEL, fail_after=0)):
        r = await traced.chat()
        assert r.status_code >= 500
        spans = traced.spans()
        attempts = [s for s in spans if s.name == "attempt local"]
        assert attempts and all("error.type" in _attributes(s) for s in attempts)
        assert all(s.status.status_code is StatusCode.ERROR for s in attempts)
        request = traced.request_span()
        assert _attributes(request)["error.type"]
        assert request.status.status_code is StatusCode.ERROR


async def test_no_prompt_or_answer_in_spans_by_default(traced: Traced) -> None:
    await traced.chat(temperature=0)
    await traced.chat(stream=True)
    for span in traced.spans():
        text = json.dumps({k: str(v) for k, v in _attributes(span).items()}) + span.name
        assert "secret" not in text, span.name


async def test_capture_content_puts_the_prompt_in_the_request_span(tmp_path: Path) -> None:
    async for traced in _traced(tmp_path, FakeEngine(MODEL), capture_content=True):
        await traced.chat()
        assert PROMPT in _attributes(traced.request_span())["gen_ai.input.messages"]


async def test_untraced_paths_and_off_by_default(traced: Traced) -> None:
    assert (await traced.client.get("/health")).status_code == 200
    assert traced.spans() == []
    assert not build_telemetry(TelemetrySettings(), env={}).enabled
    assert build_telemetry(None, env={}).tracer is None


def test_endpoint_from_settings_or_standard_variables() -> None:
    off = TelemetrySettings()
    assert traces_endpoint(off, {}) is None
    assert traces_endpoint(TelemetrySettings(otlp_endpoint="http://c:4318/"), {}) == "http://c:4318/v1/traces"
    assert traces_endpoint(TelemetrySettings(otlp_endpoint="http://c:4318/v1/traces"), {}) == "http://c:4318/v1/traces"
    assert traces_endpoint(off, {"OTEL_EXPORTER_OTLP_ENDPOINT": "http://e:4318"}) == "http://e:4318/v1/traces"
    env = {"OTEL_EXPORTER_OTLP_ENDPOINT": "http://e:4318", "OTEL_EXPORTER_OTLP_TRACES_ENDPOINT": "http://t/x"}
    assert traces_endpoint(off, env) == "http://t/x"


# ------------------------------------------------------------------ a real OTLP/HTTP receiver


class _Receiver(BaseHTTPRequestHandler):
    posts: list[tuple[str, str, bytes]] = []

    def do_POST(self) -> None:  # noqa: N802
        body = self.rfile.read(int(self.headers.get("content-length", 0)))
        type(self).posts.append((self.path, self.headers.get("content-type", ""), body))
        self.send_response(200)
        self.send_header("content-type", "application/x-protobuf")
        self.send_header("content-length", "0")
        self.end_headers()

    def log_message(self, *args: Any) -> None:
        pass


@pytest.fixture
def receiver() -> Iterator[tuple[str, list[tuple[str, str, bytes]]]]:
    handler = type("Receiver", (_Receiver,), {"posts": []})
    server = ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}", handler.posts
    finally:
        server.shutdown()
        server.server_close()


async def test_spans_reach_an_otlp_http_receiver(
    receiver: tuple[str, list[tuple[str, str, bytes]]], tmp_path: Path
) -> None:
    url, posts = receiver
    telemetry = build_telemetry(TelemetrySettings(otlp_endpoint=url, service_name="gw-test"), env={})
    assert telemetry.enabled and telemetry.provider is not None
    engine = FakeEngine(MODEL)
    pipeline = await build_pipeline({"local": (engine, engine.info())}, None, env={}, telemetry=telemetry)
    transport = httpx.ASGITransport(app=build_app(pipeline))
    async with httpx.AsyncClient(transport=transport, base_url="http://gateway") as client:
        body = {"model": MODEL, "messages": [{"role": "user", "content": PROMPT}]}
        assert (await client.post("/v1/chat/completions", json=body)).status_code == 200
    assert telemetry.provider.force_flush(10_000)
    telemetry.shutdown()
    assert posts, "no export arrived"
    path, content_type, raw = posts[0]
    assert path == "/v1/traces" and content_type == "application/x-protobuf"
    request = ExportTraceServiceRequest.FromString(raw)
    [resource] = request.resource_spans
    service = {a.key: a.value.string_value for a in resource.resource.attributes}["service.name"]
    assert service == "gw-test"
    names = {s.name for scope in resource.scope_spans for s in scope.spans}
    assert f"chat {MODEL}" in names and "attempt local" in names
    assert b"secret" not in raw


# ------------------------------------------------------------------ failover: one span per attempt


async def test_each_attempt_is_a_span_with_its_provider_and_outcome(tmp_path: Path) -> None:
    from orchestrator.testing.provider import FakeProvider

    keys = {"ALPHA_KEY": "sk-alpha-1", "BETA_KEY": "sk-beta-2"}
    alpha, beta = FakeProvider(api_key=keys["ALPHA_KEY"], reply="Paris."), FakeProvider(api_key=keys["BETA_KEY"])
    alpha.start()
    beta.start()
    try:
        alpha.set_fault("server_error")
        settings = load_settings(
            providers={
                name: {
                    "base_url": p.base_url + "/v1",
                    "api_key_env": f"{name.upper()}_KEY",
                    "models": {"m": {"id": "x"}},
                }
                for name, p in (("alpha", alpha), ("beta", beta))
            },
            models={"chain": ["alpha/m", "beta/m"]},
            resilience={"attempts": 1, "backoff_base_s": 0.01, "breaker_threshold": 1000},
            cache={"enabled": False},
            data_dir=tmp_path,
        )
        exporter = InMemorySpanExporter()
        telemetry = build_telemetry(TelemetrySettings(), env={}, exporter=exporter)
        engine = FakeEngine("local-chat")
        async with httpx.AsyncClient() as upstream:
            pipeline = await build_pipeline(
                {"local": (engine, engine.info())}, settings, env=keys, client=upstream, telemetry=telemetry
            )
            async with httpx.AsyncClient(
                transport=httpx.ASGITransport(app=build_app(pipeline)), base_url="http://gw"
            ) as c:
                body = {"model": "chain", "messages": [{"role": "user", "content": PROMPT}]}
                r = await c.post("/v1/chat/completions", json=body)
        assert r.status_code == 200, r.text
        traced = Traced(c, telemetry, exporter)
        spans = traced.spans()
        failed = [s for s in spans if s.name == "attempt alpha"]
        [served] = [s for s in spans if s.name == "attempt beta"]
        assert failed and all(_attributes(s).get("error.type") for s in failed)
        assert _attributes(served)["orchestrator.outcome"] == "ok" and "error.type" not in _attributes(served)
        request = _attributes(traced.request_span())
        assert request["gen_ai.provider.name"] == "beta" and request["gen_ai.request.model"] == "chain"
        assert "alpha" in request["orchestrator.route.reason"]
        telemetry.shutdown()
    finally:
        alpha.stop()
        beta.stop()
