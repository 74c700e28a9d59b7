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


def renamed(tools: Sequence[AnyTool] | None, loaded: Sequence[Found] = ()) -> dict[str, Origin]:
    """Each function whose chat name isn't its own name (a namespace's, or a long one), by that chat
    name, of a request's `tools` and those a tool search `loaded`; a 400 where two tools would be one
    chat tool: another function, a custom tool (offered as a function: its calls come back custom), or
    the client's tool search. One tool twice is no clash where a search loaded it (a tool the request
    holds back, or one an earlier search loaded: it is offered once, `tool_search.offered`); two plain
    functions of one name are the route's to judge."""
    taken: dict[str, Function] = {}  # each chat tool name's first function
    out: dict[str, Origin] = {}
    for function in sorted(_functions(tools, loaded), key=lambda f: f.namespace is not None):
        chat = chat_name(function.namespace, function.name)
        if (first := taken.get(chat)) is not None:
            if _again(first, function):
                continue
            raise _clash(first, function, chat)
        taken[chat] = function
        if chat != function.name:
            out[chat] = (function.namespace, function.name)
    return out


Kind = Literal["tool", "loaded", "search"]  # a tool of the request's, one a search loaded, a tool search


@dataclass(frozen=True)
class Found:
    """A tool a search loaded, and where the request has it: `param` is the tool itself (`input[i].tools[j]`),
    or, where it isn't `exact`, the field that brings it in (the stored chain or conversation it was loaded in,
    the compaction item that carries it)."""

    tool: FunctionTool | NamespaceTool | CustomTool
    param: str
    exact: bool = True


@dataclass(frozen=True)
class Function:
    """A function a route is offered: the field naming it (where it isn't `exact`, the field that brings it
    in), its namespace and name, what it is, and whether it is a custom tool's."""

    param: str
    namespace: str | None
    name: str
    kind: Kind
    exact: bool = True
    custom: bool = False

    def said(self) -> str:
        if self.kind == "search":
            return "a tool search"
        if self.custom:
            return f"the custom tool {self.name!r}"
        return f"the function {self.name!r}" + (f" of the namespace {self.namespace!r}" if self.namespace else "")


def _again(first: Function, then: Function) -> bool:
    """Whether `then` is `first` offered again (a search's find, or a plain function twice), not another tool."""
    same = (first.namespace, first.name, first.custom) == (then.namespace, then.name, then.custom)
    return same and "search" not in (first.kind, then.kind) and (then.kind == "loaded" or then.namespace is None)


def _clash(first: Function, then: Function, chat: str) -> InvalidRequest:
    """Two tools a route would know as `chat`: a 400 naming the one the client can change, the later, unless
    only the earlier is the request's own (the later came with a stored chain, a conversation, a compaction)."""
    blamed, other = (first, then) if first.exact and not then.exact else (then, first)
    said, where = blamed.said(), f"{'at' if other.exact else 'from'} {other.param}"
    return InvalidRequest(
        f"{said[0].upper()}{said[1:]} would be the tool '{chat}' on a route, which {other.said()} ({where}) "
        "is already; give one of them another name.",
        param=blamed.param,
    )


def _functions(tools: Sequence[AnyTool] | None, loaded: Sequence[Found]) -> list[Function]:
    """The functions of a request's tools and of those a search loaded; a tool search as the function a
    route calls (each of them where the client runs one: a route is offered one search)."""
    searching = client_search(tools) is not None
    out: list[Function] = []
    for i, tool in enumerate(tools or []):
        out += _named(tool, f"tools[{i}]", "tool", exact=True, searching=searching)
    for found in loaded:
        out += _named(found.tool, found.param, "loaded", exact=found.exact)
    return out


def _named(tool: AnyTool, param: str, kind: Kind, exact: bool, searching: bool = False) -> list[Function]:
    """`tool`'s functions as a route is offered them, each with the field naming it (`param` the tool's)."""

    def at(member: str) -> str:
        return f"{param}{member}.name" if exact else param

    if isinstance(tool, NamespaceTool):
        return [Function(at(f".tools[{j}]"), tool.name, f.name, kind, exact) for j, f in enumerate(tool.tools)]
    if isinstance(tool, FunctionTool | CustomTool):  # not a web search, which is left out
        return [Function(at(""), None, tool.name, kind, exact, isinstance(tool, CustomTool))]
    if isinstance(tool, ToolSearchTool) and searching:
        return [Function(param, None, SEARCH, "search", exact)]
    return []


def client_search(tools: Sequence[AnyTool] | None) -> ToolSearchTool | None:
    """The request's tool search when its client runs it: then the route is offered it (`tool_search`)."""
    return next((t for t in tools or [] if isinstance(t, ToolSearchTool) and t.execution == "client"), None)


def custom_names(tools: Sequence[AnyTool]) -> frozenset[str]:
    """The chat names of the custom tools among `tools`: a call of one comes back as a `custom_tool_call`."""
    return frozenset(chat_name(None, t.name) for t in tools if isinstance(t, CustomTool))
