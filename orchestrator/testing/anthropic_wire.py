"""Anthropic's Messages wire format, as the fake provider speaks it: requests read into an `Ask`, replies encoded.

A `message` body, or `event: <type>` SSE: message_start (output_tokens 1, as the real API sends), a text block
(content_block_start, a ping, text_delta per token, content_block_stop) and/or a tool_use block (start, then
`input_json_delta` fragments), message_delta with the stop reason and usage, message_stop. Error bodies
(`{"type": "error", "error": {type, message}, "request_id"}`), the model list, and the key checks: `x-api-key`,
or a Bearer token (what the Python SDK 2.x sends), and `anthropic-version`. Pure: no HTTP.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any

from orchestrator.testing.replies import Ask, Event, Problem, Reply, ToolCall, dumps, part_texts, request_id, stop_list

BROKEN_LINE = b"event: content_block_delta\ndata: {not json\n\n"  # the `malformed` fault's line
# The error each status-code fault answers with (and `stream_error`'s in-stream error).
FAULT_ERRORS: dict[str, Problem] = {
    "rate_limit": Problem(429, "rate_limit_error", "Number of request tokens has exceeded your per-minute rate limit"),
    "insufficient_quota": Problem(402, "billing_error", "Your credit balance is too low to access the Anthropic API."),
    "server_error": Problem(500, "api_error", "Internal server error"),
    "stream_error": Problem(529, "overloaded_error", "Overloaded"),
    "overloaded": Problem(529, "overloaded_error", "Overloaded"),
    "bad_request": Problem(400, "invalid_request_error", "Invalid request (injected by the fake provider)."),
}
_STOP_REASONS = {"length": "max_tokens", "tool_calls": "tool_use"}


def named(event: str, obj: Any) -> bytes:
    return f"event: {event}\ndata: {dumps(obj)}\n\n".encode()


def error_body(problem: Problem) -> dict[str, Any]:
    return {"type": "error", "error": {"type": problem.kind, "message": problem.message}, "request_id": request_id()}


def stream_error_event() -> bytes:
    """The `stream_error` fault's in-stream error: an `event: error`."""
    problem = FAULT_ERRORS["stream_error"]
    return named("error", {"type": "error", "error": {"type": problem.kind, "message": problem.message}})


def auth_problem(headers: Mapping[str, str], api_key: str | None) -> Problem | None:
    """401 for a missing or wrong key (any non-empty key when `api_key` is None); 400 without a version."""
    header = headers.get("Authorization", "")
    bearer = header[7:].strip() if header.lower().startswith("bearer ") else ""
    key = headers.get("x-api-key", "") or bearer
    if not key:
        return Problem(401, "authentication_error", "x-api-key header is required")
    if api_key is not None and key != api_key:
        return Problem(401, "authentication_error", "invalid x-api-key")
    if not headers.get("anthropic-version"):
        return Problem(400, "invalid_request_error", "anthropic-version: header is required")
    return None


def invalid(body: Any) -> Problem | None:
    """The 400 the Messages API gives a body it can't take (not JSON, a field missing, no positive max_tokens)."""
    if not isinstance(body, dict):
        return Problem(400, "invalid_request_error", "The request body is not valid JSON.")
    for name in ("model", "messages", "max_tokens"):
        if name not in body:
            return Problem(400, "invalid_request_error", f"{name}: Field required")
    if not isinstance(body["max_tokens"], int) or body["max_tokens"] < 1:
        return Problem(400, "invalid_request_error", "max_tokens: Input should be a positive integer")
    return None


# -- requests -----------------------------------------------------------------------------------------------


def _blocks(message: dict[str, Any], tool_results: bool) -> list[Any]:
    """A message's content blocks: only its tool_result blocks, or all the others."""
    content = message.get("content", "")
    if isinstance(content, str):
        return [] if tool_results else [content]
    return [b for b in content if isinstance(b, dict) and (b.get("type") == "tool_result") == tool_results]


def _tool_choice(choice: Any) -> str:
    kind = choice.get("type", "auto") if isinstance(choice, dict) else "auto"
    if kind == "tool":
        return "name:" + str(choice.get("name", ""))
    return {"any": "required", "none": "none"}.get(kind, "auto")


def ask(body: dict[str, Any]) -> Ask:
    messages = [m for m in body.get("messages", []) if isinstance(m, dict)]
    texts = part_texts(body.get("system", ""))
    for m in messages:
        texts.extend(part_texts(m.get("content")))
    users = [m for m in messages if m.get("role") == "user"]
    last = messages[-1] if messages else {}
    results = _blocks(last, tool_results=True) if last.get("role") == "user" else []
    tools = [
        (t["name"], t.get("input_schema") or {}) for t in body.get("tools") or [] if isinstance(t, dict) and "name" in t
    ]
    return Ask(
        texts=texts,
        last_user=" ".join(part_texts(_blocks(users[-1], tool_results=False))) if users else "",
        tool_result=" ".join(t for b in results for t in part_texts(b.get("content", ""))) if results else None,
        tools=tools,
        tool_choice=_tool_choice(body.get("tool_choice")),
        max_tokens=body.get("max_tokens"),
        stop=stop_list(body.get("stop_sequences")),
    )


# -- replies ------------------------------------------------------------------------------------------------


def _stop_reason(reply: Reply) -> str:
    if reply.refused:
        return "refusal"
    if reply.finish == "stop":
        return "stop_sequence" if reply.stop_sequence is not None else "end_turn"
    return _STOP_REASONS[reply.finish]


def _usage(reply: Reply, output_tokens: int) -> dict[str, Any]:
    written, read = reply.cache  # input_tokens counts neither, as Anthropic counts
    return {
        "input_tokens": reply.prompt_tokens,
        "cache_creation_input_tokens": written,
        "cache_read_input_tokens": read,
        "output_tokens": output_tokens,
        "service_tier": "standard",
    }


def body(reply: Reply, meta: dict[str, Any]) -> dict[str, Any]:
    content: list[dict[str, Any]] = []
    if reply.reasoning:
        content.append({"type": "thinking", "thinking": reply.thinking, "signature": reply.signature})
    if reply.tokens:
        content.append({"type": "text", "text": reply.text})
    if reply.tool:
        tool_input = json.loads(reply.tool.arguments)
        content.append({"type": "tool_use", "id": reply.tool.id, "name": reply.tool.name, "input": tool_input})
    return {
        "id": meta["id"],
        "type": "message",
        "role": "assistant",
        "model": meta["model"],
        "content": content,
        "stop_reason": _stop_reason(reply),
        "stop_sequence": reply.stop_sequence,
        "usage": _usage(reply, reply.completion_tokens),
    }


def _delta(index: int, delta: dict[str, Any], paced: bool = True) -> Event:
    return Event(named("content_block_delta", {"type": "content_block_delta", "index": index, "delta": delta}), paced)


def _block(index: int, block: dict[str, Any], paced: bool = False) -> Event:
    start = {"type": "content_block_start", "index": index, "content_block": block}
    return Event(named("content_block_start", start), paced)


def _block_stop(index: int) -> Event:
    return Event(named("content_block_stop", {"type": "content_block_stop", "index": index}))


def _text_events(tokens: list[str], ping: Event | None, index: int = 0) -> list[Event]:
    """The text block, with the ping after its start when it is the first block (the order the real API sends)."""
    events = [_block(index, {"type": "text", "text": ""}), *([ping] if ping else [])]
    events += [_delta(index, {"type": "text_delta", "text": t}) for t in tokens]
    return events + [_block_stop(index)]


def _thinking_events(reply: Reply, ping: Event) -> list[Event]:
    """The thinking block at index 0: its text as thinking deltas, then its signature."""
    events = [_block(0, {"type": "thinking", "thinking": "", "signature": ""}), ping]
    events += [_delta(0, {"type": "thinking_delta", "thinking": t}) for t in reply.reasoning]
    events.append(_delta(0, {"type": "signature_delta", "signature": reply.signature}, paced=False))
    return events + [_block_stop(0)]


def _tool_events(tool: ToolCall, index: int) -> list[Event]:
    """A tool_use block: its start (paced: it is output), an empty input_json_delta, then the fragments."""
    events = [_block(index, {"type": "tool_use", "id": tool.id, "name": tool.name, "input": {}}, paced=True)]
    events += [_delta(index, {"type": "input_json_delta", "partial_json": f}, bool(f)) for f in ["", *tool.fragments]]
    return events + [_block_stop(index)]


def events(reply: Reply, meta: dict[str, Any]) -> list[Event]:
    # message_start carries output_tokens 1, as the real API does
    message = {**body(reply, meta), "content": [], "stop_reason": None, "stop_sequence": None}
    message["usage"] = _usage(reply, 1)
    out = [Event(named("message_start", {"type": "message_start", "message": message}))]
    ping = Event(named("ping", {"type": "ping"}))
    first = 0
    if reply.reasoning:
        out += _thinking_events(reply, ping)
        first = 1
    with_text = bool(reply.tokens or not reply.tool)
    if with_text:
        out += _text_events(reply.tokens, None if reply.reasoning else ping, index=first)
    elif not reply.reasoning:
        out.append(ping)
    if reply.tool:
        out += _tool_events(reply.tool, index=first + 1 if with_text else first)
    delta = {
        "type": "message_delta",
        "delta": {"stop_reason": _stop_reason(reply), "stop_sequence": reply.stop_sequence},
        "usage": {"output_tokens": reply.completion_tokens},
    }
    return out + [Event(named("message_delta", delta)), Event(named("message_stop", {"type": "message_stop"}))]


def models_body(models: list[str]) -> dict[str, Any]:
    data = [{"type": "model", "id": m, "display_name": m, "created_at": "2025-01-01T00:00:00Z"} for m in models]
    return {
        "data": data,
        "has_more": False,
        "first_id": models[0] if models else None,
        "last_id": models[-1] if models else None,
    }
