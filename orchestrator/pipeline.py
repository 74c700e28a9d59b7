"""The request flow, readable top to bottom.

    resolve the model name -> check what the request needs against the model
    -> hand the request to the model's provider -> typed chunk stream

Today every model has exactly one route. The response cache, single-flight,
budget reservation, the scheduler's plan and failover over several routes
slot in between the check and the call (see shared/DESIGN.md); they are not
faked here. What the pipeline returns says who served the request, so the
edge can tell the client (`x-served-by`, `x-route-reason`).
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Mapping
from dataclasses import dataclass
from typing import Generic, TypeVar

from orchestrator.capabilities import ModelEntry, Registry, chat_needs
from orchestrator.protocol import (
    ChatCompletionChunk,
    ChatCompletionRequest,
    CompletionChunk,
    CompletionRequest,
    EmbeddingRequest,
    EmbeddingResponse,
    ModelCard,
    ModelList,
)
from orchestrator.providers.base import Provider

T = TypeVar("T")


@dataclass(frozen=True)
class Route:
    """Who serves a request, and why."""

    provider: str
    model: str
    reason: str


@dataclass(frozen=True)
class Routed(Generic[T]):
    route: Route
    result: T


class Pipeline:
    """Turns validated OpenAI requests into chunk streams from the right backend."""

    def __init__(self, registry: Registry, providers: Mapping[str, Provider], created: int):
        self._registry = registry
        self._providers = providers
        self._created = created

    def _route(self, entry: ModelEntry) -> tuple[Provider, Route]:
        return self._providers[entry.provider], Route(
            provider=entry.provider, model=entry.provider_model, reason="only-route"
        )

    def chat(self, request: ChatCompletionRequest) -> Routed[AsyncIterator[ChatCompletionChunk]]:
        entry = self._registry.resolve(request.model)
        entry.check("chat", chat_needs(request))
        provider, route = self._route(entry)
        return Routed(route, provider.chat(request, entry.provider_model))

    def complete(self, request: CompletionRequest) -> Routed[AsyncIterator[CompletionChunk]]:
        entry = self._registry.resolve(request.model)
        entry.check("completions")
        provider, route = self._route(entry)
        return Routed(route, provider.complete(request, entry.provider_model))

    async def embed(self, request: EmbeddingRequest) -> Routed[EmbeddingResponse]:
        entry = self._registry.resolve(request.model)
        entry.check("embeddings")
        provider, route = self._route(entry)
        return Routed(route, await provider.embed(request, entry.provider_model))

    def models(self) -> ModelList:
        return ModelList(
            data=[ModelCard(id=e.name, created=self._created, owned_by=e.owned_by) for e in self._registry.entries()]
        )
