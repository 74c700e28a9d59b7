"""The provider seam: something that serves OpenAI requests for named models.

A provider streams typed chunks for a request, in batches: the chunks that came
together (one network read, one engine step) go on together, so that a stream
relayed to its client is one write a batch, not one a chunk (`ChunkStream`). It
never encodes SSE and never decides routing. `model` is the name the provider
itself knows the model by (the pipeline resolves client-facing names and aliases
before calling).
Errors are raised from the `orchestrator.errors` tree, translated from the
provider's own failures at its boundary.
"""

from __future__ import annotations

from collections import deque
from collections.abc import AsyncGenerator
from typing import Generic, Protocol, TypeVar

from orchestrator.protocol import (
    ChatCompletionChunk,
    ChatCompletionRequest,
    CompletionChunk,
    CompletionRequest,
    EmbeddingRequest,
    EmbeddingResponse,
)

T = TypeVar("T")


class ChunkStream(Generic[T]):
    """A provider's answer as it arrives: `batches()`, lists of the chunks that came together (what the
    gateway reads: a stream relayed as it comes, an answer folded whole); iterated, the same chunks one by
    one. One way or the other, not both. `aclose()` stops the provider's work."""

    __slots__ = ("_batches", "_held")

    def __init__(self, batches: AsyncGenerator[list[T], None]):
        self._batches = batches
        self._held: deque[T] = deque()

    def batches(self) -> AsyncGenerator[list[T], None]:
        return self._batches

    def __aiter__(self) -> ChunkStream[T]:
        return self

    async def __anext__(self) -> T:
        while not self._held:
            self._held.extend(await anext(self._batches))
        return self._held.popleft()

    async def aclose(self) -> None:
        await self._batches.aclose()


class Provider(Protocol):
    name: str

    def chat(self, request: ChatCompletionRequest, model: str) -> ChunkStream[ChatCompletionChunk]:
        """Stream a chat completion; the first chunk arrives with the first content."""
        ...

    def complete(self, request: CompletionRequest, model: str) -> ChunkStream[CompletionChunk]:
        """Stream a text completion."""
        ...

    async def embed(self, request: EmbeddingRequest, model: str) -> EmbeddingResponse:
        """Embed the request's inputs."""
        ...
