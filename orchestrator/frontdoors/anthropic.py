"""Anthropic's Messages API inbound: `POST /v1/messages` and `/v1/messages/count_tokens`.

The mirror image of `providers.anthropic`. A Messages body is validated,
checked (`anthropic-version`) and translated into the chat request the flow
answers by `anthropic_request`; an Anthropic route gets the client's own body.
The answer goes back as Anthropic's `message` JSON (`to_message`) or as its
event stream (`MessageEvents`: `message_start`, `ping`, `content_block_*`,
`message_delta`, `message_stop`; an `error` event on a failure after the
stream started, never a silent end). Errors have Anthropic's shape,
`{"type": "error", "error": {"type", "message"}}`, typed by the gateway
error's status (`error_response`).

`count_tokens` (`AnthropicTokenCount`, a side door: no model is asked) counts
the prompt as the gateway does for routing (`Pipeline.count`): the local
model's tokenizer and chat template (a byte count, an upper bound, where the
gateway has no tokenizer), for any model the key may use, remote ones too.
It reserves and costs nothing, so it counts against no budget or rate limit.

Decisions, where the two APIs differ:

- `stop_reason`: stop -> end_turn (stop_sequence, and `stop_sequence` the
  string, when the route says which sequence matched: the local vLLM engine,
  an Anthropic route, an OpenAI-compatible one that sends vLLM's
  `stop_reason`; OpenAI's own API doesn't say), length -> max_tokens, tool_calls -> tool_use,
  content_filter -> refusal; an answer with tool calls is tool_use however
  it finished (OpenAI, and the local model, end a named call with "stop"). `usage.input_tokens` excludes cache reads
  and writes (`cache_read_input_tokens`, `cache_creation_input_tokens`), as Anthropic counts them. In a stream the token
  counts are known at its end, so they come in `message_delta`.
- a tool call's arguments that are not a JSON object come back as input `{}`
  in a whole message (a stream sends them as they are).
- a route's reasoning comes back as thinking, ahead of the text: an
  Anthropic route's thinking blocks with their signatures (so a client can
  send them back to continue a tool use), redacted thinking as
  `redacted_thinking`, and another reasoning model's reasoning as a thinking
  block with an empty signature.
"""

from __future__ import annotations

import json
import logging
from collections.abc import AsyncIterator, Mapping
from typing import TYPE_CHECKING, Any

from starlette.responses import JSONResponse, Response

from orchestrator.accounting.accounts import Tab
from orchestrator.calls import CHAT, Call
from orchestrator.errors import ContextLengthExceeded, OrchestratorError, UpstreamError
from orchestrator.failover import OpenStream
from orchestrator.frontdoors.anthropic_request import (
    MessagesRequest,
    TokenCountRequest,
    betas,
    check_version,
    to_chat,
)
from orchestrator.frontdoors.base import retry_headers, tenant
from orchestrator.frontdoors.openai import SSE_HEADERS, parse_body, route_headers
from orchestrator.frontdoors.sse import EventStream
from orchestrator.protocol import ChatCompletion, ChatCompletionChunk, ChatCompletionRequest, ToolCallDelta, Usage
from orchestrator.routes import Route, Routed

if TYPE_CHECKING:  # the pipeline is handed in by the edge
    from orchestrator.pipeline import Pipeline

log = logging.getLogger(__name__)

_NOT_JSON = "The request body is not valid JSON{why}."
# OpenAI's finish_reason -> Anthropic's stop_reason (`providers.anthropic.FINISH_REASONS` the other way).
STOP_REASONS = {"stop": "end_turn", "length": "max_tokens", "tool_calls": "tool_use", "content_filter": "refusal"}
ERROR_TYPES = {
    400: "invalid_request_error",
    401: "authentication_error",
    403: "permission_error",
    404: "not_found_error",
    413: "request_too_large",
    429: "rate_limit_error",
    503: "overloaded_error",
    504: "timeout_error",
    529: "overloaded_error",
}

# --------------------------------------------------------------------------- answers


def message_id(completion_id: str) -> str:
    return "msg_" + completion_id.removeprefix("chatcmpl-").removeprefix("msg_")


def stop_reason(finish: str | None, extra: object, stops: list[str]) -> tuple[str, str | None]:
    """(stop_reason, stop_sequence) for a finish reason and the route's own `stop_reason`, if any."""
    if finish == "stop" and isinstance(extra, str) and extra in stops:
        return "stop_sequence", extra
    return STOP_REASONS.get(finish or "stop", "end_turn"), None


def usage_of(usage: Usage | None) -> dict[str, int]:
    """Anthropic's usage: `input_tokens` without the prompt-cache reads and writes, which have their own."""
    if usage is None:
        return {"input_tokens": 0, "output_tokens": 0}
    details = usage.prompt_tokens_details
    cached, written = (details.cached_tokens, details.cache_write_tokens or 0) if details else (0, 0)
    counts = {"input_tokens": usage.prompt_tokens - cached - written, "output_tokens": usage.completion_tokens}
    if written:
        counts["cache_creation_input_tokens"] = written
    return counts | ({"cache_read_input_tokens": cached} if cached else {})


def tool_input(arguments: str) -> dict[str, Any]:
    try:
        value = json.loads(arguments) if arguments.strip() else {}
    except ValueError:
        return {}
    return value if isinstance(value, dict) else {}


def to_message(completion: ChatCompletion, request: ChatCompletionRequest) -> dict[str, Any]:
    """A whole chat completion as Anthropic's `message` object."""
    choice = completion.choices[0]
    content: list[dict[str, Any]] = []
    message = choice.message
    if message.reasoning_content or message.reasoning_signature:
        thinking = {"type": "thinking", "thinking": message.reasoning_content or ""}
        content.append(thinking | {"signature": message.reasoning_signature or ""})
    if message.redacted_reasoning:
        content.append({"type": "redacted_thinking", "data": message.redacted_reasoning})
    if text := (choice.message.content or choice.message.refusal):
        content.append({"type": "text", "text": text})
    for call in choice.message.tool_calls or []:
        input_ = tool_input(call.function.arguments)
        content.append({"type": "tool_use", "id": call.id, "name": call.function.name, "input": input_})
    finish = choice.finish_reason
    if choice.message.tool_calls and finish in (None, "stop"):
        finish = "tool_calls"  # OpenAI, and the local model, end a named call with "stop"
    reason, sequence = stop_reason(finish, getattr(choice, "stop_reason", None), request.stop_list())
    return {
        "id": message_id(completion.id),
        "type": "message",
        "role": "assistant",
        "model": completion.model,
        "content": content,
        "stop_reason": reason,
        "stop_sequence": sequence,
        "usage": usage_of(completion.usage),
    }


def sse(kind: str, data: dict[str, Any]) -> bytes:
    return f"event: {kind}\ndata: {json.dumps({'type': kind, **data})}\n\n".encode()


class MessageEvents:
    """OpenAI chunks -> Anthropic stream events, one chunk at a time.

    Holds which content block is open (text, or the tool call of an OpenAI
    tool index), the stop reason and the usage; `close` says how it ended.

    Anthropic's blocks come one at a time (start, deltas, stop), but an
    OpenAI-compatible route may interleave parallel tool calls' arguments
    (index 0, 1, 0, 1): the first tool call's block stays open and streams,
    and the others are held (`_held`) and sent whole, each its own block, at
    the end; no delta ever goes to a block already stopped.
    """

    def __init__(self, request: ChatCompletionRequest):
        self._stops = request.stop_list()
        self._started = False
        self._blocks = 0  # content blocks opened so far
        self._open: int | None = None  # the open block's index
        self._text: int | None = None  # the open block's index when it is text
        self._thinking: int | None = None  # the open block's index when it is thinking
        self._tools: dict[int, int] = {}  # OpenAI tool call index -> content block index
        self._live: int | None = None  # the OpenAI index of the tool call whose block is open
        self._held: dict[int, tuple[dict[str, Any], list[str]]] = {}  # later tool calls: (block, arguments)
        self._reason: tuple[str, str | None] = ("end_turn", None)
        self._usage: Usage | None = None

    def feed(self, chunk: ChatCompletionChunk) -> bytes:
        out = b"" if self._started else self._start(chunk)
        if chunk.usage is not None:
            self._usage = chunk.usage
        for choice in chunk.choices[:1]:
            delta = choice.delta
            if delta.reasoning_content or delta.reasoning_signature:
                out += self._thinking_delta(delta.reasoning_content, delta.reasoning_signature)
            if delta.redacted_reasoning:
                out += self._open_block({"type": "redacted_thinking", "data": delta.redacted_reasoning})
            if text := (choice.delta.content or choice.delta.refusal):
                out += self._text_delta(text)
            for call in choice.delta.tool_calls or []:
                out += self._tool_delta(call)
            if choice.finish_reason is not None:
                self._reason = stop_reason(choice.finish_reason, getattr(choice, "stop_reason", None), self._stops)
        return out

    def close(self) -> bytes:
        """`content_block_stop` for the open block, `message_delta` and `message_stop`."""
        reason, sequence = self._reason
        if (self._tools or self._held) and reason == "end_turn":
            reason = "tool_use"  # OpenAI, and the local model, end a named call with "stop"
        delta = {"delta": {"stop_reason": reason, "stop_sequence": sequence}, "usage": usage_of(self._usage)}
        return self._stop_open() + self._flush_held() + sse("message_delta", delta) + sse("message_stop", {})

    def _start(self, chunk: ChatCompletionChunk) -> bytes:
        self._started = True
        message: dict[str, Any] = {
            "id": message_id(chunk.id),
            "type": "message",
            "role": "assistant",
            "model": chunk.model,
            "content": [],
            "stop_reason": None,
            "stop_sequence": None,
            # The prompt's count where the route said it at its start (the local engine, an Anthropic route; not
            # an OpenAI-compatible one, which says it at the end, in message_delta), as Anthropic's own does.
            "usage": {**usage_of(chunk.prompt_usage), "output_tokens": 0},
        }
        return sse("message_start", {"message": message}) + sse("ping", {})

    def _thinking_delta(self, text: str | None, signature: str | None) -> bytes:
        out = b""
        if self._thinking is None:
            out = self._open_block({"type": "thinking", "thinking": "", "signature": ""})
            self._thinking = self._open
        if text:
            delta = {"type": "thinking_delta", "thinking": text}
            out += sse("content_block_delta", {"index": self._thinking, "delta": delta})
        if signature:
            delta = {"type": "signature_delta", "signature": signature}
            out += sse("content_block_delta", {"index": self._thinking, "delta": delta})
        return out

    def _text_delta(self, text: str) -> bytes:
        out = b""
        if self._text is None:
            out = self._open_block({"type": "text", "text": ""})
            self._text = self._open
        return out + sse("content_block_delta", {"index": self._text, "delta": {"type": "text_delta", "text": text}})

    def _tool_delta(self, call: ToolCallDelta) -> bytes:
        out = b""
        name = call.function.name if call.function and call.function.name else ""
        arguments = call.function.arguments if call.function else None
        if call.index not in self._tools and (call.index in self._held or self._live is not None):
            empty = {"type": "tool_use", "id": "", "name": "", "input": {}}
            block, pieces = self._held.setdefault(call.index, (empty, []))
            block["id"], block["name"] = block["id"] or call.id or "", block["name"] or name
            pieces.append(arguments or "")
            return out  # another tool call's block is open: this one waits its turn
        if call.index not in self._tools:
            out = self._open_block({"type": "tool_use", "id": call.id or "", "name": name, "input": {}})
            self._tools[call.index], self._live = self._blocks - 1, call.index
        if arguments:
            delta = {"type": "input_json_delta", "partial_json": arguments}
            out += sse("content_block_delta", {"index": self._tools[call.index], "delta": delta})
        return out

    def _open_block(self, block: dict[str, Any]) -> bytes:
        out = self._stop_open()
        self._open = self._blocks
        self._blocks += 1
        return out + sse("content_block_start", {"index": self._open, "content_block": block})

    def _stop_open(self) -> bytes:
        if self._open is None:
            return b""
        index, self._open, self._text, self._thinking, self._live = self._open, None, None, None, None
        return sse("content_block_stop", {"index": index})

    def _flush_held(self) -> bytes:
        """The held tool calls, each a whole block: start, its arguments in one delta, stop."""
        out = b""
        for block, pieces in self._held.values():
            out += self._open_block(block)
            if arguments := "".join(pieces):
                delta = {"type": "input_json_delta", "partial_json": arguments}
                out += sse("content_block_delta", {"index": self._open, "delta": delta})
            out += self._stop_open()
        self._held.clear()
        return out


async def message_events(
    stream: OpenStream[ChatCompletionChunk], request: ChatCompletionRequest
) -> AsyncIterator[bytes]:
    """The stream as Anthropic SSE, ending with `message_stop`, or with an `error` event on failure."""
    events = MessageEvents(request)
    try:
        yield b"".join(events.feed(c) for c in stream.prefix)
        async for batch in stream.rest:
            if out := b"".join(events.feed(c) for c in batch):
                yield out
    except OrchestratorError as e:
        yield sse("error", error_body(e))
        return
    except Exception as e:  # never a silent truncation: say the stream broke
        log.exception("stream failed")
        yield sse("error", error_body(UpstreamError(f"The stream failed: {type(e).__name__}.")))
        return
    finally:
        await stream.aclose()
    yield events.close()


# --------------------------------------------------------------------------- errors


def error_type(status: int) -> str:
    if status in ERROR_TYPES:
        return ERROR_TYPES[status]
    return "invalid_request_error" if 400 <= status < 500 else "api_error"


def error_body(exc: OrchestratorError) -> dict[str, Any]:
    return {"error": {"type": error_type(exc.status_code), "message": error_message(exc)}}


def error_message(exc: OrchestratorError) -> str:
    """The error's message; a context overflow in Anthropic's words, which clients read: Claude Code retries
    with the `max_tokens` that fits when told "input length and `max_tokens` exceed context limit: P + M > C"."""
    if isinstance(exc, ContextLengthExceeded) and exc.prompt_tokens is not None and exc.context is not None:
        if exc.max_tokens is not None:
            return (
                f"input length and `max_tokens` exceed context limit: {exc.prompt_tokens} + {exc.max_tokens} > "
                f"{exc.context}, decrease input length or `max_tokens` and try again"
            )
        return f"prompt is too long: {exc.prompt_tokens} tokens > {exc.context} maximum"
    return exc.message


def error_response(exc: OrchestratorError) -> Response:
    """Anthropic's error JSON with the gateway error's status (and `Retry-After`)."""
    return JSONResponse({"type": "error", **error_body(exc)}, status_code=exc.status_code, headers=retry_headers(exc))


# --------------------------------------------------------------------------- the doors


class AnthropicMessages:
    """`POST /v1/messages`: Anthropic's Messages API over the chat flow."""

    path = "/v1/messages"

    async def parse(self, raw: bytes, headers: Mapping[str, str], tab: Tab) -> Call:
        check_version(headers)
        request = to_chat(parse_body(raw, MessagesRequest, _NOT_JSON), betas(headers))
        return Call(CHAT, request, headers, tab, tenant(tab))

    async def encode(self, call: Call, routed: Routed[Any]) -> Response:
        if isinstance(routed.result, OpenStream):
            return _stream_response(routed.result, call.body, routed.route)
        body = json.dumps(to_message(routed.result, call.body))
        return Response(content=body, media_type="application/json", headers=route_headers(routed.route))

    def error(self, exc: OrchestratorError) -> Response:
        return error_response(exc)


class AnthropicTokenCount:
    """`POST /v1/messages/count_tokens`: `{"input_tokens": N}`, as the gateway counts the prompt."""

    path = "/v1/messages/count_tokens"

    async def answer(self, raw: bytes, headers: Mapping[str, str], tab: Tab, pipeline: Pipeline) -> Response:
        check_version(headers)
        request = to_chat(parse_body(raw, TokenCountRequest, _NOT_JSON))
        tokens = await pipeline.count(Call(CHAT, request, headers, tab, tenant(tab)))
        return JSONResponse({"input_tokens": tokens})

    def error(self, exc: OrchestratorError) -> Response:
        return error_response(exc)


def _stream_response(stream: OpenStream[Any], request: ChatCompletionRequest, route: Route) -> Response:
    return EventStream(
        message_events(stream, request), media_type="text/event-stream", headers={**SSE_HEADERS, **route_headers(route)}
    )
