"""The Anthropic provider: OpenAI chat requests served by Anthropic's Messages API.

Responsibilities:

1. Translate an OpenAI chat request into a Messages API body (`to_anthropic`),
   refusing up front what Anthropic can't do: `n > 1`, `logprobs`, JSON
   `response_format`, `logit_bias`, audio and file parts. A request that came
   in as a Messages body (Anthropic's front door: `ChatCompletionRequest.native`)
   is sent as the client wrote it, with only the route's model, the flow's
   `max_tokens` and `stream: true` set (`messages_body`): no double translation,
   so `top_k`, `cache_control`, `thinking`, `metadata` and the rest arrive intact,
   with the betas the client asked for (`anthropic-beta`: `beta_headers`).
2. `POST {base_url}/v1/messages` with `stream: true` on the injected
   `httpx.AsyncClient`: a non-2xx answer becomes the gateway's error
   (`error_from_response`, which reads Anthropic's `{"type": "error",
   "error": {"type", "message"}}` body), and so do transport failures
   (`map_transport_errors`).
3. Translate the event stream into OpenAI chunks as each event arrives
   (`translate` over a `StreamTranslator`). A stream never ends silently: an
   `error` event raises the matching `UpstreamError`, unparseable data and a
   stream without `message_stop` raise `UpstreamUnavailable`.

`finish_reason` from Anthropic's `stop_reason`:

    end_turn, stop_sequence             -> stop
    max_tokens,
    model_context_window_exceeded       -> length
    tool_use                            -> tool_calls
    refusal                             -> content_filter  (a safety classifier stopped the reply)
    pause_turn, anything unknown        -> stop  (pause_turn needs server tools, which we never send)

Decisions, where the two APIs differ:

- system and developer messages, wherever they stand, are joined with blank
  lines into the top-level `system` (Anthropic has no mid-conversation system
  turn); consecutive same-role turns are merged (Anthropic wants user and
  assistant to alternate), tool results first within a user turn, as
  Anthropic requires; messages with no content at all are dropped; `name` on
  a message is dropped (Anthropic has no equivalent).
- `temperature` above 1.0 is clamped to 1.0 (OpenAI's range is 0..2,
  Anthropic's 0..1); `presence_penalty`, `frequency_penalty` and `seed` are
  best-effort hints Anthropic lacks and are dropped; unknown extra request
  fields are never forwarded (Anthropic rejects unknown fields).
- a tool's `strict` flag is not forwarded (Anthropic supports it only on some
  models); `response_format` is refused although Anthropic now documents
  structured outputs (`output_config.format`), also only on some models.
- thinking is reasoning: thinking deltas are `reasoning_content`, the
  signature `reasoning_signature`, a redacted block's data
  `redacted_reasoning` (OpenAI's chunks carry them beside the content; an
  assistant turn sent back with them becomes the thinking blocks Anthropic
  needs to continue a tool use). `reasoning_effort` is a thinking budget
  (`THINKING_BUDGETS`, under `max_tokens`; no temperature or top_p then).
  `output_tokens` counts thinking, as OpenAI's `completion_tokens` counts
  reasoning tokens.
- usage: `prompt_tokens` is input + cache-read + cache-creation tokens (OpenAI's total),
  `cached_tokens` the cache reads, `cache_write_tokens` the cache writes (OpenAI's
  field for them; Anthropic's `input_tokens` excludes both).
- a tool call that streams no input gets arguments `"{}"`, so clients can
  always parse them.
- the API key goes only into the `x-api-key` header; an error message that
  somehow contains it (a proxy echoing headers) has it redacted.
"""

from __future__ import annotations

import json
from collections.abc import AsyncGenerator, AsyncIterator
from contextlib import aclosing
from dataclasses import dataclass, field
from typing import Any, Literal

import httpx

from orchestrator.errors import (
    InvalidRequest,
    OrchestratorError,
    UnsupportedCapability,
    UpstreamError,
    UpstreamRateLimited,
    UpstreamRejected,
    UpstreamTimeout,
    UpstreamUnavailable,
)
from orchestrator.protocol import (
    ANTHROPIC_MESSAGES,
    ChatCompletionChunk,
    ChatCompletionRequest,
    ChatMessage,
    ChunkChoice,
    ChunkDelta,
    CompletionChunk,
    CompletionRequest,
    ContentPart,
    EmbeddingRequest,
    EmbeddingResponse,
    FinishReason,
    ImagePart,
    OpeningChunk,
    PromptTokensDetails,
    RefusalPart,
    TextPart,
    Tool,
    ToolCall,
    ToolCallDelta,
    ToolCallFunctionDelta,
    Usage,
    now,
)
from orchestrator.providers.base import ChunkStream
from orchestrator.providers.http import (
    SSEEvent,
    StreamedPost,
    body_pieces,
    credentials_rejected,
    error_body,
    error_from_response,
    json_body,
    map_transport_errors,
    redact,
    sse_batches,
)

FINISH_REASONS: dict[str, FinishReason] = {
    "end_turn": "stop",
    "stop_sequence": "stop",
    "pause_turn": "stop",
    "max_tokens": "length",
    "model_context_window_exceeded": "length",
    "tool_use": "tool_calls",
    "refusal": "content_filter",
}
IMAGE_MEDIA_TYPES = frozenset({"image/jpeg", "image/png", "image/gif", "image/webp"})

Block = dict[str, Any]
Turn = dict[str, Any]

# --------------------------------------------------------------------------- requests


def messages_body(request: ChatCompletionRequest, model: str, default_max_tokens: int) -> dict[str, Any]:
    """The Messages API body for `request`: the client's own where it came as one, else the translation."""
    native = request.native()
    if native is None or native.wire != ANTHROPIC_MESSAGES:
        return to_anthropic(request, model, default_max_tokens)
    limit = request.output_limit() or default_max_tokens
    return {**native.body, "model": model, "max_tokens": limit, "stream": True}


def beta_headers(request: ChatCompletionRequest) -> dict[str, str]:
    """`anthropic-beta` for the client's own body: the betas it came with (a translation needs none)."""
    native = request.native()
    if native is None or native.wire != ANTHROPIC_MESSAGES or not native.betas:
        return {}
    return {"anthropic-beta": ",".join(native.betas)}


def to_anthropic(request: ChatCompletionRequest, model: str, default_max_tokens: int) -> dict[str, Any]:
    """The Messages API body (always streamed) for an OpenAI chat request."""
    _refuse_unsupported(request)
    system, turns = _conversation(request.messages)
    body: dict[str, Any] = {
        "model": model,
        "messages": turns,
        "max_tokens": request.output_limit() or default_max_tokens,
        "stream": True,
    }
    if system:
        body["system"] = system
    if (thinking := _thinking_budget(request, body["max_tokens"])) is not None:
        body["thinking"] = thinking  # Anthropic takes no temperature or top_p with it
    else:
        if request.temperature is not None:
            body["temperature"] = min(request.temperature, 1.0)
        if request.top_p is not None:
            body["top_p"] = request.top_p
    if stops := request.stop_list():
        body["stop_sequences"] = stops
    if request.user:
        body["metadata"] = {"user_id": request.user}
    body.update(_tool_fields(request))
    return body


# OpenAI's `reasoning_effort` as Anthropic's thinking budget (at least 1,024 tokens, under `max_tokens`).
THINKING_BUDGETS = {"minimal": 1024, "low": 2048, "medium": 8192, "high": 24576, "xhigh": 32000}
MIN_THINKING_BUDGET = 1024


def _thinking_budget(request: ChatCompletionRequest, max_tokens: int) -> dict[str, Any] | None:
    effort = request.reasoning_effort
    if effort is None or effort == "none":
        return None
    budget = min(THINKING_BUDGETS[effort], max_tokens - 1)
    if budget < MIN_THINKING_BUDGET:
        raise InvalidRequest(
            f"'reasoning_effort' on an Anthropic model needs 'max_tokens' above {MIN_THINKING_BUDGET} "
            "(the thinking budget is part of it).",
            param="max_tokens",
        )
    return {"type": "enabled", "budget_tokens": budget}


def _refuse_unsupported(request: ChatCompletionRequest) -> None:
    if request.n > 1:
        raise UnsupportedCapability(
            "Anthropic models make one choice per request; 'n' must be 1.", param="n", code="unsupported_n"
        )
    if request.logprobs:
        raise UnsupportedCapability(
            "Anthropic models don't return log probabilities.", param="logprobs", code="unsupported_logprobs"
        )
    if request.response_format is not None and request.response_format.type != "text":
        raise UnsupportedCapability(
            f"'response_format' of type '{request.response_format.type}' is not supported for Anthropic models.",
            param="response_format",
            code="unsupported_json_schema",
        )
    if request.logit_bias:
        raise UnsupportedCapability(
            "Anthropic models don't support 'logit_bias'.", param="logit_bias", code="unsupported_logit_bias"
        )


def _conversation(messages: list[ChatMessage]) -> tuple[str, list[Turn]]:
    """(system prompt, alternating user/assistant turns) from OpenAI messages."""
    system: list[str] = []
    turns: list[Turn] = []
    for i, message in enumerate(messages):
        if message.role in ("system", "developer"):
            if text := message.text():
                system.append(text)
            continue
        role, blocks = _turn(message, f"messages[{i}]")
        if not blocks:
            continue
        if turns and turns[-1]["role"] == role:
            turns[-1]["content"].extend(blocks)
        else:
            turns.append({"role": role, "content": blocks})
    for turn in turns:
        if turn["role"] == "user":
            # Anthropic wants a user turn's tool results before anything else in it.
            turn["content"].sort(key=lambda block: block["type"] != "tool_result")
    if not turns:
        raise InvalidRequest("'messages' needs at least one user or assistant message with content.", param="messages")
    return "\n\n".join(system), turns


def _turn(message: ChatMessage, param: str) -> tuple[Literal["user", "assistant"], list[Block]]:
    if message.role == "tool":
        return "user", [_tool_result(message, param)]
    if message.role == "function":
        raise UnsupportedCapability(
            "The legacy 'function' role is not supported for Anthropic models; use 'tool' messages.",
            param=f"{param}.role",
            code="unsupported_function_role",
        )
    blocks = _blocks(message.content, f"{param}.content")
    if message.role != "assistant":
        return "user", blocks
    calls = message.tool_calls or []
    return "assistant", _thinking(message) + blocks + [
        _tool_use(c, f"{param}.tool_calls[{j}]") for j, c in enumerate(calls)
    ]


def _thinking(message: ChatMessage) -> list[Block]:
    """An assistant turn's signed thinking, as the client got it from an Anthropic route
    (`reasoning_content` + `reasoning_signature`, `redacted_reasoning`): sent back as thinking blocks,
    which Anthropic needs to continue a tool use it thought about. Reasoning without a signature (another
    provider's) is not Anthropic's to check and is left out."""
    extra = message.model_extra or {}
    text, signature, redacted = (
        extra.get(k) for k in ("reasoning_content", "reasoning_signature", "redacted_reasoning")
    )
    blocks: list[Block] = []
    if isinstance(signature, str) and signature and isinstance(text, str):
        blocks.append({"type": "thinking", "thinking": text, "signature": signature})
    if isinstance(redacted, str) and redacted:
        blocks.append({"type": "redacted_thinking", "data": redacted})
    return blocks


def _blocks(content: str | list[ContentPart] | None, param: str) -> list[Block]:
    if not content:
        return []
    if isinstance(content, str):
        return [{"type": "text", "text": content}]
    blocks: list[Block] = []
    for j, part in enumerate(content):
        if isinstance(part, TextPart | RefusalPart):
            text = part.text if isinstance(part, TextPart) else part.refusal
            if text:  # Anthropic refuses empty text blocks
                blocks.append({"type": "text", "text": text})
        elif isinstance(part, ImagePart):
            blocks.append(_image(part.image_url.url, f"{param}[{j}].image_url.url"))
        else:
            raise UnsupportedCapability(
                f"Anthropic models take text and image parts here, not '{part.type}'.",
                param=f"{param}[{j}]",
                code="unsupported_audio",
            )
    return blocks


def _image(url: str, param: str) -> Block:
    if url.startswith(("http://", "https://")):
        return {"type": "image", "source": {"type": "url", "url": url}}
    if not url.startswith("data:"):
        raise InvalidRequest("An image URL must be http(s) or a base64 data URL.", param=param)
    header, comma, data = url.removeprefix("data:").partition(",")
    media_type, *options = header.split(";")
    if not comma or options[-1:] != ["base64"]:
        raise InvalidRequest("An image data URL must look like 'data:image/png;base64,...'.", param=param)
    media_type = "image/jpeg" if media_type == "image/jpg" else media_type
    if media_type not in IMAGE_MEDIA_TYPES:
        raise UnsupportedCapability(
            f"Anthropic models take JPEG, PNG, GIF or WebP images, not '{media_type}'.",
            param=param,
            code="unsupported_vision",
        )
    return {"type": "image", "source": {"type": "base64", "media_type": media_type, "data": data}}


def _tool_use(call: ToolCall, param: str) -> Block:
    try:
        arguments = json.loads(call.function.arguments) if call.function.arguments.strip() else {}
    except ValueError:
        raise InvalidRequest(
            f"The arguments of tool call '{call.id}' are not valid JSON.", param=f"{param}.function.arguments"
        ) from None
    if not isinstance(arguments, dict):
        raise InvalidRequest(
            f"The arguments of tool call '{call.id}' must be a JSON object.", param=f"{param}.function.arguments"
        )
    return {"type": "tool_use", "id": call.id, "name": call.function.name, "input": arguments}


def _tool_result(message: ChatMessage, param: str) -> Block:
    block: Block = {"type": "tool_result", "tool_use_id": message.tool_call_id}
    content = message.content if isinstance(message.content, str) else _blocks(message.content, f"{param}.content")
    if content:
        block["content"] = content
    return block


def _tool_fields(request: ChatCompletionRequest) -> dict[str, Any]:
    """`tools` and `tool_choice` (with `disable_parallel_tool_use`) for the body."""
    if not request.tools:
        if request.tool_choice in (None, "none", "auto"):
            return {}
        raise InvalidRequest("'tool_choice' needs 'tools'.", param="tool_choice")
    fields: dict[str, Any] = {"tools": [_tool(t) for t in request.tools]}
    choice = _tool_choice(request.tool_choice)
    if request.parallel_tool_calls is False and (choice is None or choice["type"] != "none"):
        choice = {**(choice or {"type": "auto"}), "disable_parallel_tool_use": True}
    if choice is not None:
        fields["tool_choice"] = choice
    return fields


def _tool(tool: Tool) -> dict[str, Any]:
    spec: dict[str, Any] = {"name": tool.function.name}
    if tool.function.description:
        spec["description"] = tool.function.description
    spec["input_schema"] = tool.function.parameters or {"type": "object", "properties": {}}
    return spec


def _tool_choice(choice: str | dict[str, Any] | None) -> dict[str, Any] | None:
    if choice is None:
        return None
    if isinstance(choice, str):
        return {"type": {"auto": "auto", "required": "any", "none": "none"}[choice]}
    function = choice.get("function")
    if choice.get("type") == "function" and isinstance(function, dict) and isinstance(function.get("name"), str):
        return {"type": "tool", "name": function["name"]}
    raise InvalidRequest(
        "'tool_choice' must be 'none', 'auto', 'required' or {\"type\": \"function\", \"function\": {\"name\": ...}}.",
        param="tool_choice",
    )


# ----------------------------------------------------------------------------- stream


@dataclass
class _ToolBlock:
    index: int  # the OpenAI tool call index: tool_use blocks counted from 0
    input: dict[str, Any] = field(default_factory=dict)
    streamed: bool = False  # whether any input JSON has been sent


class StreamTranslator:
    """Anthropic stream events -> OpenAI chunks, one parsed event at a time.

    Holds what the events spread out: the message id and model (from
    `message_start`), which content blocks are tool calls, usage so far and
    the stop reason. `done` turns true at `message_stop`, after which the
    stream has nothing more to say.
    """

    def __init__(self, provider: str, created: int | None = None):
        self._provider = provider
        self._created = now() if created is None else created
        self._id = ""
        self._model = ""
        self._tools: dict[int, _ToolBlock] = {}  # content block index -> tool call
        self._usage: dict[str, int] = {}
        self._stop_reason: str | None = None
        self._stop_sequence: str | None = None  # which of the request's stop sequences ended it
        self._started = False
        self.done = False

    def feed(self, event: dict[str, Any]) -> list[ChatCompletionChunk]:
        kind = event.get("type")
        if kind == "error":
            raise stream_error(self._provider, event)
        if kind == "ping":
            return []
        if not self._started and kind != "message_start":
            raise _malformed(self._provider, f"'{kind}' before message_start")
        try:
            return self._translate(kind, event)
        except (KeyError, IndexError, TypeError, AttributeError, ValueError) as e:
            raise _malformed(self._provider, f"{type(e).__name__} in a '{kind}' event") from None

    def _translate(self, kind: object, event: dict[str, Any]) -> list[ChatCompletionChunk]:
        match kind:
            case "message_start":
                return self._message_start(event["message"])
            case "content_block_start":
                return self._block_start(event["index"], event["content_block"])
            case "content_block_delta":
                return self._block_delta(event["index"], event["delta"])
            case "content_block_stop":
                return self._block_stop(event["index"])
            case "message_delta":
                self._stop_reason = event["delta"].get("stop_reason") or self._stop_reason
                self._stop_sequence = event["delta"].get("stop_sequence") or self._stop_sequence
                self._take_usage(event.get("usage"))
                return []
            case "message_stop":
                return self._message_stop()
        return []  # Anthropic may add event types; what we don't know carries nothing we translate

    def _message_start(self, message: dict[str, Any]) -> list[ChatCompletionChunk]:
        self._started = True
        self._id = f"chatcmpl-{message['id']}"
        self._model = str(message["model"])
        self._take_usage(message.get("usage"))
        opening = OpeningChunk(
            id=self._id, created=self._created, model=self._model,
            choices=[ChunkChoice(index=0, delta=ChunkDelta(role="assistant", content=""))],
        )  # fmt: skip
        return [opening.with_prompt_usage(self._usage_so_far())]

    def _block_start(self, index: int, block: dict[str, Any]) -> list[ChatCompletionChunk]:
        if block["type"] == "tool_use":
            tool = self._tools[index] = _ToolBlock(len(self._tools), block.get("input") or {})
            call = ToolCallDelta(
                index=tool.index,
                id=block["id"],
                type="function",
                function=ToolCallFunctionDelta(name=block["name"], arguments=""),
            )
            return [self._chunk(ChunkDelta(tool_calls=[call]))]
        if block["type"] == "text" and block.get("text"):
            return [self._chunk(ChunkDelta(content=block["text"]))]
        if block["type"] == "thinking" and (block.get("thinking") or block.get("signature")):
            delta = ChunkDelta(
                reasoning_content=block.get("thinking") or None, reasoning_signature=block.get("signature") or None
            )
            return [self._chunk(delta)]
        if block["type"] == "redacted_thinking":
            return [self._chunk(ChunkDelta(redacted_reasoning=block["data"]))]
        return []

    def _block_delta(self, index: int, delta: dict[str, Any]) -> list[ChatCompletionChunk]:
        if delta["type"] == "text_delta":
            return [self._chunk(ChunkDelta(content=delta["text"]))] if delta["text"] else []
        if delta["type"] == "input_json_delta":
            tool = self._tools.get(index)
            if tool is None:
                raise _malformed(self._provider, f"tool input for content block {index}, which is no tool call")
            if not delta["partial_json"]:
                return []
            tool.streamed = True
            return [self._arguments(tool.index, delta["partial_json"])]
        if delta["type"] == "thinking_delta":
            return [self._chunk(ChunkDelta(reasoning_content=delta["thinking"]))] if delta["thinking"] else []
        if delta["type"] == "signature_delta":
            return [self._chunk(ChunkDelta(reasoning_signature=delta["signature"]))]
        return []  # citations_delta

    def _block_stop(self, index: int) -> list[ChatCompletionChunk]:
        tool = self._tools.get(index)
        if tool is None or tool.streamed:
            return []
        tool.streamed = True
        return [self._arguments(tool.index, json.dumps(tool.input))]

    def _message_stop(self) -> list[ChatCompletionChunk]:
        self.done = True
        finish = FINISH_REASONS.get(self._stop_reason or "end_turn", "stop")
        usage = self._usage_so_far()
        last = ChatCompletionChunk(
            id=self._id,
            created=self._created,
            model=self._model,
            choices=[ChunkChoice(index=0, delta=ChunkDelta(), finish_reason=finish, stop_reason=self._stop_sequence)],
        )
        tail = ChatCompletionChunk(id=self._id, created=self._created, model=self._model, choices=[], usage=usage)
        return [last, tail]

    def _usage_so_far(self) -> Usage:
        """The counts so far in OpenAI's terms: the prompt with its cache reads and writes, and the output."""
        cached = self._usage.get("cache_read_input_tokens", 0)
        written = self._usage.get("cache_creation_input_tokens", 0)
        prompt = self._usage.get("input_tokens", 0) + cached + written
        completion = self._usage.get("output_tokens", 0)
        details = PromptTokensDetails(cached_tokens=cached)
        if written:
            details.cache_write_tokens = written
        return Usage(
            prompt_tokens=prompt, completion_tokens=completion, total_tokens=prompt + completion,
            prompt_tokens_details=details,
        )  # fmt: skip

    def _take_usage(self, usage: dict[str, Any] | None) -> None:
        # message_delta's counts are cumulative, so the latest value wins.
        for key, value in (usage or {}).items():
            if isinstance(value, int) and key.endswith("_tokens"):
                self._usage[key] = value

    def _arguments(self, index: int, text: str) -> ChatCompletionChunk:
        call = ToolCallDelta(index=index, function=ToolCallFunctionDelta(arguments=text))
        return self._chunk(ChunkDelta(tool_calls=[call]))

    def _chunk(self, delta: ChunkDelta) -> ChatCompletionChunk:
        return ChatCompletionChunk(
            id=self._id, created=self._created, model=self._model, choices=[ChunkChoice(index=0, delta=delta)]
        )


async def translate(
    reads: AsyncIterator[list[SSEEvent]], provider: str
) -> AsyncGenerator[list[ChatCompletionChunk], None]:
    """Translate an Anthropic SSE stream into chunks as its events arrive: the chunks of the events that
    came together (`sse_batches`), together; never an empty batch."""
    translator = StreamTranslator(provider)
    async for events in reads:
        batch: list[ChatCompletionChunk] = []
        try:
            _feed(translator, events, batch, provider)
        except OrchestratorError:
            if batch:
                yield batch  # what came before the failure is the client's
            raise
        if batch:
            yield batch
        if translator.done:
            return
    raise UpstreamUnavailable(f"{provider}: the stream ended early, before message_stop.")


def _feed(
    translator: StreamTranslator, events: list[SSEEvent], batch: list[ChatCompletionChunk], provider: str
) -> None:
    """`events`' chunks appended to `batch`, up to the stream's end (what follows it is ignored)."""
    for sse in events:
        try:
            event = json.loads(sse.data)
        except ValueError:
            raise _malformed(provider, "a data line is not JSON") from None
        if not isinstance(event, dict):
            raise _malformed(provider, "an event is not a JSON object")
        batch.extend(translator.feed(event))
        if translator.done:
            return


def _malformed(provider: str, detail: str) -> UpstreamUnavailable:
    return UpstreamUnavailable(f"{provider}: malformed stream ({detail}).")


_STREAM_ERRORS: dict[str, type[UpstreamError]] = {
    "overloaded_error": UpstreamUnavailable,
    "api_error": UpstreamUnavailable,
    "rate_limit_error": UpstreamRateLimited,
    "timeout_error": UpstreamTimeout,
}
_REJECTED_STATUS = {
    "invalid_request_error": 400,
    "authentication_error": 401,
    "billing_error": 402,
    "permission_error": 403,
    "not_found_error": 404,
    "request_too_large": 413,
}


def stream_error(provider: str, event: dict[str, Any]) -> UpstreamError:
    """The gateway's error for an `error` event that arrives after the HTTP 200."""
    error = event.get("error")
    error = error if isinstance(error, dict) else {}
    kind = str(error.get("type") or "unknown_error")
    if _REJECTED_STATUS.get(kind) in (401, 403):
        return credentials_rejected(provider, _REJECTED_STATUS[kind])  # its text may quote the key
    text = f"{provider} failed mid-stream: {kind}: {str(error.get('message') or 'no details')[:1000]}"
    if kind in _REJECTED_STATUS:
        return UpstreamRejected(text, upstream_status=_REJECTED_STATUS[kind])
    return _STREAM_ERRORS.get(kind, UpstreamUnavailable)(text)


# --------------------------------------------------------------------------- provider


async def _no_completions(model: str) -> AsyncGenerator[list[CompletionChunk], None]:
    raise UnsupportedCapability(
        f"'{model}' is an Anthropic model; Anthropic has no text completions API. Use /v1/chat/completions.",
        param="model",
        code="unsupported_task",
    )
    yield  # unreachable: makes this an async generator, failing when the stream is read, as a provider's do


class AnthropicProvider:
    """Serves OpenAI chat requests from Anthropic's Messages API; nothing else."""

    def __init__(
        self,
        name: str,
        client: httpx.AsyncClient,
        base_url: str,
        api_key: str,
        *,
        default_max_tokens: int = 4096,
        version: str = "2023-06-01",
        key_env: str | None = None,
    ):
        self.name = name
        self._key_env = key_env  # the variable holding `api_key`: what a 401 tells the operator to check
        self._client = client
        self._api_key = api_key
        self._default_max_tokens = default_max_tokens
        self._version = version
        self._post = StreamedPost(client, base_url.rstrip("/") + "/v1/messages", self._headers())

    def chat(self, request: ChatCompletionRequest, model: str) -> ChunkStream[ChatCompletionChunk]:
        return ChunkStream(self._chat(request, model))

    async def _chat(
        self, request: ChatCompletionRequest, model: str
    ) -> AsyncGenerator[list[ChatCompletionChunk], None]:
        body = messages_body(request, model, self._default_max_tokens)
        try:
            content = json_body(body)
            with map_transport_errors(self.name):
                async with self._post.send(content, beta_headers(request)) as response:
                    if not response.is_success:
                        raise error_from_response(
                            self.name, response.status_code, response.headers, await error_body(response),
                            key_env=self._key_env,
                        )  # fmt: skip
                    pieces = body_pieces(response)
                    async with aclosing(translate(sse_batches(pieces), self.name)) as batches:
                        async for batch in batches:
                            yield batch
                    # Read the body to its end, so the connection goes back to the pool.
                    async for _ in pieces:
                        pass
        except UpstreamRejected as e:
            if e.upstream_status in (401, 403):  # mid-stream: say which variable to check
                raise credentials_rejected(self.name, e.upstream_status, self._key_env) from None
            redact(e, self._api_key)
            raise
        except OrchestratorError as e:
            redact(e, self._api_key)
            raise

    def complete(self, request: CompletionRequest, model: str) -> ChunkStream[CompletionChunk]:
        return ChunkStream(_no_completions(model))

    async def embed(self, request: EmbeddingRequest, model: str) -> EmbeddingResponse:
        raise UnsupportedCapability(
            f"'{model}' is an Anthropic model; Anthropic has no embeddings API.",
            param="model",
            code="unsupported_task",
        )

    def _headers(self) -> dict[str, str]:
        return {
            "x-api-key": self._api_key,
            "anthropic-version": self._version,
            "content-type": "application/json",
            "accept": "text/event-stream",
        }
