"""Responses tool names as chat tool names, and back.

A chat route takes a tool name of at most 64 characters of `[a-zA-Z0-9_-]` (OpenAI's chat API
refuses any other with a 400; Anthropic's Messages API the same). The Responses API takes longer
ones: a function name of up to 128 characters, and a `namespace` tool's functions, which reach a
route as `<namespace>__<name>` (`NAMESPACE_JOIN`, as MCP tools are often named). A name that fits
goes as it is; one that doesn't goes as its first characters (others than those allowed as `_`)
and a digest of the whole (`chat_name`), so two long names that begin alike stay apart. The mapping
depends on nothing but the name, so a call sent back in a later request (or a stored chain) maps
to the same chat name; the answer's calls come back with their own `namespace` and `name`
(`Names.of`).
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Literal

from orchestrator.errors import InvalidRequest
from orchestrator.frontdoors.responses.wire import (
    AnyTool,
    CustomTool,
    FunctionTool,
    LoadedTool,
    NamespaceTool,
    ToolSearchTool,
)

SEARCH = "tool_search"  # a client's tool search, as the function a route calls (`tool_search`)

NAMESPACE_JOIN = "__"  # a namespace tool's function as a chat tool: f"{namespace}{NAMESPACE_JOIN}{name}"
MAX_CHAT_NAME = 64
_CHAT_NAME = re.compile(r"^[a-zA-Z0-9_-]+$")
_DIGEST = 10  # hex characters: 40 bits, so a client would need ~a million long names for one clash

Origin = tuple[str | None, str]  # (namespace, name) of a chat tool name's function


def chat_name(namespace: str | None, name: str) -> str:
    """The name a route knows the function `name` (of `namespace`, if any) by."""
    whole = f"{namespace}{NAMESPACE_JOIN}{name}" if namespace else name
    if len(whole) <= MAX_CHAT_NAME and _CHAT_NAME.match(whole):
        return whole
    digest = hashlib.sha256(whole.encode()).hexdigest()[:_DIGEST]
    head = re.sub(r"[^a-zA-Z0-9_-]", "_", whole)[: MAX_CHAT_NAME - _DIGEST - 1]
    return f"{head}_{digest}"


def renamed(tools: Sequence[AnyTool] | None, loaded: Sequence[LoadedTool] = ()) -> dict[str, Origin]:
    """Each function whose chat name isn't its own name (a namespace's, or a long one), by that chat
    name, of a request's `tools` and those a tool search `loaded`; a 400 naming the function where it
    would be a tool the request has already: another function, or the client's tool search. One function
    twice is no clash where a search loaded it (a tool the request holds back, or one an earlier search
    loaded: it is offered once, `tool_search.offered`); two plain functions of one name are the route's
    to judge."""
    taken: dict[str, Function] = {}  # each chat tool name's first function
    out: dict[str, Origin] = {}
    for function in sorted(_functions(tools, loaded), key=lambda f: f.namespace is not None):
        param, namespace, name = function.param, function.namespace, function.name
        chat = chat_name(namespace, name)
        if (first := taken.get(chat)) is not None:
            again = (first.namespace, first.name) == (namespace, name) and "search" not in (first.kind, function.kind)
            if again and (function.kind == "loaded" or namespace is None):
                continue
            search = function.kind == "search"
            of = f" of the namespace '{namespace}'" if namespace else ""
            raise InvalidRequest(
                f"{'A tool search' if search else f'The function {name!r}{of}'} would be the tool '{chat}' on a "
                "route, which another tool is already.",
                param=param if search else f"{param}.name",
            )
        taken[chat] = function
        if chat != name:
            out[chat] = (namespace, name)
    return out


Kind = Literal["tool", "loaded", "search"]  # a tool of the request's, one a search loaded, a tool search


@dataclass(frozen=True)
class Function:
    """A function a route is offered: the field naming it, its namespace and name, and what it is."""

    param: str
    namespace: str | None
    name: str
    kind: Kind


def _functions(tools: Sequence[AnyTool] | None, loaded: Sequence[LoadedTool]) -> list[Function]:
    """The functions of a request's tools and of those a search loaded; a tool search as the function a
    route calls (each of them where the client runs one: a route is offered one search)."""
    searching = client_search(tools) is not None
    out: list[Function] = []
    for field, listed in (("tools", tools or []), ("input", loaded)):
        for i, tool in enumerate(listed):
            kind: Kind = "tool" if field == "tools" else "loaded"
            param = f"tools[{i}]" if field == "tools" else "input"
            if isinstance(tool, NamespaceTool):
                out += [Function(f"{param}.tools[{j}]", tool.name, f.name, kind) for j, f in enumerate(tool.tools)]
            elif isinstance(tool, FunctionTool | CustomTool):  # not a web search, which is left out
                out.append(Function(param, None, tool.name, kind))
            elif isinstance(tool, ToolSearchTool) and searching:
                out.append(Function(param, None, SEARCH, "search"))
    return out


def client_search(tools: Sequence[AnyTool] | None) -> ToolSearchTool | None:
    """The request's tool search when its client runs it: then the route is offered it (`tool_search`)."""
    return next((t for t in tools or [] if isinstance(t, ToolSearchTool) and t.execution == "client"), None)


def custom_names(tools: Sequence[AnyTool]) -> frozenset[str]:
    """The chat names of the custom tools among `tools`: a call of one comes back as a `custom_tool_call`."""
    return frozenset(chat_name(None, t.name) for t in tools if isinstance(t, CustomTool))
