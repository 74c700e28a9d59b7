"""Any OpenAI-compatible API (OpenRouter, Together, Fireworks, Groq, DeepSeek, Mistral, Gemini's
OpenAI endpoint, ...), streamed and parsed incrementally.

The provider always asks upstream for a stream (with usage), because the
gateway's one internal shape is a chunk stream; whole responses are folded
from it. Unknown request fields pass through untouched (OpenRouter's
`provider`, `transforms`, ...; those that change the price are refused at the
door: `protocol._priced`). Known differences between providers are
normalized in one place, `Quirks`, applied to every request and chunk: a
ceiling on `max_tokens` (DeepSeek), no `parallel_tool_calls`, no
`stream_options` (Mistral), json_schema as json_object with the schema in the
prompt (DeepSeek's JSON mode wants the word "json" there), `max_completion_tokens`,
tool-call ids of 9 letters or digits (Mistral: any other id in the history is
mapped to one, the same every time, so calls and results still pair), and
tool-call deltas without `type` given it.
"""

from __future__ import annotations

import hashlib
import json
import re
from collections.abc import AsyncGenerator, Callable
from dataclasses import dataclass
from typing import Any, TypeVar

import httpx
from pydantic import BaseModel, ValidationError

from orchestrator.errors import OrchestratorError, UpstreamUnavailable
from orchestrator.protocol import (
    ChatCompletionChunk,
    ChatCompletionRequest,
    CompletionChunk,
    CompletionRequest,
    EmbeddingRequest,
    EmbeddingResponse,
)
from orchestrator.providers.base import ChunkStream
from orchestrator.providers.http import (
    SSEEvent,
    StreamedPost,
    body_pieces,
    error_body,
    error_from_response,
    json_body,
    map_transport_errors,
    redact,
    sse_batches,
)

C = TypeVar("C", ChatCompletionChunk, CompletionChunk)


@dataclass(frozen=True)
class Quirks:
    """How one provider departs from OpenAI's API, and how we compensate."""

    max_tokens_ceiling: int | None = None  # clamp max_tokens to what the provider accepts
    parallel_tool_calls: bool = True  # False: the provider rejects the field; drop it
    stream_usage: bool = True  # False: the provider rejects stream_options
    json_schema: bool = True  # False: downgrade json_schema to json_object
    max_tokens_field: str = "max_tokens"  # or "max_completion_tokens"
    tool_call_ids: str = "any"  # "alnum9": ids must be 9 letters or digits (Mistral): others are mapped


# The gateway's own request fields, and vLLM's that only the local engine takes: never sent upstream.
GATEWAY_FIELDS = frozenset({"cache", "continue_final_message"})


def _dump(request: ChatCompletionRequest | CompletionRequest) -> dict[str, Any]:
    body = request.model_dump(exclude_none=True, by_alias=True)
    return {k: v for k, v in body.items() if k not in GATEWAY_FIELDS}


def chat_body(request: ChatCompletionRequest, model: str, quirks: Quirks) -> dict[str, Any]:
    """The upstream request: the client's fields (extras included), normalized."""
    body = _dump(request)
    body["model"] = model
    body["messages"] = [_flat_text(m) for m in body["messages"]]
    _stream(body, quirks)
    limit = body.pop("max_completion_tokens", None) or body.pop("max_tokens", None)
    if limit is not None:
        if quirks.max_tokens_ceiling is not None:
            limit = min(limit, quirks.max_tokens_ceiling)
        body[quirks.max_tokens_field] = limit
    if not quirks.parallel_tool_calls:
        body.pop("parallel_tool_calls", None)
    if quirks.tool_call_ids == "alnum9":
        body["messages"] = [_short_ids(m) for m in body["messages"]]
    fmt = body.get("response_format")
    if not quirks.json_schema and isinstance(fmt, dict) and fmt.get("type") == "json_schema":
        body["response_format"] = {"type": "json_object"}
        body["messages"] = [*body["messages"], _schema_instruction(fmt.get("json_schema") or {})]
    return body


def _schema_instruction(spec: dict[str, Any]) -> dict[str, Any]:
    """What a provider with only a JSON mode (DeepSeek) needs to give the schema's shape: the schema in
    the prompt, and the word "json" there (its JSON mode refuses a prompt without it)."""
    schema = json.dumps(spec.get("schema") or {"type": "object"}, separators=(",", ":"))
    return {"role": "system", "content": f"Answer with one JSON object that matches this JSON schema: {schema}"}


def _flat_text(message: dict[str, Any]) -> dict[str, Any]:
    """A message whose content is only plain text parts, with the parts joined into one string:
    the same to OpenAI, and the only form some providers accept. Parts with anything more (an
    image, a provider's `cache_control`) stay parts."""
    content = message.get("content")
    if isinstance(content, list) and all(set(p) == {"type", "text"} and p["type"] == "text" for p in content):
        return {**message, "content": "\n".join(p["text"] for p in content)}
    return message


_ALNUM9 = re.compile(r"^[a-zA-Z0-9]{9}$")


def short_id(tool_id: str) -> str:
    """A tool-call id as 9 letters or digits: itself when it is one (the provider's own ids come back
    unchanged), else a hash of it, so a call and its result still pair up (an id another route made)."""
    return tool_id if _ALNUM9.match(tool_id) else hashlib.sha256(tool_id.encode()).hexdigest()[:9]


def _short_ids(message: dict[str, Any]) -> dict[str, Any]:
    out = dict(message)
    if message.get("tool_calls"):
        out["tool_calls"] = [{**c, "id": short_id(c["id"])} for c in message["tool_calls"]]
    if isinstance(message.get("tool_call_id"), str):
        out["tool_call_id"] = short_id(message["tool_call_id"])
    return out


def completion_body(request: CompletionRequest, model: str, quirks: Quirks) -> dict[str, Any]:
    body = _dump(request)
    body["model"] = model
    _stream(body, quirks)
    if quirks.max_tokens_ceiling is not None and "max_tokens" in body:
        body["max_tokens"] = min(body["max_tokens"], quirks.max_tokens_ceiling)
    return body


def _stream(body: dict[str, Any], quirks: Quirks) -> None:
    body["stream"] = True
    if quirks.stream_usage:
        body["stream_options"] = {"include_usage": True}
    else:
        body.pop("stream_options", None)


def normalize_chunk(chunk: ChatCompletionChunk) -> ChatCompletionChunk:
    """Repair what some providers leave out of tool-call deltas."""
    for choice in chunk.choices:
        for call in choice.delta.tool_calls or []:
            if call.id is not None and call.type is None:
                call.type = "function"
    return chunk


class OpenAICompatProvider:
    """One OpenAI-compatible API at `base_url` (which includes `/v1`, or its equivalent)."""

    def __init__(
        self,
        name: str,
        client: httpx.AsyncClient,
        base_url: str,
        api_key: str,
        *,
        quirks: Quirks | None = None,
        headers: dict[str, str] | None = None,
        key_env: str | None = None,
    ):
        self.name = name
        self._key_env = key_env  # the variable holding `api_key`: what a 401 tells the operator to check
        self._client = client
        self._base = base_url.rstrip("/")
        self._api_key = api_key  # taken out of every error's text (`redact`)
        self._headers = {"Authorization": f"Bearer {api_key}", "Content-Type": "application/json", **(headers or {})}
        self._posts = {
            path: StreamedPost(client, self._base + path, self._headers)
            for path in ("/chat/completions", "/completions")
        }
        self._quirks = quirks or Quirks()

    def chat(self, request: ChatCompletionRequest, model: str) -> ChunkStream[ChatCompletionChunk]:
        body = chat_body(request, model, self._quirks)
        return ChunkStream(self._stream("/chat/completions", body, ChatCompletionChunk, normalize_chunk))

    def complete(self, request: CompletionRequest, model: str) -> ChunkStream[CompletionChunk]:
        body = completion_body(request, model, self._quirks)
        return ChunkStream(self._stream("/completions", body, CompletionChunk))

    async def embed(self, request: EmbeddingRequest, model: str) -> EmbeddingResponse:
        body = request.model_dump(exclude_none=True)
        body["model"] = model
        try:
            with map_transport_errors(self.name):
                url, content = f"{self._base}/embeddings", json_body(body)
                async with self._client.stream("POST", url, content=content, headers=self._headers) as response:
                    if response.status_code != 200:
                        raise error_from_response(
                            self.name, response.status_code, response.headers, await error_body(response),
                            key_env=self._key_env,
                        )  # fmt: skip
                    raw = await response.aread()
            answer = _parse(self.name, raw, EmbeddingResponse)
            if len(answer.data) != (asked := len(request.inputs())):
                # `data: []` (or one short) as a 200 is the provider's failure: the next route may answer.
                raise UpstreamUnavailable(f"{self.name}: {len(answer.data)} embeddings for {asked} inputs.")
            return answer
        except OrchestratorError as e:
            redact(e, self._api_key)
            raise

    async def _stream(
        self, path: str, body: dict[str, Any], kind: type[C], fix: Callable[[C], C] | None = None
    ) -> AsyncGenerator[list[C], None]:
        """The answer's chunks, those of one network read together (never an empty batch)."""
        content = json_body(body)
        try:
            with map_transport_errors(self.name):
                async with self._posts[path].send(content) as response:
                    if response.status_code != 200:
                        raise error_from_response(
                            self.name, response.status_code, response.headers, await error_body(response),
                            key_env=self._key_env,
                        )  # fmt: skip
                    pieces = body_pieces(response)
                    async for events in sse_batches(pieces):
                        batch: list[C] = []
                        try:
                            done = self._read(events, kind, fix, batch)
                        except OrchestratorError:
                            if batch:
                                yield batch  # what came before the failure is the client's
                            raise
                        if batch:
                            yield batch
                        if done:
                            # Read the body to its end, so the connection goes back to the pool.
                            async for _ in pieces:
                                pass
                            return
            raise UpstreamUnavailable(f"{self.name}: the stream ended before [DONE].")
        except OrchestratorError as e:
            redact(e, self._api_key)  # a provider, or a proxy before it, may quote the request's headers
            raise

    def _read(self, events: list[SSEEvent], kind: type[C], fix: Callable[[C], C] | None, batch: list[C]) -> bool:
        """`events`' chunks appended to `batch`; whether `[DONE]` came (what follows it is ignored)."""
        for event in events:
            if event.data == "[DONE]":
                return True
            if event.event == "error" or '"error"' in event.data[:20]:
                raise _stream_error(self.name, event.data)
            chunk = _parse(self.name, event.data, kind)
            # Only a chunk with tool calls has anything to repair (most chunks are a token of text).
            batch.append(fix(chunk) if fix is not None and '"tool_calls"' in event.data else chunk)
        return False


M = TypeVar("M", bound=BaseModel)


def _parse(provider: str, raw: str | bytes, kind: type[M]) -> M:
    try:
        return kind.model_validate_json(raw)
    except ValidationError:
        raise UpstreamUnavailable(f"{provider}: malformed response from the provider.") from None


def _stream_error(provider: str, data: str) -> UpstreamUnavailable:
    try:
        message = str(json.loads(data)["error"].get("message", "unknown error"))
    except (ValueError, KeyError, TypeError, AttributeError):
        message = "unknown error"
    return UpstreamUnavailable(f"{provider}: the stream failed: {message[:500]}")
