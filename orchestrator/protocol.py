"""OpenAI wire models: the requests we accept and the responses we send.

Pure pydantic; imports no torch, vLLM or FastAPI. Requests accept unknown
fields (they pass through to OpenAI-compatible providers, but for those that
change what a provider charges: `_priced`) and validate every field OpenAI
defines, with OpenAI's ranges. Responses serialize the way
OpenAI's do: a field OpenAI marks required-but-nullable is always present
(as `null` when empty), any other unset field is left out.

Streaming has one internal shape: an iterator of `ChatCompletionChunk` (or
`CompletionChunk`); a non-stream response is assembled from the same chunks
(`orchestrator.streams`).

A chat request that came in another wire format (Anthropic's Messages) is
translated into `ChatCompletionRequest` for the flow and carries the client's
own body along (`Native`, a private attribute: it enters no dump), so a
provider that speaks that format sends it as it is (`native()`).
"""

from __future__ import annotations

import math
import time
import uuid
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Annotated, Any, ClassVar, Literal, cast

from pydantic import (
    AfterValidator,
    AliasChoices,
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    PrivateAttr,
    ValidationInfo,
    field_validator,
    model_validator,
)

from orchestrator.errors import InvalidRequest
from orchestrator.schema_cycles import ref_cycle

FinishReason = Literal["stop", "length", "tool_calls", "content_filter", "function_call"]

# OpenAI's integer fields are int64 (`seed`) or smaller; a bigger number is the client's mistake
# (a 400 naming the field), never an overflow somewhere downstream.
INT64_MIN, INT64_MAX = -(2**63), 2**63 - 1
Int64 = Annotated[int, Field(ge=INT64_MIN, le=INT64_MAX)]
TokenId = Annotated[int, Field(ge=0, le=2**31 - 1)]


def _metadata(value: object) -> object:
    """OpenAI's `metadata`: at most 16 pairs of strings, keys up to 64 and values up to 512 characters."""
    if isinstance(value, dict):
        if len(value) > 16:
            raise ValueError("'metadata' may have at most 16 keys")
        for k, v in value.items():
            if isinstance(k, str) and len(k) > 64:
                raise ValueError("'metadata' keys may be at most 64 characters")
            if isinstance(v, str) and len(v) > 512:
                raise ValueError("'metadata' values may be at most 512 characters")
    return value


Metadata = Annotated[dict[str, str], BeforeValidator(_metadata)]


def _matchable(schema: dict[str, Any]) -> dict[str, Any]:
    if why := ref_cycle(schema):
        raise ValueError(f"no value can match this schema: {why}")
    return schema


# A structured-output schema some answer can match (`schema_cycles`): a route never gets one that can't.
OutputSchema = Annotated[dict[str, Any], AfterValidator(_matchable)]


def finite_number(raw: str) -> float | None:
    """A number from a header or a query string, or None when it isn't a finite one."""
    try:
        value = float(raw)
    except ValueError:
        return None
    return value if math.isfinite(value) else None


def new_id(prefix: str) -> str:
    return f"{prefix}-{uuid.uuid4().hex}"


def now() -> int:
    return int(time.time())


def _is_none(value: object) -> bool:
    return value is None


class WireModel(BaseModel):
    """A response model: leaves out its `None` fields except those OpenAI always sends (`always`).

    Each subclass marks its other fields once (`exclude_if`), so pydantic's own serializer leaves
    them out: a Python serializer wrapped around every model cost several times as much per dump,
    and a stream dumps one model per chunk. (Unknown fields a provider sent are kept as they came.)
    """

    model_config = ConfigDict(extra="allow")
    always: ClassVar[frozenset[str]] = frozenset()

    @classmethod
    def __pydantic_init_subclass__(cls, **kwargs: Any) -> None:
        super().__pydantic_init_subclass__(**kwargs)
        changed = False
        for name, info in cls.model_fields.items():
            wanted = None if name in cls.always else _is_none
            if info.exclude_if is not wanted and info.exclude_if in (None, _is_none):
                info.exclude_if = wanted
                changed = True
        if changed and cls.__pydantic_complete__:
            cls.model_rebuild(force=True)

    def json_bytes(self, exclude: set[str] | None = None) -> bytes:
        """The model's JSON as `model_dump_json` writes it, as the bytes pydantic's serializer makes
        (`model_dump_json` decodes them to text, which a response encodes again): per chunk of a stream."""
        return self.__pydantic_serializer__.to_json(self, exclude=exclude)


# --------------------------------------------------------------------------- requests


class TextPart(BaseModel):
    model_config = ConfigDict(extra="allow")
    type: Literal["text"]
    text: str


class ImageURL(BaseModel):
    model_config = ConfigDict(extra="allow")
    url: str
    detail: Literal["auto", "low", "high"] | None = None


class ImagePart(BaseModel):
    model_config = ConfigDict(extra="allow")
    type: Literal["image_url"]
    image_url: ImageURL


class AudioPart(BaseModel):
    model_config = ConfigDict(extra="allow")
    type: Literal["input_audio"]
    input_audio: dict[str, Any]


class FilePart(BaseModel):
    model_config = ConfigDict(extra="allow")
    type: Literal["file"]
    file: dict[str, Any]


class RefusalPart(BaseModel):
    model_config = ConfigDict(extra="allow")
    type: Literal["refusal"]
    refusal: str


ContentPart = Annotated[TextPart | ImagePart | AudioPart | FilePart | RefusalPart, Field(discriminator="type")]


class FunctionCall(BaseModel):
    model_config = ConfigDict(extra="allow")
    name: str
    arguments: str


class ToolCall(BaseModel):
    model_config = ConfigDict(extra="allow")
    id: str
    type: Literal["function"] = "function"
    function: FunctionCall


class ChatMessage(BaseModel):
    """One message of a chat request (any role)."""

    model_config = ConfigDict(extra="allow")
    role: Literal["system", "developer", "user", "assistant", "tool", "function"]
    content: str | list[ContentPart] | None = None
    name: str | None = None
    tool_calls: list[ToolCall] | None = None
    tool_call_id: str | None = None

    @model_validator(mode="after")
    def _content_required(self) -> ChatMessage:
        if self.content is None and self.role != "assistant":
            raise ValueError(f"a '{self.role}' message needs 'content'")
        if self.role == "tool" and not self.tool_call_id:
            raise ValueError("a 'tool' message needs 'tool_call_id'")
        return self

    def flat(self) -> dict[str, Any]:
        """The message as a text-only model's chat template takes it: `content` always a string
        (text parts joined by newlines, as vLLM joins them; null -> ""), tool calls as plain dicts."""
        message: dict[str, Any] = {"role": self.role, "content": self.text("\n")}
        if self.name is not None:
            message["name"] = self.name
        if self.tool_calls:
            message["tool_calls"] = [c.model_dump() for c in self.tool_calls]
        if self.tool_call_id is not None:
            message["tool_call_id"] = self.tool_call_id
        return message

    def text(self, sep: str = "") -> str:
        """The message's text parts joined; non-text parts are not text."""
        if self.content is None:
            return ""
        if isinstance(self.content, str):
            return self.content
        return sep.join(p.text for p in self.content if isinstance(p, TextPart))

    def has_media(self) -> bool:
        return isinstance(self.content, list) and any(not isinstance(p, TextPart | RefusalPart) for p in self.content)


class FunctionDef(BaseModel):
    model_config = ConfigDict(extra="allow")
    name: str
    description: str | None = None
    parameters: dict[str, Any] | None = None
    strict: bool | None = None


class Tool(BaseModel):
    model_config = ConfigDict(extra="allow")
    type: Literal["function"]
    function: FunctionDef


class JsonSchemaFormat(BaseModel):
    model_config = ConfigDict(extra="allow", populate_by_name=True)
    name: str
    description: str | None = None
    schema_: OutputSchema | None = Field(default=None, alias="schema")
    strict: bool | None = None


class ResponseFormat(BaseModel):
    model_config = ConfigDict(extra="allow")
    type: Literal["text", "json_object", "json_schema"]
    json_schema: JsonSchemaFormat | None = None

    @model_validator(mode="after")
    def _schema_present(self) -> ResponseFormat:
        if self.type == "json_schema" and self.json_schema is None:
            raise ValueError("response_format of type 'json_schema' needs 'json_schema'")
        return self


class StreamOptions(BaseModel):
    model_config = ConfigDict(extra="allow")
    include_usage: bool | None = None


MAX_STOPS = 4  # OpenAI's cap on `stop` (Anthropic's `stop_sequences` has none: `capabilities`' "many_stops")
Stop = str | Annotated[list[str], Field(max_length=MAX_STOPS)] | None


def _priced(field: str, value: Any) -> str | None:
    """Why a pass-through field that changes what a provider charges (or which model answers) can't be
    sent: the ledger prices an answer at its route's configured rates, so a tenant could make the
    operator pay more than its key is charged. None where the value changes no price."""
    if field == "service_tier" and value not in (None, "auto", "default"):
        return f"a service tier of {value!r} is priced apart from the route's rates"
    if field == "modalities" and isinstance(value, list) and "audio" in value:
        return "audio output is priced apart from the route's text rates"
    if field in ("audio", "web_search_options", "plugins") and value is not None:
        return "it is billed apart from the route's token rates"
    if field == "models" and value is not None:
        return "another model may answer, at prices this gateway doesn't know; name one model, or an alias"
    return None


class SamplingFields(BaseModel):
    """Fields shared by chat and text completions."""

    model_config = ConfigDict(extra="allow")

    @model_validator(mode="before")
    @classmethod
    def _no_priced_extras(cls, data: Any) -> Any:
        """Unknown fields pass through to OpenAI-compatible routes, except those that change the price."""
        if isinstance(data, dict):
            for field in ("service_tier", "modalities", "audio", "web_search_options", "plugins", "models"):
                if field in data and (why := _priced(field, data[field])) is not None:
                    message = f"'{field}' can't be sent through this gateway: {why}."
                    raise InvalidRequest(message, param=field, code="unsupported_parameter")
        return data

    model: str
    temperature: Annotated[float, Field(ge=0, le=2)] | None = None
    top_p: Annotated[float, Field(ge=0, le=1)] | None = None
    n: Annotated[int, Field(ge=1, le=128)] = 1
    stream: bool = False
    stream_options: StreamOptions | None = None
    stop: Stop = None
    max_tokens: Annotated[int, Field(ge=1, le=INT64_MAX)] | None = None
    presence_penalty: Annotated[float, Field(ge=-2, le=2)] | None = None
    frequency_penalty: Annotated[float, Field(ge=-2, le=2)] | None = None
    logit_bias: dict[str, Annotated[float, Field(ge=-100, le=100)]] | None = None
    seed: Int64 | None = None
    user: str | None = None
    metadata: Metadata | None = None

    def include_usage(self) -> bool:
        return bool(self.stream_options and self.stream_options.include_usage)

    def stop_list(self) -> list[str]:
        if self.stop is None:
            return []
        return [self.stop] if isinstance(self.stop, str) else list(self.stop)

    @model_validator(mode="after")
    def _stream_options_need_stream(self) -> SamplingFields:
        if self.stream_options is not None and not self.stream:
            raise ValueError("'stream_options' is only allowed when 'stream' is true")
        return self


ANTHROPIC_MESSAGES = "anthropic-messages"  # `Native.wire` of a body in Anthropic's Messages format


@dataclass(frozen=True)
class Native:
    """A client's request as it came, in a wire format other than OpenAI's chat (`wire`), and what in it has
    no translation (`untranslated`: its fields, described, e.g. "'messages[0].content[1]' (a document from a
    PDF)"), which only a route speaking `wire` can serve; `betas`: the API betas the client asked for with
    the body (Anthropic's `anthropic-beta` header), which a route speaking `wire` is sent with it."""

    wire: str
    body: Mapping[str, Any]
    untranslated: tuple[str, ...] = ()
    betas: tuple[str, ...] = ()


class ChatCompletionRequest(SamplingFields):
    """`POST /v1/chat/completions`."""

    _native: Native | None = PrivateAttr(default=None)

    messages: Annotated[list[ChatMessage], Field(min_length=1)]
    max_completion_tokens: Annotated[int, Field(ge=1, le=INT64_MAX)] | None = None
    logprobs: bool | None = None
    top_logprobs: Annotated[int, Field(ge=0, le=20)] | None = None
    response_format: ResponseFormat | None = None
    tools: list[Tool] | None = None
    tool_choice: Literal["none", "auto", "required"] | dict[str, Any] | None = None
    parallel_tool_calls: bool | None = None
    reasoning_effort: Literal["none", "minimal", "low", "medium", "high", "xhigh"] | None = None
    # vLLM's: the answer continues the last (assistant) message, as Anthropic's prefill does; only the
    # local engine takes it (never sent to an OpenAI-compatible provider: OpenAI's API has no such field).
    continue_final_message: bool | None = None

    @model_validator(mode="after")
    def _top_logprobs_need_logprobs(self) -> ChatCompletionRequest:
        if self.top_logprobs is not None and not self.logprobs:
            raise ValueError("'top_logprobs' requires 'logprobs' to be true")
        return self

    @field_validator("tool_choice")
    @classmethod
    def _names_a_tool_it_has(cls, value: Any, info: ValidationInfo) -> Any:
        """A choice that makes the model call a tool needs one to call: `required`, or a named function that
        is in `tools` (each was a 200 with plain text, the choice silently dropped; `auto`/`none` need none)."""
        tools = info.data.get("tools") or []
        if value == "required" and not tools:
            raise ValueError("'required' needs 'tools' to choose from")
        function = value.get("function") if isinstance(value, dict) else None
        name = function.get("name") if isinstance(function, dict) else None
        if isinstance(name, str) and name not in {t.function.name for t in tools}:
            raise ValueError(f"function '{name}' is not in 'tools'")
        return value

    @field_validator("continue_final_message")
    @classmethod
    def _continues_an_assistant_message(cls, value: bool | None, info: ValidationInfo) -> bool | None:
        messages = info.data.get("messages")
        if value and messages and messages[-1].role != "assistant":
            raise ValueError("it needs the last message to be the assistant's")
        return value

    def output_limit(self) -> int | None:
        return self.max_completion_tokens or self.max_tokens

    def native(self) -> Native | None:
        """The client's own request, where it came in another wire format (a provider speaking that
        format sends it rather than a translation). Private: in no dump, so in no cache key by itself.
        (Read from pydantic's private store straight: `self._native` goes through `BaseModel.__getattr__`,
        and this is asked several times of every request.)"""
        private = self.__pydantic_private__
        return private.get("_native") if private else None

    def carrying(self, native: Native) -> ChatCompletionRequest:
        """This request, carrying the client's own `native` one (copies keep it: `model_copy`)."""
        self._native = native
        return self


class CompletionRequest(SamplingFields):
    """`POST /v1/completions` (the legacy text completion API)."""

    prompt: str | list[str] | list[TokenId] | list[list[TokenId]]
    logprobs: Annotated[int, Field(ge=0, le=5)] | None = None
    echo: bool = False
    suffix: str | None = None
    best_of: Annotated[int, Field(ge=1, le=20)] | None = None

    @model_validator(mode="after")
    def _checks(self) -> CompletionRequest:
        if self.best_of is not None and self.best_of != self.n:
            raise ValueError("'best_of' different from 'n' is not supported")
        if isinstance(self.prompt, list) and len(self.prompt) == 0:
            raise ValueError("'prompt' must not be empty")
        return self

    def prompts(self) -> list[str] | list[list[int]]:
        """The prompt as a list of prompts (text, or token ids)."""
        return _as_batch(self.prompt)


def _as_batch(value: str | list[str] | list[int] | list[list[int]]) -> list[str] | list[list[int]]:
    """One text, one token list, or a list of either -> a list of prompts."""
    if isinstance(value, str):
        return [value]
    if all(isinstance(x, int) for x in value):
        return [cast(list[int], value)]
    return cast(list[str] | list[list[int]], list(value))


class EmbeddingRequest(BaseModel):
    """`POST /v1/embeddings`."""

    model_config = ConfigDict(extra="allow")
    model: str
    input: (
        Annotated[str, Field(min_length=1)]
        | Annotated[list[str], Field(min_length=1)]
        | Annotated[list[TokenId], Field(min_length=1)]
        | Annotated[list[list[TokenId]], Field(min_length=1)]
    )
    encoding_format: Literal["float", "base64"] = "float"
    dimensions: Annotated[int, Field(ge=1, le=INT64_MAX)] | None = None
    user: str | None = None

    def inputs(self) -> list[str] | list[list[int]]:
        return _as_batch(self.input)


# -------------------------------------------------------------------------- responses


class PromptTokensDetails(WireModel):
    cached_tokens: int = 0  # read from the provider's prompt cache
    cache_write_tokens: int | None = None  # written to it (Anthropic's cache_creation_input_tokens; billed)


class CompletionTokensDetails(WireModel):
    reasoning_tokens: int = 0


class Usage(WireModel):
    prompt_tokens: int = 0
    completion_tokens: int = 0
    total_tokens: int = 0
    prompt_tokens_details: PromptTokensDetails | None = None
    completion_tokens_details: CompletionTokensDetails | None = None  # reasoning tokens, counted in completion

    @property
    def reasoning_tokens(self) -> int:
        return self.completion_tokens_details.reasoning_tokens if self.completion_tokens_details else 0

    def __add__(self, other: Usage) -> Usage:
        return Usage(
            prompt_tokens=self.prompt_tokens + other.prompt_tokens,
            completion_tokens=self.completion_tokens + other.completion_tokens,
            total_tokens=self.total_tokens + other.total_tokens,
        )


class TopLogprob(WireModel):
    always = frozenset({"bytes"})
    token: str
    logprob: float
    bytes: list[int] | None = None


class TokenLogprob(WireModel):
    always = frozenset({"bytes"})
    token: str
    logprob: float
    bytes: list[int] | None = None
    top_logprobs: list[TopLogprob] = Field(default_factory=list)


class ChoiceLogprobs(WireModel):
    always = frozenset({"content", "refusal"})
    content: list[TokenLogprob] | None = None
    refusal: list[TokenLogprob] | None = None


class ToolCallFunctionDelta(WireModel):
    name: str | None = None
    arguments: str | None = None


class ToolCallDelta(WireModel):
    index: int
    id: str | None = None
    type: Literal["function"] | None = None
    function: ToolCallFunctionDelta | None = None


# A reasoning model's reasoning: `reasoning_content` (DeepSeek, vLLM, LiteLLM) or `reasoning` (OpenRouter)
# from a provider; `reasoning_content` to clients. Anthropic's thinking also has a signature (and may be
# redacted): carried beside it, so the Messages door can hand a client back blocks it can send again.
_REASONING = AliasChoices("reasoning_content", "reasoning")


class ChunkDelta(WireModel):
    role: Literal["assistant"] | None = None
    content: str | None = None
    reasoning_content: str | None = Field(default=None, validation_alias=_REASONING)
    reasoning_signature: str | None = None
    redacted_reasoning: str | None = None
    refusal: str | None = None
    tool_calls: list[ToolCallDelta] | None = None

    def reasoning_started(self) -> bool:
        return bool(self.reasoning_content or self.reasoning_signature or self.redacted_reasoning)


# Providers' own stop reasons, as OpenAI names them.
_FINISH_ALIASES = {
    "eos": "stop",
    "end_turn": "stop",
    "stop_sequence": "stop",
    "max_tokens": "length",
    "tool_use": "tool_calls",
    "model_length": "length",
    "error": "stop",
}
_FINISH = frozenset({"stop", "length", "tool_calls", "content_filter", "function_call"})


def _finish_reason(value: object) -> object:
    if value is None or value in _FINISH:
        return value
    return _FINISH_ALIASES.get(str(value), "stop")


class ChunkChoice(WireModel):
    always = frozenset({"finish_reason"})
    index: int
    delta: ChunkDelta
    finish_reason: Annotated[FinishReason | None, BeforeValidator(_finish_reason)] = None
    logprobs: ChoiceLogprobs | None = None
    # vLLM's: the stop sequence (or stop token id) that ended the choice; Anthropic's `stop_sequence`.
    stop_reason: str | int | None = None


class ChatCompletionChunk(WireModel):
    """One streamed chunk of a chat completion."""

    id: str
    object: Literal["chat.completion.chunk"] = "chat.completion.chunk"
    created: int
    model: str
    choices: list[ChunkChoice]
    usage: Usage | None = None
    system_fingerprint: str | None = None

    @property
    def prompt_usage(self) -> Usage | None:
        """The prompt's count, where a route says it at its first chunk (`OpeningChunk`)."""
        return None


class OpeningChunk(ChatCompletionChunk):
    """A route's first chunk, carrying the prompt's count where the route knows it at the start (the local
    engine, Anthropic's `message_start`; OpenAI says it only at the end), never sent. A subclass: a private
    attribute costs every chunk validated from a provider's bytes a step more."""

    _prompt_usage: Usage | None = PrivateAttr(default=None)

    @property
    def prompt_usage(self) -> Usage | None:
        return self._prompt_usage

    def with_prompt_usage(self, usage: Usage | None) -> OpeningChunk:
        self._prompt_usage = usage
        return self


class AssistantMessage(WireModel):
    always = frozenset({"content", "refusal"})
    role: Literal["assistant"] = "assistant"
    content: str | None = None
    reasoning_content: str | None = Field(default=None, validation_alias=_REASONING)
    reasoning_signature: str | None = None
    redacted_reasoning: str | None = None
    refusal: str | None = None
    tool_calls: list[ToolCall] | None = None


class ChatChoice(WireModel):
    always = frozenset({"logprobs", "finish_reason"})
    index: int
    message: AssistantMessage
    finish_reason: FinishReason | None = None
    logprobs: ChoiceLogprobs | None = None
    stop_reason: str | int | None = None  # as `ChunkChoice.stop_reason`


class ChatCompletion(WireModel):
    """A whole (non-streamed) chat completion."""

    id: str
    object: Literal["chat.completion"] = "chat.completion"
    created: int
    model: str
    choices: list[ChatChoice]
    usage: Usage | None = None
    system_fingerprint: str | None = None


class CompletionLogprobs(WireModel):
    tokens: list[str] = Field(default_factory=list)
    token_logprobs: list[float] = Field(default_factory=list)
    top_logprobs: list[dict[str, float]] = Field(default_factory=list)
    text_offset: list[int] = Field(default_factory=list)


class CompletionChoice(WireModel):
    always = frozenset({"logprobs", "finish_reason"})
    index: int
    text: str
    finish_reason: Annotated[Literal["stop", "length", "content_filter"] | None, BeforeValidator(_finish_reason)] = None
    logprobs: CompletionLogprobs | None = None


class CompletionChunk(WireModel):
    """A text completion; streamed chunks and whole responses share this shape."""

    id: str
    object: Literal["text_completion"] = "text_completion"
    created: int
    model: str
    choices: list[CompletionChoice]
    usage: Usage | None = None
    system_fingerprint: str | None = None


class EmbeddingData(WireModel):
    object: Literal["embedding"] = "embedding"
    index: int
    embedding: list[float] | str


class EmbeddingUsage(WireModel):
    prompt_tokens: int
    total_tokens: int


class EmbeddingResponse(WireModel):
    object: Literal["list"] = "list"
    data: list[EmbeddingData]
    model: str
    usage: EmbeddingUsage


class ModelCard(WireModel):
    id: str
    object: Literal["model"] = "model"
    created: int
    owned_by: str


class ModelList(WireModel):
    object: Literal["list"] = "list"
    data: list[ModelCard]
