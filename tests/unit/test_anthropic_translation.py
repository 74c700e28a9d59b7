"""The Anthropic provider: request translation, stream translation, and the whole provider over HTTP.

Stream fixtures under `fixtures/anthropic/` are hand-written transcripts in
Anthropic's documented SSE format (`event:` + `data:` lines, one JSON object
per event). The provider tests serve them through `httpx.MockTransport`.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

import httpx
import pytest

from orchestrator.errors import (
    InvalidRequest,
    OrchestratorError,
    UnsupportedCapability,
    UpstreamError,
    UpstreamRateLimited,
    UpstreamRejected,
    UpstreamTimeout,
    UpstreamUnavailable,
)
from orchestrator.protocol import (
    ANTHROPIC_MESSAGES,
    ChatCompletion,
    ChatCompletionChunk,
    ChatCompletionRequest,
    CompletionRequest,
    EmbeddingRequest,
    Native,
)
from orchestrator.providers.anthropic import (
    AnthropicProvider,
    StreamTranslator,
    messages_body,
    to_anthropic,
    translate,
)
from orchestrator.providers.base import Provider
from orchestrator.providers.http import sse_batches
from orchestrator.streams import assemble_chat

FIXTURES = Path(__file__).parent / "fixtures" / "anthropic"
API_KEY = "sk-ant-api03-TEST-SECRET-KEY-0123456789"
BASE_URL = "https://api.anthropic.test"
MODEL = "claude-sonnet-4-5-20250929"

WEATHER = {
    "type": "function",
    "function": {
        "name": "get_weather",
        "description": "The weather somewhere.",
        "parameters": {"type": "object", "properties": {"location": {"type": "string"}}, "required": ["location"]},
    },
}
CLOCK = {"type": "function", "function": {"name": "get_time"}}


def request(messages: list[dict[str, Any]] | None = None, **fields: Any) -> ChatCompletionRequest:
    return ChatCompletionRequest.model_validate(
        {"model": "claude", "messages": messages or [{"role": "user", "content": "hi"}], **fields}
    )


def body(messages: list[dict[str, Any]] | None = None, **fields: Any) -> dict[str, Any]:
    return to_anthropic(request(messages, **fields), MODEL, 4096)


def text(value: str) -> dict[str, Any]:
    return {"type": "text", "text": value}


def call(call_id: str, name: str, arguments: str) -> dict[str, Any]:
    return {"id": call_id, "type": "function", "function": {"name": name, "arguments": arguments}}


# --------------------------------------------------------------------- request: table


def test_minimal_request() -> None:
    assert body() == {
        "model": MODEL,
        "messages": [{"role": "user", "content": [text("hi")]}],
        "max_tokens": 4096,
        "stream": True,
    }


@pytest.mark.parametrize(
    ("fields", "expected"),
    [
        ({"max_tokens": 50}, {"max_tokens": 50}),
        ({"max_completion_tokens": 70, "max_tokens": 50}, {"max_tokens": 70}),
        ({"temperature": 0.3}, {"temperature": 0.3}),
        ({"temperature": 1.7}, {"temperature": 1.0}),  # OpenAI's 0..2 clamped to Anthropic's 0..1
        ({"temperature": 0}, {"temperature": 0}),
        ({"top_p": 0.9}, {"top_p": 0.9}),
        ({"stop": "END"}, {"stop_sequences": ["END"]}),
        ({"stop": ["a", "b"]}, {"stop_sequences": ["a", "b"]}),
        ({"user": "user-42"}, {"metadata": {"user_id": "user-42"}}),
        ({"stream": True, "stream_options": {"include_usage": True}}, {"stream": True}),
        ({"stream": False}, {"stream": True}),  # always streamed upstream; folded at the edge
        ({"response_format": {"type": "text"}}, {}),
    ],
)
def test_sampling_fields(fields: dict[str, Any], expected: dict[str, Any]) -> None:
    translated = body(**fields)
    assert {k: translated[k] for k in expected} == expected


def test_dropped_and_unknown_fields_are_not_forwarded() -> None:
    translated = body(
        presence_penalty=0.5,
        frequency_penalty=0.5,
        seed=7,
        logit_bias={},
        parallel_tool_calls=False,  # meaningless without tools
        metadata={"team": "a"},  # OpenAI's stored-completion metadata, not Anthropic's
        store=True,
        reasoning_effort="none",  # no thinking asked for
        top_k=5,
    )
    assert set(translated) == {"model", "messages", "max_tokens", "stream"}


def test_a_request_that_came_as_a_messages_body_is_sent_as_it_came() -> None:
    native = {
        "model": "alias",
        "max_tokens": 10,
        "top_k": 3,
        "system": [{"type": "text", "text": "Be brief.", "cache_control": {"type": "ephemeral"}}],
        "messages": [{"role": "user", "content": "hi"}],
    }
    carried = request(max_tokens=10).carrying(Native(ANTHROPIC_MESSAGES, native))
    assert messages_body(carried, MODEL, 4096) == {**native, "model": MODEL, "stream": True}
    # The flow's own max_tokens wins; a body in another wire format is not Anthropic's to send.
    assert messages_body(carried.model_copy(update={"max_tokens": 4}), MODEL, 4096)["max_tokens"] == 4
    other = request().carrying(Native("some-other-wire", native))
    assert messages_body(other, MODEL, 4096) == body()


@pytest.mark.parametrize(
    ("messages", "system", "turns"),
    [
        pytest.param(
            [{"role": "system", "content": "Be brief."}, {"role": "user", "content": "hi"}],
            "Be brief.",
            [{"role": "user", "content": [text("hi")]}],
            id="system",
        ),
        pytest.param(
            [
                {"role": "system", "content": "Be brief."},
                {"role": "developer", "content": [text("Use "), text("French.")]},
                {"role": "user", "content": "hi"},
                {"role": "system", "content": "Sign off."},
            ],
            "Be brief.\n\nUse French.\n\nSign off.",
            [{"role": "user", "content": [text("hi")]}],
            id="system-and-developer-joined",
        ),
        pytest.param(
            [
                {"role": "user", "content": "hi"},
                {"role": "assistant", "content": "hello"},
                {"role": "user", "content": "how are you?"},
            ],
            None,
            [
                {"role": "user", "content": [text("hi")]},
                {"role": "assistant", "content": [text("hello")]},
                {"role": "user", "content": [text("how are you?")]},
            ],
            id="multi-turn",
        ),
        pytest.param(
            [
                {"role": "user", "content": "one", "name": "ann"},
                {"role": "user", "content": [text("two"), text("")]},
                {"role": "assistant", "content": "three"},
                {"role": "assistant", "content": [text("four"), {"type": "refusal", "refusal": "no"}]},
            ],
            None,
            [
                {"role": "user", "content": [text("one"), text("two")]},
                {"role": "assistant", "content": [text("three"), text("four"), text("no")]},
            ],
            id="same-role-merged-empty-text-dropped",
        ),
        pytest.param(
            [
                {"role": "user", "content": "hi"},
                {"role": "assistant", "content": ""},
                {"role": "user", "content": "again"},
            ],
            None,
            [{"role": "user", "content": [text("hi"), text("again")]}],
            id="empty-message-dropped",
        ),
    ],
)
def test_messages(messages: list[dict[str, Any]], system: str | None, turns: list[dict[str, Any]]) -> None:
    translated = body(messages)
    assert translated.get("system") == system
    assert translated["messages"] == turns


@pytest.mark.parametrize(
    ("url", "source"),
    [
        ("https://example.com/cat.png", {"type": "url", "url": "https://example.com/cat.png"}),
        ("http://example.com/cat.gif", {"type": "url", "url": "http://example.com/cat.gif"}),
        ("data:image/png;base64,iVBORw0KGgo=", {"type": "base64", "media_type": "image/png", "data": "iVBORw0KGgo="}),
        ("data:image/jpg;base64,/9j/4AAQ", {"type": "base64", "media_type": "image/jpeg", "data": "/9j/4AAQ"}),
        ("data:image/webp;base64,UklGRg==", {"type": "base64", "media_type": "image/webp", "data": "UklGRg=="}),
    ],
)
def test_images(url: str, source: dict[str, Any]) -> None:
    part = {"type": "image_url", "image_url": {"url": url, "detail": "high"}}
    translated = body([{"role": "user", "content": [text("What is this?"), part]}])
    assert translated["messages"] == [
        {"role": "user", "content": [text("What is this?"), {"type": "image", "source": source}]}
    ]


def test_tool_round_trip() -> None:
    translated = body(
        [
            {"role": "user", "content": "Weather in Paris and the time?"},
            {
                "role": "assistant",
                "content": "Let me look.",
                "tool_calls": [
                    call("toolu_1", "get_weather", '{"location": "Paris"}'),
                    call("toolu_2", "get_time", ""),
                ],
            },
            {"role": "tool", "tool_call_id": "toolu_1", "content": "18C"},
            {"role": "tool", "tool_call_id": "toolu_2", "content": [text("09:00")]},
            {"role": "user", "content": "Thanks. Summarise."},
        ],
        tools=[WEATHER, CLOCK],
    )
    assert translated["messages"] == [
        {"role": "user", "content": [text("Weather in Paris and the time?")]},
        {
            "role": "assistant",
            "content": [
                text("Let me look."),
                {"type": "tool_use", "id": "toolu_1", "name": "get_weather", "input": {"location": "Paris"}},
                {"type": "tool_use", "id": "toolu_2", "name": "get_time", "input": {}},
            ],
        },
        {
            "role": "user",
            "content": [
                {"type": "tool_result", "tool_use_id": "toolu_1", "content": "18C"},
                {"type": "tool_result", "tool_use_id": "toolu_2", "content": [text("09:00")]},
                text("Thanks. Summarise."),
            ],
        },
    ]
    assert translated["tools"] == [
        {
            "name": "get_weather",
            "description": "The weather somewhere.",
            "input_schema": {
                "type": "object",
                "properties": {"location": {"type": "string"}},
                "required": ["location"],
            },
        },
        {"name": "get_time", "input_schema": {"type": "object", "properties": {}}},
    ]
    assert "tool_choice" not in translated


def test_tool_results_lead_a_merged_user_turn() -> None:
    translated = body(
        [
            {"role": "user", "content": "go"},
            {"role": "assistant", "tool_calls": [call("t1", "get_time", "{}")]},
            {"role": "user", "content": "(also, hurry)"},
            {"role": "tool", "tool_call_id": "t1", "content": "09:00"},
        ],
        tools=[CLOCK],
    )
    assert translated["messages"][-1] == {
        "role": "user",
        "content": [{"type": "tool_result", "tool_use_id": "t1", "content": "09:00"}, text("(also, hurry)")],
    }


@pytest.mark.parametrize(
    ("fields", "tool_choice"),
    [
        ({}, None),
        ({"tool_choice": "auto"}, {"type": "auto"}),
        ({"tool_choice": "required"}, {"type": "any"}),
        ({"tool_choice": "none"}, {"type": "none"}),
        (
            {"tool_choice": {"type": "function", "function": {"name": "get_weather"}}},
            {"type": "tool", "name": "get_weather"},
        ),
        ({"parallel_tool_calls": True}, None),
        ({"parallel_tool_calls": False}, {"type": "auto", "disable_parallel_tool_use": True}),
        ({"parallel_tool_calls": False, "tool_choice": "auto"}, {"type": "auto", "disable_parallel_tool_use": True}),
        ({"parallel_tool_calls": False, "tool_choice": "required"}, {"type": "any", "disable_parallel_tool_use": True}),
        (
            {"parallel_tool_calls": False, "tool_choice": {"type": "function", "function": {"name": "get_weather"}}},
            {"type": "tool", "name": "get_weather", "disable_parallel_tool_use": True},
        ),
        ({"parallel_tool_calls": False, "tool_choice": "none"}, {"type": "none"}),
    ],
)
def test_tool_choice(fields: dict[str, Any], tool_choice: dict[str, Any] | None) -> None:
    translated = body(tools=[WEATHER], **fields)
    assert translated.get("tool_choice") == tool_choice


@pytest.mark.parametrize(
    ("messages", "fields", "error", "param"),
    [
        pytest.param(None, {"n": 2}, UnsupportedCapability, "n", id="n"),
        pytest.param(None, {"logprobs": True}, UnsupportedCapability, "logprobs", id="logprobs"),
        pytest.param(None, {"logprobs": True, "top_logprobs": 2}, UnsupportedCapability, "logprobs", id="top_logprobs"),
        pytest.param(
            None, {"response_format": {"type": "json_object"}}, UnsupportedCapability, "response_format", id="json"
        ),
        pytest.param(
            None,
            {"response_format": {"type": "json_schema", "json_schema": {"name": "x", "schema": {"type": "object"}}}},
            UnsupportedCapability,
            "response_format",
            id="json-schema",
        ),
        pytest.param(None, {"logit_bias": {"50256": -100}}, UnsupportedCapability, "logit_bias", id="logit-bias"),
        pytest.param(
            [
                {"role": "user", "content": "hi"},
                {"role": "assistant", "tool_calls": [call("t", "get_weather", '{"location": ')]},
            ],
            {"tools": [WEATHER]},
            InvalidRequest,
            "messages[1].tool_calls[0].function.arguments",
            id="tool-arguments-not-json",
        ),
        pytest.param(
            [{"role": "assistant", "tool_calls": [call("t", "get_weather", "[1, 2]")]}],
            {"tools": [WEATHER]},
            InvalidRequest,
            "messages[0].tool_calls[0].function.arguments",
            id="tool-arguments-not-object",
        ),
        pytest.param(
            [{"role": "user", "content": [{"type": "input_audio", "input_audio": {"data": "AA==", "format": "wav"}}]}],
            {},
            UnsupportedCapability,
            "messages[0].content[0]",
            id="audio",
        ),
        pytest.param(
            [{"role": "user", "content": [{"type": "file", "file": {"file_id": "file-1"}}]}],
            {},
            UnsupportedCapability,
            "messages[0].content[0]",
            id="file",
        ),
        pytest.param(
            [{"role": "user", "content": [{"type": "image_url", "image_url": {"url": "data:image/tiff;base64,AA=="}}]}],
            {},
            UnsupportedCapability,
            "messages[0].content[0].image_url.url",
            id="image-type",
        ),
        pytest.param(
            [{"role": "user", "content": [{"type": "image_url", "image_url": {"url": "data:image/png,rawbytes"}}]}],
            {},
            InvalidRequest,
            "messages[0].content[0].image_url.url",
            id="image-not-base64",
        ),
        pytest.param(
            [{"role": "user", "content": [{"type": "image_url", "image_url": {"url": "ftp://example.com/a.png"}}]}],
            {},
            InvalidRequest,
            "messages[0].content[0].image_url.url",
            id="image-scheme",
        ),
        pytest.param(
            [{"role": "function", "name": "f", "content": "1"}], {}, UnsupportedCapability, "messages[0].role", id="fn"
        ),
        pytest.param([{"role": "system", "content": "Be brief."}], {}, InvalidRequest, "messages", id="only-system"),
        pytest.param(
            None, {"tools": [WEATHER], "tool_choice": {"type": "function"}}, InvalidRequest, "tool_choice", id="choice"
        ),
    ],
)
def test_refused_requests(
    messages: list[dict[str, Any]] | None, fields: dict[str, Any], error: type[Exception], param: str
) -> None:
    with pytest.raises(error) as info:
        body(messages, **fields)
    assert type(info.value) is error
    assert isinstance(info.value, InvalidRequest) and info.value.param == param


# ------------------------------------------------------------------ stream: fixtures


async def body_of(name: str) -> AsyncIterator[bytes]:
    """The fixture's bytes in 7-byte pieces, lines and events cut anywhere, as a socket may deliver them."""
    raw = (FIXTURES / name).read_bytes()
    for i in range(0, len(raw), 7):
        yield raw[i : i + 7]


async def translated(body: AsyncIterator[bytes]) -> AsyncIterator[ChatCompletionChunk]:
    """Anthropic's stream as chunks one by one (`translate` gives those of one read together)."""
    async for batch in translate(sse_batches(body), "anthropic"):
        assert batch, "never an empty batch"
        for chunk in batch:
            yield chunk


async def chunks_of(name: str) -> list[ChatCompletionChunk]:
    return [c async for c in translated(body_of(name))]


def dumps(chunks: list[ChatCompletionChunk]) -> list[dict[str, Any]]:
    return [c.model_dump(mode="json", exclude={"id", "created", "model", "object"}) for c in chunks]


def choice(delta: dict[str, Any], finish: str | None = None) -> dict[str, Any]:
    return {"choices": [{"index": 0, "delta": delta, "finish_reason": finish}]}


async def test_text_reply_chunks() -> None:
    chunks = await chunks_of("text_reply.sse")
    assert {(c.id, c.model) for c in chunks} == {("chatcmpl-msg_01XFDUDYJgAACzvnptvVoYEL", MODEL)}
    assert dumps(chunks) == [
        choice({"role": "assistant", "content": ""}),
        choice({"content": "Hello"}),
        choice({"content": "! How can I help?"}),
        choice({}, "stop"),
        {
            "choices": [],
            "usage": {
                # 12 uncached + 20 read from the cache + 5 written to it (OpenAI's total; the writes named too)
                "prompt_tokens": 37,
                "completion_tokens": 15,
                "total_tokens": 52,
                "prompt_tokens_details": {"cached_tokens": 20, "cache_write_tokens": 5},
            },
        },
    ]


async def test_tool_use_reply_chunks() -> None:
    # The fixture opens with a thinking block: it is reasoning (with its signature), not a tool call.
    chunks = await chunks_of("tool_use_reply.sse")
    assert dumps(chunks) == [
        choice({"role": "assistant", "content": ""}),
        choice({"reasoning_content": "The user wants the weather; I should call get_weather."}),
        choice({"reasoning_signature": "EqQBCgIYAhIM1gbcDa9GJwZA2b3hGgxBdjrkzLoky3dl1pkiMOYds"}),
        choice({"content": "Okay, let me check."}),
        choice(
            {
                "tool_calls": [
                    {
                        "index": 0,
                        "id": "toolu_01T1x1fJ34qAmk2tNTrN7Up6",
                        "type": "function",
                        "function": {"name": "get_weather", "arguments": ""},
                    }
                ]
            }
        ),
        choice({"tool_calls": [{"index": 0, "function": {"arguments": '{"location":'}}]}),
        choice({"tool_calls": [{"index": 0, "function": {"arguments": ' "San Fra'}}]}),
        choice({"tool_calls": [{"index": 0, "function": {"arguments": 'ncisco, CA", "unit": "celsius"}'}}]}),
        choice(
            {
                "tool_calls": [
                    {
                        "index": 1,
                        "id": "toolu_01HnVw3cNmxJ8ReYgPZuAqTj",
                        "type": "function",
                        "function": {"name": "get_time", "arguments": ""},
                    }
                ]
            }
        ),
        # A tool that streams no input still gets arguments a client can parse.
        choice({"tool_calls": [{"index": 1, "function": {"arguments": "{}"}}]}),
        choice({}, "tool_calls"),
        {
            "choices": [],
            "usage": {
                "prompt_tokens": 472,
                "completion_tokens": 89,
                "total_tokens": 561,
                "prompt_tokens_details": {"cached_tokens": 0},
            },
        },
    ]


async def test_tool_use_reply_assembles() -> None:
    result = await assemble_chat(translated(body_of("tool_use_reply.sse")))
    message = result.choices[0].message
    assert message.content == "Okay, let me check."
    assert message.tool_calls is not None
    assert [(c.id, c.function.name, json.loads(c.function.arguments)) for c in message.tool_calls] == [
        ("toolu_01T1x1fJ34qAmk2tNTrN7Up6", "get_weather", {"location": "San Francisco, CA", "unit": "celsius"}),
        ("toolu_01HnVw3cNmxJ8ReYgPZuAqTj", "get_time", {}),
    ]
    assert result.choices[0].finish_reason == "tool_calls"


async def test_error_event_mid_stream() -> None:
    received: list[ChatCompletionChunk] = []
    with pytest.raises(UpstreamUnavailable) as info:
        async for chunk in translated(body_of("error_mid_stream.sse")):
            received.append(chunk)
    assert [c.choices[0].delta.content for c in received] == ["", "Once upon"]
    assert info.value.retryable
    assert "overloaded_error" in info.value.message and "Overloaded" in info.value.message


async def test_truncated_stream_is_an_error() -> None:
    received: list[ChatCompletionChunk] = []
    with pytest.raises(UpstreamUnavailable, match="ended early"):
        async for chunk in translated(body_of("truncated.sse")):
            received.append(chunk)
    assert received[-1].choices[0].delta.content == "The first half of an ans"


START = {
    "type": "message_start",
    "message": {
        "id": "msg_1",
        "type": "message",
        "role": "assistant",
        "content": [],
        "model": MODEL,
        "stop_reason": None,
        "stop_sequence": None,
        "usage": {"input_tokens": 3, "output_tokens": 1},
    },
}


def run(*events: dict[str, Any]) -> list[ChatCompletionChunk]:
    translator = StreamTranslator("anthropic", created=1)
    return [chunk for event in events for chunk in translator.feed(event)]


def stop_with(reason: str | None, usage: dict[str, Any] | None = None) -> list[dict[str, Any]]:
    return [
        {
            "type": "message_delta",
            "delta": {"stop_reason": reason, "stop_sequence": None},
            "usage": usage or {"output_tokens": 4},
        },
        {"type": "message_stop"},
    ]


@pytest.mark.parametrize(
    ("stop_reason", "finish_reason"),
    [
        ("end_turn", "stop"),
        ("stop_sequence", "stop"),
        ("max_tokens", "length"),
        ("model_context_window_exceeded", "length"),
        ("tool_use", "tool_calls"),
        ("refusal", "content_filter"),
        ("pause_turn", "stop"),
        ("something_new", "stop"),
        (None, "stop"),
    ],
)
def test_finish_reasons(stop_reason: str | None, finish_reason: str) -> None:
    chunks = run(START, *stop_with(stop_reason))
    assert chunks[-2].choices[0].finish_reason == finish_reason


def test_message_delta_usage_is_cumulative_and_may_restate_input() -> None:
    chunks = run(
        START,
        {"type": "message_delta", "delta": {"stop_reason": None}, "usage": {"output_tokens": 2}},
        *stop_with("end_turn", {"input_tokens": 5, "cache_read_input_tokens": 7, "output_tokens": 9}),
    )
    assert chunks[-1].usage is not None
    assert chunks[-1].usage.model_dump() == {
        "prompt_tokens": 12,
        "completion_tokens": 9,
        "total_tokens": 21,
        "prompt_tokens_details": {"cached_tokens": 7},
    }


def test_unknown_events_blocks_and_deltas_are_skipped() -> None:
    chunks = run(
        START,
        {"type": "some_future_event", "data": 1},
        {"type": "content_block_start", "index": 0, "content_block": {"type": "redacted_thinking", "data": "EmwK"}},
        {"type": "content_block_stop", "index": 0},
        {"type": "content_block_start", "index": 1, "content_block": {"type": "text", "text": ""}},
        {"type": "content_block_delta", "index": 1, "delta": {"type": "citations_delta", "citation": {}}},
        {"type": "content_block_delta", "index": 1, "delta": {"type": "text_delta", "text": "ok"}},
        {"type": "content_block_stop", "index": 1},
        *stop_with("end_turn"),
    )
    deltas = [c.choices[0].delta for c in chunks if c.choices]
    assert [d.content for d in deltas] == ["", None, "ok", None]
    assert deltas[1].redacted_reasoning == "EmwK"  # redacted thinking is carried, opaque, for a later turn


@pytest.mark.parametrize(
    ("error_type", "error", "status"),
    [
        ("overloaded_error", UpstreamUnavailable, None),
        ("api_error", UpstreamUnavailable, None),
        ("rate_limit_error", UpstreamRateLimited, None),
        ("timeout_error", UpstreamTimeout, None),
        ("invalid_request_error", UpstreamRejected, 400),
        ("authentication_error", UpstreamRejected, 401),
        ("permission_error", UpstreamRejected, 403),
        ("request_too_large", UpstreamRejected, 413),
        ("brand_new_error", UpstreamUnavailable, None),
    ],
)
def test_error_events(error_type: str, error: type[UpstreamError], status: int | None) -> None:
    with pytest.raises(UpstreamError) as info:
        run(START, {"type": "error", "error": {"type": error_type, "message": "details"}})
    assert type(info.value) is error
    if status in (401, 403):  # the operator's key refused: nothing of what the provider said
        assert info.value.message.startswith(f"anthropic rejected the gateway's credentials ({status})")
    else:
        assert info.value.message == f"anthropic failed mid-stream: {error_type}: details"
    assert getattr(info.value, "upstream_status", None) == status


@pytest.mark.parametrize(
    "events",
    [
        pytest.param(
            [{"type": "content_block_delta", "index": 0, "delta": {"type": "text_delta", "text": "x"}}],
            id="before-message-start",
        ),
        pytest.param([{"type": "message_start"}], id="message-start-without-message"),
        pytest.param([START, {"type": "content_block_delta", "index": 0}], id="delta-without-delta"),
        pytest.param(
            [
                START,
                {
                    "type": "content_block_delta",
                    "index": 0,
                    "delta": {"type": "input_json_delta", "partial_json": "{}"},
                },
            ],
            id="input-for-no-tool",
        ),
        pytest.param(
            [
                START,
                {
                    "type": "content_block_start",
                    "index": 0,
                    "content_block": {"type": "tool_use", "id": "t", "name": 3},
                },
            ],
            id="tool-name-not-str",
        ),
    ],
)
def test_malformed_events(events: list[dict[str, Any]]) -> None:
    with pytest.raises(UpstreamUnavailable, match="malformed stream"):
        run(*events)


@pytest.mark.parametrize("data", ["{not json", "[1, 2]", '"text"'])
async def test_malformed_data_lines(data: str) -> None:
    async def events() -> AsyncIterator[bytes]:
        for line in [
            "event: message_start",
            f"data: {json.dumps(START)}",
            "",
            "event: content_block_delta",
            f"data: {data}",
            "",
        ]:
            yield line.encode() + b"\n"

    with pytest.raises(UpstreamUnavailable, match="malformed stream"):
        async for _ in translated(events()):
            pass


# ---------------------------------------------------------------- provider over HTTP


class Upstream:
    """An Anthropic stand-in for `httpx.MockTransport`: records requests, answers as told."""

    def __init__(
        self, status: int = 200, content: bytes | httpx.AsyncByteStream = b"", headers: dict[str, str] | None = None
    ):
        self.status = status
        self.content = content
        self.headers = headers or {}
        self.requests: list[httpx.Request] = []

    def __call__(self, request: httpx.Request) -> httpx.Response:
        self.requests.append(request)
        if isinstance(self.content, bytes):
            return httpx.Response(self.status, content=self.content, headers=self.headers)
        return httpx.Response(self.status, stream=self.content, headers=self.headers)


def sse(name: str) -> Upstream:
    return Upstream(content=(FIXTURES / name).read_bytes(), headers={"content-type": "text/event-stream"})


def failing(status: int, name: str, headers: dict[str, str] | None = None) -> Upstream:
    return Upstream(status, (FIXTURES / name).read_bytes(), {"content-type": "application/json", **(headers or {})})


async def chat(
    handler: Callable[[httpx.Request], httpx.Response], req: ChatCompletionRequest | None = None
) -> ChatCompletion:
    async with httpx.AsyncClient(transport=httpx.MockTransport(handler)) as client:
        provider = AnthropicProvider("anthropic", client, BASE_URL + "/", API_KEY)
        return await assemble_chat(provider.chat(req or request(), MODEL))


def assert_no_key(error: OrchestratorError) -> None:
    for text in (error.message, str(error), repr(error), json.dumps(error.to_dict())):
        assert API_KEY not in text


async def test_text_reply_over_http() -> None:
    upstream = sse("text_reply.sse")
    result = await chat(
        upstream,
        request(
            [{"role": "system", "content": "Be brief."}, {"role": "user", "content": "hi"}], temperature=0.2, seed=1
        ),
    )
    (sent,) = upstream.requests
    assert (sent.method, str(sent.url)) == ("POST", "https://api.anthropic.test/v1/messages")
    assert sent.headers["x-api-key"] == API_KEY
    assert sent.headers["anthropic-version"] == "2023-06-01"
    assert sent.headers["content-type"] == "application/json"
    assert sent.headers["accept"] == "text/event-stream"
    assert "authorization" not in sent.headers
    assert json.loads(sent.content) == {
        "model": MODEL,
        "messages": [{"role": "user", "content": [text("hi")]}],
        "system": "Be brief.",
        "max_tokens": 4096,
        "stream": True,
        "temperature": 0.2,
    }
    assert result.id == "chatcmpl-msg_01XFDUDYJgAACzvnptvVoYEL"
    assert result.model == MODEL
    assert result.choices[0].message.content == "Hello! How can I help?"
    assert result.choices[0].finish_reason == "stop"
    assert result.usage is not None
    assert (result.usage.prompt_tokens, result.usage.completion_tokens, result.usage.total_tokens) == (37, 15, 52)


async def test_tool_reply_over_http() -> None:
    upstream = sse("tool_use_reply.sse")
    result = await chat(upstream, request(tools=[WEATHER, CLOCK], tool_choice="required", parallel_tool_calls=False))
    sent = json.loads(upstream.requests[0].content)
    assert sent["tool_choice"] == {"type": "any", "disable_parallel_tool_use": True}
    assert [t["name"] for t in sent["tools"]] == ["get_weather", "get_time"]
    calls = result.choices[0].message.tool_calls
    assert calls is not None
    assert [json.loads(c.function.arguments) for c in calls] == [
        {"location": "San Francisco, CA", "unit": "celsius"},
        {},
    ]
    assert result.choices[0].finish_reason == "tool_calls"


async def test_custom_version_and_max_tokens() -> None:
    upstream = sse("text_reply.sse")
    async with httpx.AsyncClient(transport=httpx.MockTransport(upstream)) as client:
        provider = AnthropicProvider("claude", client, BASE_URL, API_KEY, default_max_tokens=100, version="2099-01-01")
        await assemble_chat(provider.chat(request(), MODEL))
    assert upstream.requests[0].headers["anthropic-version"] == "2099-01-01"
    assert json.loads(upstream.requests[0].content)["max_tokens"] == 100


async def test_rate_limited_with_retry_after() -> None:
    with pytest.raises(UpstreamRateLimited) as info:
        await chat(failing(429, "error_429.json", {"retry-after": "7"}))
    assert info.value.retry_after == 7.0
    assert info.value.retryable
    assert "exceed the rate limit" in info.value.message


async def test_overloaded_529_is_retryable() -> None:
    with pytest.raises(UpstreamUnavailable) as info:
        await chat(failing(529, "error_529.json"))
    assert info.value.retryable
    assert info.value.message == "anthropic answered 529: Overloaded"


async def test_authentication_error_never_shows_the_key() -> None:
    with pytest.raises(UpstreamRejected) as info:
        await chat(failing(401, "error_401.json"))
    assert info.value.upstream_status == 401
    assert not info.value.retryable
    assert info.value.message == (
        "anthropic rejected the gateway's credentials (401); the operator must check the provider's API key."
    )
    assert_no_key(info.value)


@pytest.mark.parametrize("status", [401, 403])
async def test_a_refused_key_names_the_variable_and_relays_nothing(status: int) -> None:
    kind = "authentication_error" if status == 401 else "permission_error"
    echo = json.dumps({"type": "error", "error": {"type": kind, "message": f"bad key ...{API_KEY[-4:]}"}}).encode()
    mid_stream = b"event: error\ndata: " + echo + b"\n\n"
    for upstream in (Upstream(status, echo), Upstream(200, mid_stream, {"content-type": "text/event-stream"})):
        async with httpx.AsyncClient(transport=httpx.MockTransport(upstream)) as client:
            provider = AnthropicProvider("anthropic", client, BASE_URL, API_KEY, key_env="ANTHROPIC_API_KEY")
            with pytest.raises(UpstreamRejected) as info:
                await assemble_chat(provider.chat(request(), MODEL))
        assert info.value.message == (
            f"anthropic rejected the gateway's credentials ({status}); the operator must check ANTHROPIC_API_KEY."
        )
        assert info.value.upstream_status == status and info.value.code == "provider_auth_failed"
        assert API_KEY[-4:] not in json.dumps(info.value.to_dict())


async def test_an_echoed_key_is_redacted() -> None:
    # A misconfigured proxy in front of Anthropic might echo the request headers back.
    echo = json.dumps({"type": "error", "error": {"type": "invalid_request_error", "message": f"bad {API_KEY}"}})
    with pytest.raises(UpstreamRejected) as info:
        await chat(Upstream(400, echo.encode()))
    assert "[redacted]" in info.value.message
    assert_no_key(info.value)


async def test_error_event_over_http() -> None:
    with pytest.raises(UpstreamUnavailable, match="overloaded_error"):
        await chat(sse("error_mid_stream.sse"))


async def test_truncated_stream_over_http() -> None:
    with pytest.raises(UpstreamUnavailable, match="ended early"):
        await chat(sse("truncated.sse"))


@pytest.mark.parametrize(
    ("exception", "error"),
    [
        (httpx.ConnectError("connection refused"), UpstreamUnavailable),
        (httpx.ReadTimeout("timed out"), UpstreamTimeout),
        (httpx.RemoteProtocolError("peer closed connection"), UpstreamUnavailable),
    ],
)
async def test_transport_errors(exception: Exception, error: type[UpstreamError]) -> None:
    def handler(request: httpx.Request) -> httpx.Response:
        raise exception

    with pytest.raises(error) as info:
        await chat(handler)
    assert_no_key(info.value)


async def test_translation_errors_send_nothing() -> None:
    upstream = sse("text_reply.sse")
    with pytest.raises(UnsupportedCapability):
        await chat(upstream, request(n=2))
    assert upstream.requests == []


class GatedStream(httpx.AsyncByteStream):
    """Sends a stream's events one by one, each only once the test lets it; records closing."""

    def __init__(self, events: list[bytes]):
        self.events = events
        self.gates = [asyncio.Event() for _ in events]
        self.sent = 0
        self.closed = False

    async def __aiter__(self) -> AsyncIterator[bytes]:
        for gate, event in zip(self.gates, self.events, strict=True):
            await gate.wait()
            self.sent += 1
            yield event

    async def aclose(self) -> None:
        self.closed = True


def gated(name: str) -> GatedStream:
    return GatedStream([e + b"\n\n" for e in (FIXTURES / name).read_bytes().strip().split(b"\n\n")])


async def test_chunks_are_yielded_as_events_arrive_and_closing_early_closes_upstream() -> None:
    stream = gated("text_reply.sse")
    async with httpx.AsyncClient(transport=httpx.MockTransport(Upstream(content=stream))) as client:
        chunks = AnthropicProvider("anthropic", client, BASE_URL, API_KEY).chat(request(), MODEL)
        stream.gates[0].set()
        first = await asyncio.wait_for(anext(chunks), 1)
        assert first.choices[0].delta.role == "assistant"
        assert stream.sent == 1
        for gate in stream.gates[1:4]:  # content_block_start, ping, the first text delta
            gate.set()
        second = await asyncio.wait_for(anext(chunks), 1)
        assert second.choices[0].delta.content == "Hello"
        assert stream.sent == 4
        await chunks.aclose()  # the client went away
    assert stream.closed


async def test_complete_and_embed_are_unsupported() -> None:
    async with httpx.AsyncClient(transport=httpx.MockTransport(Upstream())) as client:
        provider: Provider = AnthropicProvider("anthropic", client, BASE_URL, API_KEY)
        with pytest.raises(UnsupportedCapability) as info:
            await anext(provider.complete(CompletionRequest(model="claude", prompt="hi"), MODEL))
        assert info.value.param == "model"
        with pytest.raises(UnsupportedCapability) as info:
            await provider.embed(EmbeddingRequest(model="claude", input="hi"), MODEL)
        assert info.value.param == "model"
