"""Folding chunk streams into whole responses, and committing a stream."""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterable
from typing import Any, TypeVar

import pytest

from orchestrator.errors import EngineError, UpstreamError
from orchestrator.protocol import (
    ChatCompletionChunk,
    ChoiceLogprobs,
    ChunkChoice,
    ChunkDelta,
    CompletionChoice,
    CompletionChunk,
    CompletionLogprobs,
    TokenLogprob,
    ToolCallDelta,
    ToolCallFunctionDelta,
    Usage,
)
from orchestrator.streams import assemble_chat, assemble_completion

T = TypeVar("T")


async def aiter_of(items: Iterable[T], error: BaseException | None = None) -> AsyncIterator[T]:
    for item in items:
        yield item
    if error is not None:
        raise error


def chunk(*choices: ChunkChoice, usage: Usage | None = None) -> ChatCompletionChunk:
    return ChatCompletionChunk(id="chatcmpl-1", created=7, model="m", choices=list(choices), usage=usage)


def text(index: int, content: str, finish: str | None = None, logprob: float | None = None) -> ChunkChoice:
    lp = None
    if logprob is not None:
        lp = ChoiceLogprobs(content=[TokenLogprob(token=content, logprob=logprob, bytes=list(content.encode()))])
    return ChunkChoice(index=index, delta=ChunkDelta(content=content), finish_reason=finish, logprobs=lp)  # type: ignore[arg-type]


def role(index: int) -> ChunkChoice:
    return ChunkChoice(index=index, delta=ChunkDelta(role="assistant", content=""))


async def test_assemble_chat_two_choices_with_logprobs_and_usage() -> None:
    usage = Usage(prompt_tokens=3, completion_tokens=4, total_tokens=7)
    chunks = [
        chunk(role(0), role(1)),
        chunk(text(0, "Hel", logprob=-0.1), text(1, "Bye", logprob=-0.3)),
        chunk(text(1, "!", "stop", logprob=-0.4)),
        chunk(text(0, "lo", "length", logprob=-0.2)),
        chunk(usage=usage),
    ]
    result = await assemble_chat(aiter_of(chunks))
    assert (result.id, result.created, result.model, result.usage) == ("chatcmpl-1", 7, "m", usage)
    assert [c.index for c in result.choices] == [0, 1]
    first, second = result.choices
    assert (first.message.content, first.finish_reason) == ("Hello", "length")
    assert (second.message.content, second.finish_reason) == ("Bye!", "stop")
    assert first.logprobs is not None and first.logprobs.content is not None
    assert [(t.token, t.logprob) for t in first.logprobs.content] == [("Hel", -0.1), ("lo", -0.2)]
    assert second.logprobs is not None and second.logprobs.content is not None
    assert [t.token for t in second.logprobs.content] == ["Bye", "!"]


async def test_assemble_chat_without_logprobs_sends_null() -> None:
    result = await assemble_chat(aiter_of([chunk(role(0)), chunk(text(0, "ok", "stop"))]))
    body = result.model_dump(mode="json")
    assert body["choices"][0]["logprobs"] is None
    assert body["choices"][0]["message"] == {"role": "assistant", "content": "ok", "refusal": None}
    assert "usage" not in body


async def test_assemble_chat_joins_tool_call_deltas() -> None:
    def call(index: int, id: str | None = None, name: str | None = None, args: str | None = None) -> ChunkChoice:
        delta = ToolCallDelta(
            index=index,
            id=id,
            type="function" if id else None,
            function=ToolCallFunctionDelta(name=name, arguments=args),
        )
        return ChunkChoice(index=0, delta=ChunkDelta(tool_calls=[delta]))

    chunks = [
        chunk(role(0)),
        chunk(call(0, "call_a", "get_weather", "")),
        chunk(call(0, args='{"city": ')),
        chunk(call(1, "call_b", "get_time", "{}")),
        chunk(call(0, args='"Paris"}')),
        chunk(ChunkChoice(index=0, delta=ChunkDelta(), finish_reason="tool_calls")),
    ]
    result = await assemble_chat(aiter_of(chunks))
    choice = result.choices[0]
    assert choice.finish_reason == "tool_calls"
    assert choice.message.content is None
    assert choice.message.tool_calls is not None
    assert [(c.id, c.type, c.function.name, c.function.arguments) for c in choice.message.tool_calls] == [
        ("call_a", "function", "get_weather", '{"city": "Paris"}'),
        ("call_b", "function", "get_time", "{}"),
    ]
    message = result.model_dump(mode="json")["choices"][0]["message"]
    assert message["content"] is None and message["refusal"] is None


async def test_assemble_chat_of_nothing_is_an_upstream_error() -> None:
    with pytest.raises(UpstreamError, match="empty stream"):
        await assemble_chat(aiter_of([]))


async def test_assemble_chat_propagates_a_mid_stream_error() -> None:
    with pytest.raises(EngineError, match="died"):
        await assemble_chat(aiter_of([chunk(role(0))], EngineError("died")))


def completion_chunk(*choices: CompletionChoice, usage: Usage | None = None) -> CompletionChunk:
    return CompletionChunk(id="cmpl-1", created=9, model="m", choices=list(choices), usage=usage)


async def test_assemble_completion() -> None:
    def piece(index: int, text: str, offset: int, finish: str | None = None) -> CompletionChoice:
        lp = CompletionLogprobs(tokens=[text], token_logprobs=[-0.5], top_logprobs=[{text: -0.5}], text_offset=[offset])
        return CompletionChoice(index=index, text=text, finish_reason=finish, logprobs=lp)  # type: ignore[arg-type]

    usage = Usage(prompt_tokens=2, completion_tokens=3, total_tokens=5)
    chunks = [
        completion_chunk(piece(2, "x", 0), piece(0, "a", 0)),
        completion_chunk(piece(0, " b", 1, "stop")),
        completion_chunk(piece(2, "y", 1, "length")),
        completion_chunk(usage=usage),
    ]
    result = await assemble_completion(aiter_of(chunks))
    assert (result.id, result.created, result.model, result.usage) == ("cmpl-1", 9, "m", usage)
    assert [(c.index, c.text, c.finish_reason) for c in result.choices] == [(0, "a b", "stop"), (2, "xy", "length")]
    lp = result.choices[0].logprobs
    assert lp is not None
    assert (lp.tokens, lp.token_logprobs, lp.text_offset) == (["a", " b"], [-0.5, -0.5], [0, 1])
    assert lp.top_logprobs == [{"a": -0.5}, {" b": -0.5}]


async def test_assemble_completion_without_logprobs() -> None:
    result = await assemble_completion(
        aiter_of([completion_chunk(CompletionChoice(index=0, text="t", finish_reason="stop"))])
    )
    assert result.model_dump(mode="json")["choices"] == [
        {"index": 0, "text": "t", "finish_reason": "stop", "logprobs": None}
    ]


async def test_assemble_completion_of_nothing_is_an_upstream_error() -> None:
    with pytest.raises(UpstreamError):
        await assemble_completion(aiter_of([]))


async def test_a_legacy_function_call_and_annotations_are_folded_too() -> None:
    """A whole answer kept a `functions` call's finish reason but lost the call, and lost URL citations."""
    cite = {"type": "url_citation", "url_citation": {"url": "https://e.x", "start_index": 0, "end_index": 2}}

    def delta(index: int, **fields: Any) -> ChunkChoice:
        return ChunkChoice(index=index, delta=ChunkDelta.model_validate(fields))

    chunks = [
        chunk(delta(0, function_call={"name": "get", "arguments": ""})),
        chunk(delta(0, function_call={"arguments": '{"a":'})),
        chunk(delta(0, function_call={"arguments": "1}"})),
        chunk(ChunkChoice(index=0, delta=ChunkDelta(), finish_reason="function_call")),
        chunk(delta(1, content="Hi", annotations=[cite])),
    ]
    whole = (await assemble_chat(aiter_of(chunks))).model_dump(mode="json")
    call, cited = whole["choices"][0]["message"], whole["choices"][1]["message"]
    assert call["function_call"] == {"name": "get", "arguments": '{"a":1}'} and call["content"] is None
    assert cited["annotations"] == [cite] and cited["content"] == "Hi"
