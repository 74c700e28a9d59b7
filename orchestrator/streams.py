"""Assembling whole responses from chunk streams.

Every backend streams typed chunks. A non-stream response is the fold of
those chunks (`assemble_chat`, `assemble_completion`).
"""

from __future__ import annotations

from collections.abc import AsyncIterator

from orchestrator.errors import UpstreamError
from orchestrator.protocol import (
    AssistantMessage,
    ChatChoice,
    ChatCompletion,
    ChatCompletionChunk,
    ChoiceLogprobs,
    CompletionChoice,
    CompletionChunk,
    CompletionLogprobs,
    FunctionCall,
    ToolCall,
    Usage,
)


async def assemble_chat(chunks: AsyncIterator[ChatCompletionChunk]) -> ChatCompletion:
    """Fold a chunk stream into one `ChatCompletion`."""
    head: ChatCompletionChunk | None = None
    texts: dict[int, list[str]] = {}
    finish: dict[int, str | None] = {}
    logprobs: dict[int, ChoiceLogprobs] = {}
    calls: dict[int, dict[int, dict[str, str]]] = {}
    usage: Usage | None = None
    async for chunk in chunks:
        head = head or chunk
        usage = chunk.usage or usage
        for c in chunk.choices:
            texts.setdefault(c.index, [])
            if c.delta.content:
                texts[c.index].append(c.delta.content)
            if c.finish_reason is not None:
                finish[c.index] = c.finish_reason
            if c.logprobs is not None and c.logprobs.content:
                lp = logprobs.setdefault(c.index, ChoiceLogprobs(content=[]))
                assert lp.content is not None
                lp.content.extend(c.logprobs.content)
            for tc in c.delta.tool_calls or []:
                call = calls.setdefault(c.index, {}).setdefault(tc.index, {"id": "", "name": "", "arguments": ""})
                call["id"] = tc.id or call["id"]
                if tc.function is not None:
                    call["name"] += tc.function.name or ""
                    call["arguments"] += tc.function.arguments or ""
    if head is None:
        raise UpstreamError("The model returned an empty stream.")
    choices = [
        ChatChoice(
            index=i,
            message=AssistantMessage(
                content="".join(texts[i]) if texts[i] or i not in calls else None,
                tool_calls=[
                    ToolCall(id=c["id"], function=FunctionCall(name=c["name"], arguments=c["arguments"]))
                    for _, c in sorted(calls[i].items())
                ]
                if i in calls
                else None,
            ),
            finish_reason=finish.get(i),  # type: ignore[arg-type]
            logprobs=logprobs.get(i),
        )
        for i in sorted(texts)
    ]
    return ChatCompletion(
        id=head.id,
        created=head.created,
        model=head.model,
        choices=choices,
        usage=usage,
        system_fingerprint=head.system_fingerprint,
    )


async def assemble_completion(chunks: AsyncIterator[CompletionChunk]) -> CompletionChunk:
    """Fold a text-completion chunk stream into one response."""
    head: CompletionChunk | None = None
    texts: dict[int, list[str]] = {}
    finish: dict[int, str | None] = {}
    logprobs: dict[int, CompletionLogprobs] = {}
    usage: Usage | None = None
    async for chunk in chunks:
        head = head or chunk
        usage = chunk.usage or usage
        for c in chunk.choices:
            texts.setdefault(c.index, []).append(c.text)
            if c.finish_reason is not None:
                finish[c.index] = c.finish_reason
            if c.logprobs is not None:
                lp = logprobs.setdefault(c.index, CompletionLogprobs())
                lp.tokens.extend(c.logprobs.tokens)
                lp.token_logprobs.extend(c.logprobs.token_logprobs)
                lp.top_logprobs.extend(c.logprobs.top_logprobs)
                lp.text_offset.extend(c.logprobs.text_offset)
    if head is None:
        raise UpstreamError("The model returned an empty stream.")
    choices = [
        CompletionChoice(
            index=i,
            text="".join(texts[i]),
            finish_reason=finish.get(i),  # type: ignore[arg-type]
            logprobs=logprobs.get(i),
        )
        for i in sorted(texts)
    ]
    return CompletionChunk(
        id=head.id,
        created=head.created,
        model=head.model,
        choices=choices,
        usage=usage,
        system_fingerprint=head.system_fingerprint,
    )
