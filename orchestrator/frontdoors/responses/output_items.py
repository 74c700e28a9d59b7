"""Output items: the shapes a response's output is made of, built for a whole answer
(`translate.output_of`) and, in progress, for a streamed one (`events`).

    reasoning   a reasoning model's reasoning; an Anthropic route's signature in `encrypted_content`
    message     the assistant's message, its parts `output_text` (with its log probabilities) or a refusal
    function    a `function_call` item, a function by its own name (and namespace)
"""

from __future__ import annotations

from typing import Any

from orchestrator.frontdoors.responses.ids import new_id
from orchestrator.protocol import ChoiceLogprobs, TokenLogprob, TopLogprob

Json = dict[str, Any]


def reasoning_item(text: str, item_id: str | None = None, status: str = "completed") -> Json:
    """A reasoning model's reasoning as an output item; an Anthropic route's signature goes in
    `encrypted_content`, so the item sent back as input continues a tool use it thought about."""
    content = [{"type": "reasoning_text", "text": text}]
    return {"id": item_id or new_id("rs"), "type": "reasoning", "summary": [], "content": content, "status": status}


def output_text(text: str, logprobs: list[Json] | None = None) -> Json:
    return {"type": "output_text", "text": text, "annotations": [], "logprobs": logprobs or []}


def logprobs_of(logprobs: ChoiceLogprobs | None) -> list[Json]:
    """A chat choice's token log probabilities as the Responses API gives them (`bytes` always a list)."""
    if logprobs is None or not logprobs.content:
        return []
    return [{**_logprob(t), "top_logprobs": [_logprob(a) for a in t.top_logprobs]} for t in logprobs.content]


def _logprob(t: TokenLogprob | TopLogprob) -> Json:
    return {"token": t.token, "logprob": t.logprob, "bytes": t.bytes if t.bytes is not None else list(t.token.encode())}


def message_item(content: list[Json], item_id: str | None = None, status: str = "completed") -> Json:
    return {
        "id": item_id or new_id("msg"),
        "type": "message",
        "role": "assistant",
        "status": status,
        "content": content,
    }


def function_call_item(
    call_id: str,
    name: str,
    arguments: str,
    item_id: str | None = None,
    status: str = "completed",
    namespace: str | None = None,
) -> Json:
    return {
        "id": item_id or new_id("fc"),
        "type": "function_call",
        "status": status,
        "call_id": call_id or new_id("call"),
        **({"namespace": namespace} if namespace else {}),
        "name": name,
        "arguments": arguments,
    }
