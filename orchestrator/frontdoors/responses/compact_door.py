"""`POST /v1/responses/compact`: a conversation compacted into its user messages and one summary.

The conversation (the request's input, after a stored response's items with
`previous_response_id`, `item_reference`s resolved as on `POST /v1/responses`)
goes to the flow as the chat request its next turn would be (the same
instructions and tools, so a provider's prompt cache still holds its prefix),
with `compaction.PROMPT` after it and `tool_choice: none`: resolved, admitted,
spilled and billed like any chat request, answered whole. One too long for every
route is summarized from its latest turns that fit (its oldest dropped, as
`truncation: "auto"` drops them: `orchestrator.truncation`): compaction is for a
conversation that outgrew its context. The answer is OpenAI's
`response.compaction` object: every user message of the conversation, as it was,
then a `compaction` item carrying the model's summary and the tools its searches
had loaded (`compaction.seal`). Nothing is stored.
"""

from __future__ import annotations

import time
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from pydantic import ValidationError
from starlette.responses import JSONResponse, Response

from orchestrator.accounting.accounts import Tab
from orchestrator.calls import CHAT, Call
from orchestrator.errors import InvalidRequest, OrchestratorError
from orchestrator.frontdoors.base import tenant
from orchestrator.frontdoors.openai import error_response, parse_body, route_headers, validation_error
from orchestrator.frontdoors.responses.compaction import SUMMARY_TURNS, asking_for_summary, compaction_item
from orchestrator.frontdoors.responses.door import read_stored, resolve_references
from orchestrator.frontdoors.responses.ids import new_id
from orchestrator.frontdoors.responses.response_object import usage_of
from orchestrator.frontdoors.responses.store import ResponseStore
from orchestrator.frontdoors.responses.tool_names import renamed
from orchestrator.frontdoors.responses.tool_search import carried, loads, offered
from orchestrator.frontdoors.responses.translate import Json, chat_messages, chat_tools, input_items
from orchestrator.frontdoors.responses.wire import TAGS, CompactRequest
from orchestrator.protocol import ChatCompletion, ChatCompletionRequest, Usage
from orchestrator.routes import Routed


@dataclass(frozen=True)
class Compacting:
    """What the answer keeps of the conversation: its user messages, and the tools its searches loaded (the
    compaction item carries them)."""

    kept: list[Json]
    tools: list[Json]


class CompactDoor:
    """`POST /v1/responses/compact` over the chat flow."""

    path = "/v1/responses/compact"

    def __init__(self, store: ResponseStore):
        self._store = store  # the stored responses a `previous_response_id` or `item_reference` names

    async def parse(self, raw: bytes, headers: Mapping[str, str], tab: Tab) -> Call:
        request = parse_body(raw, CompactRequest, tags=TAGS)
        owner = tenant(tab)
        if isinstance(request.input, list):
            await resolve_references(self._store, request.input, owner)
        context: list[Json] = []
        if request.previous_response_id is not None:
            previous = await read_stored(self._store, request.previous_response_id, owner, "previous_response_id")
            context = previous.context
        conversation = context + (input_items(request.input) if request.input is not None else [])
        if not conversation:
            raise InvalidRequest(
                "There is nothing to compact: send the conversation as 'input', or name a stored response with "
                "'previous_response_id'.",
                param="input",
                code="missing_required_parameter",
            )
        kept = [item for item in conversation if item["type"] == "message" and item["role"] == "user"]
        body = _summary_request(request, conversation, len(context))
        origin = Compacting(kept, carried(conversation))
        return Call(CHAT, body, headers, tab, owner, origin=origin, keep_turns=SUMMARY_TURNS)

    async def encode(self, call: Call, routed: Routed[Any]) -> Response:
        completion: ChatCompletion = routed.result  # asked whole (`stream: false`)
        compacting: Compacting = call.origin
        compaction = compaction_item(completion, tools=compacting.tools)
        body = {
            "id": new_id("resp"),
            "object": "response.compaction",
            "created_at": int(time.time()),
            "output": [*compacting.kept, compaction],
            "usage": usage_of(completion.usage or Usage(prompt_tokens=0, completion_tokens=0, total_tokens=0)),
        }
        return JSONResponse(body, headers=route_headers(routed.route))

    def error(self, exc: OrchestratorError) -> Response:
        return error_response(exc)


def _summary_request(request: CompactRequest, conversation: list[Json], asked: int) -> ChatCompletionRequest:
    """The conversation (the request's input from `asked` on) as its next turn would ask a route, then the
    request for its summary."""
    messages: list[Json] = [{"role": "system", "content": request.instructions}] if request.instructions else []
    messages += chat_messages(conversation)
    body: Json = {"model": request.model, "messages": messages}
    # Tools a route can't be offered together: a 400, as on a turn.
    renamed(request.tools, loads(conversation, asked, "previous_response_id"))
    if tools := offered(request.tools, conversation):
        body["tools"] = [tool for t in tools for tool in chat_tools(t)]
        if request.parallel_tool_calls is not None:
            body["parallel_tool_calls"] = request.parallel_tool_calls
    if request.reasoning is not None and request.reasoning.effort is not None:
        body["reasoning_effort"] = request.reasoning.effort
    if request.max_output_tokens is not None:  # not OpenAI's field here: the gateway's, to cap a summary
        body["max_tokens"] = request.max_output_tokens
    asking_for_summary(body)
    try:
        return ChatCompletionRequest.model_validate(body)
    except ValidationError as e:
        raise validation_error(e) from None
