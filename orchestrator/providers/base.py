"""The provider seam: something that serves OpenAI requests for named models.

A provider streams typed chunks for a request; it never encodes SSE and never
decides routing. `model` is the name the provider itself knows the model by
(the pipeline resolves client-facing names and aliases before calling).
Errors are raised from the `orchestrator.errors` tree, translated from the
provider's own failures at its boundary.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Protocol

from orchestrator.protocol import (
    ChatCompletionChunk,
    ChatCompletionRequest,
    CompletionChunk,
    CompletionRequest,
    EmbeddingRequest,
    EmbeddingResponse,
)


class Provider(Protocol):
    name: str

    def chat(self, request: ChatCompletionRequest, model: str) -> AsyncIterator[ChatCompletionChunk]:
        """Stream a chat completion; the first chunk arrives with the first content."""
        ...

    def complete(self, request: CompletionRequest, model: str) -> AsyncIterator[CompletionChunk]:
        """Stream a text completion."""
        ...

    async def embed(self, request: EmbeddingRequest, model: str) -> EmbeddingResponse:
        """Embed the request's inputs."""
        ...
