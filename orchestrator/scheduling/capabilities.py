"""What each served model can do, and what a request needs.

One registry for every model the gateway serves, local or remote. A
client-facing name (`ModelEntry`) maps to an ordered chain of `Backend`s:
one model on one provider, with what it supports. The pipeline asks two
questions: which chain does this name mean (`Registry.resolve`), and which
of its backends can serve this request (`ModelEntry.candidates`). Pure data
and policy, no I/O.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Literal

from local_models.interface import ModelInfo
from orchestrator.errors import InvalidRequest, ModelNotFound, UnsupportedCapability
from orchestrator.protocol import MAX_STOPS, ChatCompletionRequest

log = logging.getLogger(__name__)

Task = Literal["chat", "completions", "embeddings"]
# "tools": takes tools and tool messages, and calls a tool when told to (tool_choice "required" or a
# named function); "auto_tools": also decides by itself whether to call one (tool_choice "auto", the
# default with tools). A remote model with tools has both; a local one has "tools" by structured
# output, "auto_tools" only with a tool-call parser for its format (`local.tool_parser`). "anthropic": takes
# Anthropic's Messages content that has no OpenAI translation (a PDF document, a server tool: `Native.untranslated`),
# which only a route to Anthropic has (it gets the client's own body).
# "functions": OpenAI's legacy function calling (`functions`, `function_call`), which an OpenAI-compatible
# route with tools passes on; the local engine and Anthropic's API have no such fields.
# "many_stops": more stop sequences than OpenAI's API takes (`MAX_STOPS`; Anthropic's `stop_sequences` has no such
# cap), which the local engine and Anthropic's API take and an OpenAI-compatible route doesn't.
Feature = Literal["tools", "auto_tools", "vision", "audio", "json_schema", "anthropic", "functions", "many_stops"]


@dataclass(frozen=True)
class Backend:
    """One model on one provider, and what it supports."""

    provider: str  # key into the pipeline's providers
    model: str  # the name the provider knows it by
    tasks: frozenset[Task]
    features: frozenset[Feature] = frozenset()
    context_length: int | None = None
    owned_by: str = "local"
    weights: str | None = None  # the open weights it runs (local: its name), for same-weights spill
    # The most sequences (n x prompts) one request may ask of it at once: a local engine's share for one
    # request (`SEQUENCE_SHARE` of what it decodes at once); None: no limit (a provider's own).
    max_sequences: int | None = None


@dataclass(frozen=True)
class ModelEntry:
    """A model as clients name it, and the backends that serve it, in order."""

    name: str
    backends: tuple[Backend, ...]

    @property
    def owned_by(self) -> str:
        return self.backends[0].owned_by

    def candidates(
        self, task: Task, needs: Iterable[Feature] = (), why: Mapping[Feature, str] | None = None
    ) -> list[Backend]:
        """The backends able to serve this request, in order; an error if there are none (naming what in
        the request needs the feature, where `why` says: `needs_why`)."""
        able = [b for b in self.backends if task in b.tasks]
        if able and not needs:  # most requests need no feature (checked per request: the short way)
            return able
        needs = set(needs)
        if not able:
            raise InvalidRequest(
                f"The model '{self.name}' does not support {_TASK_NAMES[task]}.",
                param="model",
                code="unsupported_task",
            )
        for feature in sorted(needs, key=FEATURE_ORDER.index):
            if not any(feature in b.features for b in able):
                hint = _LOCAL_HINTS.get(feature, "") if any(b.owned_by == "local" for b in able) else ""
                if why and feature in why:
                    raise UnsupportedCapability(
                        f"{why[feature]} is not supported by this model's routes: only {_FEATURE_ROUTES[feature]} "
                        f"takes it, and the model '{self.name}' has none.",
                        param=_FEATURE_PARAMS[feature],
                        code=f"unsupported_{feature}",
                    )
                raise UnsupportedCapability(
                    f"The model '{self.name}' does not support {_FEATURE_NAMES[feature]}, "
                    f"and no other route that does is configured.{hint}",
                    param=_FEATURE_PARAMS[feature],
                    code=f"unsupported_{feature}",
                )
        fit = [b for b in able if needs <= b.features]
        if not fit:  # a route for each feature, none with them all (tools on one, many stops on another)
            ordered = sorted(needs, key=FEATURE_ORDER.index)
            # Named: the feature fewest routes have (of those, the last: `many_stops` before `tools`).
            rarest = min(reversed(ordered), key=lambda f: sum(f in b.features for b in able))
            raise UnsupportedCapability(
                f"No route of the model '{self.name}' supports "
                f"{' together with '.join(_FEATURE_NAMES[f] for f in ordered)}.",
                param=_FEATURE_PARAMS[rarest],
                code=f"unsupported_{rarest}",
            )
        return fit


_TASK_NAMES: dict[Task, str] = {
    "chat": "chat completions (/v1/chat/completions)",
    "completions": "text completions (/v1/completions)",
    "embeddings": "embeddings (/v1/embeddings)",
}
FEATURE_ORDER: tuple[Feature, ...] = (
    "tools", "auto_tools", "vision", "audio", "json_schema", "anthropic", "functions", "many_stops"
)  # fmt: skip
_FEATURE_NAMES: dict[Feature, str] = {
    "tools": "tool calls",
    "auto_tools": "tool calls the model chooses itself (tool_choice 'auto', the default with tools)",
    "vision": "image inputs",
    "audio": "audio or file inputs",
    "json_schema": "structured output (response_format)",
    "anthropic": "content only Anthropic's Messages API takes (PDF documents, files, citations, server tools)",
    "functions": "legacy function calling ('functions', 'function_call'; 'tools' and 'tool_choice' replace them)",
    "many_stops": f"more than {MAX_STOPS} stop sequences (an OpenAI-compatible API takes at most {MAX_STOPS})",
}
_FEATURE_ROUTES: dict[Feature, str] = {"anthropic": "a route to Anthropic"}
_FEATURE_PARAMS: dict[Feature, str] = {
    "tools": "tools",
    "auto_tools": "tool_choice",
    "vision": "messages",
    "audio": "messages",
    "json_schema": "response_format",
    "anthropic": "messages",
    "functions": "functions",
    "many_stops": "stop_sequences",  # only Anthropic's Messages door takes more than OpenAI's `stop` does
}


_LOCAL_HINTS: dict[Feature, str] = {
    "auto_tools": (
        " Its local model has no tool-call parser configured (`local.tool_parser`, e.g. hermes for Qwen2.5, "
        "for a model that writes tool calls in that format); tool_choice 'required' or a named function "
        "works without one."
    ),
}


def chat_needs(request: ChatCompletionRequest) -> set[Feature]:
    """The features a chat request can't be served without."""
    needs: set[Feature] = set()
    if request.tools and request.tool_choice != "none":
        needs.add("tools")
        if request.tool_choice in (None, "auto"):
            needs.add("auto_tools")
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
    if (native := request.native()) is not None and native.untranslated:
        needs.add("anthropic")
    extra = request.model_extra
    if extra and (extra.get("functions") or extra.get("function_call")):
        needs.add("functions")  # the local engine and Anthropic's API would drop them: a 200 with plain text
    if isinstance(request.stop, list) and len(request.stop) > MAX_STOPS:
        needs.add("many_stops")
    return needs


def needs_why(request: ChatCompletionRequest) -> dict[Feature, str]:
    """What in the request needs a feature, for the error when no route has it (where the feature's
    name alone would not say: the first field with no translation, and how many more)."""
    native = request.native()
    if native is None or not native.untranslated:
        return {}
    first, more = native.untranslated[0], len(native.untranslated) - 1
    return {"anthropic": first + (f" (and {more} more)" if more else "")}


class Registry:
    """Every served model by name."""

    def __init__(self, entries: Iterable[ModelEntry]):
        self._entries = list(entries)
        self._by_name: dict[str, ModelEntry] = {}
        for e in self._entries:
            self._by_name.setdefault(e.name, e)

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


# Of the sequences a local engine decodes at once, the most one request may take: n = 128 at 1,900 tokens
# each took a 32-slot CPU engine from every other client for the whole deadline.
SEQUENCE_SHARE = 0.25


def local_backend(info: ModelInfo, provider: str) -> Backend:
    """The backend for a local model, from what its engine reports."""
    if info["task"] == "embed":
        return Backend(
            provider=provider,
            model=info["name"],
            tasks=frozenset({"embeddings"}),
            context_length=info["max_model_len"],
        )
    tasks: set[Task] = {"completions"}
    features: set[Feature] = {"json_schema", "many_stops"}
    if info["has_chat_template"]:
        tasks.add("chat")
        modes = info.get("tool_modes") or []
        if "required" in modes and "named" in modes:
            features.add("tools")
            if "auto" in modes:
                features.add("auto_tools")
    slots = info.get("max_num_seqs")
    return Backend(
        provider=provider,
        model=info["name"],
        tasks=frozenset(tasks),
        features=frozenset(features),
        context_length=info["max_model_len"],
        weights=info["name"],
        max_sequences=max(1, int(slots * SEQUENCE_SHARE)) if slots else None,
    )


def build_registry(
    local: Mapping[str, Backend], remote: Mapping[str, Backend], chains: Mapping[str, list[str]]
) -> Registry:
    """Entries for every local model, every remote `provider/model`, and each configured chain.

    `local` is keyed by served name, `remote` by "provider/model". A chain's
    routes that name no available backend are dropped (logged); a chain left
    empty is not served. A chain named like a backend is served under that
    name instead of it.
    """
    known = {**local, **remote}
    served: list[ModelEntry] = []
    for name, routes in chains.items():
        backends = tuple(known[r] for r in routes if r in known)
        missing = [r for r in routes if r not in known]
        if missing:
            log.info("model %r: routes %s unavailable (no key, or not configured)", name, ", ".join(missing))
        if backends:
            served.append(ModelEntry(name, backends))
        else:
            log.warning("model %r is not served: none of its routes is available", name)
    # An alias named like a route takes its name (LiteLLM configs name groups `openai/gpt-4o`): listed once.
    taken = {e.name for e in served}
    entries = [*reversed(served), *(ModelEntry(n, (b,)) for n, b in known.items() if n not in taken)]
    return Registry(entries)
