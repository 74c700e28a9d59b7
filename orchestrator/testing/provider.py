"""A fake pay-per-token provider on a real socket: OpenAI-compatible and Anthropic Messages wire formats.

No provider can be reached from here, so the gateway's remote routes are tested and benchmarked against this
server. It speaks the providers' exact wire formats over HTTP on 127.0.0.1 — JSON and SSE, error bodies, status
codes, `Retry-After` — and fails the way they fail. One file, because it is one tool: the wire encoders, the
fault table and the server are its sections, top to bottom.

Endpoints (OpenAI flavour: `Authorization: Bearer <key>`; Anthropic: `x-api-key` — or a Bearer token, which is
what its Python SDK 2.x sends — and `anthropic-version`):

    POST /v1/chat/completions   chat.completion / chat.completion.chunk SSE (`stream_options.include_usage`)
    POST /v1/completions        text_completion, JSON and SSE
    POST /v1/embeddings         deterministic unit vectors (`embedding_dim`, or the request's `dimensions`),
                                `encoding_format` "float" or "base64" (little-endian float32)
    GET  /v1/models[/{id}]      OpenAI list, or Anthropic's shape when `anthropic-version` is sent
    POST /v1/messages           Anthropic message / `event: <type>` SSE with ping; `max_tokens` required
    GET  /health                200, no auth (readiness checks)
    GET  /_fake/stats           counts, for a fake running in another process (the CLI)
    POST /_fake/fault           {"mode": ..., options} sets the instance fault; {"mode": null} clears it
    POST /_fake/reset           clears the fault, the records and the counts

Replies. A "token" is a word with the whitespace before it (`" world"`), as in `tests/fakes.py`, so usage counts
words: prompt tokens are the words of all message text (system, tool results and tool-call arguments included;
tool definitions not), completion tokens the tokens emitted (for a tool call: its argument fragments). The reply
text is, first match wins: a trailing tool result (OpenAI role "tool", Anthropic `tool_result` block) ->
"The tool returned: <its content>"; `reply` (a string, or a function of the parsed request body);
`reply_tokens` -> that many words cycled from `FILLER`; otherwise the last user message parroted back
(`DEFAULT_REPLY` when that is empty). Stop sequences cut the text just before the earliest one (finish "stop",
Anthropic "stop_sequence" with `stop_sequence` set); `max_tokens` / `max_completion_tokens` cut it to that many
tokens ("length" / "max_tokens"). `n` is ignored (one choice).

Tools. A request with tools whose tool choice isn't "none" gets one call to the first tool (or the named one:
OpenAI `{"type": "function", "function": {"name"}}`, Anthropic `{"type": "tool", "name"}`), arguments filled
from the JSON schema's required properties (string "x", number/integer 1, boolean true, array [], enum -> first
value, nested objects recursively), streamed as OpenAI `tool_calls` deltas (first: index, id, type, name,
arguments "", then fragments of `ARG_FRAGMENT` characters) / Anthropic `tool_use` block + `input_json_delta`
fragments; finish "tool_calls" / stop_reason "tool_use". After a tool result the reply is text, unless the
choice forces a tool ("required", a named tool, Anthropic "any"/"tool"). `tool_preamble` adds text before the
call (OpenAI: content deltas; Anthropic: a text block at index 0, tool_use at 1).

Timing. Headers and the opening event (OpenAI role chunk `{"role": "assistant", "content": ""}`; Anthropic
message_start, the text block's content_block_start and a ping) go out at once; `ttft_ms` later the first
output event, then one every 1/`tokens_per_s` (0 = no delay). A non-stream answer waits the same total time.

Faults (`FAULT_MODES`), for the instance (`set_fault`, or `/_fake/fault`) or one request (header
`x-fake-fault: stall; stall_after=3`, which does not use up `fail_times`). They apply to authenticated POSTs:

    rate_limit          429 + Retry-After (`retry_after`; a fraction also sets retry-after-ms); OpenAI code
                        "rate_limit_exceeded", Anthropic "rate_limit_error"
    insufficient_quota  OpenAI 429 type/code "insufficient_quota"; Anthropic 402 "billing_error"
    server_error        500 (OpenAI "server_error", Anthropic "api_error")
    overloaded          OpenAI 503 "server_error"; Anthropic 529 "overloaded_error"
    bad_request         400 "invalid_request_error" (not retryable)
    reset               reads the request, then closes the socket with RST before any response bytes
    stall               stream: `stall_after` output events, then silence with the connection open until the
                        client goes away (recorded as "disconnected") or `stall_cap_s` (then the socket is
                        closed); non-stream: no response at all, same ending
    malformed           stream: `stall_after` output events, then `data: {not json` and a clean end (no
                        [DONE] / message_stop); non-stream: 200 application/json with a truncated body
    drop                stream: `stall_after` output events, then the socket closes mid-body (the client sees
                        an incomplete chunked read); non-stream: headers and half the body, then closed
    stream_error        stream: `stall_after` output events, then the provider's in-stream error (OpenAI
                        `data: {"error": ...}`, Anthropic `event: error` overloaded_error) and a clean end;
                        non-stream: OpenAI 500 / Anthropic 529
    slow_first_token    normal, but the first output event waits `slow_ttft_s`

`fail_times=N` applies the instance fault to the next N requests only, then the provider is healthy again.

Observability: `requests` (RecordedRequest: method, path, lowercased headers, parsed JSON body, time, and as it
goes: status, fault, events sent, outcome "in_flight" | "completed" | "disconnected" | "fault" | "shutdown"),
`counts` (per path), `faults_applied` (per mode), `disconnects` / `client_disconnected` (a client went away
before its answer was complete: proof that a gateway cancels upstream work), `in_flight`, and `wait_for(pred)` /
`await wait_for_async(pred)` to poll for what happens after a response (a disconnect is noticed asynchronously).

Use: `with FakeProvider(api_key="sk-test") as p:` runs it in a background thread with its own loop (for sync
tests, or other processes such as Ray Serve replicas calling it); `async with` runs it on the current loop.
CLI: `python -m benchmarks.fake_provider --port 9100 --ttft-ms 0 --tokens-per-s 0`.
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import contextlib
import dataclasses
import hashlib
import json
import math
import re
import signal
import socket
import struct
import threading
import time
from collections import Counter
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Any, Literal

from aiohttp import web

DEFAULT_REPLY = "The capital of France is Paris."
FILLER = "The quick brown fox jumps over the lazy dog and keeps on running through the quiet field".split()
ARG_FRAGMENT = 6  # characters per streamed tool-argument fragment
FINGERPRINT = "fp_fake0001"
FAULT_MODES = (
    "rate_limit",
    "insufficient_quota",
    "server_error",
    "overloaded",
    "bad_request",
    "reset",
    "stall",
    "malformed",
    "drop",
    "stream_error",
    "slow_first_token",
)
Api = Literal["openai", "anthropic"]
Kind = Literal["chat", "completion", "embedding", "messages"]

_TOKEN = re.compile(r"\s*\S+")


def tokenize(text: str) -> list[str]:
    """The fake's tokens: each word with the whitespace before it; joining them gives the text back."""
    return _TOKEN.findall(text)


def count_words(texts: Iterable[str]) -> int:
    return sum(len(tokenize(t)) for t in texts)


# ---------------------------------------------------------------------------------------------------------------
# Faults


@dataclass(frozen=True)
class Fault:
    """How to misbehave, and for how many requests (`fail_times` None: every request)."""

    mode: str
    fail_times: int | None = None
    retry_after: float = 1.0
    stall_after: int = 2
    stall_cap_s: float = 60.0
    slow_ttft_s: float = 5.0

    def __post_init__(self) -> None:
        if self.mode not in FAULT_MODES:
            raise ValueError(f"unknown fault mode {self.mode!r}; expected one of {', '.join(FAULT_MODES)}")
        if self.fail_times is not None and self.fail_times < 0:
            raise ValueError("fail_times must be >= 0")
        if self.stall_after < 0:
            raise ValueError("stall_after must be >= 0")

    @classmethod
    def parse(cls, spec: str) -> Fault:
        """`"stall; stall_after=3"` -> Fault("stall", stall_after=3) (the `x-fake-fault` header's syntax)."""
        mode, *options = [part.strip() for part in re.split(r"[;,]", spec) if part.strip()] or [""]
        types = {f.name: (int if f.name in ("fail_times", "stall_after") else float) for f in dataclasses.fields(cls)}
        kwargs: dict[str, Any] = {}
        for option in options:
            name, _, value = option.partition("=")
            name = name.strip()
            if name not in types or name == "mode":
                raise ValueError(f"unknown fault option {name!r}")
            kwargs[name] = types[name](value.strip())
        return cls(mode, **kwargs)


# (status, OpenAI error type, OpenAI code, message) and (status, Anthropic error type, message) per mode.
_OPENAI_ERRORS: dict[str, tuple[int, str, str | None, str]] = {
    "rate_limit": (429, "requests", "rate_limit_exceeded", "Rate limit reached for requests. Please try again."),
    "insufficient_quota": (
        429,
        "insufficient_quota",
        "insufficient_quota",
        "You exceeded your current quota, please check your plan and billing details.",
    ),
    "server_error": (
        500,
        "server_error",
        None,
        "The server had an error while processing your request. Sorry about that!",
    ),
    "stream_error": (
        500,
        "server_error",
        None,
        "The server had an error while processing your request. Sorry about that!",
    ),
    "overloaded": (503, "server_error", None, "The engine is currently overloaded, please try again later."),
    "bad_request": (400, "invalid_request_error", None, "Invalid request (injected by the fake provider)."),
}
_ANTHROPIC_ERRORS: dict[str, tuple[int, str, str]] = {
    "rate_limit": (429, "rate_limit_error", "Number of request tokens has exceeded your per-minute rate limit"),
    "insufficient_quota": (402, "billing_error", "Your credit balance is too low to access the Anthropic API."),
    "server_error": (500, "api_error", "Internal server error"),
    "stream_error": (529, "overloaded_error", "Overloaded"),
    "overloaded": (529, "overloaded_error", "Overloaded"),
    "bad_request": (400, "invalid_request_error", "Invalid request (injected by the fake provider)."),
}
_MIDSTREAM = ("stall", "malformed", "drop", "stream_error")
_NOTHING_SENT = 499  # what a handler returns after closing the connection itself; never reaches a client


def _dumps(obj: Any) -> str:
    return json.dumps(obj, separators=(",", ":"), ensure_ascii=False)


def error_response(
    api: Api,
    status: int,
    kind: str,
    message: str,
    *,
    code: str | None = None,
    param: str | None = None,
    headers: dict[str, str] | None = None,
) -> web.Response:
    """An error in the provider's own body shape."""
    if api == "openai":
        body: dict[str, Any] = {"error": {"message": message, "type": kind, "param": param, "code": code}}
    else:
        body = {"type": "error", "error": {"type": kind, "message": message}, "request_id": _request_id()}
    return web.Response(status=status, text=_dumps(body), content_type="application/json", headers=headers)


def fault_response(api: Api, fault: Fault) -> web.Response:
    """The HTTP error a status-code fault answers with."""
    headers: dict[str, str] = {}
    if fault.mode == "rate_limit":
        seconds = fault.retry_after
        headers["Retry-After"] = str(int(seconds)) if float(seconds).is_integer() else f"{seconds:g}"
        if not float(seconds).is_integer():
            headers["retry-after-ms"] = str(round(seconds * 1000))
    if api == "openai":
        status, kind, code, message = _OPENAI_ERRORS[fault.mode]
        return error_response(api, status, kind, message, code=code, headers=headers)
    status, kind, message = _ANTHROPIC_ERRORS[fault.mode]
    return error_response(api, status, kind, message, headers=headers)


def _request_id() -> str:
    return "req_" + hashlib.sha256(str(time.perf_counter_ns()).encode()).hexdigest()[:24]


# ---------------------------------------------------------------------------------------------------------------
# What a request asks for, whatever the API


@dataclass
class Ask:
    texts: list[str]  # every piece of prompt text, for the prompt-token count
    last_user: str
    tool_result: str | None  # the content of a trailing tool result
    tools: list[tuple[str, dict[str, Any]]]  # (name, JSON schema)
    tool_choice: str  # "auto" | "none" | "required" | "name:<tool>"
    max_tokens: int | None
    stop: list[str]


def _part_texts(content: Any) -> list[str]:
    """Texts of an OpenAI content (string or parts) or an Anthropic content (string or blocks)."""
    if isinstance(content, str):
        return [content]
    texts: list[str] = []
    for part in content if isinstance(content, list) else []:
        if isinstance(part, str):
            texts.append(part)
        elif not isinstance(part, dict):
            continue
        elif isinstance(part.get("text"), str):
            texts.append(part["text"])
        elif part.get("type") == "tool_result":
            texts.extend(_part_texts(part.get("content", "")))
        elif part.get("type") == "tool_use":
            texts.append(_dumps(part.get("input", {})))
    return texts


def _stop_list(stop: Any) -> list[str]:
    if isinstance(stop, str):
        return [stop]
    return [s for s in stop if isinstance(s, str) and s] if isinstance(stop, list) else []


def openai_chat_ask(body: dict[str, Any]) -> Ask:
    messages = [m for m in body.get("messages", []) if isinstance(m, dict)]
    texts: list[str] = []
    for m in messages:
        texts.extend(_part_texts(m.get("content")))
        for call in m.get("tool_calls") or []:
            texts.append(str(call.get("function", {}).get("arguments", "")))
    users = [m for m in messages if m.get("role") == "user"]
    last = messages[-1] if messages else {}
    tools = [
        (t["function"]["name"], t["function"].get("parameters") or {})
        for t in body.get("tools") or []
        if isinstance(t, dict) and isinstance(t.get("function"), dict) and "name" in t["function"]
    ]
    choice = body.get("tool_choice") or "auto"
    if isinstance(choice, dict):
        choice = "name:" + str(choice.get("function", {}).get("name", "")) if "function" in choice else "auto"
    max_tokens = body.get("max_completion_tokens", body.get("max_tokens"))
    return Ask(
        texts=texts,
        last_user=" ".join(_part_texts(users[-1].get("content"))) if users else "",
        tool_result=" ".join(_part_texts(last.get("content"))) if last.get("role") == "tool" else None,
        tools=tools,
        tool_choice=str(choice),
        max_tokens=max_tokens if isinstance(max_tokens, int) else None,
        stop=_stop_list(body.get("stop")),
    )


def _first_prompt(prompt: Any) -> str:
    """The legacy endpoint's prompt: a string, a batch of strings, or token ids (read as ids joined by spaces)."""
    if isinstance(prompt, str):
        return prompt
    if isinstance(prompt, list) and prompt and isinstance(prompt[0], (str, list)):
        return _first_prompt(prompt[0])
    return " ".join(str(i) for i in prompt) if isinstance(prompt, list) else str(prompt)


def openai_completion_ask(body: dict[str, Any]) -> Ask:
    prompt = _first_prompt(body.get("prompt", ""))
    max_tokens = body.get("max_tokens", 16)  # the legacy endpoint's default
    return Ask(
        texts=[prompt],
        last_user=prompt,
        tool_result=None,
        tools=[],
        tool_choice="none",
        max_tokens=max_tokens if isinstance(max_tokens, int) else None,
        stop=_stop_list(body.get("stop")),
    )


def _blocks(message: dict[str, Any], tool_results: bool) -> list[Any]:
    """An Anthropic message's content blocks: only its tool_result blocks, or all the others."""
    content = message.get("content", "")
    if isinstance(content, str):
        return [] if tool_results else [content]
    return [b for b in content if isinstance(b, dict) and (b.get("type") == "tool_result") == tool_results]


def _anthropic_tool_choice(choice: Any) -> str:
    kind = choice.get("type", "auto") if isinstance(choice, dict) else "auto"
    if kind == "tool":
        return "name:" + str(choice.get("name", ""))
    return {"any": "required", "none": "none"}.get(kind, "auto")


def anthropic_ask(body: dict[str, Any]) -> Ask:
    messages = [m for m in body.get("messages", []) if isinstance(m, dict)]
    texts = _part_texts(body.get("system", ""))
    for m in messages:
        texts.extend(_part_texts(m.get("content")))
    users = [m for m in messages if m.get("role") == "user"]
    last = messages[-1] if messages else {}
    results = _blocks(last, tool_results=True) if last.get("role") == "user" else []
    tools = [
        (t["name"], t.get("input_schema") or {}) for t in body.get("tools") or [] if isinstance(t, dict) and "name" in t
    ]
    return Ask(
        texts=texts,
        last_user=" ".join(_part_texts(_blocks(users[-1], tool_results=False))) if users else "",
        tool_result=" ".join(t for b in results for t in _part_texts(b.get("content", ""))) if results else None,
        tools=tools,
        tool_choice=_anthropic_tool_choice(body.get("tool_choice")),
        max_tokens=body.get("max_tokens"),
        stop=_stop_list(body.get("stop_sequences")),
    )


# ---------------------------------------------------------------------------------------------------------------
# The reply


@dataclass
class ToolCall:
    id: str
    name: str
    arguments: str  # JSON text

    @property
    def fragments(self) -> list[str]:
        args = self.arguments
        return [args[i : i + ARG_FRAGMENT] for i in range(0, len(args), ARG_FRAGMENT)] or [""]


Finish = Literal["stop", "length", "tool_calls"]


@dataclass
class Reply:
    tokens: list[str]
    tool: ToolCall | None
    finish: Finish
    stop_sequence: str | None
    prompt_tokens: int

    @property
    def text(self) -> str:
        return "".join(self.tokens)

    @property
    def completion_tokens(self) -> int:
        return len(self.tokens) + (len(self.tool.fragments) if self.tool else 0)


def fill_schema(schema: Any) -> Any:
    """Deterministic arguments satisfying a JSON schema's required properties."""
    if not isinstance(schema, dict):
        return {}
    if "enum" in schema and schema["enum"]:
        return schema["enum"][0]
    if "const" in schema:
        return schema["const"]
    for combinator in ("anyOf", "oneOf", "allOf"):
        if schema.get(combinator):
            return fill_schema(schema[combinator][0])
    kind = schema.get("type", "object" if "properties" in schema else None)
    if isinstance(kind, list):
        kind = next((k for k in kind if k != "null"), "null")
    if kind == "object" or kind is None:
        properties = schema.get("properties") or {}
        return {name: fill_schema(properties.get(name, {})) for name in schema.get("required") or []}
    if kind == "array":
        return [fill_schema(schema.get("items", {})) for _ in range(int(schema.get("minItems", 0)))]
    return {"string": "x", "integer": 1, "number": 1, "boolean": True}.get(kind)


def cut_text(text: str, stop: list[str], max_tokens: int | None) -> tuple[list[str], Finish, str | None]:
    """(tokens, finish reason, matched stop sequence): cut before the earliest stop string, then to max_tokens."""
    hits = [(text.find(s), s) for s in stop if s in text]
    matched = min(hits)[1] if hits else None
    if matched is not None:
        text = text[: text.find(matched)]
    tokens = tokenize(text)
    if max_tokens is not None and len(tokens) > max_tokens:
        return tokens[:max_tokens], "length", None
    return tokens, "stop", matched


# ---------------------------------------------------------------------------------------------------------------
# Wire encoders: a stream is a list of events; `paced` ones (output) are delayed by ttft / tokens_per_s.


@dataclass(frozen=True)
class Event:
    data: bytes
    paced: bool = False


def _sse(obj: Any) -> bytes:
    return b"data: " + _dumps(obj).encode() + b"\n\n"


def _named(event: str, obj: Any) -> bytes:
    return f"event: {event}\ndata: {_dumps(obj)}\n\n".encode()


def openai_usage(reply: Reply) -> dict[str, Any]:
    return {
        "prompt_tokens": reply.prompt_tokens,
        "completion_tokens": reply.completion_tokens,
        "total_tokens": reply.prompt_tokens + reply.completion_tokens,
        "prompt_tokens_details": {"cached_tokens": 0, "audio_tokens": 0},
        "completion_tokens_details": {
            "reasoning_tokens": 0,
            "audio_tokens": 0,
            "accepted_prediction_tokens": 0,
            "rejected_prediction_tokens": 0,
        },
    }


def _tool_call_json(tool: ToolCall) -> dict[str, Any]:
    return {"id": tool.id, "type": "function", "function": {"name": tool.name, "arguments": tool.arguments}}


def openai_chat_body(reply: Reply, meta: dict[str, Any]) -> dict[str, Any]:
    message: dict[str, Any] = {
        "role": "assistant",
        "content": reply.text if reply.tokens or not reply.tool else None,
        "refusal": None,
        "annotations": [],
    }
    if reply.tool:
        message["tool_calls"] = [_tool_call_json(reply.tool)]
    choice = {"index": 0, "message": message, "logprobs": None, "finish_reason": reply.finish}
    return {
        **meta,
        "object": "chat.completion",
        "choices": [choice],
        "usage": openai_usage(reply),
        "service_tier": "default",
        "system_fingerprint": FINGERPRINT,
    }


def openai_chat_events(reply: Reply, meta: dict[str, Any], include_usage: bool) -> list[Event]:
    base = {**meta, "object": "chat.completion.chunk", "service_tier": "default", "system_fingerprint": FINGERPRINT}
    if include_usage:
        base["usage"] = None

    def chunk(delta: dict[str, Any], finish: str | None = None) -> bytes:
        return _sse({**base, "choices": [{"index": 0, "delta": delta, "logprobs": None, "finish_reason": finish}]})

    events = [Event(chunk({"role": "assistant", "content": "", "refusal": None}))]
    events += [Event(chunk({"content": token}), paced=True) for token in reply.tokens]
    if reply.tool:
        head = {
            "index": 0,
            "id": reply.tool.id,
            "type": "function",
            "function": {"name": reply.tool.name, "arguments": ""},
        }
        events.append(Event(chunk({"tool_calls": [head]}), paced=True))
        events += [
            Event(chunk({"tool_calls": [{"index": 0, "function": {"arguments": frag}}]}), paced=True)
            for frag in reply.tool.fragments
        ]
    events.append(Event(chunk({}, reply.finish)))
    if include_usage:
        events.append(Event(_sse({**base, "choices": [], "usage": openai_usage(reply)})))
    return events + [Event(b"data: [DONE]\n\n")]


def openai_completion_body(reply: Reply, meta: dict[str, Any]) -> dict[str, Any]:
    choice = {"text": reply.text, "index": 0, "logprobs": None, "finish_reason": reply.finish}
    return {
        **meta,
        "object": "text_completion",
        "choices": [choice],
        "usage": openai_usage(reply),
        "system_fingerprint": FINGERPRINT,
    }


def openai_completion_events(reply: Reply, meta: dict[str, Any], include_usage: bool) -> list[Event]:
    base = {**meta, "object": "text_completion", "system_fingerprint": FINGERPRINT}
    if include_usage:
        base["usage"] = None

    def chunk(text: str, finish: str | None = None) -> bytes:
        return _sse({**base, "choices": [{"text": text, "index": 0, "logprobs": None, "finish_reason": finish}]})

    events = [Event(chunk(token), paced=True) for token in reply.tokens] + [Event(chunk("", reply.finish))]
    if include_usage:
        events.append(Event(_sse({**base, "choices": [], "usage": openai_usage(reply)})))
    return events + [Event(b"data: [DONE]\n\n")]


_STOP_REASONS = {"length": "max_tokens", "tool_calls": "tool_use"}


def _anthropic_stop(reply: Reply) -> str:
    if reply.finish == "stop":
        return "stop_sequence" if reply.stop_sequence is not None else "end_turn"
    return _STOP_REASONS[reply.finish]


def _anthropic_usage(reply: Reply, output_tokens: int) -> dict[str, Any]:
    return {
        "input_tokens": reply.prompt_tokens,
        "cache_creation_input_tokens": 0,
        "cache_read_input_tokens": 0,
        "output_tokens": output_tokens,
        "service_tier": "standard",
    }


def anthropic_body(reply: Reply, meta: dict[str, Any]) -> dict[str, Any]:
    content: list[dict[str, Any]] = [{"type": "text", "text": reply.text}] if reply.tokens else []
    if reply.tool:
        tool_input = json.loads(reply.tool.arguments)
        content.append({"type": "tool_use", "id": reply.tool.id, "name": reply.tool.name, "input": tool_input})
    return {
        "id": meta["id"],
        "type": "message",
        "role": "assistant",
        "model": meta["model"],
        "content": content,
        "stop_reason": _anthropic_stop(reply),
        "stop_sequence": reply.stop_sequence,
        "usage": _anthropic_usage(reply, reply.completion_tokens),
    }


def anthropic_events(reply: Reply, meta: dict[str, Any]) -> list[Event]:
    message = {
        **anthropic_body(reply, meta),
        "content": [],
        "stop_reason": None,
        "stop_sequence": None,
        "usage": _anthropic_usage(reply, 1),
    }  # message_start carries output_tokens 1, as the real API does
    events = [Event(_named("message_start", {"type": "message_start", "message": message}))]
    ping = Event(_named("ping", {"type": "ping"}))
    index = 0
    if reply.tokens or not reply.tool:
        start = {"type": "content_block_start", "index": 0, "content_block": {"type": "text", "text": ""}}
        events += [Event(_named("content_block_start", start)), ping]
        events += [
            Event(
                _named(
                    "content_block_delta",
                    {"type": "content_block_delta", "index": 0, "delta": {"type": "text_delta", "text": t}},
                ),
                paced=True,
            )
            for t in reply.tokens
        ]
        events.append(Event(_named("content_block_stop", {"type": "content_block_stop", "index": 0})))
        index = 1
    else:
        events.append(ping)
    if reply.tool:
        block = {"type": "tool_use", "id": reply.tool.id, "name": reply.tool.name, "input": {}}
        events.append(
            Event(
                _named("content_block_start", {"type": "content_block_start", "index": index, "content_block": block}),
                paced=True,
            )
        )
        events += [
            Event(
                _named(
                    "content_block_delta",
                    {
                        "type": "content_block_delta",
                        "index": index,
                        "delta": {"type": "input_json_delta", "partial_json": f},
                    },
                ),
                paced=bool(f),
            )
            for f in ["", *reply.tool.fragments]
        ]
        events.append(Event(_named("content_block_stop", {"type": "content_block_stop", "index": index})))
    delta = {
        "type": "message_delta",
        "delta": {"stop_reason": _anthropic_stop(reply), "stop_sequence": reply.stop_sequence},
        "usage": {"output_tokens": reply.completion_tokens},
    }
    return events + [Event(_named("message_delta", delta)), Event(_named("message_stop", {"type": "message_stop"}))]


def broken_line(api: Api) -> bytes:
    """The `malformed` fault's line: an SSE event whose data is not JSON."""
    return b"data: {not json\n\n" if api == "openai" else b"event: content_block_delta\ndata: {not json\n\n"


def stream_error_event(api: Api) -> bytes:
    """The `stream_error` fault's in-stream error, as each provider sends it."""
    if api == "openai":
        _, kind, code, message = _OPENAI_ERRORS["stream_error"]
        return _sse({"error": {"message": message, "type": kind, "param": None, "code": code}})
    _, kind, message = _ANTHROPIC_ERRORS["stream_error"]
    return _named("error", {"type": "error", "error": {"type": kind, "message": message}})


def embedding(text: str, dim: int) -> list[float]:
    """A unit vector of `dim` floats derived from a hash of the text."""
    digest = b""
    counter = 0
    while len(digest) < 2 * dim:
        digest += hashlib.sha256(f"{counter}:{text}".encode()).digest()
        counter += 1
    raw = [struct.unpack_from("<h", digest, 2 * i)[0] / 32768.0 for i in range(dim)]
    norm = math.sqrt(sum(x * x for x in raw)) or 1.0
    return [x / norm for x in raw]


def embedding_inputs(value: Any) -> list[str]:
    if isinstance(value, str):
        return [value]
    if isinstance(value, list) and value and all(isinstance(i, int) for i in value):
        return [" ".join(map(str, value))]
    if isinstance(value, list):
        return [v if isinstance(v, str) else " ".join(map(str, v)) for v in value]
    raise ValueError("'input' must be a string, an array of strings, or token arrays")


# ---------------------------------------------------------------------------------------------------------------
# The server


@dataclass
class RecordedRequest:
    """One request as received, and how its answer went (updated while it runs)."""

    seq: int
    method: str
    path: str
    headers: dict[str, str]  # lowercased names
    body: Any  # parsed JSON, or None
    time: float  # time.time() at arrival
    status: int | None = None  # None while nothing was sent (or never: reset, a non-stream stall)
    fault: str | None = None
    events_sent: int = 0  # output events (tokens, tool fragments) written
    outcome: str = "in_flight"  # in_flight | completed | disconnected | fault | shutdown
    ended: float | None = None


ReplySource = str | Callable[[dict[str, Any]], str] | None


class FakeProvider:
    """A fake OpenAI-compatible + Anthropic provider on 127.0.0.1 (see the module docstring)."""

    def __init__(
        self,
        *,
        host: str = "127.0.0.1",
        port: int = 0,
        api_key: str | None = None,
        models: Iterable[str] = ("fake-model",),
        reply: ReplySource = None,
        reply_tokens: int | None = None,
        tool_preamble: str = "",
        ttft_ms: float = 0.0,
        tokens_per_s: float = 0.0,
        embedding_dim: int = 8,
        fault: Fault | None = None,
        record: bool = True,
    ) -> None:
        self.host, self.port = host, port
        self.api_key = api_key  # None: any non-empty key is accepted; a missing key is still a 401
        self.models = list(models)
        self.reply, self.reply_tokens, self.tool_preamble = reply, reply_tokens, tool_preamble
        self.ttft_ms, self.tokens_per_s, self.embedding_dim = ttft_ms, tokens_per_s, embedding_dim
        self.record = record
        self._lock = threading.Lock()
        self._fault, self._fault_left = fault, fault.fail_times if fault else None
        self._records: list[RecordedRequest] = []
        self.counts: Counter[str] = Counter()
        self.faults_applied: Counter[str] = Counter()
        self._disconnects = 0
        self._in_flight = 0
        self._seq = 0
        self._runner: web.AppRunner | None = None
        self._handlers: set[asyncio.Task[Any]] = set()
        self._stopping = False
        self._thread: threading.Thread | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._stop_event: asyncio.Event | None = None

    # -- lifecycle --------------------------------------------------------------------------------------------

    @property
    def base_url(self) -> str:
        return f"http://{self.host}:{self.port}"

    async def start_async(self) -> None:
        """Serve on the running event loop."""
        self._stopping = False
        runner = web.AppRunner(self._app(), handler_cancellation=True, access_log=None, shutdown_timeout=0.5)
        await runner.setup()
        site = web.TCPSite(runner, self.host, self.port)
        await site.start()
        self._runner = runner
        server = site._server
        assert isinstance(server, asyncio.Server)
        self.port = server.sockets[0].getsockname()[1]

    async def stop_async(self) -> None:
        """Cancel whatever is still being answered (stalls), then close the server and its connections."""
        self._stopping = True
        handlers = list(self._handlers)
        for task in handlers:
            task.cancel()
        await asyncio.gather(*handlers, return_exceptions=True)
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None

    def start(self, timeout: float = 10.0) -> FakeProvider:
        """Serve from a background thread with its own event loop; returns once the port is bound."""
        if self._thread is not None:
            raise RuntimeError("already started")
        ready = threading.Event()
        failure: list[BaseException] = []

        async def serve() -> None:
            self._loop, self._stop_event = asyncio.get_running_loop(), asyncio.Event()
            try:
                await self.start_async()
            except BaseException as exc:
                failure.append(exc)
                ready.set()
                raise
            ready.set()
            try:
                await self._stop_event.wait()
            finally:
                await self.stop_async()

        def run() -> None:
            with contextlib.suppress(BaseException):
                asyncio.run(serve())

        self._thread = threading.Thread(target=run, name="fake-provider", daemon=True)
        self._thread.start()
        if not ready.wait(timeout) or failure:
            self._thread.join(timeout)
            self._thread = None
            raise RuntimeError("fake provider failed to start") from (failure[0] if failure else None)
        return self

    def stop(self, timeout: float = 10.0) -> None:
        if self._thread is None:
            return
        if self._thread.is_alive() and self._loop is not None and self._stop_event is not None:
            self._loop.call_soon_threadsafe(self._stop_event.set)
        self._thread.join(timeout)
        self._thread = self._loop = self._stop_event = None

    def __enter__(self) -> FakeProvider:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    async def __aenter__(self) -> FakeProvider:
        await self.start_async()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.stop_async()

    # -- control and observation (thread-safe) ----------------------------------------------------------------

    def set_fault(self, mode: str | Fault | None, **options: Any) -> None:
        """Misbehave from the next request on: `set_fault("rate_limit", fail_times=2, retry_after=0)`; None heals."""
        fault = mode if isinstance(mode, Fault) or mode is None else Fault(mode, **options)
        with self._lock:
            self._fault, self._fault_left = fault, fault.fail_times if fault else None

    def clear_fault(self) -> None:
        self.set_fault(None)

    @property
    def fault(self) -> Fault | None:
        """The instance fault still in force (None once `fail_times` is used up)."""
        with self._lock:
            return self._fault if self._fault_left != 0 else None

    @property
    def requests(self) -> list[RecordedRequest]:
        with self._lock:
            return list(self._records)

    @property
    def disconnects(self) -> int:
        return self._disconnects

    @property
    def client_disconnected(self) -> bool:
        return self._disconnects > 0

    @property
    def in_flight(self) -> int:
        return self._in_flight

    def reset_stats(self) -> None:
        with self._lock:
            self._records.clear()
            self.counts.clear()
            self.faults_applied.clear()
            self._disconnects = 0

    def wait_for(self, predicate: Callable[[FakeProvider], bool], timeout: float = 5.0) -> bool:
        """Poll `predicate(self)` until true or `timeout` (e.g. `lambda p: p.disconnects == 1`); blocks the thread."""
        deadline = time.monotonic() + timeout
        while not predicate(self):
            if time.monotonic() > deadline:
                return False
            time.sleep(0.01)
        return True

    async def wait_for_async(self, predicate: Callable[[FakeProvider], bool], timeout: float = 5.0) -> bool:
        """`wait_for` for async tests: the waiting test's loop keeps running (it may be the one that must close
        the upstream connection for the predicate to become true)."""
        deadline = time.monotonic() + timeout
        while not predicate(self):
            if time.monotonic() > deadline:
                return False
            await asyncio.sleep(0.01)
        return True

    def stats(self) -> dict[str, Any]:
        fault = self.fault
        return {
            "requests": sum(self.counts.values()),
            "counts": dict(self.counts),
            "faults_applied": dict(self.faults_applied),
            "disconnects": self._disconnects,
            "in_flight": self._in_flight,
            "fault": dataclasses.asdict(fault) if fault else None,
        }

    def _take_fault(self, request: web.Request) -> Fault | None:
        header = request.headers.get("x-fake-fault")
        if header:
            return Fault.parse(header)
        with self._lock:
            if self._fault is None or self._fault_left == 0:
                return None
            if self._fault_left is not None:
                self._fault_left -= 1
            return self._fault

    # -- HTTP ---------------------------------------------------------------------------------------------------

    def _app(self) -> web.Application:
        app = web.Application()
        routes = [
            web.get("/health", self._health),
            web.get("/v1/models", self._list_models),
            web.get("/v1/models/{model}", self._get_model),
            web.post("/v1/chat/completions", self._route("openai", "chat")),
            web.post("/v1/completions", self._route("openai", "completion")),
            web.post("/v1/embeddings", self._route("openai", "embedding")),
            web.post("/v1/messages", self._route("anthropic", "messages")),
            web.get("/_fake/stats", self._stats),
            web.post("/_fake/fault", self._control_fault),
            web.post("/_fake/reset", self._control_reset),
            web.route("*", "/{tail:.*}", self._not_found),
        ]
        app.add_routes(routes)
        return app

    async def _health(self, request: web.Request) -> web.Response:
        return web.json_response({"status": "ok"})

    async def _stats(self, request: web.Request) -> web.Response:
        return web.json_response(self.stats())

    async def _control_fault(self, request: web.Request) -> web.Response:
        try:
            spec = await request.json()
            self.set_fault(spec.pop("mode", None), **spec)
        except (ValueError, TypeError, AttributeError) as exc:
            return web.json_response({"error": str(exc)}, status=400)
        return web.json_response(self.stats())

    async def _control_reset(self, request: web.Request) -> web.Response:
        self.clear_fault()
        self.reset_stats()
        return web.json_response(self.stats())

    async def _not_found(self, request: web.Request) -> web.Response:
        api: Api = "anthropic" if "anthropic-version" in request.headers else "openai"
        kind = "not_found_error" if api == "anthropic" else "invalid_request_error"
        return error_response(api, 404, kind, f"Invalid URL ({request.method} {request.path})")

    async def _list_models(self, request: web.Request) -> web.Response:
        api: Api = "anthropic" if "anthropic-version" in request.headers else "openai"
        if (denied := self._auth_error(request, api)) is not None:
            return denied
        if api == "anthropic":
            data = [
                {"type": "model", "id": m, "display_name": m, "created_at": "2025-01-01T00:00:00Z"} for m in self.models
            ]
            return web.json_response(
                {
                    "data": data,
                    "has_more": False,
                    "first_id": self.models[0] if self.models else None,
                    "last_id": self.models[-1] if self.models else None,
                }
            )
        models = [{"id": m, "object": "model", "created": 1700000000, "owned_by": "fake-provider"} for m in self.models]
        return web.json_response({"object": "list", "data": models})

    async def _get_model(self, request: web.Request) -> web.Response:
        model = request.match_info["model"]
        if (denied := self._auth_error(request, "openai")) is not None:
            return denied
        if model not in self.models:
            return error_response(
                "openai",
                404,
                "invalid_request_error",
                f"The model '{model}' does not exist",
                code="model_not_found",
                param="model",
            )
        return web.json_response({"id": model, "object": "model", "created": 1700000000, "owned_by": "fake-provider"})

    def _auth_error(self, request: web.Request, api: Api) -> web.Response | None:
        """401 for a missing or wrong key (any non-empty key when `api_key` is None); Anthropic's version header."""
        header = request.headers.get("Authorization", "")
        bearer = header[7:].strip() if header.lower().startswith("bearer ") else ""
        if api == "openai":
            if not bearer:
                message = (
                    "You didn't provide an API key. You need to provide your API key in an "
                    "Authorization header using Bearer auth (i.e. Authorization: Bearer YOUR_KEY)."
                )
                return error_response(api, 401, "invalid_request_error", message)
            if self.api_key is not None and bearer != self.api_key:
                message = f"Incorrect API key provided: {bearer[:3]}***{bearer[-4:]}."
                return error_response(api, 401, "invalid_request_error", message, code="invalid_api_key")
            return None
        # Anthropic takes `x-api-key`; its Python SDK (2.x) sends the same key as a Bearer token instead.
        key = request.headers.get("x-api-key", "") or bearer
        if not key:
            return error_response(api, 401, "authentication_error", "x-api-key header is required")
        if self.api_key is not None and key != self.api_key:
            return error_response(api, 401, "authentication_error", "invalid x-api-key")
        if not request.headers.get("anthropic-version"):
            return error_response(api, 400, "invalid_request_error", "anthropic-version: header is required")
        return None

    def _route(self, api: Api, kind: Kind) -> Callable[[web.Request], Any]:
        async def handle(request: web.Request) -> web.StreamResponse:
            return await self._handle(request, api, kind)

        return handle

    async def _receive(self, request: web.Request) -> RecordedRequest:
        raw = await request.read()
        try:
            body = json.loads(raw) if raw else None
        except ValueError:
            body = None
        with self._lock:
            self._seq += 1
            rec = RecordedRequest(
                self._seq,
                request.method,
                request.path,
                {k.lower(): v for k, v in request.headers.items()},
                body,
                time.time(),
            )
            self.counts[request.path] += 1
            if self.record:
                self._records.append(rec)
        return rec

    async def _handle(self, request: web.Request, api: Api, kind: Kind) -> web.StreamResponse:
        task = asyncio.current_task()
        assert task is not None
        self._handlers.add(task)
        self._in_flight += 1
        try:
            rec = await self._receive(request)
            try:
                response = await self._answer(request, rec, api, kind)
            except asyncio.CancelledError:
                self._went_away(rec, "shutdown" if self._stopping else "disconnected")
                raise
            finally:
                rec.ended = time.time()
            if rec.status is None and response.status != _NOTHING_SENT:
                rec.status = response.status
            if rec.outcome == "in_flight":
                rec.outcome = "completed"
            return response
        finally:
            self._in_flight -= 1
            self._handlers.discard(task)

    def _completing(self, rec: RecordedRequest, response: web.StreamResponse) -> None:
        """Mark a prepared answer complete before its last bytes go out, so a client that has read them all
        never sees the record still in flight."""
        rec.status, rec.outcome = response.status, "completed"

    def _went_away(self, rec: RecordedRequest, outcome: str) -> None:
        if rec.outcome == "in_flight":
            rec.outcome = outcome
            if outcome == "disconnected":
                self._disconnects += 1

    async def _answer(self, request: web.Request, rec: RecordedRequest, api: Api, kind: Kind) -> web.StreamResponse:
        if (denied := self._auth_error(request, api)) is not None:
            return denied
        try:
            fault = self._take_fault(request)
        except ValueError as exc:
            return error_response(api, 400, "invalid_request_error", f"x-fake-fault: {exc}")
        if fault is not None:
            rec.fault = fault.mode
            with self._lock:
                self.faults_applied[fault.mode] += 1
            if fault.mode in _OPENAI_ERRORS and fault.mode != "stream_error":
                return fault_response(api, fault)
            if fault.mode == "reset":
                return self._reset(request, rec)
        body = rec.body
        if (invalid := self._invalid(api, kind, body)) is not None:
            return invalid
        assert isinstance(body, dict)
        if kind == "embedding":
            try:
                payload = self._embeddings(body)
            except ValueError as exc:
                return error_response(api, 400, "invalid_request_error", str(exc), param="input")
            return await self._respond(request, rec, api, payload, 1, fault)
        return await self._generate(request, rec, api, kind, body, fault)

    def _invalid(self, api: Api, kind: Kind, body: Any) -> web.Response | None:
        if not isinstance(body, dict):
            message = (
                "We could not parse the JSON body of your request."
                if api == "openai"
                else ("The request body is not valid JSON.")
            )
            return error_response(api, 400, "invalid_request_error", message)
        required = {
            "chat": ["model", "messages"],
            "completion": ["model", "prompt"],
            "embedding": ["model", "input"],
            "messages": ["model", "messages", "max_tokens"],
        }[kind]
        for name in required:
            if name not in body:
                if api == "anthropic":
                    return error_response(api, 400, "invalid_request_error", f"{name}: Field required")
                return error_response(
                    api,
                    400,
                    "invalid_request_error",
                    f"Missing required parameter: '{name}'.",
                    code="missing_required_parameter",
                    param=name,
                )
        dimensions = body.get("dimensions") if kind == "embedding" else None
        if dimensions is not None and (not isinstance(dimensions, int) or not 1 <= dimensions <= 4096):
            return error_response(api, 400, "invalid_request_error", "dimensions: 1 to 4096", param="dimensions")
        if api == "anthropic" and (not isinstance(body["max_tokens"], int) or body["max_tokens"] < 1):
            return error_response(api, 400, "invalid_request_error", "max_tokens: Input should be a positive integer")
        return None

    def _compose(self, ask: Ask, api: Api, seq: int, body: dict[str, Any]) -> Reply:
        """Decide the reply: a tool call, text about a tool result, or the configured / parroted text."""
        prompt_tokens = count_words(ask.texts)
        forced = ask.tool_choice == "required" or ask.tool_choice.startswith("name:")
        if ask.tools and ask.tool_choice != "none" and (forced or ask.tool_result is None):
            wanted = ask.tool_choice[5:] if ask.tool_choice.startswith("name:") else None
            name, schema = next((t for t in ask.tools if t[0] == wanted), ask.tools[0])
            prefix = "call_" if api == "openai" else "toolu_"
            tool = ToolCall(
                prefix + hashlib.sha256(f"{seq}".encode()).hexdigest()[:24], name, _dumps(fill_schema(schema))
            )
            return Reply(tokenize(self.tool_preamble), tool, "tool_calls", None, prompt_tokens)
        if ask.tool_result is not None:
            text = f"The tool returned: {ask.tool_result}"
        elif callable(self.reply):
            text = self.reply(body)
        elif self.reply is not None:
            text = self.reply
        elif self.reply_tokens is not None:
            text = " ".join(FILLER[i % len(FILLER)] for i in range(self.reply_tokens))
        else:
            text = ask.last_user.strip() or DEFAULT_REPLY
        tokens, finish, matched = cut_text(text, ask.stop, ask.max_tokens)
        return Reply(tokens, None, finish, matched, prompt_tokens)

    async def _generate(
        self,
        request: web.Request,
        rec: RecordedRequest,
        api: Api,
        kind: Kind,
        body: dict[str, Any],
        fault: Fault | None,
    ) -> web.StreamResponse:
        try:
            ask = {"chat": openai_chat_ask, "completion": openai_completion_ask, "messages": anthropic_ask}[kind](body)
            reply = self._compose(ask, api, rec.seq, body)
        except (TypeError, ValueError, KeyError, AttributeError, IndexError) as exc:
            # A body a real provider would refuse (a tool schema with odd `required`, a wrong type): a 400.
            return error_response(api, 400, "invalid_request_error", f"Invalid request: {type(exc).__name__}.")
        prefix = {"chat": "chatcmpl-", "completion": "cmpl-", "messages": "msg_"}[kind]
        meta = {
            "id": prefix + hashlib.sha256(f"id{rec.seq}".encode()).hexdigest()[:24],
            "created": int(rec.time),
            "model": str(body["model"]),
        }
        include_usage = bool((body.get("stream_options") or {}).get("include_usage"))
        if body.get("stream"):
            events = {
                "chat": lambda: openai_chat_events(reply, meta, include_usage),
                "completion": lambda: openai_completion_events(reply, meta, include_usage),
                "messages": lambda: anthropic_events(reply, meta),
            }[kind]()
            return await self._stream(request, rec, api, events, fault)
        payload = {"chat": openai_chat_body, "completion": openai_completion_body, "messages": anthropic_body}[kind](
            reply, meta
        )
        return await self._respond(request, rec, api, payload, reply.completion_tokens, fault)

    def _embeddings(self, body: dict[str, Any]) -> dict[str, Any]:
        texts = embedding_inputs(body["input"])
        dim = body.get("dimensions") or self.embedding_dim
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

    # -- answering, with timing and faults ----------------------------------------------------------------------

    def _timing(self, fault: Fault | None) -> tuple[float, float]:
        """(seconds before the first output event, seconds between output events)."""
        ttft = fault.slow_ttft_s if fault and fault.mode == "slow_first_token" else self.ttft_ms / 1000
        return ttft, (1 / self.tokens_per_s if self.tokens_per_s > 0 else 0.0)

    def _headers(self, api: Api) -> dict[str, str]:
        return {"x-request-id": _request_id()} if api == "openai" else {"request-id": _request_id()}

    def _reset(self, request: web.Request, rec: RecordedRequest) -> web.Response:
        """Close the connection with a TCP RST before any response bytes (the client sees a reset)."""
        transport = request.transport
        if transport is not None:
            sock = transport.get_extra_info("socket")
            if sock is not None:
                sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
            transport.abort()
        rec.outcome = "fault"
        return web.Response(status=_NOTHING_SENT)

    async def _hang(self, request: web.Request, rec: RecordedRequest, fault: Fault) -> None:
        """Send nothing more until the client leaves (this task is cancelled) or the cap, then close."""
        await asyncio.sleep(fault.stall_cap_s)
        rec.outcome = "fault"
        if request.transport is not None:
            request.transport.abort()

    async def _respond(
        self,
        request: web.Request,
        rec: RecordedRequest,
        api: Api,
        payload: dict[str, Any],
        tokens: int,
        fault: Fault | None,
    ) -> web.StreamResponse:
        """A JSON answer after the time a stream of `tokens` would have taken; non-stream faults."""
        ttft, gap = self._timing(fault)
        mode = fault.mode if fault else None
        if fault is not None and mode == "stall":
            await self._hang(request, rec, fault)
            return web.Response(status=_NOTHING_SENT)
        if fault is not None and mode == "stream_error":
            return fault_response(api, fault)
        await asyncio.sleep(ttft + max(0, tokens - 1) * gap)
        text = _dumps(payload).encode()
        if mode == "malformed":
            rec.outcome = "fault"
            return web.Response(
                status=200, body=text[: len(text) // 2], content_type="application/json", headers=self._headers(api)
            )
        response = web.StreamResponse(status=200, headers={**self._headers(api), "Content-Type": "application/json"})
        response.content_length = len(text)
        try:
            await response.prepare(request)
            rec.status = response.status
            if mode == "drop":
                await response.write(text[: len(text) // 2])
                rec.outcome = "fault"
                if request.transport is not None:
                    request.transport.abort()
                return response
            self._completing(rec, response)
            await response.write(text)
            await response.write_eof()
        except ConnectionResetError:
            self._went_away(rec, "disconnected")
        rec.events_sent = tokens
        return response

    async def _stream(
        self, request: web.Request, rec: RecordedRequest, api: Api, events: list[Event], fault: Fault | None
    ) -> web.StreamResponse:
        """Write SSE events: paced ones after ttft, one per 1/tokens_per_s; a mid-stream fault after N of them."""
        loop = asyncio.get_running_loop()
        ttft, gap = self._timing(fault)
        start = loop.time()
        paced_total = sum(e.paced for e in events)
        trigger = min(fault.stall_after, paced_total) if fault and fault.mode in _MIDSTREAM else None
        response = web.StreamResponse(
            status=200,
            headers={
                **self._headers(api),
                "Cache-Control": "no-cache",
                "Content-Type": "text/event-stream; charset=utf-8",
            },
        )
        try:
            await response.prepare(request)
            rec.status = response.status
            for event in events:
                if fault and trigger == rec.events_sent and (event.paced or rec.events_sent == paced_total):
                    await self._midstream(request, response, rec, api, fault)
                    return response
                if event.paced:
                    delay = start + ttft + rec.events_sent * gap - loop.time()
                    if delay > 0:
                        await asyncio.sleep(delay)
                    rec.events_sent += 1
                if event is events[-1]:
                    self._completing(rec, response)
                await response.write(event.data)
            await response.write_eof()
        except ConnectionResetError:
            self._went_away(rec, "disconnected")
        return response

    async def _midstream(
        self, request: web.Request, response: web.StreamResponse, rec: RecordedRequest, api: Api, fault: Fault
    ) -> None:
        if fault.mode == "stall":
            await self._hang(request, rec, fault)
            return
        rec.outcome = "fault"
        if fault.mode == "drop":
            if request.transport is not None:
                request.transport.abort()
            return
        await response.write(broken_line(api) if fault.mode == "malformed" else stream_error_event(api))
        await response.write_eof()


# ---------------------------------------------------------------------------------------------------------------
# CLI


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.fake_provider", description=__doc__.split("\n")[0])
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=9100, help="0 picks a free port")
    parser.add_argument("--api-key", default=None, help="the only key accepted (default: any non-empty key)")
    parser.add_argument("--model", action="append", dest="models", help="a model /v1/models lists (repeatable)")
    parser.add_argument("--ttft-ms", type=float, default=0.0, help="delay before the first output event")
    parser.add_argument("--tokens-per-s", type=float, default=0.0, help="output pace; 0 = as fast as possible")
    parser.add_argument("--reply", default=None, help="fixed reply text (default: parrot the last user message)")
    parser.add_argument("--reply-tokens", type=int, default=None, help="reply with this many filler words")
    parser.add_argument("--tool-preamble", default="")
    parser.add_argument("--fault", choices=FAULT_MODES, default=None)
    parser.add_argument("--fail-times", type=int, default=None)
    parser.add_argument("--retry-after", type=float, default=1.0)
    parser.add_argument("--stall-after", type=int, default=2)
    parser.add_argument("--stall-cap-s", type=float, default=60.0)
    parser.add_argument("--slow-ttft-s", type=float, default=5.0)
    parser.add_argument("--record", action="store_true", help="keep every request in memory (off: counts only)")
    return parser.parse_args(argv)


def provider_from_args(args: argparse.Namespace) -> FakeProvider:
    fault = None
    if args.fault:
        fault = Fault(
            args.fault,
            fail_times=args.fail_times,
            retry_after=args.retry_after,
            stall_after=args.stall_after,
            stall_cap_s=args.stall_cap_s,
            slow_ttft_s=args.slow_ttft_s,
        )
    return FakeProvider(
        host=args.host,
        port=args.port,
        api_key=args.api_key,
        models=args.models or ["fake-model"],
        reply=args.reply,
        reply_tokens=args.reply_tokens,
        tool_preamble=args.tool_preamble,
        ttft_ms=args.ttft_ms,
        tokens_per_s=args.tokens_per_s,
        fault=fault,
        record=args.record,
    )


async def serve_forever(provider: FakeProvider) -> None:
    """Serve until SIGINT or SIGTERM."""
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    async with provider:
        print(f"fake provider listening on {provider.base_url}", flush=True)
        await stop.wait()


def main(argv: list[str] | None = None) -> None:
    asyncio.run(serve_forever(provider_from_args(parse_args(argv))))


if __name__ == "__main__":
    main()
