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
    would be a tool the request has already."""
    taken: dict[str, bool] = {}  # the request's chat tool names: renamed or not
    out: dict[str, Origin] = {}
    for param, namespace, name in sorted(_functions(tools, loaded), key=lambda f: f[1] is not None):
        chat = chat_name(namespace, name)
        if chat in taken and (chat != name or taken[chat]):  # two plain functions of one name: the route's to judge
            of = f" of the namespace '{namespace}'" if namespace else ""
            raise InvalidRequest(
                f"The function '{name}'{of} would be the tool '{chat}' on a route, which another tool is already.",
                param=f"{param}.name",
            )
        taken[chat] = chat != name
        if chat != name:
            out[chat] = (namespace, name)
    return out


def _functions(tools: Sequence[AnyTool] | None, loaded: Sequence[LoadedTool]) -> list[tuple[str, str | None, str]]:
    """The functions of a request's tools and of those a search loaded: (the field naming it, its
    namespace, its name); a tool search as the function a route calls."""
    out: list[tuple[str, str | None, str]] = []
    for field, listed in (("tools", tools or []), ("input", loaded)):
        for i, tool in enumerate(listed):
            param = f"{field}[{i}]" if field == "tools" else field
            if isinstance(tool, NamespaceTool):
                out += [(f"{param}.tools[{j}]", tool.name, f.name) for j, f in enumerate(tool.tools)]
            elif isinstance(tool, FunctionTool | CustomTool):  # not a web search, which is left out
                out.append((param, None, tool.name))
            elif isinstance(tool, ToolSearchTool) and tool.execution == "client":
                out.append((param, None, SEARCH))
    return out


def custom_names(tools: Sequence[AnyTool]) -> frozenset[str]:
    """The chat names of the custom tools among `tools`: a call of one comes back as a `custom_tool_call`."""
    return frozenset(chat_name(None, t.name) for t in tools if isinstance(t, CustomTool))
