"""One request as the flow sees it, whatever front door it came in by.

A front door parses its wire format into a `Call`: what kind of work it is
(`Kind`: chat, completion, embedding), the validated body, the routing
headers, the request's tab (its account: key, reservation, usage, timings)
and the tenant whose cache entries and flights it may share. The flow
(`orchestrator.pipeline`) answers it; the front door encodes the answer back.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable, Mapping
from contextvars import ContextVar
from dataclasses import dataclass, field, replace
from typing import Any, Literal

from orchestrator.accounting.accounts import Tab
from orchestrator.caching.cache import Entry, fresh_chat, fresh_completion, replay_chat, replay_completion
from orchestrator.protocol import ChatCompletionChunk, ChatCompletionRequest, CompletionChunk
from orchestrator.scheduling.capabilities import Feature, Task, chat_needs
from orchestrator.streams import ChatFold, CompletionFold, Fold, assemble


def _chat_started(chunk: ChatCompletionChunk) -> bool:
    """Its first output: content, a tool call, a refusal, a finish, or a reasoning model's first reasoning
    (which may run for many seconds before the content: the client sees it as it comes, and a route that
    is reasoning has answered within its first-token timeout)."""
    return any(
        c.delta.content or c.delta.tool_calls or c.delta.refusal or c.finish_reason or c.delta.reasoning_started()
        for c in chunk.choices
    )


def _completion_started(chunk: CompletionChunk) -> bool:
    return any(c.text or c.finish_reason for c in chunk.choices)


@dataclass(frozen=True)
class Kind:
    """What differs between kinds of work along the flow. Generations stream chunks (`started`
    says which chunk is the first content; `fold` makes what folds a whole answer chunk by chunk,
    `assemble` folds a stream with it; `replay` and `fresh` turn a cache entry back into a stream or
    an answer); embeddings answer whole and aren't cached."""

    name: Literal["chat", "completion", "embedding"]
    task: Task
    started: Callable[[Any], bool] | None = None
    replay: Callable[[Entry], AsyncIterator[Any]] | None = None
    fresh: Callable[[Entry], Any] | None = None
    fold: Callable[[], Fold[Any, Any]] | None = None

    @property
    def streams(self) -> bool:
        return self.started is not None

    async def assemble(self, chunks: AsyncIterator[Any]) -> Any:
        """`chunks` folded into one whole answer."""
        assert self.fold is not None
        return await assemble(self.fold(), chunks)


# The tenant of the call the current task serves (`Pipeline.serve` sets it), read where a local engine
# request is made: the engine queues tenants fairly (local_models/fairness.py).
ASKING: ContextVar[str] = ContextVar("asking", default="open")


CHAT = Kind("chat", "chat", _chat_started, replay_chat, fresh_chat, ChatFold)
COMPLETION = Kind("completion", "completions", _completion_started, replay_completion, fresh_completion, CompletionFold)
EMBEDDING = Kind("embedding", "embeddings")


@dataclass(frozen=True)
class Call:
    """A validated request, its routing headers, its tab and its tenant."""

    kind: Kind
    body: Any  # ChatCompletionRequest | CompletionRequest | EmbeddingRequest
    headers: Mapping[str, str] = field(default_factory=dict)
    tab: Tab = field(default_factory=Tab.detached)
    tenant: str = "open"  # whose cache entries and flights it may share
    origin: Any = None  # the front door's own request, when it isn't `body` (for its encoding)
    # Its oldest turns may go to fit a route's context, all but this many of its newest (Responses' truncation
    # "auto": its last turn; a compaction: the conversation's last turn and the request for its summary).
    keep_turns: int | None = None

    @property
    def stream(self) -> bool:
        return bool(getattr(self.body, "stream", False))

    @property
    def model(self) -> str:
        return str(self.body.model)

    def needs(self) -> set[Feature]:
        """The features it can't be served without."""
        return chat_needs(self.body) if isinstance(self.body, ChatCompletionRequest) else set()

    def on(self, model: str) -> Call:
        """The same call for another model (a soft-limit downgrade)."""
        return replace(self, body=self.body.model_copy(update={"model": model}))
