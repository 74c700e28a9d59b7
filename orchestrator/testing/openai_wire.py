"""OpenAI's wire format, as the fake provider speaks it: requests read into an `Ask`, replies encoded.

Chat completions (`chat.completion`, and `chat.completion.chunk` SSE with a role chunk first, tool-call
deltas, the finish chunk, a usage chunk when `stream_options.include_usage`, then `data: [DONE]`), legacy
completions (`text_completion`), embeddings (floats, or little-endian float32 as base64), the model list,
error bodies (`{"error": {message, type, param, code}}`) and `Authorization: Bearer` checks. Pure: bytes and
dicts in and out, no HTTP.
"""

from __future__ import annotations

import base64
import re
import struct
from collections.abc import Mapping
from typing import Any

from orchestrator.testing.replies import (
    Ask,
    Event,
    Kind,
    Problem,
    Reply,
    ToolCall,
    count_words,
    dumps,
    embedding,
    embedding_inputs,
    part_texts,
    stop_list,
)

FINGERPRINT = "fp_fake0001"
BROKEN_LINE = b"data: {not json\n\n"  # the `malformed` fault's line
_SERVER_ERROR = "The server had an error while processing your request. Sorry about that!"
# The error each status-code fault answers with (and `stream_error`'s in-stream error).
FAULT_ERRORS: dict[str, Problem] = {
    "rate_limit": Problem(
        429, "requests", "Rate limit reached for requests. Please try again.", code="rate_limit_exceeded"
    ),
    "insufficient_quota": Problem(
        429,
        "insufficient_quota",
        "You exceeded your current quota, please check your plan and billing details.",
        code="insufficient_quota",
    ),
    "server_error": Problem(500, "server_error", _SERVER_ERROR),
    "stream_error": Problem(500, "server_error", _SERVER_ERROR),
    "overloaded": Problem(503, "server_error", "The engine is currently overloaded, please try again later."),
    "bad_request": Problem(400, "invalid_request_error", "Invalid request (injected by the fake provider)."),
}
_REQUIRED: dict[str, list[str]] = {
    "chat": ["model", "messages"],
    "completion": ["model", "prompt"],
    "embedding": ["model", "input"],
}
_NO_KEY = (
    "You didn't provide an API key. You need to provide your API key in an "
    "Authorization header using Bearer auth (i.e. Authorization: Bearer YOUR_KEY)."
)


# Where reasoning goes: DeepSeek's and vLLM's field (OpenRouter names it `reasoning`).
REASONING_FIELD = "reasoning_content"


def sse(obj: Any) -> bytes:
    return b"data: " + dumps(obj).encode() + b"\n\n"


def error_body(problem: Problem) -> dict[str, Any]:
    return {"error": {"message": problem.message, "type": problem.kind, "param": problem.param, "code": problem.code}}


def stream_error_event() -> bytes:
    """The `stream_error` fault's in-stream error: an SSE event carrying an error body."""
    return sse(error_body(FAULT_ERRORS["stream_error"]))


def bearer(headers: Mapping[str, str]) -> str:
    header = headers.get("Authorization", "")
    return header[7:].strip() if header.lower().startswith("bearer ") else ""


def auth_problem(headers: Mapping[str, str], api_key: str | None) -> Problem | None:
    """401 for a missing key, or a wrong one (any non-empty key when `api_key` is None)."""
    key = bearer(headers)
    if not key:
        return Problem(401, "invalid_request_error", _NO_KEY)
    if api_key is not None and key != api_key:
        message = f"Incorrect API key provided: {key[:3]}***{key[-4:]}."
        return Problem(401, "invalid_request_error", message, "invalid_api_key")
    return None


def invalid(kind: Kind, body: Any) -> Problem | None:
    """The 400 a real OpenAI endpoint gives a body it can't take (not JSON, a field missing, odd dimensions)."""
    if not isinstance(body, dict):
        return Problem(400, "invalid_request_error", "We could not parse the JSON body of your request.")
    for name in _REQUIRED[kind]:
        if name not in body:
            message = f"Missing required parameter: '{name}'."
            return Problem(400, "invalid_request_error", message, "missing_required_parameter", name)
    if kind == "chat" and (problem := _bad_tool_name(body.get("tools"))):
        return problem
    dimensions = body.get("dimensions") if kind == "embedding" else None
    if dimensions is not None and (not isinstance(dimensions, int) or not 1 <= dimensions <= 4096):
        return Problem(400, "invalid_request_error", "dimensions: 1 to 4096", param="dimensions")
    return None


_TOOL_NAME = re.compile(r"^[a-zA-Z0-9_-]+$")


def _bad_tool_name(tools: Any) -> Problem | None:
    """OpenAI's 400 for a function name over 64 characters, or with others than letters, digits, _ and -."""
    for i, tool in enumerate(tools if isinstance(tools, list) else []):
        name = (tool.get("function") or {}).get("name") if isinstance(tool, dict) else None
        param = f"tools[{i}].function.name"
        if isinstance(name, str) and len(name) > 64:
            message = (
                f"Invalid '{param}': string too long. Expected a string with maximum length 64, "
                f"but got a string with length {len(name)} instead."
            )
            return Problem(400, "invalid_request_error", message, "string_above_max_length", param)
        if isinstance(name, str) and not _TOOL_NAME.match(name):
            message = (
                f"Invalid '{param}': string does not match pattern. "
                "Expected a string that matches the pattern '^[a-zA-Z0-9_-]+$'."
            )
            return Problem(400, "invalid_request_error", message, "invalid_value", param)
    return None


_SHORT_ID = re.compile(r"^[a-zA-Z0-9]{9}$")


def long_tool_call_id(body: dict[str, Any]) -> Problem | None:
    """Mistral's 400 for a tool-call id in the history that isn't 9 letters or digits."""
    for message in body.get("messages") or []:
        if not isinstance(message, dict):
            continue
        ids = [c.get("id") for c in message.get("tool_calls") or [] if isinstance(c, dict)]
        ids += [message["tool_call_id"]] if "tool_call_id" in message else []
        for tool_id in ids:
            if not isinstance(tool_id, str) or not _SHORT_ID.match(tool_id):
                message_text = f"Tool call id was {tool_id} but must be a-z, A-Z, 0-9, with a length of 9."
                return Problem(400, "invalid_request_message_error", message_text)
    return None


def over_ceiling(body: dict[str, Any], ceiling: int) -> Problem | None:
    """DeepSeek's 400 for a `max_tokens` above what its models take."""
    limit = body.get("max_tokens", body.get("max_completion_tokens"))
    if isinstance(limit, int) and limit > ceiling:
        message = f"Invalid max_tokens value, the valid range of max_tokens is [1, {ceiling}]"
        return Problem(400, "invalid_request_error", message, param="max_tokens")
    return None


def json_mode_without_json(body: dict[str, Any]) -> Problem | None:
    """DeepSeek's (and OpenAI's) 400 for JSON mode when no message says "json"."""
    fmt = body.get("response_format")
    if not isinstance(fmt, dict) or fmt.get("type") != "json_object":
        return None
    texts = [t for m in body.get("messages") or [] if isinstance(m, dict) for t in part_texts(m.get("content"))]
    if any("json" in t.lower() for t in texts):
        return None
    message = "Prompt must contain the word 'json' in some form to use 'response_format' of type 'json_object'."
    return Problem(400, "invalid_request_error", message, param="messages")


# -- requests -----------------------------------------------------------------------------------------------


def _tool_choice(body: dict[str, Any]) -> str:
    choice = body.get("tool_choice") or "auto"
    if isinstance(choice, dict):
        return "name:" + str(choice.get("function", {}).get("name", "")) if "function" in choice else "auto"
    return str(choice)


def chat_ask(body: dict[str, Any]) -> Ask:
    messages = [m for m in body.get("messages", []) if isinstance(m, dict)]
    texts: list[str] = []
    for m in messages:
        texts.extend(part_texts(m.get("content")))
        for call in m.get("tool_calls") or []:
            texts.append(str(call.get("function", {}).get("arguments", "")))
    users = [m for m in messages if m.get("role") == "user"]
    last = messages[-1] if messages else {}
    tools = [
        (t["function"]["name"], t["function"].get("parameters") or {})
        for t in body.get("tools") or []
        if isinstance(t, dict) and isinstance(t.get("function"), dict) and "name" in t["function"]
    ]
    max_tokens = body.get("max_completion_tokens", body.get("max_tokens"))
    return Ask(
        texts=texts,
        last_user=" ".join(part_texts(users[-1].get("content"))) if users else "",
        tool_result=" ".join(part_texts(last.get("content"))) if last.get("role") == "tool" else None,
        tools=tools,
        tool_choice=_tool_choice(body),
        max_tokens=max_tokens if isinstance(max_tokens, int) else None,
        stop=stop_list(body.get("stop")),
    )


def _first_prompt(prompt: Any) -> str:
    """The legacy endpoint's prompt: a string, a batch of strings, or token ids (read as ids joined by spaces)."""
    if isinstance(prompt, str):
        return prompt
    if isinstance(prompt, list) and prompt and isinstance(prompt[0], (str, list)):
        return _first_prompt(prompt[0])
    return " ".join(str(i) for i in prompt) if isinstance(prompt, list) else str(prompt)


def completion_ask(body: dict[str, Any]) -> Ask:
    prompt = _first_prompt(body.get("prompt", ""))
    max_tokens = body.get("max_tokens", 16)  # the legacy endpoint's default
    return Ask(
        texts=[prompt],
        last_user=prompt,
        tool_result=None,
        tools=[],
        tool_choice="none",
        max_tokens=max_tokens if isinstance(max_tokens, int) else None,
        stop=stop_list(body.get("stop")),
    )


# -- replies ------------------------------------------------------------------------------------------------


def usage(reply: Reply) -> dict[str, Any]:
    return {
        "prompt_tokens": reply.prompt_tokens,
        "completion_tokens": reply.completion_tokens,
        "total_tokens": reply.prompt_tokens + reply.completion_tokens,
        "prompt_tokens_details": {"cached_tokens": 0, "audio_tokens": 0},
        "completion_tokens_details": {
            "reasoning_tokens": len(reply.reasoning),
            "audio_tokens": 0,
            "accepted_prediction_tokens": 0,
            "rejected_prediction_tokens": 0,
        },
    }


def _tool_call_json(tool: ToolCall) -> dict[str, Any]:
    return {"id": tool.id, "type": "function", "function": {"name": tool.name, "arguments": tool.arguments}}


def chat_body(reply: Reply, meta: dict[str, Any]) -> dict[str, Any]:
    message: dict[str, Any] = {
        "role": "assistant",
        "content": reply.text if (reply.tokens or not reply.tool) and not reply.refused else None,
        "refusal": reply.text if reply.refused else None,
        "annotations": [],
    }
    if reply.reasoning:
        message[REASONING_FIELD] = reply.thinking
    if reply.tool:
        message["tool_calls"] = [_tool_call_json(reply.tool)]
    choice = {"index": 0, "message": message, "logprobs": None, "finish_reason": reply.finish}
    return {
        **meta,
        "object": "chat.completion",
        "choices": [choice],
        "usage": usage(reply),
        "service_tier": "default",
        "system_fingerprint": FINGERPRINT,
    }


def _tool_deltas(tool: ToolCall) -> list[dict[str, Any]]:
    """A tool call as streamed: index, id, type, name and empty arguments first, then argument fragments."""
    head = {"index": 0, "id": tool.id, "type": "function", "function": {"name": tool.name, "arguments": ""}}
    return [{"tool_calls": [head]}] + [
        {"tool_calls": [{"index": 0, "function": {"arguments": frag}}]} for frag in tool.fragments
    ]


def chat_events(reply: Reply, meta: dict[str, Any], include_usage: bool) -> list[Event]:
    base = {**meta, "object": "chat.completion.chunk", "service_tier": "default", "system_fingerprint": FINGERPRINT}
    if include_usage:
        base["usage"] = None

    def chunk(delta: dict[str, Any], finish: str | None = None) -> bytes:
        return sse({**base, "choices": [{"index": 0, "delta": delta, "logprobs": None, "finish_reason": finish}]})

    events = [Event(chunk({"role": "assistant", "content": "", "refusal": None}))]
    events += [Event(chunk({REASONING_FIELD: token, "content": None}), paced=True) for token in reply.reasoning]
    field = "refusal" if reply.refused else "content"
    events += [Event(chunk({field: token}), paced=True) for token in reply.tokens]
    if reply.tool:
        events += [Event(chunk(delta), paced=True) for delta in _tool_deltas(reply.tool)]
    events.append(Event(chunk({}, reply.finish)))
    if include_usage:
        events.append(Event(sse({**base, "choices": [], "usage": usage(reply)})))
    return events + [Event(b"data: [DONE]\n\n")]


def completion_body(reply: Reply, meta: dict[str, Any]) -> dict[str, Any]:
    choice = {"text": reply.text, "index": 0, "logprobs": None, "finish_reason": reply.finish}
    return {
        **meta,
        "object": "text_completion",
        "choices": [choice],
        "usage": usage(reply),
        "system_fingerprint": FINGERPRINT,
    }


def completion_events(reply: Reply, meta: dict[str, Any], include_usage: bool) -> list[Event]:
    base = {**meta, "object": "text_completion", "system_fingerprint": FINGERPRINT}
    if include_usage:
        base["usage"] = None

    def chunk(text: str, finish: str | None = None) -> bytes:
        return sse({**base, "choices": [{"text": text, "index": 0, "logprobs": None, "finish_reason": finish}]})

    events = [Event(chunk(token), paced=True) for token in reply.tokens] + [Event(chunk("", reply.finish))]
    if include_usage:
        events.append(Event(sse({**base, "choices": [], "usage": usage(reply)})))
    return events + [Event(b"data: [DONE]\n\n")]


def embeddings_body(body: dict[str, Any], default_dim: int) -> dict[str, Any]:
    """An embeddings answer; raises ValueError for an `input` of the wrong shape."""
    texts = embedding_inputs(body["input"])
    dim = body.get("dimensions") or default_dim
    data: list[dict[str, Any]] = []
    for index, text in enumerate(texts):
        vector: Any = embedding(text, int(dim))
        if body.get("encoding_format") == "base64":
            vector = base64.b64encode(struct.pack(f"<{len(vector)}f", *vector)).decode()
        data.append({"object": "embedding", "index": index, "embedding": vector})
    tokens = count_words(texts)
    return {
        "object": "list",
        "data": data,
        "model": body["model"],
        "usage": {"prompt_tokens": tokens, "total_tokens": tokens},
    }


def model_json(model: str) -> dict[str, Any]:
    return {"id": model, "object": "model", "created": 1700000000, "owned_by": "fake-provider"}


def models_body(models: list[str]) -> dict[str, Any]:
    return {"object": "list", "data": [model_json(m) for m in models]}


def unknown_model(model: str) -> Problem:
    return Problem(404, "invalid_request_error", f"The model '{model}' does not exist", "model_not_found", "model")
