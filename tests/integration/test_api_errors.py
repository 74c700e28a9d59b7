"""Every failure becomes OpenAI's error JSON with the right status, or an SSE error event."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from typing import Any

import httpx
import pytest
from fastapi import FastAPI
from http_checks import BASE_MODEL, CHAT_MODEL, Api, sse_data, user
from openai_schema import validate

from orchestrator.errors import EngineError, Overloaded
from orchestrator.testing.engine import FakeEngine

CHAT = "/v1/chat/completions"
COMPLETIONS = "/v1/completions"


def chat(**fields: Any) -> dict[str, Any]:
    return {"model": CHAT_MODEL, "messages": user("hello there world"), **fields}


# --------------------------------------------------------------- request bodies


@pytest.mark.parametrize("path", [CHAT, COMPLETIONS, "/v1/embeddings"])
async def test_malformed_json(api: Api, path: str) -> None:
    error = await api.error(path, content=b'{"model": ', status=400)
    assert error["type"] == "invalid_request_error"
    assert "could not parse the JSON body" in error["message"]


async def test_body_that_is_not_utf8(api: Api) -> None:
    await api.error(CHAT, content=b"\xff\xfe{}", status=400)


@pytest.mark.parametrize("body", [[chat()], "chat", 42, None])
async def test_body_that_is_not_an_object(api: Api, body: Any) -> None:
    error = await api.error(CHAT, content=json.dumps(body).encode(), status=400)
    assert error["message"] == "The request body must be a JSON object."


@pytest.mark.parametrize(
    ("path", "body", "param"),
    [
        (CHAT, {"messages": user("x")}, "model"),
        (CHAT, {"model": CHAT_MODEL}, "messages"),
        (CHAT, {"model": CHAT_MODEL, "messages": [{"content": "x"}]}, "messages[0].role"),
        (COMPLETIONS, {"model": CHAT_MODEL}, "prompt"),
        ("/v1/embeddings", {"model": CHAT_MODEL}, "input"),
    ],
)
async def test_missing_required_parameter(api: Api, path: str, body: dict[str, Any], param: str) -> None:
    error = await api.error(path, body, status=400)
    assert (error["param"], error["code"]) == (param, "missing_required_parameter")
    assert error["message"] == f"Missing required parameter: '{param}'."


@pytest.mark.parametrize(
    ("fields", "param"),
    [
        ({"messages": [{"role": "wizard", "content": "x"}]}, "messages[0].role"),
        ({"messages": [user("ok")[0], {"role": "user"}]}, "messages[1]"),
        ({"temperature": 3}, "temperature"),
        ({"top_p": -1}, "top_p"),
        ({"n": 0}, "n"),
        ({"max_tokens": 0}, "max_tokens"),
        ({"logit_bias": {"1": 500}}, "logit_bias.1"),
        ({"top_logprobs": 30, "logprobs": True}, "top_logprobs"),
        ({"stop": ["a", "b", "c", "d", "e"]}, "stop"),
        ({"messages": []}, "messages"),
    ],
)
async def test_invalid_value(api: Api, chat_engine: FakeEngine, fields: dict[str, Any], param: str) -> None:
    error = await api.error(CHAT, chat(**fields), status=400)
    assert (error["type"], error["param"], error["code"]) == ("invalid_request_error", param, "invalid_value")
    assert error["message"].startswith(f"Invalid value for '{param}': ")
    assert chat_engine.generations == []


async def test_temperature_message_says_the_bound(api: Api) -> None:
    error = await api.error(CHAT, chat(temperature=3), status=400)
    assert "less than or equal to 2" in error["message"]


async def test_union_field_message_says_what_is_wrong(api: Api) -> None:
    error = await api.error(CHAT, chat(stop=["a", "b", "c", "d", "e"]), status=400)
    assert "at most 4" in error["message"]


async def test_model_level_rules(api: Api) -> None:
    error = await api.error(CHAT, chat(stream_options={"include_usage": True}), status=400)
    assert "'stream_options' is only allowed when 'stream' is true" in error["message"]
    error = await api.error(CHAT, chat(top_logprobs=2), status=400)
    assert "'top_logprobs' requires 'logprobs'" in error["message"]


# -------------------------------------------------------------- models, routes


async def test_unknown_model(api: Api) -> None:
    error = await api.error(CHAT, {**chat(), "model": "gpt-17"}, status=404)
    assert (error["type"], error["param"], error["code"]) == ("invalid_request_error", "model", "model_not_found")
    assert "'gpt-17' does not exist" in error["message"]
    assert CHAT_MODEL in error["message"]


async def test_unknown_model_for_completions_and_embeddings(api: Api) -> None:
    await api.error(COMPLETIONS, {"model": "nope", "prompt": "x"}, status=404)
    await api.error("/v1/embeddings", {"model": "nope", "input": "x"}, status=404)


async def test_tools_on_a_model_without_tools(api: Api, chat_engine: FakeEngine) -> None:
    tools = [{"type": "function", "function": {"name": "get_weather", "parameters": {"type": "object"}}}]
    error = await api.error(CHAT, chat(tools=tools), status=400)
    assert (error["param"], error["code"]) == ("tools", "unsupported_tools")
    assert chat_engine.generations == []
    # tool_choice "none" needs no tool support.
    await api.ok(CHAT, chat(tools=tools, tool_choice="none"))


async def test_image_input(api: Api) -> None:
    content = [{"type": "text", "text": "what is this"}, {"type": "image_url", "image_url": {"url": "data:,"}}]
    error = await api.error(CHAT, {"model": CHAT_MODEL, "messages": [{"role": "user", "content": content}]}, status=400)
    assert (error["param"], error["code"]) == ("messages", "unsupported_vision")


async def test_chat_on_a_model_without_chat_template(api: Api, base_engine: FakeEngine) -> None:
    error = await api.error(CHAT, {**chat(), "model": BASE_MODEL}, status=400)
    assert (error["param"], error["code"]) == ("model", "unsupported_task")
    assert "does not support chat completions" in error["message"]
    assert base_engine.generations == []


@pytest.mark.parametrize("stream", [False, True])
async def test_context_too_long(api: Api, stream: bool) -> None:
    long = " ".join(["word"] * 60)
    error = await api.error(CHAT, chat(messages=user(long), max_tokens=10, stream=stream), status=400)
    assert (error["type"], error["param"], error["code"]) == (
        "invalid_request_error",
        "messages",
        "context_length_exceeded",
    )
    assert "maximum context length is 64 tokens" in error["message"]
    error = await api.error(COMPLETIONS, {"model": CHAT_MODEL, "prompt": long, "stream": stream}, status=400)
    assert (error["param"], error["code"]) == ("prompt", "context_length_exceeded")


async def test_unknown_path(api: Api) -> None:
    error = await api.error("/v1/nothing-here", {"x": 1}, status=404)
    assert (error["type"], error["code"]) == ("invalid_request_error", "not_found")
    assert "/v1/nothing-here" in error["message"]
    await api.error("/", method="GET", status=404)


@pytest.mark.parametrize(("method", "path"), [("GET", CHAT), ("PUT", COMPLETIONS), ("POST", "/v1/models")])
async def test_wrong_method(api: Api, method: str, path: str) -> None:
    error = await api.error(path, method=method, status=405)
    assert (error["type"], error["code"]) == ("invalid_request_error", "method_not_allowed")
    assert method in error["message"]


# ------------------------------------------------------------- engine failures


@pytest.mark.parametrize("stream", [False, True])
@pytest.mark.parametrize(("path", "body"), [(CHAT, chat()), (COMPLETIONS, {"model": CHAT_MODEL, "prompt": "a b"})])
async def test_engine_failure_before_the_first_chunk_is_a_json_error(
    api: Api, chat_engine: FakeEngine, path: str, body: dict[str, Any], stream: bool
) -> None:
    chat_engine.fail_after = 0
    error = await api.error(path, {**body, "stream": stream}, status=500)
    assert (error["type"], error["code"]) == ("api_error", "engine_error")
    assert chat_engine.generations[0].outcome == "failed"


async def test_overloaded_before_the_first_chunk(api: Api, chat_engine: FakeEngine) -> None:
    chat_engine.fail_after = 0
    chat_engine.error = Overloaded("The local model's queue is full.")
    error = await api.error(CHAT, chat(stream=True), status=503)
    assert error["code"] == "overloaded"


async def test_engine_failure_after_the_first_chunk_ends_the_stream_with_an_error(
    client: httpx.AsyncClient, chat_engine: FakeEngine
) -> None:
    chat_engine.enqueue(["one two three four five"])
    chat_engine.fail_after = 2
    chat_engine.error = EngineError("The fake engine lost its GPU.")
    r = await client.post(CHAT, json=chat(stream=True))
    assert r.status_code == 200
    events = sse_data(r.text)
    assert "[DONE]" not in events
    *chunks, last = [json.loads(e) for e in events]
    for c in chunks:
        validate("CreateChatCompletionStreamResponse", c)
    assert "".join(c["choices"][0]["delta"].get("content", "") for c in chunks) == "one two"
    validate("ErrorResponse", last)
    assert last["error"] == {
        "message": "The fake engine lost its GPU.",
        "type": "api_error",
        "param": None,
        "code": "engine_error",
    }


async def test_completion_stream_failure_after_the_first_chunk(
    client: httpx.AsyncClient, chat_engine: FakeEngine
) -> None:
    chat_engine.fail_after = 1
    r = await client.post(COMPLETIONS, json={"model": CHAT_MODEL, "prompt": "a b c", "stream": True})
    events = sse_data(r.text)
    assert r.status_code == 200 and "[DONE]" not in events
    validate("CreateCompletionResponse", json.loads(events[0]), completion_stream=True)
    error = json.loads(events[-1])
    validate("ErrorResponse", error)
    assert error["error"]["code"] == "engine_error"


async def test_engine_failure_after_output_without_stream_is_a_json_error(api: Api, chat_engine: FakeEngine) -> None:
    chat_engine.fail_after = 1  # the one whole batch arrives, then the engine fails
    error = await api.error(CHAT, chat(), status=500)
    assert error["code"] == "engine_error"


# ----------------------------------------------------------- unexpected errors


@pytest.fixture
async def lenient_client(app: FastAPI) -> AsyncIterator[httpx.AsyncClient]:
    """A client that, like a real server, answers with the app's 500 instead of re-raising."""
    transport = httpx.ASGITransport(app=app, raise_app_exceptions=False)
    async with httpx.AsyncClient(transport=transport, base_url="http://test") as c:
        yield c


SECRET = "secret internal detail /srv/keys"


@pytest.mark.parametrize("stream", [False, True])
async def test_unexpected_exception_is_a_generic_500(
    lenient_client: httpx.AsyncClient, chat_engine: FakeEngine, stream: bool
) -> None:
    chat_engine.fail_after = 0
    chat_engine.error = RuntimeError(SECRET)
    r = await lenient_client.post(CHAT, json=chat(stream=stream))
    assert r.status_code == 500
    assert r.headers["content-type"] == "application/json"
    data = r.json()
    validate("ErrorResponse", data)
    assert data["error"] == {
        "message": "The server had an error processing your request.",
        "type": "api_error",
        "param": None,
        "code": None,
    }
    assert SECRET not in r.text and "Traceback" not in r.text


async def test_unexpected_exception_mid_stream_is_an_error_event(
    client: httpx.AsyncClient, chat_engine: FakeEngine
) -> None:
    chat_engine.fail_after = 1
    chat_engine.error = RuntimeError(SECRET)
    r = await client.post(CHAT, json=chat(stream=True))
    events = sse_data(r.text)
    assert "[DONE]" not in events
    error = json.loads(events[-1])
    validate("ErrorResponse", error)
    assert error["error"]["type"] == "api_error"
    assert error["error"]["message"] == "The stream failed: RuntimeError."
    assert SECRET not in r.text and "Traceback" not in r.text
