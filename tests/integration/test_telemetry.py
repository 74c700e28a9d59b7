"""OpenTelemetry: the request span (GenAI semantic conventions), its step spans, a client's
`traceparent`, failures, no prompt text by default; the GenAI metrics; the local replica's span as a
child of the attempt; a remote provider sent the attempt's `traceparent`; and spans and metrics
reaching a real OTLP/HTTP receiver."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from opentelemetry.sdk.metrics.export import InMemoryMetricReader
from opentelemetry.sdk.trace import ReadableSpan, TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.trace import SpanKind, StatusCode

from local_models.deployment import LocalModel
from local_models.interface import EngineConfig
from orchestrator.api import build_app
from orchestrator.app import build_pipeline
from orchestrator.providers.factory import http_client
from orchestrator.settings import TelemetrySettings, load_settings
from orchestrator.telemetry import Telemetry, build_telemetry, metrics_endpoint, traces_endpoint
from orchestrator.testing.engine import FakeEngine
from orchestrator.testing.otlp import OtlpReceiver

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


async def test_a_captured_prompt_is_bounded(tmp_path: Path) -> None:
    async for traced in _traced(tmp_path, FakeEngine(MODEL), capture_content=True):
        r = await traced.chat("x" * 1_000_000, max_tokens=1)
        assert r.status_code == 400  # longer than the model's context; its prompt was captured on the way in
        captured = _attributes(traced.request_span())["gen_ai.input.messages"]
        assert 16_000 < len(captured) <= 16_385 and captured.endswith("…")


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


@pytest.fixture
def receiver() -> Iterator[OtlpReceiver]:
    r = OtlpReceiver().start()
    yield r
    r.stop()


async def test_spans_and_metrics_reach_an_otlp_http_receiver(receiver: OtlpReceiver, tmp_path: Path) -> None:
    telemetry = build_telemetry(TelemetrySettings(otlp_endpoint=receiver.url, service_name="gw-test"), env={})
    assert telemetry.enabled and telemetry.provider is not None and telemetry.metrics is not None
    engine = FakeEngine(MODEL)
    pipeline = await build_pipeline({"local": (engine, engine.info())}, None, env={}, telemetry=telemetry)
    transport = httpx.ASGITransport(app=build_app(pipeline))
    async with httpx.AsyncClient(transport=transport, base_url="http://gateway") as client:
        body = {"model": MODEL, "messages": [{"role": "user", "content": PROMPT}]}
        r = await client.post("/v1/chat/completions", json=body)
        assert r.status_code == 200
    telemetry.shutdown()  # flushes both
    paths = {(path, content_type) for path, content_type, _ in receiver.posts}
    assert ("/v1/traces", "application/x-protobuf") in paths and ("/v1/metrics", "application/x-protobuf") in paths
    spans = receiver.spans()
    assert {s.resource["service.name"] for s in spans} == {"gw-test"}
    names = {s.name for s in spans}
    assert f"chat {MODEL}" in names and "attempt local" in names
    tokens = {
        p.attributes["gen_ai.token.type"]: p for p in receiver.metrics() if p.metric == "gen_ai.client.token.usage"
    }
    assert tokens["input"].sum == r.json()["usage"]["prompt_tokens"]
    assert tokens["output"].unit == "{token}" and tokens["output"].sum == r.json()["usage"]["completion_tokens"]
    assert all(b"secret" not in raw for _, _, raw in receiver.posts)


def test_endpoints_for_each_signal() -> None:
    assert (
        metrics_endpoint(TelemetrySettings(otlp_endpoint="http://c:4318/v1/traces"), {}) == "http://c:4318/v1/metrics"
    )
    assert metrics_endpoint(TelemetrySettings(), {"OTEL_EXPORTER_OTLP_ENDPOINT": "http://e:4318/"}) == (
        "http://e:4318/v1/metrics"
    )
    env = {"OTEL_EXPORTER_OTLP_ENDPOINT": "http://e:4318", "OTEL_EXPORTER_OTLP_METRICS_ENDPOINT": "http://m/x"}
    assert metrics_endpoint(TelemetrySettings(), env) == "http://m/x"
    assert metrics_endpoint(TelemetrySettings(), {}) is None


# ------------------------------------------------------------------ GenAI metrics


@pytest.fixture
async def measured(tmp_path: Path) -> AsyncIterator[tuple[httpx.AsyncClient, InMemoryMetricReader]]:
    reader = InMemoryMetricReader()
    telemetry = build_telemetry(TelemetrySettings(), env={}, metric_reader=reader)
    assert telemetry.metrics is not None and telemetry.tracer is None  # metrics without traces
    settings = load_settings(providers={}, models={}, cache={"directory": str(tmp_path / "cache")}, data_dir=tmp_path)
    engine = FakeEngine(MODEL)
    pipeline = await build_pipeline({"local": (engine, engine.info())}, settings, env={}, telemetry=telemetry)
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=build_app(pipeline)), base_url="http://gw") as c:
        yield c, reader
    telemetry.shutdown()


def _points(reader: InMemoryMetricReader, name: str) -> list[Any]:
    data = reader.get_metrics_data()
    assert data is not None
    return [
        point
        for rm in data.resource_metrics
        for sm in rm.scope_metrics
        for metric in sm.metrics
        if metric.name == name
        for point in metric.data.data_points
    ]


async def test_genai_metrics_count_tokens_duration_and_streamed_first_tokens(
    measured: tuple[httpx.AsyncClient, InMemoryMetricReader],
) -> None:
    client, reader = measured
    body = {"model": MODEL, "messages": [{"role": "user", "content": PROMPT}]}
    whole = (await client.post("/v1/chat/completions", json=body)).json()
    r = await client.post("/v1/chat/completions", json={**body, "stream": True, "temperature": 0.5})
    assert r.status_code == 200 and "[DONE]" in r.text
    assert (await client.post("/v1/chat/completions", json={**body, "model": "no-such-model"})).status_code == 404

    tokens = _points(reader, "gen_ai.client.token.usage")
    by_type = {p.attributes["gen_ai.token.type"]: p for p in tokens}
    assert by_type["input"].count == 2 and by_type["output"].count == 2  # the 404 used no tokens
    assert by_type["input"].attributes["gen_ai.provider.name"] == "local"
    assert by_type["input"].attributes["gen_ai.request.model"] == MODEL
    assert by_type["input"].sum >= whole["usage"]["prompt_tokens"]

    durations = {p.attributes.get("error.type"): p for p in _points(reader, "gen_ai.server.request.duration")}
    assert durations[None].count == 2 and durations[None].sum > 0
    refused = durations["404"]
    assert refused.count == 1 and "gen_ai.request.model" not in refused.attributes  # the client's text: never a label

    [ttft] = _points(reader, "gen_ai.server.time_to_first_token")
    assert ttft.count == 1  # the streamed answer only
    assert 0 < ttft.sum <= durations[None].sum


# ------------------------------------------------------------------ across the local model's seam


async def test_the_local_replicas_span_is_a_child_of_the_attempt(tmp_path: Path) -> None:
    """The attempt's context rides in the generate request (what crosses the Serve handle); the
    LocalModel replica, with a tracer provider of its own, makes its span that context's child."""
    gateway_spans, replica_spans = InMemorySpanExporter(), InMemorySpanExporter()
    telemetry = build_telemetry(TelemetrySettings(), env={}, exporter=gateway_spans)
    replica_traces = TracerProvider()
    replica_traces.add_span_processor(SimpleSpanProcessor(replica_spans))
    engine = FakeEngine(MODEL)
    replica = LocalModel.__new__(LocalModel)
    await replica.__init__(EngineConfig("m", MODEL), engine_factory=_given(engine), tracing=lambda: replica_traces)  # type: ignore[misc]
    settings = load_settings(providers={}, models={}, cache={"enabled": False}, data_dir=tmp_path)
    pipeline = await build_pipeline({"local": (replica, engine.info())}, settings, env={}, telemetry=telemetry)
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=build_app(pipeline)), base_url="http://gw") as c:
        r = await c.post(
            "/v1/chat/completions",
            json={"model": MODEL, "messages": [{"role": "user", "content": PROMPT}], "stream": True},
            headers={"traceparent": f"00-{TRACE_ID}-{PARENT_ID}-01"},
        )
        assert r.status_code == 200 and "[DONE]" in r.text
        untraced = await c.post(
            "/v1/chat/completions", json={"model": MODEL, "messages": [{"role": "user", "content": "x"}]}
        )
        assert untraced.status_code == 200
    assert telemetry.provider is not None
    telemetry.provider.force_flush()
    [attempt] = [
        s
        for s in gateway_spans.get_finished_spans()
        if s.name == "attempt local" and s.context.trace_id == int(TRACE_ID, 16)
    ]
    generations = [s for s in replica_spans.get_finished_spans()]
    assert len(generations) == 2  # each request, traced from the gateway, is traced in the replica
    [generate] = [s for s in generations if s.context.trace_id == int(TRACE_ID, 16)]
    assert generate.name == f"generate {MODEL}" and generate.kind is SpanKind.SERVER
    assert generate.parent is not None and generate.parent.span_id == attempt.context.span_id
    attrs = _attributes(generate)
    assert attrs["gen_ai.usage.output_tokens"] > 0 and list(attrs["gen_ai.response.finish_reasons"]) == ["stop"]
    assert [e.name for e in generate.events] == ["first batch"]
    assert "secret" not in json.dumps({k: str(v) for k, v in attrs.items()})
    telemetry.shutdown()


async def test_untraced_requests_carry_no_traceparent(tmp_path: Path) -> None:
    engine = FakeEngine(MODEL)
    pipeline = await build_pipeline({"local": (engine, engine.info())}, None, env={})
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=build_app(pipeline)), base_url="http://gw") as c:
        body = {"model": MODEL, "messages": [{"role": "user", "content": "x"}]}
        r = await c.post("/v1/chat/completions", json=body, headers={"traceparent": f"00-{TRACE_ID}-{PARENT_ID}-01"})
        assert r.status_code == 200
    assert "traceparent" not in engine.generations[-1].request


def _given(engine: FakeEngine) -> Any:
    async def factory(config: EngineConfig) -> FakeEngine:
        return engine

    return factory


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
        async with http_client(settings.resilience, traced=True) as upstream:  # what a traced gateway builds
            pipeline = await build_pipeline(
                {"local": (engine, engine.info())}, settings, env=keys, client=upstream, telemetry=telemetry
            )
            transport = httpx.ASGITransport(app=build_app(pipeline))
            async with httpx.AsyncClient(transport=transport, base_url="http://gw") as c:
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
        # Each provider was sent its own attempt's context: a traced provider joins the trace there.
        for fake, attempt in ((alpha, failed[-1]), (beta, served)):
            version, trace_id, parent_id, flags = fake.requests[-1].headers["traceparent"].split("-")
            assert trace_id == f"{attempt.context.trace_id:032x}" and parent_id == f"{attempt.context.span_id:016x}"
        telemetry.shutdown()
    finally:
        alpha.stop()
        beta.stop()
