"""Custom tools: a Responses `custom` tool (free-form input, not JSON: Codex CLI's `apply_patch`) on a chat route.

A chat route is offered the tool as a function of one string, `input`, its format (a grammar the input
follows) told in the description (`custom_function`). A call of that function comes back as a
`custom_tool_call` item whose input is that string (`custom_input`, `custom_call_item`); such an item sent
back is that function's call again (`translate.chat_messages`).
"""

from __future__ import annotations

import json
from typing import Any

from orchestrator.frontdoors.responses.ids import new_id
from orchestrator.frontdoors.responses.tool_names import chat_name
from orchestrator.frontdoors.responses.wire import CustomTool

Json = dict[str, Any]


def custom_function(tool: CustomTool) -> Json:
    """A custom tool as the chat function a route is offered: its whole input as one string, `input`, and
    its format (a grammar the input follows) told in the description, as Codex offers `apply_patch` to a
    model without custom tools. (A route that checks grammars could be held to it; none here does.)"""
    described = [tool.description or ""]
    fmt = tool.format or {}
    if fmt.get("type") == "grammar" and isinstance(fmt.get("definition"), str):
        described.append(f"The input must follow this {fmt.get('syntax', '')} grammar:\n{fmt['definition']}")
    described.append("Send the tool's whole input as the string `input`, exactly as the tool takes it.")
    parameters = {
        "type": "object",
        "properties": {"input": {"type": "string", "description": "The tool's whole input."}},
        "required": ["input"],
        "additionalProperties": False,
    }
    description = "\n\n".join(d for d in described if d)
    return {
        "type": "function",
        "function": {"name": chat_name(None, tool.name), "description": description, "parameters": parameters},
    }


def custom_input(arguments: str) -> str:
    """A custom tool's input from the arguments a route called its function with (`{"input": "..."}`); what
    else it sent (a model that answered with the input itself), as it came."""
    try:
        value = json.loads(arguments)
    except ValueError:
        return arguments
    return value["input"] if isinstance(value, dict) and isinstance(value.get("input"), str) else arguments


def custom_call_item(
    call_id: str, name: str, given: str, item_id: str | None = None, status: str = "completed"
) -> Json:
    return {
        "id": item_id or new_id("ctc"),
        "type": "custom_tool_call",
        "status": status,
        "call_id": call_id or new_id("call"),
        "name": name,
        "input": given,
    }
