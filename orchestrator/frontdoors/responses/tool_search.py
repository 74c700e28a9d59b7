"""Tool search: the Responses API's `tool_search` tool and deferred tools (`defer_loading`) on a chat route.

A request may hold some of its tools back (`defer_loading: true`) and offer a `tool_search` tool that
finds them when the model needs them. Who searches is the tool's `execution`:

- **client** (Codex CLI's, over its MCP tools): the route is offered the search as a function,
  `tool_search`, with the tool's description and parameters (`search_function`); its call comes back as a
  `tool_search_call` item (`search_call_item`, the arguments as an object). The client runs the search
  and sends its `tool_search_output` back: the tools it loaded, which the route is offered from then on
  (`offered`), the output itself a tool result naming them (`found`). The deferred tools of the request
  are not offered until a search loads them.
- **server** (OpenAI's hosted search): no route here searches, so the deferred tools are offered from the
  start, the search tool itself not: the model calls the tool it wants straight away, as it would once a
  search had found it.

What was loaded stays loaded for the rest of the conversation, past a compaction too: the compaction item
carries what the searches it replaces had loaded (`carried`), and where a client keeps those searches before
it, they are read for it too (`offered`), though a route no longer sees them.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from typing import Any

from pydantic import TypeAdapter

from orchestrator.frontdoors.responses.compaction import unseal
from orchestrator.frontdoors.responses.ids import new_id
from orchestrator.frontdoors.responses.tool_names import SEARCH, Found, chat_name, client_search
from orchestrator.frontdoors.responses.wire import (
    AnyTool,
    CustomTool,
    FunctionTool,
    LoadedTool,
    NamespaceTool,
    ToolSearchTool,
    WebSearchTool,
)

Json = dict[str, Any]
Offered = FunctionTool | NamespaceTool | CustomTool | ToolSearchTool  # what a route is offered, as a request has it

PARAMETERS: Json = {  # OpenAI's, where the client's tool names none
    "type": "object",
    "properties": {
        "query": {"type": "string", "description": "What to search the deferred tools for."},
        "limit": {"type": "number", "description": "The most tools to load."},
    },
    "required": ["query"],
    "additionalProperties": False,
}
DESCRIPTION = "Searches the tools that are not loaded yet and loads those that match, for the next step."

Loaded = FunctionTool | NamespaceTool | CustomTool  # what a search loads
_LOADED: TypeAdapter[list[Loaded]] = TypeAdapter(list[LoadedTool])


def offered(tools: Sequence[AnyTool] | None, items: Sequence[Json]) -> list[Offered]:
    """The tools a route is offered, in order: the request's (web search left out; with a client's search, that
    search and not yet its deferred tools, without one the deferred tools too), then those a search loaded in
    `items` (the conversation's, a compaction's earlier ones too) that aren't offered already."""
    searching = client_search(tools) is not None
    out: list[Offered] = []
    for tool in tools or []:
        if isinstance(tool, WebSearchTool) or (isinstance(tool, ToolSearchTool) and not searching):
            continue
        kept = _undeferred(tool) if searching else tool
        if kept is not None:
            out.append(kept)
    names = {name for tool in out for name in _chat_names(tool)}
    for tool in loaded(items):
        if (new := _unoffered(tool, names)) is not None:
            out.append(new)
            names.update(_chat_names(new))
    return out


def loaded(items: Sequence[Json]) -> list[Loaded]:
    """The tools the searches in `items` loaded, in order (each was checked when its request was read)."""
    return [found.tool for found in loads(items, len(items), "input")]


def loads(items: Sequence[Json], asked: int, context: str) -> list[Found]:
    """The tools the searches in `items` loaded (`loaded`), each with where the request has it: the items from
    `asked` on are the request's input (the tool is `input[i].tools[j]`), those before it came with the request
    from `context` (its stored chain's `previous_response_id`, its `conversation`: the tool is no field of the
    request's)."""
    out: list[Found] = []
    for i, item in enumerate(items):
        if item["type"] == "tool_search_output" and item["tools"]:
            for j, tool in enumerate(_LOADED.validate_python(item["tools"])):
                out.append(Found(tool, f"input[{i - asked}].tools[{j}]") if i >= asked else Found(tool, context, False))
        elif item["type"] == "compaction" and (tools := unseal(item["encrypted_content"]).tools):
            where = f"input[{i - asked}].encrypted_content" if i >= asked else context  # the item, not the tool
            out += [Found(tool, where, False) for tool in _LOADED.validate_python(tools)]
    return out


def carried(items: Sequence[Json]) -> list[Json]:
    """The tools the searches in `items` loaded (a compaction's among them), each once, as a compaction of
    `items` carries them on (`compaction.seal`): it replaces the searches, not what they loaded."""
    out: list[Json] = []
    names: set[str] = set()
    for tool in loaded(items):
        if (new := _unoffered(tool, names)) is not None:
            out.append(new.model_dump(exclude_none=True))
            names.update(_chat_names(new))
    return out


def _undeferred(tool: Offered) -> Offered | None:
    """`tool` without what it holds back for a search; None when that is all of it."""
    if isinstance(tool, NamespaceTool):
        functions = [f for f in tool.tools if not f.defer_loading]
        return tool.model_copy(update={"tools": functions}) if functions else None
    return None if isinstance(tool, FunctionTool | CustomTool) and tool.defer_loading else tool


def _unoffered(tool: Loaded, names: set[str]) -> Loaded | None:
    """What a search loaded that isn't offered yet (by its chat `names`): of a namespace, the functions that
    aren't (a search may load a namespace again, with more of its functions); None when that is none of it."""
    if isinstance(tool, NamespaceTool):
        functions, seen = [], set(names)
        for f in tool.tools:
            if (name := chat_name(tool.name, f.name)) not in seen:
                functions.append(f)
                seen.add(name)
        return tool.model_copy(update={"tools": functions}) if functions else None
    return None if chat_name(None, tool.name) in names else tool


def _chat_names(tool: Offered) -> list[str]:
    if isinstance(tool, NamespaceTool):
        return [chat_name(tool.name, f.name) for f in tool.tools]
    return [chat_name(None, SEARCH if isinstance(tool, ToolSearchTool) else tool.name)]


def search_function(tool: ToolSearchTool) -> Json:
    """A client's tool search as the chat function a route is offered."""
    return {
        "type": "function",
        "function": {
            "name": SEARCH,
            "description": tool.description or DESCRIPTION,
            "parameters": tool.parameters or PARAMETERS,
        },
    }


def search_call_item(call_id: str, arguments: str, item_id: str | None = None, status: str = "completed") -> Json:
    """A route's call of the search function as the `tool_search_call` item the client runs."""
    return {
        "id": item_id or new_id("tsc"),
        "type": "tool_search_call",
        "status": status,
        "call_id": call_id or new_id("call"),
        "execution": "client",
        "arguments": search_arguments(arguments),
    }


def search_arguments(arguments: str) -> Any:
    """The arguments a route called the search with, as an object; what else it sent, as its query."""
    try:
        value = json.loads(arguments) if arguments else {}
    except ValueError:
        return {"query": arguments}
    return value if isinstance(value, dict) else {"query": arguments}


def found(item: Json) -> str:
    """A `tool_search_output` as the tool result a route reads: the tools it loaded, by the names the route
    calls them."""
    tools = _LOADED.validate_python(item["tools"]) if item["tools"] else []
    names = [name for tool in tools for name in _chat_names(tool)]
    if not names:
        return "No tools matched the search."
    return "Loaded these tools, which can be called from now on: " + ", ".join(names) + "."
