"""The fake provider itself, over real loopback sockets: wire formats, timing, faults, observability.

The gateway's remote-provider tests trust this server to behave like OpenAI and Anthropic, so these tests pin
what it sends byte for byte where clients care (SSE framing, event order, error bodies, status codes, headers)
and check it against the official `openai` client.
"""

from __future__ import annotations

import base64
import json
import struct
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import openai
import pytest

from orchestrator.testing.provider import FakeProvider, Fault
from orchestrator.testing.replies import fill_schema, tokenize

KEY = "sk-test"
OPENAI_HEADERS = {"Authorization": f"Bearer {KEY}"}
ANTHROPIC_HEADERS = {"x-api-key": KEY, "anthropic-version": "2023-06-01"}
USER = [{"role": "user", "content": "Hello there big wide world"}]
WEATHER_TOOL = {
    "type": "function",
    "function": {
        "name": "get_weather",
        "parameters": {
            "type": "object",
            "properties": {"city": {"type": "string"}, "days": {"type": "integer"}, "unit": {"enum": ["c", "f"]}},
            "required": ["city", "days", "unit"],
        },
    },
}
ANTHROPIC_TOOL = {
    "name": "lookup",
    "input_schema": {
        "type": "object",
        "properties": {"q": {"type": "string"}, "n": {"type": "number"}},
        "required": ["q"],
    },
}


@pytest.fixture(scope="module")
def server() -> Iterator[FakeProvider]:
    with FakeProvider(api_key=KEY, models=["fake-model", "other-model"]) as provider:
        yield provider


@pytest.fixture
def provider(server: FakeProvider) -> Iterator[FakeProvider]:
    """The shared server, healthy and empty at the start of each test."""
    server.wait_for(lambda p: p.in_flight == 0)
    server.clear_fault()
    server.reset_stats()
    yield server
    server.clear_fault()
    server.ttft_ms = server.tokens_per_s = 0
    server.reply = server.reply_tokens = None
    server.tool_preamble = ""


@pytest.fixture
def http(provider: FakeProvider) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=provider.base_url, timeout=5) as client:
        yield client


@pytest.fixture
def sdk(provider: FakeProvider) -> Iterator[openai.OpenAI]:
    with openai.OpenAI(base_url=provider.base_url + "/v1", api_key=KEY, max_retries=0) as client:
        yield client


def sse_events(text: str) -> list[tuple[str | None, str]]:
    """(event name, data) per SSE event; asserts the framing: `field: value` lines, events split by a blank line."""
    assert text.endswith("\n\n")
    events = []
    for block in text[:-2].split("\n\n"):
        fields = dict(line.split(": ", 1) for line in block.split("\n"))
        assert set(fields) <= {"event", "data"}, block
        events.append((fields.get("event"), fields["data"]))
    return events


def chat(http: httpx.Client, **body: Any) -> httpx.Response:
    return http.post(
        "/v1/chat/completions", json={"model": "gpt-test", "messages": USER, **body}, headers=OPENAI_HEADERS
    )


def messages(http: httpx.Client, headers: dict[str, str] | None = None, **body: Any) -> httpx.Response:
    payload = {"model": "claude-test", "max_tokens": 100, "messages": USER, **body}
    return http.post("/v1/messages", json=payload, headers=headers or ANTHROPIC_HEADERS)


# -- OpenAI-compatible ---------------------------------------------------------------------------------------------


def test_chat_json_through_the_openai_client(provider: FakeProvider, sdk: openai.OpenAI) -> None:
    reply = sdk.chat.completions.create(model="gpt-test", messages=USER)  # type: ignore[arg-type]
    assert reply.object == "chat.completion" and reply.model == "gpt-test"
    assert reply.choices[0].message.content == "Hello there big wide world"
    assert reply.choices[0].finish_reason == "stop"
    assert reply.usage is not None
    assert (reply.usage.prompt_tokens, reply.usage.completion_tokens, reply.usage.total_tokens) == (5, 5, 10)
    (received,) = provider.requests
    assert received.path == "/v1/chat/completions" and received.body["messages"] == USER
    assert received.headers["authorization"] == f"Bearer {KEY}" and received.outcome == "completed"


def test_chat_stream_wire_format(http: httpx.Client) -> None:
    response = chat(http, stream=True, stream_options={"include_usage": True})
    assert response.status_code == 200 and response.headers["content-type"].startswith("text/event-stream")
    events = sse_events(response.text)
    assert all(name is None for name, _ in events) and events[-1][1] == "[DONE]"
    chunks = [json.loads(data) for _, data in events[:-1]]
    assert {(c["id"], c["object"], c["created"], c["model"]) for c in chunks} == {
        (chunks[0]["id"], "chat.completion.chunk", chunks[0]["created"], "gpt-test")
    }
    first, *middle, final, usage = chunks
    assert first["choices"] == [
        {
            "index": 0,
            "delta": {"role": "assistant", "content": "", "refusal": None},
            "logprobs": None,
            "finish_reason": None,
        }
    ]
    assert "".join(c["choices"][0]["delta"]["content"] for c in middle) == "Hello there big wide world"
    assert final["choices"][0]["delta"] == {} and final["choices"][0]["finish_reason"] == "stop"
    assert all(c["usage"] is None for c in chunks[:-1])
    assert usage["choices"] == [] and usage["usage"]["completion_tokens"] == len(middle) == 5


def test_stream_without_include_usage_has_no_usage(http: httpx.Client) -> None:
    chunks = [json.loads(d) for _, d in sse_events(chat(http, stream=True).text)[:-1]]
    assert all("usage" not in c for c in chunks) and chunks[-1]["choices"][0]["finish_reason"] == "stop"


def test_max_tokens_and_stop(provider: FakeProvider, sdk: openai.OpenAI) -> None:
    cut = sdk.chat.completions.create(model="m", messages=USER, max_completion_tokens=2)  # type: ignore[arg-type]
    assert cut.choices[0].message.content == "Hello there" and cut.choices[0].finish_reason == "length"
    stopped = sdk.chat.completions.create(model="m", messages=USER, stop=["wide", "big"])  # type: ignore[arg-type]
    assert stopped.choices[0].message.content == "Hello there" and stopped.choices[0].finish_reason == "stop"
    provider.reply = "fixed answer here"
    assert sdk.chat.completions.create(model="m", messages=USER).choices[0].message.content == "fixed answer here"  # type: ignore[arg-type]
    provider.reply, provider.reply_tokens = None, 40
    long = sdk.chat.completions.create(model="m", messages=USER, max_tokens=30)  # type: ignore[arg-type]
    assert long.usage is not None and long.usage.completion_tokens == 30 and long.choices[0].finish_reason == "length"


def test_streamed_tool_call_reassembles_into_the_schema(sdk: openai.OpenAI) -> None:
    stream = sdk.chat.completions.create(model="m", messages=USER, tools=[WEATHER_TOOL], stream=True)  # type: ignore[arg-type,list-item]
    deltas, finish = [], None
    for chunk in stream:
        deltas += chunk.choices[0].delta.tool_calls or []
        finish = chunk.choices[0].finish_reason or finish
    head, *fragments = deltas
    assert head.index == 0 and head.id and head.type == "function"
    assert head.function is not None and head.function.name == "get_weather" and head.function.arguments == ""
    assert len(fragments) > 1 and all(f.id is None for f in fragments)
    arguments = json.loads("".join(f.function.arguments or "" for f in fragments if f.function))
    assert arguments == {"city": "x", "days": 1, "unit": "c"} and finish == "tool_calls"


def test_tool_choice_and_tool_results(sdk: openai.OpenAI) -> None:
    other = {"type": "function", "function": {"name": "other", "parameters": {"type": "object"}}}
    tools: Any = [WEATHER_TOOL, other]
    named = sdk.chat.completions.create(
        model="m", messages=USER, tools=tools, tool_choice={"type": "function", "function": {"name": "other"}}
    )  # type: ignore[arg-type]
    call = named.choices[0].message.tool_calls
    assert call and call[0].function.name == "other" and call[0].function.arguments == "{}"  # type: ignore[union-attr]
    assert named.choices[0].message.content is None and named.choices[0].finish_reason == "tool_calls"
    none = sdk.chat.completions.create(model="m", messages=USER, tools=tools, tool_choice="none")  # type: ignore[arg-type]
    assert none.choices[0].message.tool_calls is None and none.choices[0].finish_reason == "stop"
    history: Any = [
        *USER,
        {
            "role": "assistant",
            "tool_calls": [{"id": "c1", "type": "function", "function": {"name": "get_weather", "arguments": "{}"}}],
        },
        {"role": "tool", "tool_call_id": "c1", "content": "sunny and 21C"},
    ]
    answer = sdk.chat.completions.create(model="m", messages=history, tools=tools)
    assert answer.choices[0].message.content == "The tool returned: sunny and 21C"


def test_fill_schema_fills_required_properties() -> None:
    schema = {
        "type": "object",
        "properties": {
            "s": {"type": "string"},
            "n": {"type": ["number", "null"]},
            "b": {"type": "boolean"},
            "o": {"type": "object", "properties": {"i": {"type": "integer"}}, "required": ["i"]},
            "a": {"type": "array", "items": {"type": "string"}, "minItems": 1},
            "skip": {"type": "string"},
        },
        "required": ["s", "n", "b", "o", "a"],
    }
    assert fill_schema(schema) == {"s": "x", "n": 1, "b": True, "o": {"i": 1}, "a": ["x"]}


def test_completions_embeddings_and_models(sdk: openai.OpenAI, http: httpx.Client) -> None:
    done = sdk.completions.create(model="m", prompt="one two three", max_tokens=2)
    assert (
        done.object == "text_completion"
        and done.choices[0].text == "one two"
        and done.choices[0].finish_reason == "length"
    )
    streamed = "".join(
        c.choices[0].text for c in sdk.completions.create(model="m", prompt="a b c", stream=True) if c.choices
    )
    assert streamed == "a b c"
    floats = sdk.embeddings.create(model="e", input=["a b", "c"], encoding_format="float")
    assert [len(d.embedding) for d in floats.data] == [8, 8] and floats.usage.prompt_tokens == 3
    assert abs(sum(x * x for x in floats.data[0].embedding) - 1) < 1e-6
    raw = http.post(
        "/v1/embeddings", json={"model": "e", "input": "a b", "encoding_format": "base64"}, headers=OPENAI_HEADERS
    ).json()
    decoded = struct.unpack("<8f", base64.b64decode(raw["data"][0]["embedding"]))
    assert decoded == pytest.approx(floats.data[0].embedding, abs=1e-6)
    assert [m.id for m in sdk.models.list()] == ["fake-model", "other-model"]


def test_missing_parameter_is_a_400(http: httpx.Client) -> None:
    response = http.post("/v1/chat/completions", json={"model": "m"}, headers=OPENAI_HEADERS)
    assert response.status_code == 400
    assert response.json()["error"] == {
        "message": "Missing required parameter: 'messages'.",
        "type": "invalid_request_error",
        "param": "messages",
        "code": "missing_required_parameter",
    }


# -- Anthropic ---------------------------------------------------------------------------------------------------------


def test_anthropic_json(http: httpx.Client) -> None:
    body = messages(http, system="Be brief.", stop_sequences=["wide"]).json()
    assert body["type"] == "message" and body["role"] == "assistant" and body["model"] == "claude-test"
    assert body["content"] == [{"type": "text", "text": "Hello there big"}]
    assert (body["stop_reason"], body["stop_sequence"]) == ("stop_sequence", "wide")
    assert body["usage"]["input_tokens"] == 7 and body["usage"]["output_tokens"] == 3
    assert messages(http, max_tokens=1).json()["stop_reason"] == "max_tokens"


def test_anthropic_stream_event_sequence(http: httpx.Client) -> None:
    events = sse_events(messages(http, stream=True).text)
    names = [name for name, _ in events]
    assert names == [
        "message_start",
        "content_block_start",
        "ping",
        *["content_block_delta"] * 5,
        "content_block_stop",
        "message_delta",
        "message_stop",
    ]
    data = [json.loads(d) for _, d in events]
    assert all(d["type"] == name for name, d in zip(names, data, strict=True))
    start = data[0]["message"]
    assert start["content"] == [] and start["stop_reason"] is None and start["usage"]["input_tokens"] == 5
    assert data[1] == {"type": "content_block_start", "index": 0, "content_block": {"type": "text", "text": ""}}
    assert "".join(d["delta"]["text"] for d in data[3:8]) == "Hello there big wide world"
    assert all(d["delta"]["type"] == "text_delta" and d["index"] == 0 for d in data[3:8])
    assert data[-2]["delta"] == {"stop_reason": "end_turn", "stop_sequence": None}
    assert data[-2]["usage"] == {"output_tokens": 5}


def test_anthropic_tool_use_stream(http: httpx.Client) -> None:
    events = sse_events(messages(http, stream=True, tools=[ANTHROPIC_TOOL], tool_choice={"type": "any"}).text)
    data = [json.loads(d) for _, d in events]
    block = next(d for d in data if d["type"] == "content_block_start")
    assert block["index"] == 0 and block["content_block"]["type"] == "tool_use"
    assert block["content_block"]["name"] == "lookup" and block["content_block"]["input"] == {}
    assert block["content_block"]["id"].startswith("toolu_")
    partial = [d["delta"] for d in data if d["type"] == "content_block_delta"]
    assert all(p["type"] == "input_json_delta" for p in partial) and len(partial) > 2
    assert json.loads("".join(p["partial_json"] for p in partial)) == {"q": "x"}
    assert data[-2]["delta"]["stop_reason"] == "tool_use"


def test_anthropic_tool_result_and_preamble(provider: FakeProvider, http: httpx.Client) -> None:
    history = [
        *USER,
        {
            "role": "assistant",
            "content": [{"type": "tool_use", "id": "toolu_1", "name": "lookup", "input": {"q": "x"}}],
        },
        {"role": "user", "content": [{"type": "tool_result", "tool_use_id": "toolu_1", "content": "42 results"}]},
    ]
    answer = messages(http, messages=history, tools=[ANTHROPIC_TOOL]).json()
    assert answer["content"] == [{"type": "text", "text": "The tool returned: 42 results"}]
    provider.tool_preamble = "Let me look."
    both = messages(http, tools=[ANTHROPIC_TOOL]).json()
    assert [b["type"] for b in both["content"]] == ["text", "tool_use"] and both["content"][1]["input"] == {"q": "x"}
    streamed = [json.loads(d) for _, d in sse_events(messages(http, stream=True, tools=[ANTHROPIC_TOOL]).text)]
    starts = [d for d in streamed if d["type"] == "content_block_start"]
    assert [(s["index"], s["content_block"]["type"]) for s in starts] == [(0, "text"), (1, "tool_use")]


def test_anthropic_validation(http: httpx.Client) -> None:
    no_max = http.post("/v1/messages", json={"model": "c", "messages": USER}, headers=ANTHROPIC_HEADERS)
    assert no_max.status_code == 400
    assert no_max.json()["type"] == "error" and no_max.json()["error"]["type"] == "invalid_request_error"
    no_version = messages(http, headers={"x-api-key": KEY})
    assert no_version.status_code == 400 and "anthropic-version" in no_version.json()["error"]["message"]
    bearer = messages(http, headers={"Authorization": f"Bearer {KEY}", "anthropic-version": "2023-06-01"})
    assert bearer.status_code == 200  # the Anthropic Python SDK 2.x sends its key this way


# -- auth -----------------------------------------------------------------------------------------------------------


def test_auth_failures(http: httpx.Client, provider: FakeProvider) -> None:
    wrong = http.post(
        "/v1/chat/completions", json={"model": "m", "messages": USER}, headers={"Authorization": "Bearer nope"}
    )
    assert wrong.status_code == 401
    assert (
        wrong.json()["error"]["type"] == "invalid_request_error" and wrong.json()["error"]["code"] == "invalid_api_key"
    )
    assert set(wrong.json()["error"]) == {"message", "type", "param", "code"}
    missing = http.post("/v1/chat/completions", json={"model": "m", "messages": USER})
    assert missing.status_code == 401 and missing.json()["error"]["code"] is None
    bad = messages(http, headers={"x-api-key": "nope", "anthropic-version": "2023-06-01"})
    assert bad.status_code == 401
    assert bad.json()["type"] == "error" and bad.json()["error"]["type"] == "authentication_error"
    with openai.OpenAI(base_url=provider.base_url + "/v1", api_key="nope", max_retries=0) as client:
        with pytest.raises(openai.AuthenticationError):
            client.models.list()


# -- faults ---------------------------------------------------------------------------------------------------------


def test_rate_limit_with_retry_after(provider: FakeProvider, http: httpx.Client) -> None:
    provider.set_fault("rate_limit", retry_after=3)
    limited = chat(http)
    assert limited.status_code == 429 and limited.headers["retry-after"] == "3"
    assert limited.json()["error"]["code"] == "rate_limit_exceeded"
    anthropic = messages(http)
    assert anthropic.status_code == 429 and anthropic.headers["retry-after"] == "3"
    assert anthropic.json()["error"]["type"] == "rate_limit_error"
    provider.set_fault("rate_limit", retry_after=0.25)
    assert chat(http).headers["retry-after-ms"] == "250"
    assert provider.faults_applied["rate_limit"] == 3


@pytest.mark.parametrize(
    ("mode", "openai_status", "openai_type", "anthropic_status", "anthropic_type"),
    [
        ("insufficient_quota", 429, "insufficient_quota", 402, "billing_error"),
        ("server_error", 500, "server_error", 500, "api_error"),
        ("overloaded", 503, "server_error", 529, "overloaded_error"),
        ("bad_request", 400, "invalid_request_error", 400, "invalid_request_error"),
    ],
)
def test_status_faults(
    provider: FakeProvider,
    http: httpx.Client,
    mode: str,
    openai_status: int,
    openai_type: str,
    anthropic_status: int,
    anthropic_type: str,
) -> None:
    provider.set_fault(mode)
    first = chat(http)
    assert first.status_code == openai_status and first.json()["error"]["type"] == openai_type
    second = messages(http)
    assert second.status_code == anthropic_status and second.json()["error"]["type"] == anthropic_type
    if mode == "insufficient_quota":
        assert first.json()["error"]["code"] == "insufficient_quota"


def test_reset_is_a_transport_error(provider: FakeProvider, http: httpx.Client) -> None:
    provider.set_fault("reset")
    with pytest.raises(httpx.TransportError):
        chat(http)
    with pytest.raises(httpx.TransportError):
        chat(http, stream=True)
    assert [(r.outcome, r.status, r.fault) for r in provider.requests] == [("fault", None, "reset")] * 2


def test_stall_times_out_and_the_disconnect_is_seen(provider: FakeProvider) -> None:
    provider.set_fault("stall", stall_after=2)
    received = []
    with httpx.Client(base_url=provider.base_url, timeout=httpx.Timeout(5, read=0.3)) as client:
        with pytest.raises(httpx.ReadTimeout):
            with client.stream(
                "POST",
                "/v1/chat/completions",
                json={"model": "m", "messages": USER, "stream": True},
                headers=OPENAI_HEADERS,
            ) as response:
                for line in response.iter_lines():
                    if line.startswith("data: {"):
                        received.append(json.loads(line[6:])["choices"][0]["delta"].get("content"))
        assert received == ["", "Hello", " there"]  # the role chunk, then stall_after tokens
        with pytest.raises(httpx.ReadTimeout):
            client.post("/v1/chat/completions", json={"model": "m", "messages": USER}, headers=OPENAI_HEADERS)
    assert provider.wait_for(lambda p: p.disconnects == 2)
    assert provider.client_disconnected and [r.outcome for r in provider.requests] == ["disconnected"] * 2
    assert provider.requests[0].events_sent == 2


def test_malformed(provider: FakeProvider, http: httpx.Client) -> None:
    provider.set_fault("malformed", stall_after=1)
    events = sse_events(chat(http, stream=True).text)
    assert [d for _, d in events][-1] == "{not json" and len(events) == 3  # role chunk, one token, the bad line
    assert "[DONE]" not in [d for _, d in events]
    anthropic = sse_events(messages(http, stream=True).text)
    assert anthropic[-1] == ("content_block_delta", "{not json")
    body = chat(http)
    assert body.status_code == 200 and body.headers["content-type"].startswith("application/json")
    with pytest.raises(json.JSONDecodeError):
        json.loads(body.text)


def test_drop_mid_stream(provider: FakeProvider, http: httpx.Client) -> None:
    provider.set_fault("drop", stall_after=1)
    with pytest.raises(httpx.RemoteProtocolError):
        chat(http, stream=True)
    with pytest.raises(httpx.TransportError):
        chat(http)


def test_stream_error_events(provider: FakeProvider, http: httpx.Client, sdk: openai.OpenAI) -> None:
    provider.set_fault("stream_error", stall_after=1)
    last = json.loads(sse_events(chat(http, stream=True).text)[-1][1])
    assert last["error"]["type"] == "server_error"
    name, data = sse_events(messages(http, stream=True).text)[-1]
    assert name == "error" and json.loads(data) == {
        "type": "error",
        "error": {"type": "overloaded_error", "message": "Overloaded"},
    }
    with pytest.raises(openai.APIError):
        for _ in sdk.chat.completions.create(model="m", messages=USER, stream=True):  # type: ignore[arg-type]
            pass


def test_fail_times_then_healthy(provider: FakeProvider, http: httpx.Client) -> None:
    provider.set_fault("server_error", fail_times=2)
    assert [chat(http).status_code for _ in range(3)] == [500, 500, 200]
    assert provider.fault is None and provider.faults_applied == {"server_error": 2}


def test_header_fault_applies_to_one_request(provider: FakeProvider, http: httpx.Client) -> None:
    provider.set_fault("server_error", fail_times=1)
    one = http.post(
        "/v1/chat/completions",
        json={"model": "m", "messages": USER},
        headers={**OPENAI_HEADERS, "x-fake-fault": "rate_limit; retry_after=7"},
    )
    assert one.status_code == 429 and one.headers["retry-after"] == "7"
    assert chat(http).status_code == 500 and chat(http).status_code == 200
    assert Fault.parse("stall, stall_after=3") == Fault("stall", stall_after=3)
    with pytest.raises(ValueError):
        Fault.parse("explode")


def test_timing_and_slow_first_token(provider: FakeProvider, http: httpx.Client) -> None:
    provider.ttft_ms, provider.tokens_per_s = 100, 50
    started = time.perf_counter()
    stamps = []
    with http.stream(
        "POST", "/v1/chat/completions", json={"model": "m", "messages": USER, "stream": True}, headers=OPENAI_HEADERS
    ) as response:
        for line in response.iter_lines():
            if '"content":"' in line and '"content":""' not in line:
                stamps.append(time.perf_counter() - started)
    assert len(stamps) == 5 and 0.09 < stamps[0] < 0.6  # upper bounds leave room for a loaded machine
    # Four gaps of 20 ms after the first token: measured from the start, which a loaded machine can only delay
    # (a late first read can bunch the chunks together, so the gaps themselves are not a measure).
    assert 0.17 < stamps[-1] < 1.2
    provider.ttft_ms, provider.tokens_per_s = 0, 0
    provider.set_fault("slow_first_token", slow_ttft_s=0.3)
    started = time.perf_counter()
    assert messages(http).status_code == 200 and time.perf_counter() - started >= 0.3


def test_client_going_away_mid_stream_is_recorded(provider: FakeProvider, http: httpx.Client) -> None:
    provider.tokens_per_s = 20
    with http.stream(
        "POST",
        "/v1/messages",
        json={"model": "c", "max_tokens": 50, "messages": USER, "stream": True},
        headers=ANTHROPIC_HEADERS,
    ) as response:
        for line in response.iter_lines():
            if "text_delta" in line:
                break
    assert provider.wait_for(lambda p: p.disconnects == 1)
    (record,) = provider.requests
    assert record.outcome == "disconnected" and record.events_sent < 5


def test_control_endpoints(provider: FakeProvider, http: httpx.Client) -> None:
    assert http.get("/health").json() == {"status": "ok"}
    set_fault = http.post("/_fake/fault", json={"mode": "overloaded", "fail_times": 1})
    assert set_fault.json()["fault"]["mode"] == "overloaded"
    assert messages(http).status_code == 529 and messages(http).status_code == 200
    stats = http.get("/_fake/stats").json()
    assert stats["counts"] == {"/v1/messages": 2} and stats["faults_applied"] == {"overloaded": 1}
    assert http.post("/_fake/fault", json={"mode": "nonsense"}).status_code == 400


def test_the_pace_is_set_over_http_from_the_next_request_on(provider: FakeProvider, http: httpx.Client) -> None:
    # A benchmark paces one phase's answers (its tokens a read each, as a live model's arrive) and not the others.
    assert http.post("/_fake/pace", json={"tokens_per_s": 50}).json() == {"ttft_ms": 0.0, "tokens_per_s": 50.0}
    started = time.perf_counter()
    chat(http, stream=True, max_tokens=5)
    assert time.perf_counter() - started >= 4 / 50
    for bad in ({"tokens_per_s": -1}, {"tokens_per_s": "fast"}, {"ttft": 3}, [1]):
        assert http.post("/_fake/pace", json=bad).status_code == 400
    assert provider.tokens_per_s == 50  # a refused change changes nothing
    assert http.post("/_fake/pace", json={"tokens_per_s": 0}).json()["tokens_per_s"] == 0


# -- lifecycle --------------------------------------------------------------------------------------------------


async def test_runs_on_the_current_loop() -> None:
    async with FakeProvider() as provider, httpx.AsyncClient(base_url=provider.base_url) as client:
        response = await client.post(
            "/v1/chat/completions", json={"model": "m", "messages": USER}, headers={"Authorization": "Bearer any"}
        )
        assert response.json()["choices"][0]["message"]["content"] == "Hello there big wide world"
        provider.tokens_per_s = 50
        async with client.stream(
            "POST",
            "/v1/completions",
            json={"model": "m", "prompt": "a b c d", "stream": True},
            headers={"Authorization": "Bearer k"},
        ) as stream:
            async for _ in stream.aiter_lines():
                break
        assert await provider.wait_for_async(lambda p: p.disconnects == 1)


def test_stop_is_quick_with_a_stalled_request_open() -> None:
    provider = FakeProvider(fault=Fault("stall")).start()
    with httpx.Client(base_url=provider.base_url, timeout=5) as client:
        with client.stream(
            "POST",
            "/v1/chat/completions",
            json={"model": "m", "messages": USER, "stream": True},
            headers={"Authorization": "Bearer k"},
        ) as response:
            assert response.status_code == 200
            started = time.perf_counter()
            provider.stop()
            assert time.perf_counter() - started < 2
    assert provider.requests[0].outcome == "shutdown"


def test_cli_serves_until_interrupted() -> None:
    root = Path(__file__).resolve().parents[2]
    cmd = [sys.executable, "-m", "orchestrator.testing.provider", "--port", "0", "--reply", "pong", "--ttft-ms", "0"]
    with subprocess.Popen(cmd, cwd=root, stdout=subprocess.PIPE, text=True) as process:
        try:
            assert process.stdout is not None
            line = process.stdout.readline()
            assert line.startswith("fake provider listening on http://127.0.0.1:")
            base = line.split()[-1]
            body = {"model": "m", "messages": USER}
            reply = httpx.post(base + "/v1/chat/completions", json=body, headers={"Authorization": "Bearer k"})
            assert reply.json()["choices"][0]["message"]["content"] == "pong"
        finally:
            process.send_signal(2)
            assert process.wait(timeout=10) == 0


def test_tokens_keep_their_spaces() -> None:
    assert tokenize("Hello  big\nworld") == ["Hello", "  big", "\nworld"]
