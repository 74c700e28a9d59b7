"""`POST /v1/messages` through the official anthropic SDK, against the in-process app.

Local answers come from the fake engines of `conftest.py` (no tools there);
tool round trips go to fake providers that support tools, one speaking
OpenAI's wire format ("alpha") and one Anthropic's ("claude"). Every body and
stream event is also held to the SDK's own types.
"""

from __future__ import annotations

import json
from typing import Any, cast

import anthropic
import httpx
import httpx2
import pytest
from anthropic.types import Message, RawMessageStreamEvent
from fastapi import FastAPI
from http_checks import CHAT_MODEL
from pydantic import TypeAdapter
from two_fakes import TEAM_KEY
from two_fakes import fakes_fixture as fakes_fixture
from two_fakes import healthy_fixture as healthy_fixture
from two_fakes import remote_fixture as remote_fixture

from orchestrator.testing.engine import FakeEngine
from orchestrator.testing.provider import FakeProvider

WEATHER = {
    "name": "get_weather",
    "description": "The weather in a city.",
    "input_schema": {"type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]},
}
EVENTS: TypeAdapter[Any] = TypeAdapter(RawMessageStreamEvent)


def sdk(app: FastAPI, api_key: str = "x") -> anthropic.AsyncAnthropic:
    # anthropic 2.x is built on `httpx2` (httpx's successor), which has the same in-process ASGI transport.
    transport = httpx2.ASGITransport(app=app)
    http = httpx2.AsyncClient(transport=transport, base_url="http://t")
    return anthropic.AsyncAnthropic(api_key=api_key, base_url="http://t", http_client=http, max_retries=0)


def text_of(message: Message) -> str:
    return "".join(b.text for b in message.content if b.type == "text")


async def raw_events(app: FastAPI, body: dict[str, Any], key: str | None = None) -> list[dict[str, Any]]:
    """The stream's events as sent, each held to the SDK's event types."""
    headers = {"x-api-key": key} if key else {}
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://t") as http:
        r = await http.post("/v1/messages", json={**body, "stream": True}, headers=headers)
    assert r.status_code == 200 and r.headers["content-type"].startswith("text/event-stream"), r.text
    events = []
    for frame in r.text.split("\n\n"):
        if frame.strip():
            kind, data = frame.split("\n")
            event = json.loads(data.removeprefix("data: "))
            assert kind == f"event: {event['type']}"
            if event["type"] not in ("ping", "error"):
                EVENTS.validate_python(event)
            events.append(event)
    return events


# ------------------------------------------------------------------------------ local (fake engines)


async def test_a_whole_message(app: FastAPI) -> None:
    client = sdk(app)
    raw = await client.messages.with_raw_response.create(
        model=CHAT_MODEL, max_tokens=20, messages=[{"role": "user", "content": "hello there"}]
    )
    Message.model_validate(json.loads(await raw.read()))  # every field Anthropic's type wants
    assert raw.headers["x-served-by"].endswith(CHAT_MODEL)
    message = await raw.parse()
    assert message.id.startswith("msg_") and message.type == "message" and message.role == "assistant"
    assert text_of(message) == "hello there"
    assert message.stop_reason == "end_turn" and message.stop_sequence is None
    assert message.usage.input_tokens > 0 and message.usage.output_tokens == 2


async def test_a_stream_says_what_the_whole_message_says(app: FastAPI) -> None:
    client = sdk(app)
    ask: dict[str, Any] = {
        "model": CHAT_MODEL,
        "max_tokens": 20,
        "messages": [{"role": "user", "content": "one two three four"}],
    }
    whole = await client.messages.create(**ask)
    async with client.messages.stream(**ask) as stream:
        pieces = [text async for text in stream.text_stream]
        final = await stream.get_final_message()
    assert len(pieces) > 1 and "".join(pieces) == text_of(whole) == text_of(final)
    assert final.stop_reason == "end_turn"
    assert final.usage.input_tokens == whole.usage.input_tokens
    assert final.usage.output_tokens == whole.usage.output_tokens


async def test_the_stream_events_come_in_anthropics_order(app: FastAPI) -> None:
    events = await raw_events(
        app, {"model": CHAT_MODEL, "max_tokens": 20, "messages": [{"role": "user", "content": "a b c"}]}
    )
    kinds = [e["type"] for e in events]
    assert kinds[:3] == ["message_start", "ping", "content_block_start"]
    assert kinds[-3:] == ["content_block_stop", "message_delta", "message_stop"]
    assert set(kinds[3:-3]) == {"content_block_delta"}
    assert events[-2]["delta"]["stop_reason"] == "end_turn" and events[-2]["usage"]["output_tokens"] == 3
    # The prompt's count comes at the start, as Anthropic's does (LangChain reads it there): it was always 0.
    assert events[0]["message"]["usage"]["input_tokens"] == events[-2]["usage"]["input_tokens"] > 0


async def test_an_assistant_prefill_is_continued_by_the_local_model(app: FastAPI, chat_engine: FakeEngine) -> None:
    """A last assistant turn is a prefill: the local engine is asked to continue it (vLLM's
    `continue_final_message`), not to close it and open a new turn. OpenAI's door keeps OpenAI's
    meaning (a new turn) unless the client asks for vLLM's field, which needs a last assistant turn."""
    messages = [{"role": "user", "content": "JSON please"}, {"role": "assistant", "content": '{"a":'}]
    await sdk(app).messages.create(model=CHAT_MODEL, max_tokens=5, messages=messages)
    assert chat_engine.generations[-1].request.get("continue_final") is True
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://gw") as c:
        body = {"model": CHAT_MODEL, "max_tokens": 5, "messages": messages}
        assert (await c.post("/v1/chat/completions", json=body)).status_code == 200
        assert "continue_final" not in chat_engine.generations[-1].request
        r = await c.post("/v1/chat/completions", json={**body, "continue_final_message": True})
        assert r.status_code == 200 and chat_engine.generations[-1].request.get("continue_final") is True
        wrong = {**body, "messages": messages[:1], "continue_final_message": True}
        error = (await c.post("/v1/chat/completions", json=wrong)).json()["error"]
        assert error["param"] == "continue_final_message" and "assistant" in error["message"]


async def test_system_prompt_and_a_multi_turn_conversation(app: FastAPI, chat_engine: FakeEngine) -> None:
    client = sdk(app)
    message = await client.messages.create(
        model=CHAT_MODEL,
        max_tokens=30,
        system=[{"type": "text", "text": "You are terse."}],
        messages=[
            {"role": "user", "content": "first question"},
            {"role": "assistant", "content": [{"type": "text", "text": "first answer"}]},
            {"role": "user", "content": [{"type": "text", "text": "second question"}]},
        ],
        stop_sequences=["never"],
        metadata={"user_id": "u-1"},
        extra_body={"temperature": 0.5, "top_k": 5},  # this SDK no longer names them
    )
    assert text_of(message) == "second question"  # the fake parrots the last user turn
    with_system = message.usage.input_tokens
    bare = await client.messages.create(
        model=CHAT_MODEL, max_tokens=30, messages=[{"role": "user", "content": "second question"}]
    )
    assert with_system > bare.usage.input_tokens  # the system prompt and the history were in the prompt


async def test_a_stop_sequence_that_matched_is_named(app: FastAPI) -> None:
    """It came back as end_turn with no stop_sequence: clients branch on which one matched."""
    client = sdk(app)
    ask: dict[str, Any] = {
        "model": CHAT_MODEL,
        "max_tokens": 20,
        "stop_sequences": ["never", "three"],
        "messages": [{"role": "user", "content": "one two three four"}],
    }
    whole = await client.messages.create(**ask)
    async with client.messages.stream(**ask) as stream:
        final = await stream.get_final_message()
    for message in (whole, final):
        assert text_of(message).strip() == "one two"
        assert (message.stop_reason, message.stop_sequence) == ("stop_sequence", "three")


async def test_max_tokens_cuts_the_answer(app: FastAPI) -> None:
    message = await sdk(app).messages.create(
        model=CHAT_MODEL, max_tokens=2, messages=[{"role": "user", "content": "one two three four"}]
    )
    assert message.stop_reason == "max_tokens" and message.usage.output_tokens == 2


async def test_a_request_without_max_tokens_is_a_400_in_anthropics_shape(app: FastAPI) -> None:
    with pytest.raises(anthropic.BadRequestError) as caught:
        await sdk(app).messages.create(
            model=CHAT_MODEL,
            max_tokens=cast(int, anthropic.NOT_GIVEN),
            messages=[{"role": "user", "content": "hi"}],
            timeout=10,  # the SDK would compute one from max_tokens
        )
    assert caught.value.status_code == 400
    body = cast(dict[str, Any], caught.value.body)
    assert body["type"] == "error" and body["error"]["type"] == "invalid_request_error"
    assert "max_tokens" in body["error"]["message"]


async def test_an_unknown_model_is_a_404_in_anthropics_shape(app: FastAPI) -> None:
    with pytest.raises(anthropic.NotFoundError) as caught:
        await sdk(app).messages.create(
            model="no-such-model", max_tokens=10, messages=[{"role": "user", "content": "hi"}]
        )
    body = cast(dict[str, Any], caught.value.body)
    assert body["type"] == "error" and body["error"]["type"] == "not_found_error"


async def test_anthropics_apis_the_gateway_lacks_are_a_404_in_anthropics_shape(app: FastAPI) -> None:
    """The Message Batches API (and a stray trailing slash) under `/v1/messages`: OpenAI's shape before."""
    with pytest.raises(anthropic.NotFoundError) as caught:
        await sdk(app).messages.batches.list()
    body = cast(dict[str, Any], caught.value.body)
    assert body["type"] == "error" and body["error"]["type"] == "not_found_error"
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://gw") as c:
        r = await c.post("/v1/messages/", json={}, headers={"anthropic-version": "2023-06-01"})
    assert r.status_code == 404 and r.json()["type"] == "error"
    assert "Unknown request URL" in r.json()["error"]["message"]


async def test_tools_for_a_model_without_tools_are_a_400(app: FastAPI) -> None:
    with pytest.raises(anthropic.BadRequestError) as caught:
        await sdk(app).messages.create(
            model=CHAT_MODEL, max_tokens=10, tools=[WEATHER], messages=[{"role": "user", "content": "weather?"}]
        )
    body = cast(dict[str, Any], caught.value.body)
    assert body["error"]["type"] == "invalid_request_error" and "tool" in body["error"]["message"]


async def test_a_body_that_is_not_json_is_a_400_in_anthropics_shape(app: FastAPI) -> None:
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://t") as http:
        r = await http.post("/v1/messages", content=b"{nope", headers={"content-type": "application/json"})
    assert r.status_code == 400
    assert r.json()["type"] == "error" and r.json()["error"]["type"] == "invalid_request_error"


# ------------------------------------------------------------------------------ remote (fake providers)


@pytest.mark.parametrize(("model", "at_start"), [("alpha/m", False), ("claude/haiku", True)])
async def test_message_start_says_the_prompts_count_where_the_route_does(
    remote: FastAPI, model: str, at_start: bool
) -> None:
    """An Anthropic route's message_start has the count (it was always 0 here); an OpenAI-compatible one
    says it only at the end, so the start says 0 and message_delta the count, as before."""
    ask = {"model": model, "max_tokens": 20, "messages": [{"role": "user", "content": "one two three"}]}
    events = await raw_events(remote, ask, TEAM_KEY)
    start, end = events[0]["message"]["usage"]["input_tokens"], events[-2]["usage"]["input_tokens"]
    assert end > 0 and start == (end if at_start else 0)


@pytest.mark.parametrize("model", ["alpha/m", "claude/haiku"])
@pytest.mark.parametrize("stream", [False, True], ids=["json", "sse"])
async def test_a_tool_use_round_trip(remote: FastAPI, model: str, stream: bool) -> None:
    client = sdk(remote, TEAM_KEY)  # sent as x-api-key, as Anthropic clients send it
    question: list[Any] = [{"role": "user", "content": "What is the weather in Paris?"}]
    ask: dict[str, Any] = {"model": model, "max_tokens": 50, "tools": [WEATHER], "tool_choice": {"type": "any"}}
    if stream:
        async with client.messages.stream(**ask, messages=question) as s:
            first = await s.get_final_message()
    else:
        first = await client.messages.create(**ask, messages=question)
    assert first.stop_reason == "tool_use"
    [use] = [b for b in first.content if b.type == "tool_use"]
    assert use.name == "get_weather" and isinstance(use.input, dict) and isinstance(use.input["city"], str)
    result = {"type": "tool_result", "tool_use_id": use.id, "content": [{"type": "text", "text": "sunny, 21C"}]}
    second = await client.messages.create(
        model=model,
        max_tokens=50,
        tools=[WEATHER],
        messages=[*question, {"role": "assistant", "content": first.content}, {"role": "user", "content": [result]}],
    )
    assert second.stop_reason == "end_turn" and "sunny, 21C" in text_of(second)


async def test_a_failed_tool_result_says_so_to_an_openai_compatible_route(
    remote: FastAPI, fakes: dict[str, FakeProvider]
) -> None:
    """`is_error` has no field in OpenAI's tool message: it was dropped, and the model read the error
    text as the tool's answer. Now the text says the call failed."""
    question: list[Any] = [{"role": "user", "content": "What is the weather in Paris?"}]
    use = {"type": "tool_use", "id": "toolu_1", "name": "get_weather", "input": {"city": "Paris"}}
    failed = {"type": "tool_result", "tool_use_id": "toolu_1", "content": "no such city", "is_error": True}
    turns = [*question, {"role": "assistant", "content": [use]}, {"role": "user", "content": [failed]}]
    await sdk(remote, TEAM_KEY).messages.create(model="alpha/m", max_tokens=20, tools=[WEATHER], messages=turns)
    sent = [r.body for r in fakes["alpha"].requests if r.method == "POST"][-1]
    assert sent["messages"][-1] == {"role": "tool", "tool_call_id": "toolu_1", "content": "Error: no such city"}


async def test_the_tool_use_stream_sends_input_json_deltas(remote: FastAPI) -> None:
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=remote), base_url="http://t") as http:
        r = await http.post(
            "/v1/messages",
            headers={"x-api-key": TEAM_KEY, "anthropic-version": "2023-06-01"},
            json={
                "model": "alpha/m",
                "max_tokens": 50,
                "stream": True,
                "tools": [WEATHER],
                "messages": [{"role": "user", "content": "weather?"}],
            },
        )
    assert r.status_code == 200 and r.headers["x-served-by"] == "alpha/alpha-model"
    events = [json.loads(f.split("\n")[1].removeprefix("data: ")) for f in r.text.split("\n\n") if f.strip()]
    for event in events:
        if event["type"] != "ping":
            EVENTS.validate_python(event)
    starts = [e["content_block"] for e in events if e["type"] == "content_block_start"]
    assert starts[-1]["type"] == "tool_use" and starts[-1]["name"] == "get_weather"
    deltas = [e["delta"] for e in events if e["type"] == "content_block_delta"]
    arguments = "".join(d["partial_json"] for d in deltas if d["type"] == "input_json_delta")
    assert isinstance(json.loads(arguments)["city"], str)


async def test_a_bad_key_is_a_401_in_anthropics_shape(remote: FastAPI) -> None:
    with pytest.raises(anthropic.AuthenticationError) as caught:
        await sdk(remote, "sk-orch-wrong").messages.create(
            model="alpha/m", max_tokens=10, messages=[{"role": "user", "content": "hi"}]
        )
    body = cast(dict[str, Any], caught.value.body)
    assert body["type"] == "error" and body["error"]["type"] == "authentication_error"


async def test_a_failure_mid_stream_ends_with_an_error_event(remote: FastAPI, fakes: dict[str, FakeProvider]) -> None:
    fakes["alpha"].set_fault("stream_error", stall_after=2)
    client = sdk(remote, TEAM_KEY)
    with pytest.raises(anthropic.APIError):
        async with client.messages.stream(
            model="alpha/m", max_tokens=50, messages=[{"role": "user", "content": "one two three four five"}]
        ) as s:
            await s.get_final_message()


async def test_messages_requests_are_accounted_under_their_own_endpoint(client: httpx.AsyncClient) -> None:
    body = {"model": CHAT_MODEL, "max_tokens": 8, "messages": [{"role": "user", "content": "count me"}]}
    assert (await client.post("/v1/messages", json=body)).status_code == 200
    metrics = (await client.get("/metrics")).text
    assert 'orchestrator_requests_total{endpoint="/v1/messages"' in metrics


HI = b'[{"role":"user","content":"hi"}]'


def hostile(fields: bytes, messages: bytes = HI) -> bytes:
    return b'{"model":"fake-chat",' + fields + b',"messages":' + messages + b"}"


HOSTILE = [
    b"[]",
    b'"x"',
    hostile(b'"max_tokens":5', b'[{"role":"user","content":"a\\ud800"}]'),  # a lone surrogate
    hostile(b'"max_tokens":5', b"[" * 3000 + b"]" * 3000),
    hostile(b'"max_tokens":NaN'),
    hostile(b'"max_tokens":5', b'[{"role":"user","content":[{"type":"tool_result"}]}]'),
    hostile(b'"max_tokens":99999999999999999999999'),
    hostile(
        b'"max_tokens":5', b'[{"role":"assistant","content":[{"type":"tool_use","id":"x","name":"f","input":"s"}]}]'
    ),
    hostile(b'"max_tokens":5,"system":[{"type":"image"}]'),
    hostile(b'"max_tokens":5,"tools":[{"name":"f"}],"tool_choice":{"type":"tool"}'),
    hostile(b'"max_tokens":5,"tool_choice":{"type":"any"}'),  # a tool call forced with no tool to call
    hostile(b'"max_tokens":5,"stop_sequences":["a",5]'),
    hostile(
        b'"max_tokens":5',
        b'[{"role":"user","content":[{"type":"image","source":{"type":"base64","media_type":"image/png","data":"x"}}]}]',
    ),
    hostile(b'"max_tokens":5,"metadata":{"user_id":5}'),
    hostile(b'"max_tokens":-1'),
    hostile(b'"max_tokens":5', b"[]"),
    hostile(b'"max_tokens":5', b'[{"role":"system","content":"hi"}]'),
    hostile(b'"max_tokens":5,"temperature":1e400'),
    # A block whose type is an object (a 500: the union's tag looked it up in a set; fuzz finding).
    hostile(b'"max_tokens":5', b'[{"role":"user","content":[{"type":{"value":"tool_use"},"id":"t","name":"f"}]}]'),
    hostile(b'"max_tokens":5,"system":[{"type":["text"],"text":"x"}]'),
    hostile(b'"max_tokens":5,"tools":[{"type":{"a":1},"name":"f","input_schema":{}}]'),
]


@pytest.mark.parametrize("raw", HOSTILE)
async def test_hostile_messages_bodies_are_a_400_in_anthropics_shape(client: httpx.AsyncClient, raw: bytes) -> None:
    r = await client.post("/v1/messages", content=raw, headers={"content-type": "application/json"})
    assert r.status_code == 400, r.text
    body = r.json()
    assert body["type"] == "error" and body["error"]["type"] == "invalid_request_error" and body["error"]["message"]
