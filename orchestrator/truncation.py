"""Truncation (the Responses API's `truncation: "auto"`): a conversation too long for its routes
loses its oldest turns, as few as it must.

OpenAI drops items from the beginning of the conversation until the input fits the model's context.
Here the conversation is the chat request a front door made of it, and what goes is whole turns,
oldest first: a user message; an assistant message together with the tool messages that answer its
calls (so a `function_call` never goes without its `function_call_output`). System and developer
messages (the instructions) always stay, and so does the last turn: a request whose last turn alone
doesn't fit is still a 400 `context_length_exceeded`, as it is without truncation. A compaction's request
ends with the request for the summary, a turn of its own: the conversation's last turn stays with it
(`keep=2`), or a conversation whose last turn alone didn't fit lost every turn and was "summarized" from
nothing, a 200 whose compaction item stood for turns the model never read.

Whether a request fits is the caller's to say (`fits`: the router's counts against its routes'
contexts, `Pipeline._fits`); the fewest turns are found by a binary search over how many, one count
of the prompt per probe.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable

from orchestrator.protocol import ChatCompletionRequest, ChatMessage

_KEPT = ("system", "developer")  # the instructions
_ANSWERS = ("tool", "function")  # go with the assistant turn whose calls they answer


def turns(messages: list[ChatMessage]) -> list[list[int]]:
    """The indexes of the messages of each turn that may be dropped, oldest first."""
    out: list[list[int]] = []
    for i, message in enumerate(messages):
        if message.role in _KEPT:
            continue
        if message.role in _ANSWERS and out:
            out[-1].append(i)
        else:
            out.append([i])
    return out


def without_oldest(request: ChatCompletionRequest, n: int) -> ChatCompletionRequest:
    """`request` without its `n` oldest turns."""
    dropped = {i for turn in turns(request.messages)[:n] for i in turn}
    kept = [m for i, m in enumerate(request.messages) if i not in dropped]
    return request.model_copy(update={"messages": kept})


async def fitted(
    request: ChatCompletionRequest, fits: Callable[[ChatCompletionRequest], Awaitable[bool]], keep: int = 1
) -> ChatCompletionRequest:
    """`request` without as few of its oldest turns as make it fit, its newest `keep` turns always kept;
    without all but those where nothing fits (its routes then say it is too long); as it is where it fits
    already."""
    if await fits(request):
        return request
    fewest, most = 1, len(turns(request.messages)) - keep
    best = most
    while fewest <= most:
        middle = (fewest + most) // 2
        if await fits(without_oldest(request, middle)):
            best, most = middle, middle - 1
        else:
            fewest = middle + 1
    return without_oldest(request, max(best, 0))
