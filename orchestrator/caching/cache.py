"""The response cache: keys, policy, storage, and replay as a real stream.

- `cache_key`: a hash of the canonical form of everything that affects the
  output (messages, model name, tools, response_format, sampling, n, stop,
  seed, ...) plus a namespace (per tenant), and nothing that doesn't
  (`stream`, `stream_options`, `user`, cache directives). A request that
  carries the client's own body in another wire format (`Native`: Anthropic's
  Messages, sent as it is to Anthropic routes) keys on that body too, so
  fields only it has (`top_k`, `cache_control`, `thinking`) tell requests apart.
- `decide`: pure policy. Cache by default only what is reproducible
  (temperature 0 or an explicit seed), or always / never as configured;
  per request `Cache-Control: no-cache` (don't read), `no-store` (don't
  write), `max-age=N` (TTL), or the same through an extra body field
  `"cache": {"no_cache": true, "no_store": true, "ttl": 60}` for SDK users
  who can't set headers.
- `ResponseCache`: diskcache on local disk, safe across processes. A
  corrupt entry, a full disk or a locked database is a miss plus a log line,
  never a failed request. Entries are JSON, never pickles.
- `replay_chat` / `replay_completion`: a cached answer as a stream of many
  chunks (a few characters each), with fresh ids and timestamps.
"""

from __future__ import annotations

import hashlib
import json
import logging
import math
import re
from collections.abc import AsyncIterator, Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import diskcache
from diskcache.core import MODE_PICKLE

from orchestrator.errors import InvalidRequest
from orchestrator.protocol import (
    AssistantMessage,
    ChatCompletion,
    ChatCompletionChunk,
    ChatCompletionRequest,
    ChunkChoice,
    ChunkDelta,
    CompletionChoice,
    CompletionChunk,
    CompletionRequest,
    ToolCall,
    ToolCallDelta,
    ToolCallFunctionDelta,
    new_id,
    now,
)
from orchestrator.routes import CacheOutcome

log = logging.getLogger(__name__)

Mode = Literal["auto", "always", "never"]

# Fields that change how an answer is delivered or billed, not what it says.
_NOT_IN_KEY = frozenset({"stream", "stream_options", "user", "metadata", "cache", "service_tier", "store"})
_PIECE = re.compile(r"\s*\S+|\s+")
MAX_TTL_S = 10 * 365 * 86400.0  # a TTL beyond ten years is a mistake, not a wish


# ----------------------------------------------------------------------------- keys


def cache_key(request: ChatCompletionRequest | CompletionRequest, namespace: str) -> str:
    body = request.model_dump(exclude_none=True, by_alias=True)
    canonical = {k: v for k, v in body.items() if k not in _NOT_IN_KEY}
    canonical["_kind"] = "chat" if isinstance(request, ChatCompletionRequest) else "completion"
    native = request.native() if isinstance(request, ChatCompletionRequest) else None
    if native is not None:
        canonical["_native"] = [native.wire, {k: v for k, v in native.body.items() if k not in _NOT_IN_KEY}]
        if native.betas:  # a beta may change the answer (context management, effort, …)
            canonical["_native"].append(sorted(native.betas))
    blob = json.dumps(canonical, sort_keys=True, separators=(",", ":"), ensure_ascii=False)
    return f"{namespace}:{hashlib.sha256(blob.encode()).hexdigest()}"


# ----------------------------------------------------------------------------- policy


@dataclass(frozen=True)
class Decision:
    read: bool
    write: bool
    ttl_s: float
    cacheable: bool  # reproducible: identical requests in flight may share one upstream call

    @property
    def outcome_if_missed(self) -> CacheOutcome:
        return "MISS" if self.read else "BYPASS"


def decide(
    request: ChatCompletionRequest | CompletionRequest,
    headers: Mapping[str, str],
    *,
    mode: Mode,
    default_ttl_s: float,
) -> Decision:
    """What the cache may do for this request (pure)."""
    directives = _directives(headers.get("cache-control", ""), getattr(request, "model_extra", None) or {})
    reproducible = request.temperature == 0 or request.seed is not None
    cacheable = mode == "always" or (mode == "auto" and reproducible)
    ttl = directives.get("ttl", default_ttl_s)
    return Decision(
        read=cacheable and not directives.get("no_cache", False),
        write=cacheable and not directives.get("no_store", False) and ttl > 0,
        ttl_s=ttl,
        cacheable=cacheable,
    )


def _directives(cache_control: str, extra: Mapping[str, Any]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for part in (p.strip().lower() for p in cache_control.split(",") if p.strip()):
        if part == "no-cache":
            out["no_cache"] = True
        elif part == "no-store":
            out["no_store"] = True
        elif part.startswith("max-age="):
            try:
                age = float(part.removeprefix("max-age="))
            except ValueError:
                continue  # an unreadable directive is ignored, as HTTP caches do
            if math.isfinite(age):
                out["ttl"] = min(MAX_TTL_S, max(0.0, age))
    body = extra.get("cache")
    if isinstance(body, dict):
        for name in ("no_cache", "no_store"):
            if body.get(name) is True:
                out[name] = True
        ttl = body.get("ttl")
        if ttl is not None:
            if isinstance(ttl, bool) or not isinstance(ttl, int | float) or not 0 <= ttl <= MAX_TTL_S:
                raise InvalidRequest(
                    f"Invalid value for 'cache.ttl': expected seconds from 0 to {MAX_TTL_S:.0f}.",
                    param="cache.ttl",
                    code="invalid_value",
                )
            out["ttl"] = float(ttl)
    return out


# ---------------------------------------------------------------------------- storage


@dataclass(frozen=True)
class Entry:
    """A stored answer and who produced it."""

    kind: Literal["chat", "completion"]
    body: dict[str, Any]  # the whole response, as sent
    provider: str
    model: str

    def validate(self) -> None:
        """Raise (a ValueError) unless the body is a well-formed answer of its kind."""
        (ChatCompletion if self.kind == "chat" else CompletionChunk).model_validate(self.body)

    def to_bytes(self) -> bytes:
        return json.dumps(
            {"kind": self.kind, "body": self.body, "provider": self.provider, "model": self.model}
        ).encode()

    @classmethod
    def from_bytes(cls, raw: bytes) -> Entry:
        data = json.loads(raw)
        return cls(kind=data["kind"], body=data["body"], provider=data["provider"], model=data["model"])


class ResponseCache:
    """A diskcache on local disk; every failure is a miss (or a skipped write) and a log line.

    Lookups run on the event loop, so they must never wait: entries are evicted
    least-recently-*stored* (a least-recently-used policy would make every read
    a write transaction, queued behind other processes' writes), and the read
    handle gives up on a lock after `lock_timeout_s`. Writes run in a worker
    thread and may wait longer for a lock held by another process.
    """

    def __init__(
        self, directory: Path, *, size_limit_bytes: int, lock_timeout_s: float = 0.05, write_timeout_s: float = 2.0
    ):
        settings = {"size_limit": size_limit_bytes, "eviction_policy": "least-recently-stored"}
        self._reader = diskcache.Cache(str(directory), timeout=lock_timeout_s, disk=_JsonOnlyDisk, **settings)
        self._writer = diskcache.Cache(str(directory), timeout=write_timeout_s, disk=_JsonOnlyDisk, **settings)

    def get(self, key: str) -> Entry | None:
        try:
            raw = self._reader.get(key)
        except Exception as e:  # locked, unreadable, a refused pickle: a miss, never a failed request
            log.warning("cache read failed (%s): %s", type(e).__name__, e or "lock timeout")
            return None
        if raw is None:
            return None
        try:
            entry = Entry.from_bytes(raw)
            entry.validate()
        except (ValueError, KeyError, TypeError) as e:  # pydantic's ValidationError is a ValueError
            log.warning("cache entry %s is corrupt (%s); dropping it", key, type(e).__name__)
            self.delete(key)
            return None
        return entry

    def set(self, key: str, entry: Entry, ttl_s: float) -> bool:
        try:
            return bool(self._writer.set(key, entry.to_bytes(), expire=ttl_s))
        except Exception as e:  # full disk, locked database
            log.warning("cache write failed (%s): %s", type(e).__name__, e or "lock timeout")
            return False

    def delete(self, key: str) -> None:
        try:
            self._writer.delete(key)
        except Exception as e:
            log.warning("cache delete failed (%s): %s", type(e).__name__, e or "lock timeout")

    def close(self) -> None:
        self._reader.close()
        self._writer.close()


class _JsonOnlyDisk(diskcache.Disk):  # type: ignore[misc]
    """Never unpickles: whoever can write the cache directory must not run code in the gateway."""

    def fetch(self, mode: int, filename: str | None, value: Any, read: bool) -> Any:
        if mode == MODE_PICKLE:
            raise ValueError("a pickled cache entry was refused")
        return super().fetch(mode, filename, value, read)


def complete_enough(kind: str, body: dict[str, Any]) -> bool:
    """Only clean, finished answers are stored: every choice has a finish reason."""
    choices = body.get("choices") or []
    return bool(choices) and all(c.get("finish_reason") for c in choices)


# ----------------------------------------------------------------------------- replay


def pieces(text: str) -> list[str]:
    """`text` cut into word-sized pieces (leading whitespace kept), for a stream of many chunks."""
    return _PIECE.findall(text) or [text]


async def replay_chat(entry: Entry, stream_model: str | None = None) -> AsyncIterator[ChatCompletionChunk]:
    """A cached chat answer as a fresh stream: role, content pieces, tool calls, finish, usage."""
    whole = ChatCompletion.model_validate(entry.body)
    cid, created = new_id("chatcmpl"), now()
    model = stream_model or whole.model

    def chunk(index: int | None, delta: ChunkDelta | None = None, **kw: Any) -> ChatCompletionChunk:
        choices = [] if index is None else [ChunkChoice(index=index, delta=delta or ChunkDelta(), **kw)]
        return ChatCompletionChunk(id=cid, created=created, model=model, choices=choices)

    yield ChatCompletionChunk(
        id=cid,
        created=created,
        model=model,
        choices=[ChunkChoice(index=c.index, delta=ChunkDelta(role="assistant", content="")) for c in whole.choices],
    )
    for c in whole.choices:
        for delta in _reasoning_deltas(c.message):
            yield chunk(c.index, delta)
        for piece in pieces(c.message.content or "") if c.message.content else []:
            yield chunk(c.index, ChunkDelta(content=piece))
        for delta in _tool_call_deltas(c.message.tool_calls or []):
            yield chunk(c.index, delta)
        yield chunk(c.index, finish_reason=c.finish_reason, logprobs=c.logprobs)
    if whole.usage is not None:
        yield ChatCompletionChunk(id=cid, created=created, model=model, choices=[], usage=whole.usage)


def _reasoning_deltas(message: AssistantMessage) -> Iterator[ChunkDelta]:
    """A reasoning model's reasoning in pieces, then its signature and redacted part, as they streamed."""
    for piece in pieces(message.reasoning_content) if message.reasoning_content else []:
        yield ChunkDelta(reasoning_content=piece)
    if message.reasoning_signature or message.redacted_reasoning:
        yield ChunkDelta(reasoning_signature=message.reasoning_signature, redacted_reasoning=message.redacted_reasoning)


def _tool_call_deltas(calls: list[ToolCall]) -> Iterator[ChunkDelta]:
    """Each call opened (id, name) and its arguments in pieces, as providers stream them."""
    for i, call in enumerate(calls):
        opened = ToolCallDelta(
            index=i, id=call.id, type="function", function=ToolCallFunctionDelta(name=call.function.name, arguments="")
        )
        yield ChunkDelta(tool_calls=[opened])
        for piece in pieces(call.function.arguments):
            yield ChunkDelta(tool_calls=[ToolCallDelta(index=i, function=ToolCallFunctionDelta(arguments=piece))])


async def replay_completion(entry: Entry) -> AsyncIterator[CompletionChunk]:
    whole = CompletionChunk.model_validate(entry.body)
    cid, created = new_id("cmpl"), now()

    def chunk(choices: list[CompletionChoice], **kw: Any) -> CompletionChunk:
        return CompletionChunk(id=cid, created=created, model=whole.model, choices=choices, **kw)

    for c in whole.choices:
        for piece in pieces(c.text):
            yield chunk([CompletionChoice(index=c.index, text=piece)])
        yield chunk([CompletionChoice(index=c.index, text="", finish_reason=c.finish_reason, logprobs=c.logprobs)])
    if whole.usage is not None:
        yield chunk([], usage=whole.usage)


def fresh_chat(entry: Entry) -> ChatCompletion:
    """A cached whole chat answer with a fresh id and timestamp."""
    return ChatCompletion.model_validate({**entry.body, "id": new_id("chatcmpl"), "created": now()})


def fresh_completion(entry: Entry) -> CompletionChunk:
    return CompletionChunk.model_validate({**entry.body, "id": new_id("cmpl"), "created": now()})
