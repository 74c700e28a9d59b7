"""What of a Responses request the gateway serves, checked on its JSON before pydantic parses it
(`wire`'s models call these first), so that what no route here can do is a 400 naming the field, in
OpenAI's words, not a shape error: the request's own fields (`prompt`, `background`, `conversation`
with `previous_response_id`, a forced built-in tool), its tools' types, its input items' types (and
a `compaction_trigger` only last), and its `context_management` entries.
"""

from __future__ import annotations

from typing import Any

from orchestrator.errors import InvalidRequest

# OpenAI's hosted web search, which no route here runs. Offered (not forced) it is left out and the
# answer says so (`x-tools-left-out`): clients offer it by default (Codex CLI does) and a model answers
# without it as when it chooses not to search. The other hosted tools (file search over the client's vector
# stores, code interpreter, MCP servers, …) are what such a request is for: a 400.
WEB_SEARCH = ("web_search", "web_search_2025_08_26", "web_search_preview", "web_search_preview_2025_03_11")

INPUT_ITEMS = (  # what a response's input may hold
    "message",
    "function_call",
    "function_call_output",
    "custom_tool_call",
    "custom_tool_call_output",
    "reasoning",
    "compaction",
    "compaction_summary",
    "compaction_trigger",
    "tool_search_call",
    "tool_search_output",
    "item_reference",
)


def check_request(data: dict[str, Any]) -> None:
    """A `POST /v1/responses` body (or one to count), as far as it names what no route here can do."""
    if data.get("prompt") is not None:
        raise _unsupported("'prompt' is not supported by this gateway; send the input itself.", "prompt")
    if data.get("conversation") is not None and data.get("previous_response_id") is not None:
        raise InvalidRequest(
            "Mutually exclusive parameters. Ensure you are only providing one of: 'previous_response_id' or "
            "'conversation'.",
            code="mutually_exclusive_parameters",
        )
    if data.get("background"):
        raise _unsupported("'background' responses are not supported by this gateway.", "background")
    check_tools(data.get("tools"))
    check_items(data.get("input"), "input", INPUT_ITEMS)
    _trigger_last(data.get("input"))
    _one_compaction(data.get("context_management"))
    choice = data.get("tool_choice")
    if isinstance(choice, dict) and choice.get("type") in WEB_SEARCH:
        raise _unsupported(
            f"A tool_choice of {choice['type']!r} can't be served: no route here searches the web (offered "
            "without being forced, the tool is left out and the answer says so in 'x-tools-left-out').",
            "tool_choice",
        )
    if (
        isinstance(choice, dict)
        and isinstance(choice.get("type"), str)
        and choice["type"] not in ("function", "custom")
    ):
        raise _unsupported(f"A tool_choice of type {choice['type']!r} is not supported by this gateway.", "tool_choice")


def check_compact_request(data: dict[str, Any]) -> None:
    """A `POST /v1/responses/compact` body, as far as it names what this endpoint does not do."""
    for name, why in (
        ("stream", "a compaction is answered whole"),
        ("background", "a compaction is answered whole"),
        ("conversation", "compact a conversation's items by sending them as 'input'"),
        ("prompt", "send the input itself"),
    ):
        if data.get(name):
            raise _unsupported(f"'{name}' is not supported by this endpoint: {why}.", name)
    check_tools(data.get("tools"))
    check_items(data.get("input"), "input", tuple(t for t in INPUT_ITEMS if t != "compaction_trigger"))


def _trigger_last(items: Any) -> None:
    """A `compaction_trigger` only as the last input item, as OpenAI has it."""
    items = items if isinstance(items, list) else []
    for i, item in enumerate(items[:-1]):
        if isinstance(item, dict) and item.get("type") == "compaction_trigger":
            raise InvalidRequest(
                "A 'compaction_trigger' item must be the final input item.", param=f"input[{i}]", code="invalid_value"
            )


COMPACTION = "compaction"  # the one `context_management` type OpenAI has


def _one_compaction(entries: Any) -> None:
    """`context_management` of known types (OpenAI's one, `compaction`), each at most once: two thresholds
    for one compaction say nothing a server could follow."""
    seen: set[str] = set()
    for i, entry in enumerate(entries if isinstance(entries, list) else []):
        kind = entry.get("type") if isinstance(entry, dict) else None
        if not isinstance(kind, str):
            continue  # not a type at all: pydantic names it
        if kind != COMPACTION:
            raise InvalidRequest(
                f"Invalid value: '{kind[:100]}'. Supported values are: '{COMPACTION}'.",
                param=f"context_management[{i}].type",
                code="invalid_value",
            )
        if kind in seen:
            raise InvalidRequest(
                f"Duplicate context management entry of type '{kind}': send one, with one 'compact_threshold'.",
                param=f"context_management[{i}]",
                code="invalid_value",
            )
        seen.add(kind)


def check_tools(tools: Any, field: str = "tools") -> None:
    """Each tool of a type a route here can run: a function, a namespace of them (with its description, which
    the spec requires), a custom tool, a tool search (`tool_search`), or web search (left out)."""
    for i, tool in enumerate(tools if isinstance(tools, list) else []):
        kind = tool.get("type") if isinstance(tool, dict) else None
        if isinstance(kind, str) and kind not in ("function", "namespace", "custom", "tool_search", *WEB_SEARCH):
            raise _unsupported(
                f"The tool type {kind!r} can't be run by this gateway's routes; only 'function' and 'custom' tools "
                "(and 'namespace' tools of functions, and 'tool_search') are supported.",
                f"{field}[{i}].type",
            )
        members = tool.get("tools") if kind == "namespace" else None
        for j, member in enumerate(members if isinstance(members, list) else []):
            inner = member.get("type") if isinstance(member, dict) else None
            if isinstance(inner, str) and inner != "function":
                raise _unsupported(
                    f"The tool type {inner!r} can't be run by this gateway's routes, in a namespace either; "
                    "only 'function' tools are supported.",
                    f"{field}[{i}].tools[{j}].type",
                )
        if kind == "namespace" and tool.get("description") is None:  # as pydantic reports a missing field
            param = f"{field}[{i}].description"
            raise InvalidRequest(
                f"Missing required parameter: '{param}'.", param=param, code="missing_required_parameter"
            )


def check_items(items: Any, field: str, served: tuple[str, ...]) -> None:
    """Each item of `items` typed (an easy input message may leave its type out), and of a type `served`;
    the tools a tool search loaded, each of a type a route here can run."""
    for i, item in enumerate(items if isinstance(items, list) else []):
        if not isinstance(item, dict):
            continue
        kind = item.setdefault("type", "message")
        if isinstance(kind, str) and kind not in served:
            message = f"Input items of type {kind[:100]!r} are not supported by this gateway."  # a long one cut
            raise _unsupported(message, f"{field}[{i}].type")
        if kind == "tool_search_output":
            check_tools(item.get("tools"), f"{field}[{i}].tools")


def _unsupported(message: str, param: str) -> InvalidRequest:
    return InvalidRequest(message, param=param, code="unsupported_parameter")
