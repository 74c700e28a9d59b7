"""`truncation`: which turns of a chat go first, and how few."""

from __future__ import annotations

from typing import Any

from orchestrator.protocol import ChatCompletionRequest
from orchestrator.truncation import fitted, turns, without_oldest

CALL = {"id": "c1", "type": "function", "function": {"name": "f", "arguments": "{}"}}


def chat(*messages: dict[str, Any]) -> ChatCompletionRequest:
    return ChatCompletionRequest.model_validate({"model": "m", "messages": list(messages)})


CONVERSATION = chat(
    {"role": "system", "content": "s"},
    {"role": "user", "content": "u1"},
    {"role": "assistant", "content": None, "tool_calls": [CALL]},
    {"role": "tool", "tool_call_id": "c1", "content": "out"},
    {"role": "developer", "content": "d"},
    {"role": "assistant", "content": "a1"},
    {"role": "user", "content": "u2"},
)


def test_a_call_and_its_output_are_one_turn_and_instructions_none() -> None:
    assert turns(CONVERSATION.messages) == [[1], [2, 3], [5], [6]]


def test_without_oldest_keeps_the_instructions() -> None:
    kept = without_oldest(CONVERSATION, 2).messages
    assert [(m.role, m.content) for m in kept] == [
        ("system", "s"),
        ("developer", "d"),
        ("assistant", "a1"),
        ("user", "u2"),
    ]


async def test_fitted_drops_as_few_turns_as_fit() -> None:
    asked: list[int] = []

    async def fits(request: ChatCompletionRequest) -> bool:
        asked.append(len(request.messages))
        return len(request.messages) <= 4

    assert [m.role for m in (await fitted(CONVERSATION, fits)).messages] == ["system", "developer", "assistant", "user"]
    assert len(asked) <= 3  # a binary search, not one count per turn


async def test_fitted_leaves_a_request_that_fits_and_keeps_the_last_turn_when_nothing_does() -> None:
    async def always(request: ChatCompletionRequest) -> bool:
        return True

    async def never(request: ChatCompletionRequest) -> bool:
        return False

    assert await fitted(CONVERSATION, always) is CONVERSATION
    assert [m.role for m in (await fitted(CONVERSATION, never)).messages] == ["system", "developer", "user"]


async def test_a_request_for_a_summary_keeps_the_conversations_last_turn_with_it() -> None:
    """A compaction asks for its summary in a turn of its own: with the last turn alone kept, a conversation whose
    last turn didn't fit lost every turn, and the model summarized nothing."""
    summary = chat(*CONVERSATION.model_dump(exclude_none=True)["messages"], {"role": "user", "content": "summarize"})

    async def fits_three(request: ChatCompletionRequest) -> bool:
        return len(request.messages) <= 5

    async def never(request: ChatCompletionRequest) -> bool:
        return False

    kept = (await fitted(summary, fits_three, keep=2)).messages
    assert [(m.role, m.content) for m in kept][-2:] == [("user", "u2"), ("user", "summarize")]
    nothing_fits = (await fitted(summary, never, keep=2)).messages  # its routes then say it is too long
    assert [m.content for m in nothing_fits] == ["s", "d", "u2", "summarize"]
