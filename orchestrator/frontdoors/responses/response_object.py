"""The `Response` object: a turn's response in a given state (in progress, completed, incomplete,
failed), its output and usage, echoing what the request asked (OpenAI's defaults where it asked
nothing); a finish by length is `incomplete` with reason `max_output_tokens` (by content filter,
reason `content_filter`)."""

from __future__ import annotations

import time
from typing import Any

from orchestrator.frontdoors.responses.translate import Json, Turn, echo_tool
from orchestrator.frontdoors.responses.wire import FunctionChoice, ResponsesRequest
from orchestrator.protocol import Usage


def usage_of(usage: Usage) -> Json:
    details = usage.prompt_tokens_details
    cached, written = (details.cached_tokens, details.cache_write_tokens or 0) if details else (0, 0)
    return {
        "input_tokens": usage.prompt_tokens,
        "input_tokens_details": {"cached_tokens": cached, "cache_write_tokens": written},
        "output_tokens": usage.completion_tokens,
        "output_tokens_details": {"reasoning_tokens": usage.reasoning_tokens},
        "total_tokens": usage.prompt_tokens + usage.completion_tokens,
    }


INCOMPLETE = {"length": "max_output_tokens", "content_filter": "content_filter"}


def cut_index(count: int, finish: str | None) -> int | None:
    """Which of an answer's `count` items a finish by length or filter cut: the last one, which OpenAI marks
    `incomplete` (the response says why in `incomplete_details`); None when the finish cut nothing."""
    return count - 1 if finish in INCOMPLETE and count else None


def mark_cut(items: list[Json], finish: str | None) -> None:
    """The item `finish` cut (`cut_index`), if any, marked `incomplete`."""
    if (index := cut_index(len(items), finish)) is not None:
        items[index]["status"] = "incomplete"


def response_object(
    turn: Turn,
    model: str,
    *,
    output: list[Json],
    status: str,
    usage: Usage | None = None,
    finish: str | None = None,
    error: Json | None = None,
) -> Json:
    """The `Response` object for `turn` in a given state; a finish by length or filter is `incomplete`."""
    r = turn.request
    incomplete = None
    if status == "completed" and finish in INCOMPLETE:
        status, incomplete = "incomplete", {"reason": INCOMPLETE[finish]}
    done = status in ("completed", "incomplete")
    response = {
        "id": turn.id,
        "object": "response",
        "created_at": turn.created_at,
        "status": status,
        "completed_at": int(time.time()) if done else None,
        "error": error,
        "incomplete_details": incomplete,
        "instructions": r.instructions,
        "max_output_tokens": r.max_output_tokens,
        "model": model,
        "output": output,
        "parallel_tool_calls": r.parallel_tool_calls if r.parallel_tool_calls is not None else True,
        "previous_response_id": r.previous_response_id,
        "reasoning": {"effort": r.reasoning.effort if r.reasoning else None, "summary": None},
        "store": r.store,
        "temperature": r.temperature if r.temperature is not None else 1.0,
        "text": {"format": r.text.format.model_dump(by_alias=True, exclude_none=True)}
        if r.text is not None and r.text.format is not None
        else {"format": {"type": "text"}},
        "tool_choice": _tool_choice(r),
        "tools": [echo_tool(t) for t in r.tools or []],
        "top_p": r.top_p if r.top_p is not None else 1.0,
        "top_logprobs": r.top_logprobs or 0,
        "truncation": r.truncation or "disabled",
        "metadata": r.metadata or {},
    }
    if done and usage is not None:
        response["usage"] = usage_of(usage)
    if r.user is not None:
        response["user"] = r.user
    if turn.conversation is not None:
        response["conversation"] = {"id": turn.conversation}
    return response


def _tool_choice(r: ResponsesRequest) -> Any:
    if isinstance(r.tool_choice, FunctionChoice):
        return {"type": r.tool_choice.type, "name": r.tool_choice.name}
    return r.tool_choice or "auto"
