"""Assembling whole responses from chunk streams.

Every backend streams typed chunks. A non-stream response is the fold of
those chunks (`ChatFold`, `CompletionFold`: `add` each chunk, then `whole`;
`assemble_chat` and `assemble_completion` fold an async iterator).
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any, Protocol, TypeVar

from orchestrator.errors import UpstreamError
from orchestrator.protocol import (
    AssistantMessage,
    ChatChoice,
    ChatCompletion,
    ChatCompletionChunk,
    ChoiceLogprobs,
    ChunkDelta,
    CompletionChoice,
    CompletionChunk,
    CompletionLogprobs,
    FunctionCall,
    ToolCall,
    Usage,
)

C = TypeVar("C", contravariant=True)
W = TypeVar("W", covariant=True)


class Fold(Protocol[C, W]):
    """A whole answer as its chunks arrive: `add` each, then `whole`."""

    def add(self, chunk: C) -> None: ...

    def whole(self) -> W: ...


async def assemble(fold: Fold[C, W], chunks: AsyncIterator[C]) -> W:
    """`chunks` folded by `fold` into one response."""
    async for chunk in chunks:
        fold.add(chunk)
    return fold.whole()


async def assemble_chat(chunks: AsyncIterator[ChatCompletionChunk]) -> ChatCompletion:
    """Fold a chunk stream into one `ChatCompletion`."""
    return await assemble(ChatFold(), chunks)


class ChatFold:
    """A chat answer as its chunks arrive: each choice's text, refusal, finish, logprobs, tool calls, a legacy
    `function_call` and `annotations` (a provider's URL citations)."""

    def __init__(self) -> None:
        self.head: ChatCompletionChunk | None = None
        self.usage: Usage | None = None
        self.texts: dict[int, list[str]] = {}
        self.finish: dict[int, str | None] = {}
        self.logprobs: dict[int, ChoiceLogprobs] = {}
        self.calls: dict[int, dict[int, dict[str, str]]] = {}
        self.reasoning: dict[int, _Reasoning] = {}
        self.stops: dict[int, str | int] = {}  # the stop sequence (or token) that ended a choice, if said
        self.refusals: dict[int, list[str]] = {}
        self.extras: dict[int, dict[str, Any]] = {}  # `function_call` and `annotations`, folded

    def add(self, chunk: ChatCompletionChunk) -> None:
        self.head = self.head or chunk
        self.usage = chunk.usage or self.usage
        for c in chunk.choices:
            self.texts.setdefault(c.index, [])
            if c.delta.content:
                self.texts[c.index].append(c.delta.content)
            if c.delta.refusal:
                self.refusals.setdefault(c.index, []).append(c.delta.refusal)
            if c.delta.model_extra:
                self._extras(c.index, c.delta.model_extra)
            if c.delta.reasoning_started():
                self.reasoning.setdefault(c.index, _Reasoning()).add(c.delta)
            if c.finish_reason is not None:
                self.finish[c.index] = c.finish_reason
            if c.stop_reason is not None:
                self.stops[c.index] = c.stop_reason
            if c.logprobs is not None and (c.logprobs.content or c.logprobs.refusal):
                lp = self.logprobs.setdefault(c.index, ChoiceLogprobs(content=[]))
                assert lp.content is not None
                lp.content.extend(c.logprobs.content or [])
                if c.logprobs.refusal:
                    lp.refusal = [*(lp.refusal or []), *c.logprobs.refusal]
            for tc in c.delta.tool_calls or []:
                call = self.calls.setdefault(c.index, {}).setdefault(tc.index, {"id": "", "name": "", "arguments": ""})
                call["id"] = tc.id or call["id"]
                if tc.function is not None:
                    call["name"] += tc.function.name or ""
                    call["arguments"] += tc.function.arguments or ""

    def _extras(self, i: int, extra: dict[str, Any]) -> None:
        held = self.extras.setdefault(i, {})
        if isinstance(call := extra.get("function_call"), dict):
            f = held.setdefault("function_call", {"name": "", "arguments": ""})
            f["name"] += call.get("name") or ""
            f["arguments"] += call.get("arguments") or ""
        if isinstance(notes := extra.get("annotations"), list):
            held.setdefault("annotations", []).extend(notes)

    def whole(self) -> ChatCompletion:
        head = self.head
        if head is None:
            raise UpstreamError("The model returned an empty stream.")
        choices = [
            ChatChoice(
                index=i,
                message=self._message(i),
                finish_reason=self.finish.get(i),  # type: ignore[arg-type]
                logprobs=self.logprobs.get(i),
                stop_reason=self.stops.get(i),
            )
            for i in sorted(self.texts)
        ]
        return ChatCompletion(
            id=head.id,
            created=head.created,
            model=head.model,
            choices=choices,
            usage=self.usage,
            system_fingerprint=head.system_fingerprint,
        )

    def _message(self, i: int) -> AssistantMessage:
        refusal = "".join(self.refusals.get(i, ())) or None
        message = AssistantMessage(
            content=self._content(i), refusal=refusal, tool_calls=self._tool_calls(i), **self.extras.get(i, {})
        )
        if (reasoning := self.reasoning.get(i)) is not None:
            message.reasoning_content = "".join(reasoning.text) or None
            message.reasoning_signature = reasoning.signature or None
            message.redacted_reasoning = "".join(reasoning.redacted) or None
        return message

    def _content(self, i: int) -> str | None:
        """The text; None (as OpenAI sends it) for an answer that is only tool calls, a refusal or a function call."""
        if self.texts[i] or not (i in self.calls or i in self.refusals or "function_call" in self.extras.get(i, {})):
            return "".join(self.texts[i])
        return None

    def _tool_calls(self, i: int) -> list[ToolCall] | None:
        if i not in self.calls:
            return None
        return [
            ToolCall(id=c["id"], function=FunctionCall(name=c["name"], arguments=c["arguments"]))
            for _, c in sorted(self.calls[i].items())
        ]


class _Reasoning:
    """One choice's reasoning as it arrives: its text, signature and redacted parts."""

    def __init__(self) -> None:
        self.text: list[str] = []
        self.signature = ""
        self.redacted: list[str] = []

    def add(self, delta: ChunkDelta) -> None:
        self.text.append(delta.reasoning_content or "")
        self.signature += delta.reasoning_signature or ""
        self.redacted.append(delta.redacted_reasoning or "")


async def assemble_completion(chunks: AsyncIterator[CompletionChunk]) -> CompletionChunk:
    """Fold a text-completion chunk stream into one response."""
    return await assemble(CompletionFold(), chunks)


class CompletionFold:
    """A text completion as its chunks arrive: each choice's text, finish and logprobs."""

    def __init__(self) -> None:
        self.head: CompletionChunk | None = None
        self.usage: Usage | None = None
        self.texts: dict[int, list[str]] = {}
        self.finish: dict[int, str | None] = {}
        self.logprobs: dict[int, CompletionLogprobs] = {}

    def add(self, chunk: CompletionChunk) -> None:
        self.head = self.head or chunk
        self.usage = chunk.usage or self.usage
        for c in chunk.choices:
            self.texts.setdefault(c.index, []).append(c.text)
            if c.finish_reason is not None:
                self.finish[c.index] = c.finish_reason
            if c.logprobs is not None:
                lp = self.logprobs.setdefault(c.index, CompletionLogprobs())
                lp.tokens.extend(c.logprobs.tokens)
                lp.token_logprobs.extend(c.logprobs.token_logprobs)
                lp.top_logprobs.extend(c.logprobs.top_logprobs)
                lp.text_offset.extend(c.logprobs.text_offset)

    def whole(self) -> CompletionChunk:
        head = self.head
        if head is None:
            raise UpstreamError("The model returned an empty stream.")
        choices = [
            CompletionChoice(
                index=i,
                text="".join(self.texts[i]),
                finish_reason=self.finish.get(i),  # type: ignore[arg-type]
                logprobs=self.logprobs.get(i),
            )
            for i in sorted(self.texts)
        ]
        return CompletionChunk(
            id=head.id,
            created=head.created,
            model=head.model,
            choices=choices,
            usage=self.usage,
            system_fingerprint=head.system_fingerprint,
        )
