"""Checks every gateway answer against OpenAI's schema and the SSE framing.

Imported by the integration tests and their conftest (pytest puts this
directory on `sys.path`; `tests/` is there through `pythonpath`).
"""

from __future__ import annotations

import json
from typing import Any

import httpx
from openai_schema import validate

CHAT_MODEL = "fake-chat"
BASE_MODEL = "fake-base"
EMBED_MODEL = "fake-embed"

SCHEMAS = {
    "/v1/chat/completions": ("CreateChatCompletionResponse", "CreateChatCompletionStreamResponse"),
    "/v1/completions": ("CreateCompletionResponse", "CreateCompletionResponse"),
    "/v1/embeddings": ("CreateEmbeddingResponse", None),
}


# The Responses API's stream events, each by its own schema (clearer failures than the union's).
EVENT_SCHEMAS = {
    "response.created": "ResponseCreatedEvent",
    "response.in_progress": "ResponseInProgressEvent",
    "response.output_item.added": "ResponseOutputItemAddedEvent",
    "response.output_item.done": "ResponseOutputItemDoneEvent",
    "response.content_part.added": "ResponseContentPartAddedEvent",
    "response.content_part.done": "ResponseContentPartDoneEvent",
    "response.output_text.delta": "ResponseTextDeltaEvent",
    "response.output_text.done": "ResponseTextDoneEvent",
    "response.refusal.delta": "ResponseRefusalDeltaEvent",
    "response.refusal.done": "ResponseRefusalDoneEvent",
    "response.function_call_arguments.delta": "ResponseFunctionCallArgumentsDeltaEvent",
    "response.function_call_arguments.done": "ResponseFunctionCallArgumentsDoneEvent",
    "response.custom_tool_call_input.delta": "ResponseCustomToolCallInputDeltaEvent",
    "response.custom_tool_call_input.done": "ResponseCustomToolCallInputDoneEvent",
    "response.completed": "ResponseCompletedEvent",
    "response.incomplete": "ResponseIncompleteEvent",
    "response.failed": "ResponseFailedEvent",
    "error": "ResponseErrorEvent",
}


class Api:
    """Calls the app and checks each answer against OpenAI's schema."""

    def __init__(self, client: httpx.AsyncClient):
        self.client = client
        self.last: httpx.Response | None = None

    async def ok(self, path: str, body: dict[str, Any]) -> dict[str, Any]:
        """A whole (non-stream) success: 200, route headers, a valid body."""
        r = await self.client.post(path, json=body)
        self.last = r
        assert r.status_code == 200, r.text
        assert r.headers["content-type"] == "application/json"
        assert_routed(r)
        data: dict[str, Any] = r.json()
        validate(SCHEMAS[path][0], data)
        return data

    async def stream(self, path: str, body: dict[str, Any]) -> list[dict[str, Any]]:
        """A whole stream: 200, SSE framing, every chunk valid, `[DONE]` last."""
        r = await self.client.post(path, json={**body, "stream": True})
        self.last = r
        assert r.status_code == 200, r.text
        assert r.headers["content-type"].startswith("text/event-stream")
        assert r.headers["cache-control"] == "no-cache"
        assert_routed(r)
        events = sse_data(r.text)
        assert events[-1] == "[DONE]"
        assert "[DONE]" not in events[:-1]
        chunks = [json.loads(e) for e in events[:-1]]
        for chunk in chunks:
            assert "error" not in chunk, chunk
            validate(SCHEMAS[path][1], chunk, completion_stream=path == "/v1/completions")  # type: ignore[arg-type]
        return chunks

    async def error(
        self,
        path: str,
        body: Any = None,
        *,
        status: int,
        method: str = "POST",
        content: bytes | None = None,
    ) -> dict[str, Any]:
        """An error answer: `status`, OpenAI's error body; returns the inner error object."""
        if content is not None:
            r = await self.client.request(method, path, content=content, headers={"content-type": "application/json"})
        elif body is not None:
            r = await self.client.request(method, path, json=body)
        else:
            r = await self.client.request(method, path)
        self.last = r
        assert r.status_code == status, r.text
        assert r.headers["content-type"] == "application/json"
        data = r.json()
        validate("ErrorResponse", data)
        error: dict[str, Any] = data["error"]
        assert error["message"]
        return error


def assert_routed(r: httpx.Response) -> None:
    assert r.headers["x-served-by"].startswith("local")
    assert r.headers["x-route-reason"] in ("local: the only route", "embedding route")


def sse_data(text: str) -> list[str]:
    """The `data:` payloads of an SSE body, checking the framing as it goes."""
    assert text.endswith("\n\n"), f"an SSE body ends with a blank line: {text[-80:]!r}"
    events = text[:-2].split("\n\n")
    payloads = []
    for event in events:
        assert event.startswith("data: "), f"not a data event: {event!r}"
        assert "\n" not in event, f"one line per event: {event!r}"
        payloads.append(event.removeprefix("data: "))
    return payloads


def user(text: str) -> list[dict[str, str]]:
    return [{"role": "user", "content": text}]
