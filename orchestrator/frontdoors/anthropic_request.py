"""Anthropic's Messages request, inbound: validated, checked, and translated into the chat request the flow answers.

A body is validated against pydantic models of Anthropic's request
(`MessagesRequest`; `TokenCountRequest` for `count_tokens`, which has no
`max_tokens`) and translated into an OpenAI chat request (`to_chat`), so it is
resolved, admitted, cached, spilled and billed like any chat request. The chat
request carries the client's own body (`protocol.Native`): an Anthropic route
sends that as it is (`providers.anthropic.messages_body`), so nothing is lost
to a double translation, and the cache keys on it.

Decisions, where the two APIs differ (they matter to routes that are not Anthropic's):

- blocks and tools are `anthropic_content`'s: any the API takes is accepted
  and reaches an Anthropic route as sent; what has no OpenAI translation (a
  PDF, a server tool, …) is named in `Native.untranslated`, so only an
  Anthropic route serves the request (a 400 naming the field where the model
  has none).
- `system` (a string or text blocks, joined with blank lines) is the first
  message; a `system` message among the turns (the mid-conversation system
  messages of the beta `mid-conversation-system-2026-04-07`, which Claude Code
  sends for every model it doesn't know as an older one: a gateway's aliases)
  is a system message where it stands; a user turn's `tool_result` blocks become `tool` messages ahead of
  the rest of the turn; an assistant turn's `tool_use` blocks become its
  `tool_calls`; thinking blocks in the history are dropped.
- structured output (`output_config.format`, or `output_format` under its
  beta) is OpenAI's strict `response_format` `json_schema`, so every route
  answers JSON valid for the schema (the local model through vLLM's
  structured output) and a route that can't is skipped, as on OpenAI's door.
- `top_k`, `thinking` and `cache_control` have no OpenAI equivalent and reach
  only Anthropic routes; `metadata.user_id` is OpenAI's `user`;
  `stop_sequences` is OpenAI's `stop`, as many as Anthropic takes (no cap is
  documented; ours is `MAX_ANTHROPIC_STOPS`, 256): more than OpenAI's 4 go to
  routes that take them (the local engine, Anthropic's API; the feature
  `many_stops`), a 400 naming the field where the model has none.
- the gateway's own `cache` body field (as on OpenAI's routes) is read by the
  gateway and never sent on.
- `anthropic-version` (`check_version`): the versions whose Messages wire
  format this gateway speaks, `VERSIONS` (2023-06-01, the one Anthropic
  documents; 2023-01-01, which differs only in the legacy Text Completions
  stream; 2026-10-21, what the anthropic SDK 2.x sends, whose own types read
  these answers: the SDK tests show it). A malformed or other version is a 400
  naming the header. An absent header is taken as 2023-06-01: Anthropic
  requires one, but a curl user who leaves it out would get the same answer
  either way. Anthropic routes are always sent the provider's configured
  version (the answers are read as that version's).
- `anthropic-beta` (`betas`): the betas the client's body may need
  (Claude Code's `context_management`, `output_config`, mid-conversation
  system messages, …) go with that body to an Anthropic route; `oauth-…`
  ones are not sent on (the gateway authenticates with its own API key).
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping
from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from orchestrator.errors import InvalidRequest
from orchestrator.frontdoors.anthropic_content import (
    Block,
    Parts,
    ServerTool,
    TextBlock,
    Tool,
    ToolResultBlock,
    ToolUseBlock,
)
from orchestrator.frontdoors.openai import validation_error
from orchestrator.protocol import ANTHROPIC_MESSAGES, MAX_STOPS, ChatCompletionRequest, Native

VERSION_HEADER = "anthropic-version"
BETA_HEADER = "anthropic-beta"
VERSION = "2023-06-01"  # what an absent header means
VERSIONS = frozenset({"2023-01-01", VERSION, "2026-10-21"})
_DATE = re.compile(r"\d{4}-\d{2}-\d{2}")
# Anthropic documents no cap on `stop_sequences`; ours, far above what clients send: the local engine checks every
# one at every token of every answer, so a request with 100,000 would slow the engine for every client.
MAX_ANTHROPIC_STOPS = 256
GATEWAY_FIELDS = frozenset({"cache"})  # body fields the gateway reads and never sends on

# --------------------------------------------------------------------------- request models


class _Wire(BaseModel):
    model_config = ConfigDict(extra="allow")


class Message(_Wire):
    role: Literal["user", "assistant", "system"]
    content: str | list[Block]


class ToolChoice(_Wire):
    type: Literal["auto", "any", "tool", "none"]
    name: str | None = None
    disable_parallel_tool_use: bool | None = None

    @model_validator(mode="after")
    def _name_for_tool(self) -> ToolChoice:
        if self.type == "tool" and not self.name:
            raise ValueError("a tool_choice of type 'tool' needs 'name'")
        return self


class RequestMetadata(_Wire):
    user_id: str | None = None


class OutputFormat(_Wire):
    """Structured output: the answer's text is JSON valid for `schema`."""

    type: Literal["json_schema"]
    schema_: dict[str, Any] = Field(alias="schema")


class OutputConfig(_Wire):
    format: OutputFormat | None = None


class MessagesRequest(_Wire):
    """`POST /v1/messages`: the fields the gateway serves; others are accepted and ignored."""

    model: Annotated[str, Field(min_length=1)]
    max_tokens: Annotated[int, Field(ge=1)]
    messages: Annotated[list[Message], Field(min_length=1)]
    system: str | list[TextBlock] | None = None
    stop_sequences: Annotated[list[str], Field(max_length=MAX_ANTHROPIC_STOPS)] | None = None
    temperature: Annotated[float, Field(ge=0, le=1)] | None = None
    top_p: Annotated[float, Field(ge=0, le=1)] | None = None
    top_k: Annotated[int, Field(ge=0)] | None = None
    metadata: RequestMetadata | None = None
    stream: bool = False
    tools: list[Tool] | None = None
    tool_choice: ToolChoice | None = None
    output_config: OutputConfig | None = None
    output_format: OutputFormat | None = None  # `output_config.format` under its beta (structured-outputs-2025-11-13)

    @model_validator(mode="after")
    def _a_turn_besides_system_messages(self) -> MessagesRequest:
        if all(m.role == "system" for m in self.messages):
            raise ValueError("'messages' needs a user or assistant turn besides system messages")
        return self

    @model_validator(mode="after")
    def _a_forced_tool_needs_tools(self) -> MessagesRequest:
        choice = self.tool_choice
        if choice is not None and choice.type in ("any", "tool") and not self.tools:
            raise ValueError(f"tool_choice of type '{choice.type}' needs 'tools' to choose from")
        return self


class TokenCountRequest(MessagesRequest):
    """`POST /v1/messages/count_tokens`: a Messages request without `max_tokens`."""

    max_tokens: Annotated[int, Field(ge=1)] | None = None  # type: ignore[assignment]


# --------------------------------------------------------------------------- headers


def check_version(headers: Mapping[str, str]) -> None:
    """An `InvalidRequest` naming the header unless it is absent or one of `VERSIONS` (see the module docstring)."""
    version = headers.get(VERSION_HEADER)
    if version is None or version.strip() in VERSIONS:
        return
    shown = json.dumps(version[:64])
    what = "is not a version this gateway knows" if _DATE.fullmatch(version.strip()) else "is not a valid version"
    raise InvalidRequest(
        f"{VERSION_HEADER}: {shown} {what}; use one of {', '.join(sorted(VERSIONS))} (or leave the header out).",
        param=VERSION_HEADER,
        code="invalid_version",
    )


def betas(headers: Mapping[str, str]) -> tuple[str, ...]:
    """The betas the client asked for (`anthropic-beta`, comma-separated), as an Anthropic route is sent them:
    each once, in order, without the OAuth ones (which would have the route refuse the gateway's API key)."""
    named = (b.strip() for b in headers.get(BETA_HEADER, "").split(","))
    return tuple(dict.fromkeys(b for b in named if b and not b.startswith("oauth-")))


# --------------------------------------------------------------------------- request -> chat


def to_chat(request: MessagesRequest, betas: tuple[str, ...] = ()) -> ChatCompletionRequest:
    """The OpenAI chat request that asks the same as `request`, carrying the client's own body (and, naming
    their fields, the blocks and tools only an Anthropic route can take: `anthropic_content`) and `betas`."""
    body: dict[str, Any] = {"model": request.model, "max_tokens": request.max_tokens, "stream": request.stream}
    extra = request.model_extra or {}
    body.update({name: extra[name] for name in GATEWAY_FIELDS if name in extra})
    parts = Parts()
    turns = [m for i, message in enumerate(request.messages) for m in _messages(message, f"messages[{i}]", parts)]
    body["messages"] = _system(request.system) + turns
    for name in ("temperature", "top_p"):
        if (value := getattr(request, name)) is not None:
            body[name] = value
    stops = request.stop_sequences or []
    if 0 < len(stops) <= MAX_STOPS:
        body["stop"] = stops
    if request.metadata is not None and request.metadata.user_id:
        body["user"] = request.metadata.user_id
    body.update(_tool_fields(request, parts))
    body.update(_output_fields(request))
    if request.messages and request.messages[-1].role == "assistant":
        body["continue_final_message"] = True  # a prefill: the answer continues it (the local engine does)
    try:
        chat = ChatCompletionRequest.model_validate(body)
    except ValidationError as e:
        raise validation_error(e) from None
    if len(stops) > MAX_STOPS:  # past OpenAI's cap on `stop`, which its door holds the chat request to
        chat = chat.model_copy(update={"stop": list(stops)})
    return chat.carrying(Native(ANTHROPIC_MESSAGES, native_body(request), tuple(parts.untranslated), betas))


def native_body(request: MessagesRequest) -> dict[str, Any]:
    """The body as the client sent it (its fields and blocks, unknown ones too), less the gateway's own."""
    body = request.model_dump(exclude_unset=True, by_alias=True)
    return {k: v for k, v in body.items() if k not in GATEWAY_FIELDS}


def _system(system: str | list[TextBlock] | None) -> list[dict[str, Any]]:
    text = system if isinstance(system, str) else "\n\n".join(b.text for b in system or [])
    return [{"role": "system", "content": text}] if text else []


def _messages(message: Message, param: str, parts: Parts) -> list[dict[str, Any]]:
    """One Anthropic turn as OpenAI messages: tool results first (as `tool` messages), then the turn."""
    if isinstance(message.content, str):
        return [{"role": message.role, "content": message.content}]
    if message.role == "system":
        return [_system_message(message.content, f"{param}.content", parts)]
    if message.role == "assistant":
        return [_assistant(message.content, f"{param}.content", parts)]
    results: list[dict[str, Any]] = []
    content: list[dict[str, Any]] = []
    lost = len(parts.untranslated)
    for j, block in enumerate(message.content):
        if isinstance(block, ToolResultBlock):
            results.append(_tool_message(block, f"{param}.content[{j}]", parts))
        elif isinstance(block, ToolUseBlock):
            parts.lose(f"{param}.content[{j}]", "a tool_use block in a user turn")
        else:
            content.extend(parts.part(block, f"{param}.content[{j}]"))
    if not content and not results and len(parts.untranslated) > lost:
        content = [{"type": "text", "text": ""}]  # the turn keeps its place, for the count (no other route serves it)
    return results + ([{"role": "user", "content": content}] if content else [])


def _system_message(blocks: list[Any], param: str, parts: Parts) -> dict[str, Any]:
    """A mid-conversation system message: its text blocks, joined as the top-level `system`'s are."""
    for j, block in enumerate(blocks):
        if not isinstance(block, TextBlock):
            parts.lose(f"{param}[{j}]", f"a '{block.type}' block in a system message")
    return {"role": "system", "content": "\n\n".join(b.text for b in blocks if isinstance(b, TextBlock))}


def _assistant(blocks: list[Any], param: str, parts: Parts) -> dict[str, Any]:
    text = "".join(b.text for b in blocks if isinstance(b, TextBlock))
    calls = [
        {"id": b.id, "type": "function", "function": {"name": b.name, "arguments": json.dumps(b.input)}}
        for b in blocks
        if isinstance(b, ToolUseBlock)
    ]
    for j, block in enumerate(blocks):  # thinking is the route's own, and left out; the rest has no translation
        if not isinstance(block, TextBlock | ToolUseBlock) and block.type not in ("thinking", "redacted_thinking"):
            parts.lose(f"{param}[{j}]", f"a '{block.type}' block")
    return {"role": "assistant", "content": text or None, **({"tool_calls": calls} if calls else {})}


def _tool_message(block: ToolResultBlock, param: str, parts: Parts) -> dict[str, Any]:
    """A tool result as OpenAI's tool message; one with `is_error` (which OpenAI's has no field for) says
    so in its text, so the model still knows the call failed."""
    content: str | list[dict[str, Any]] = block.content if isinstance(block.content, str) else ""
    if isinstance(block.content, list):
        translated = parts.parts(block.content, f"{param}.content")
        texts = [p["text"] for p in translated if p["type"] == "text"]
        content = "\n".join(texts) if len(texts) == len(translated) else translated
    if block.is_error:
        if isinstance(content, str):
            content = f"Error: {content}" if content else "Error"
        else:
            content = [{"type": "text", "text": "Error:"}, *content]
    return {"role": "tool", "tool_call_id": block.tool_use_id, "content": content}


def _tool_fields(request: MessagesRequest, parts: Parts) -> dict[str, Any]:
    fields: dict[str, Any] = {}
    translated = [parts.tool(tool, f"tools[{i}]") for i, tool in enumerate(request.tools or [])]
    tools = [t for t in translated if t is not None]
    if tools:
        fields["tools"] = tools
    choice = request.tool_choice
    servers = {t.name for t in request.tools or [] if isinstance(t, ServerTool)}
    if choice is not None and not (choice.type == "tool" and choice.name in servers):  # that one is untranslated
        simple = {"auto": "auto", "any": "required", "none": "none"}
        fields["tool_choice"] = simple.get(choice.type) or {"type": "function", "function": {"name": choice.name}}
        if choice.disable_parallel_tool_use and tools:
            fields["parallel_tool_calls"] = False
    return fields


def _output_fields(request: MessagesRequest) -> dict[str, Any]:
    """Structured output as OpenAI's strict `response_format` (see the module docstring)."""
    output = (request.output_config.format if request.output_config else None) or request.output_format
    if output is None:
        return {}
    return {
        "response_format": {
            "type": "json_schema",
            "json_schema": {"name": "output", "schema": output.schema_, "strict": True},
        }
    }
