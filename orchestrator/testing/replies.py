"""What both wire formats share: what a request asks for (`Ask`), what the fake answers (`Reply`), and how.

The fakes' tokens are words with the whitespace before them (`" world"`), so joining tokens gives the text
back and usage counts words. `compose` decides a reply, first match wins: a tool call (a request with tools
whose choice isn't "none", unless a trailing tool result is answered and no tool is forced); text about a
trailing tool result ("The tool returned: ..."); the configured `reply` (a string, or a function of the
parsed body); `reply_tokens` words cycled from `FILLER`; otherwise the last user message parroted back
(`DEFAULT_REPLY` when that is empty). Stop sequences cut the text just before the earliest one, `max_tokens`
cuts it to that many tokens. Tool arguments are filled from the JSON schema's required properties
(`fill_schema`). Embeddings are deterministic unit vectors derived from a hash of the text.

Nothing here speaks HTTP: the wire modules encode these values, the provider serves them.
"""

from __future__ import annotations

import hashlib
import json
import math
import re
import struct
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Any, Literal

DEFAULT_REPLY = "The capital of France is Paris."
FILLER = "The quick brown fox jumps over the lazy dog and keeps on running through the quiet field".split()
ARG_FRAGMENT = 6  # characters per streamed tool-argument fragment

Api = Literal["openai", "anthropic"]
Kind = Literal["chat", "completion", "embedding", "messages"]
Finish = Literal["stop", "length", "tool_calls"]
ReplySource = str | Callable[[dict[str, Any]], str] | None

_TOKEN = re.compile(r"\s*\S+")


def tokenize(text: str) -> list[str]:
    """The fakes' tokens: each word with the whitespace before it; joining them gives the text back."""
    return _TOKEN.findall(text)


def count_words(texts: Iterable[str]) -> int:
    return sum(len(tokenize(t)) for t in texts)


def dumps(obj: Any) -> str:
    """Compact JSON, as the providers send it."""
    return json.dumps(obj, separators=(",", ":"), ensure_ascii=False)


@dataclass
class Ask:
    """What a request asks for, whatever its wire format."""

    texts: list[str]  # every piece of prompt text, for the prompt-token count
    last_user: str
    tool_result: str | None  # the content of a trailing tool result
    tools: list[tuple[str, dict[str, Any]]]  # (name, JSON schema)
    tool_choice: str  # "auto" | "none" | "required" | "name:<tool>"
    max_tokens: int | None
    stop: list[str]


def part_texts(content: Any) -> list[str]:
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
            texts.extend(part_texts(part.get("content", "")))
        elif part.get("type") == "tool_use":
            texts.append(dumps(part.get("input", {})))
    return texts


def stop_list(stop: Any) -> list[str]:
    if isinstance(stop, str):
        return [stop]
    return [s for s in stop if isinstance(s, str) and s] if isinstance(stop, list) else []


@dataclass
class ToolCall:
    id: str
    name: str
    arguments: str  # JSON text

    @property
    def fragments(self) -> list[str]:
        args = self.arguments
        return [args[i : i + ARG_FRAGMENT] for i in range(0, len(args), ARG_FRAGMENT)] or [""]


@dataclass
class Reply:
    """What the fake answers: reasoning tokens (a reasoning model's, streamed before the answer), text
    tokens and/or one tool call, why it stopped, and the prompt's size."""

    tokens: list[str]
    tool: ToolCall | None
    finish: Finish
    stop_sequence: str | None
    prompt_tokens: int
    reasoning: list[str] = field(default_factory=list)
    refused: bool = False  # the text is a refusal (OpenAI's `refusal` field; Anthropic's stop_reason "refusal")
    cache: tuple[int, int] = (0, 0)  # prompt tokens written to, and read from, the provider's prompt cache

    @property
    def text(self) -> str:
        return "".join(self.tokens)

    @property
    def thinking(self) -> str:
        return "".join(self.reasoning)

    @property
    def signature(self) -> str:
        """Anthropic's signature of the thinking (opaque to clients; here a hash of it)."""
        return "sig_" + hashlib.sha256(self.thinking.encode()).hexdigest()[:32]

    @property
    def completion_tokens(self) -> int:
        """Output tokens, reasoning included (as OpenAI and Anthropic count them)."""
        return len(self.reasoning) + len(self.tokens) + (len(self.tool.fragments) if self.tool else 0)


@dataclass(frozen=True)
class Problem:
    """An error the fake answers with, before a wire format puts it in its own shape."""

    status: int
    kind: str  # the error's `type`
    message: str
    code: str | None = None
    param: str | None = None


def request_id() -> str:
    """A fresh id for the `x-request-id` / `request-id` header and Anthropic's error bodies."""
    return "req_" + hashlib.sha256(str(time.perf_counter_ns()).encode()).hexdigest()[:24]


@dataclass(frozen=True)
class Event:
    """One piece of a stream; `paced` ones (output) are delayed by the time to first token and the token rate."""

    data: bytes
    paced: bool = False


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


@dataclass(frozen=True)
class Script:
    """The provider's configured answer: fixed text (or a function of the body), N filler words, a preamble."""

    reply: ReplySource = None
    reply_tokens: int | None = None
    tool_preamble: str = ""
    reasoning_tokens: int = 0  # a reasoning model: this many words of reasoning before the answer
    short_tool_ids: bool = False  # Mistral's 9-character tool-call ids
    refuse: bool = False  # answer every request without tools with a refusal (the text) instead
    prompt_cache: tuple[int, int] = (0, 0)  # (written, read): prompt tokens besides the words, from the cache

    def text(self, ask: Ask, body: dict[str, Any]) -> str:
        if ask.tool_result is not None:
            return f"The tool returned: {ask.tool_result}"
        if callable(self.reply):
            return self.reply(body)
        if self.reply is not None:
            return self.reply
        if self.reply_tokens is not None:
            return " ".join(FILLER[i % len(FILLER)] for i in range(self.reply_tokens))
        return ask.last_user.strip() or DEFAULT_REPLY


def compose(ask: Ask, api: Api, seq: int, body: dict[str, Any], script: Script) -> Reply:
    """Decide the reply: a tool call, text about a tool result, or the configured / parroted text."""
    prompt_tokens, cache = count_words(ask.texts), script.prompt_cache
    forced = ask.tool_choice == "required" or ask.tool_choice.startswith("name:")
    if ask.tools and ask.tool_choice != "none" and (forced or ask.tool_result is None):
        wanted = ask.tool_choice[5:] if ask.tool_choice.startswith("name:") else None
        name, schema = next((t for t in ask.tools if t[0] == wanted), ask.tools[0])
        prefix = "call_" if api == "openai" else "toolu_"
        call_id = prefix + hashlib.sha256(f"{seq}".encode()).hexdigest()[:24]
        if script.short_tool_ids:
            call_id = hashlib.sha256(f"{seq}".encode()).hexdigest()[:9]
        tool = ToolCall(call_id, name, dumps(fill_schema(schema)))
        reasoning = _reasoning(script)
        return Reply(tokenize(script.tool_preamble), tool, "tool_calls", None, prompt_tokens, reasoning, cache=cache)
    tokens, finish, matched = cut_text(script.text(ask, body), ask.stop, ask.max_tokens)
    return Reply(tokens, None, finish, matched, prompt_tokens, _reasoning(script), script.refuse, cache)


def _reasoning(script: Script) -> list[str]:
    words = ["Let", "me", "think", "about", "this", "step", "by", "step."]
    return [(" " if i else "") + words[i % len(words)] for i in range(script.reasoning_tokens)]


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
    """An embeddings request's `input` as texts (token arrays read as their ids joined by spaces)."""
    if isinstance(value, str):
        return [value]
    if isinstance(value, list) and value and all(isinstance(i, int) for i in value):
        return [" ".join(map(str, value))]
    if isinstance(value, list):
        return [v if isinstance(v, str) else " ".join(map(str, v)) for v in value]
    raise ValueError("'input' must be a string, an array of strings, or token arrays")
