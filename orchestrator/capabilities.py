"""What each served model can do, and what a request needs.

One registry for every model the gateway serves, local or remote. The
pipeline asks it two questions: which model does this name mean
(`Registry.resolve`), and can that model serve this request
(`ModelEntry.check`). Pure data and policy, no I/O.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Literal

from local_models.interface import ModelInfo
from orchestrator.errors import InvalidRequest, ModelNotFound, UnsupportedCapability
from orchestrator.protocol import ChatCompletionRequest

Task = Literal["chat", "completions", "embeddings"]
Feature = Literal["tools", "vision", "audio", "json_schema"]


@dataclass(frozen=True)
class ModelEntry:
    """A model as clients name it, where it runs, and what it supports."""

    name: str
    provider: str  # key into the pipeline's providers
    provider_model: str  # the name the provider knows it by
    tasks: frozenset[Task]
    features: frozenset[Feature] = frozenset()
    context_length: int | None = None
    owned_by: str = "local"
    aliases: tuple[str, ...] = field(default=())

    def check(self, task: Task, needs: Iterable[Feature] = ()) -> None:
        if task not in self.tasks:
            raise InvalidRequest(
                f"The model '{self.name}' does not support {_TASK_NAMES[task]}.",
                param="model",
                code="unsupported_task",
            )
        for feature in needs:
            if feature not in self.features:
                raise UnsupportedCapability(
                    f"The model '{self.name}' does not support {_FEATURE_NAMES[feature]}, "
                    "and no other route that does is configured.",
                    param=_FEATURE_PARAMS[feature],
                    code=f"unsupported_{feature}",
                )


_TASK_NAMES: dict[Task, str] = {
    "chat": "chat completions (/v1/chat/completions)",
    "completions": "text completions (/v1/completions)",
    "embeddings": "embeddings (/v1/embeddings)",
}
_FEATURE_NAMES: dict[Feature, str] = {
    "tools": "tool calls",
    "vision": "image inputs",
    "audio": "audio or file inputs",
    "json_schema": "structured output (response_format)",
}
_FEATURE_PARAMS: dict[Feature, str] = {
    "tools": "tools",
    "vision": "messages",
    "audio": "messages",
    "json_schema": "response_format",
}


def chat_needs(request: ChatCompletionRequest) -> set[Feature]:
    """The features a chat request can't be served without."""
    needs: set[Feature] = set()
    if request.tools and request.tool_choice != "none":
        needs.add("tools")
    if any(m.tool_calls or m.role == "tool" for m in request.messages):
        needs.add("tools")
    for m in request.messages:
        if isinstance(m.content, list):
            for part in m.content:
                if part.type == "image_url":
                    needs.add("vision")
                elif part.type in ("input_audio", "file"):
                    needs.add("audio")
    if request.response_format is not None and request.response_format.type != "text":
        needs.add("json_schema")
    return needs


class Registry:
    """Every served model by name and alias."""

    def __init__(self, entries: Iterable[ModelEntry]):
        self._entries = list(entries)
        self._by_name: dict[str, ModelEntry] = {}
        for e in self._entries:
            for name in (e.name, *e.aliases):
                self._by_name.setdefault(name, e)

    def resolve(self, name: str) -> ModelEntry:
        entry = self._by_name.get(name)
        if entry is None:
            raise ModelNotFound(
                f"The model '{name}' does not exist or you do not have access to it. "
                f"Available models: {', '.join(sorted(e.name for e in self._entries))}.",
                param="model",
            )
        return entry

    def entries(self) -> list[ModelEntry]:
        return list(self._entries)


def local_entry(info: ModelInfo, provider: str) -> ModelEntry:
    """The registry entry for a local model, from what its engine reports."""
    if info["task"] == "embed":
        return ModelEntry(
            name=info["name"],
            provider=provider,
            provider_model=info["name"],
            tasks=frozenset({"embeddings"}),
            context_length=info["max_model_len"],
        )
    tasks: set[Task] = {"completions"}
    if info["has_chat_template"]:
        tasks.add("chat")
    return ModelEntry(
        name=info["name"],
        provider=provider,
        provider_model=info["name"],
        tasks=frozenset(tasks),
        features=frozenset({"json_schema"}),
        context_length=info["max_model_len"],
    )
