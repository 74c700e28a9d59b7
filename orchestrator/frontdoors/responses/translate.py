"""Responses <-> chat: a Responses request as the chat request the flow answers, and the answer back.

    items       every input item gets an id and the shape `GET …/input_items` lists it in
    to_chat     instructions + the conversation so far (a stored chain's items, then this
                request's) as chat messages: `developer` is `system`; a `function_call` joins
                the assistant turn it follows; a `function_call_output` is a `tool` message;
                a reasoning item with `encrypted_content` (an Anthropic route's signature)
                joins the next assistant turn as its signed reasoning, others are not sent;
                a `compaction` item is a user message with its summary (after the user's messages
                it carries, a server-side compaction's), and a request that ends with a
                `compaction_trigger` asks for its summary, not an answer (`compaction`); a turn
                whose context was compacted first (`context_management`) reads it past its item
    output      a whole chat answer as output items (`output_items`): the reasoning (a reasoning
                model's), the message (text or refusal), then one `function_call` item per tool call

The `Response` object around them is `response_object`'s.

A function reaches a route under its chat tool name (`tool_names`: a
`namespace` tool's as `<namespace>__<name>`, one too long for a chat route
shortened), a call of one comes back as a `function_call` with its own
`namespace` and `name`, and a call item sent back is that chat tool's call
again (`Turn.renamed`). A custom tool reaches a route as a function of one
string and its calls come back as `custom_tool_call` items (`custom_tools`).
A client's tool search is a function too, its calls `tool_search_call` items,
and the tools a search loaded are offered from then on (`tool_search`).
Offered web search is left out (`request_checks.WEB_SEARCH`): the chat request has the
other tools only, and the door names it in `x-tools-left-out`.

Decisions, where the two APIs differ: `max_output_tokens` is the chat
`max_tokens`; `text.format` is `response_format`; a finish by length is status
`incomplete` with reason `max_output_tokens` (by content filter, reason
`content_filter`); `user` is sent on, `metadata` is kept on the response (a
chat provider would refuse metadata without its own `store`).
"""

from __future__ import annotations

import json
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from pydantic import ValidationError

from orchestrator.errors import InvalidRequest
from orchestrator.frontdoors.openai import validation_error
from orchestrator.frontdoors.responses.compaction import asking_for_summary, compacted, compaction_messages
from orchestrator.frontdoors.responses.custom_tools import custom_call_item, custom_function, custom_input
from orchestrator.frontdoors.responses.ids import new_id
from orchestrator.frontdoors.responses.output_items import (
    function_call_item,
    logprobs_of,
    message_item,
    output_text,
    reasoning_item,
)
from orchestrator.frontdoors.responses.tool_names import SEARCH, Origin, chat_name, client_search, custom_names, renamed
from orchestrator.frontdoors.responses.tool_search import (
    Offered,
    found,
    loads,
    offered,
    search_call_item,
    search_function,
)
from orchestrator.frontdoors.responses.wire import (
    AnyTool,
    CompactionItem,
    CompactionTrigger,
    CustomTool,
    CustomToolCallItem,
    FunctionCallItem,
    FunctionCallOutputItem,
    FunctionChoice,
    InputImage,
    InputText,
    Item,
    MessageItem,
    NamespaceTool,
    Refusal,
    ResponsesRequest,
    ToolSearchCallItem,
    ToolSearchOutputItem,
    ToolSearchTool,
    WebSearchTool,
)
from orchestrator.protocol import ChatCompletion, ChatCompletionRequest

Json = dict[str, Any]


@dataclass
class Turn:
    """One Responses request on its way: its id, its input items (with ids) and what the model sees."""

    request: ResponsesRequest
    owner: str  # the tenant that may read it back
    id: str = field(default_factory=lambda: new_id("resp"))
    created_at: int = field(default_factory=lambda: int(time.time()))
    items: list[Json] = field(default_factory=list)  # this request's input items
    context: list[Json] = field(default_factory=list)  # the stored chain's (or conversation's) items before them
    conversation: str | None = None  # the conversation it belongs to (its items are `context`), by id
    # The functions a route knows by another name (a namespace's, a long one), by that name.
    renamed: dict[str, Origin] = field(default_factory=dict)
    compacting: bool = False  # its input ends with a `compaction_trigger`: the conversation compacted, not answered
    # Its context compacted first (`context_management`): the item its output begins with, which the route
    # reads the conversation past.
    compaction: Json | None = None
    custom: frozenset[str] = frozenset()  # the chat names of its custom tools (`wire.CustomTool`)
    tools: list[Offered] = field(default_factory=list)  # what a route is offered (`tool_search.offered`)
    searching: bool = False  # a client's tool search is offered: a call of it is a `tool_search_call`

    @classmethod
    def of(cls, request: ResponsesRequest, owner: str, context: list[Json], conversation: str | None = None) -> Turn:
        given = request.input
        items = input_items(given)
        came_with = "previous_response_id" if request.previous_response_id is not None else "conversation"
        tools = offered(request.tools, context + items)
        return cls(
            request,
            owner,
            items=items,
            context=context,
            conversation=conversation,
            renamed=renamed(request.tools, loads(context + items, len(context), came_with)),
            compacting=not isinstance(given, str) and bool(given) and isinstance(given[-1], CompactionTrigger),
            custom=custom_names(tools),  # of what is offered: a call comes back as the tool the route was offered
            tools=tools,
            searching=client_search(request.tools) is not None,
        )

    def call_item(
        self, call_id: str, name: str, arguments: str, item_id: str | None = None, status: str = "completed"
    ) -> Json:
        """A chat tool call as its `function_call` item: the function by its own name (and namespace); a custom
        tool's as its `custom_tool_call`, its input the string it was called with (`custom_input`); a client's
        tool search as its `tool_search_call`."""
        chat, (namespace, name) = name, self.renamed.get(name, (None, name))
        if chat in self.custom:
            return custom_call_item(call_id, name, custom_input(arguments), item_id, status)
        if self.searching and chat == SEARCH:
            return search_call_item(call_id, arguments, item_id, status)
        return function_call_item(call_id, name, arguments, item_id, status, namespace)


# --------------------------------------------------------------------------- input items


def input_items(given: str | Sequence[Item]) -> list[Json]:
    """A request's input (a text is a user message) as items with ids, in the shape the API lists them."""
    if isinstance(given, str):
        return [_message("user", [{"type": "input_text", "text": given}])]
    return items_of(given)


def items_of(items: Sequence[Item]) -> list[Json]:
    """Input items with ids (a client's own, else new ones), in the shape the API lists them."""
    out: list[Json] = []
    for item in items:
        if isinstance(item, MessageItem):
            out.append(_message(item.role, _parts(item), item.id))
        elif isinstance(item, FunctionCallItem):
            out.append(
                {
                    "id": item.id or new_id("fc"),
                    "type": "function_call",
                    "call_id": item.call_id,
                    "name": item.name,
                    "arguments": item.arguments,
                    "status": "completed",
                    **({"namespace": item.namespace} if item.namespace else {}),
                }
            )
        elif isinstance(item, FunctionCallOutputItem):  # a function's, a custom tool's
            output = item.output if isinstance(item.output, str) else [_part(p, "user") for p in item.output]
            prefix = "fco" if item.type == "function_call_output" else "ctco"
            out.append(
                {
                    "id": item.id or new_id(prefix),
                    "type": item.type,
                    "call_id": item.call_id,
                    "output": output,
                    "status": "completed",
                }
            )
        elif isinstance(item, CustomToolCallItem):
            out.append(
                custom_call_item(item.call_id, item.name, item.input, item.id or new_id("ctc"))
                | ({"namespace": item.namespace} if item.namespace else {})
            )
        elif isinstance(item, CompactionItem):
            out.append(
                {"id": item.id or new_id("cmp"), "type": "compaction", "encrypted_content": item.encrypted_content}
            )
        elif isinstance(item, CompactionTrigger):
            continue  # a request control, not an item of the conversation
        elif isinstance(item, ToolSearchCallItem | ToolSearchOutputItem):
            out.append(_search_item(item))
        else:
            out.append(item.model_dump(exclude_none=True))  # a reasoning item, as given
    return out


def echo_tool(tool: AnyTool) -> Json:
    """A tool as OpenAI echoes it (a response's `tools`, a tool search's output): a function's
    `parameters` and `strict` always there."""
    if isinstance(tool, WebSearchTool | CustomTool | ToolSearchTool):
        return tool.model_dump(exclude_none=True)
    if isinstance(tool, NamespaceTool):
        return {**tool.model_dump(exclude_none=True), "tools": [echo_tool(f) for f in tool.tools]}
    return {"parameters": None, "strict": None, **tool.model_dump(exclude_none=True)}


def _search_item(item: ToolSearchCallItem | ToolSearchOutputItem) -> Json:
    """A tool search's call or output in the shape the API lists it: its call id (null for a server's
    search), who ran it (where the client left it out: the client, when there is a call id), an output's
    tools as a response echoes tools (`echo_tool`)."""
    listed = {
        **item.model_dump(exclude_none=True),
        "call_id": item.call_id,
        "execution": item.execution or ("client" if item.call_id else "server"),
        "status": "completed",
    }
    if isinstance(item, ToolSearchOutputItem):
        return {**listed, "id": item.id or new_id("tso"), "tools": [echo_tool(t) for t in item.tools]}
    return {**listed, "id": item.id or new_id("tsc"), "arguments": item.arguments or {}}


def _message(role: str, content: list[Json], item_id: str | None = None) -> Json:
    return {"id": item_id or new_id("msg"), "type": "message", "role": role, "content": content, "status": "completed"}


def _parts(item: MessageItem) -> list[Json]:
    if isinstance(item.content, str):
        return [_text(item.content, item.role)]
    return [_part(p, item.role) for p in item.content]


def _text(text: str, role: str) -> Json:
    if role == "assistant":
        return output_text(text)  # as OpenAI lists it: `logprobs` too (the spec's OutputTextContent)
    return {"type": "input_text", "text": text}


def _part(part: InputText | InputImage | Refusal, role: str) -> Json:
    if isinstance(part, InputText):
        return _text(part.text, role)
    if isinstance(part, InputImage):
        return {"type": "input_image", "image_url": part.image_url, "detail": part.detail or "auto"}
    return {"type": "refusal", "refusal": part.refusal}


# --------------------------------------------------------------------------- request -> chat


def to_chat(turn: Turn) -> ChatCompletionRequest:
    """The chat request that asks what `turn` asks."""
    r = turn.request
    messages: list[Json] = [{"role": "system", "content": r.instructions}] if r.instructions else []
    messages += chat_messages([*turn.context, *turn.items, *([turn.compaction] if turn.compaction else [])])
    body: Json = {"model": r.model, "messages": messages, "stream": r.stream}
    if r.stream:
        body["stream_options"] = {"include_usage": True}  # usage is part of `response.completed`
    for name, value in (
        ("max_tokens", r.max_output_tokens),
        ("temperature", r.temperature),
        ("top_p", r.top_p),
        ("user", r.user),
        ("parallel_tool_calls", r.parallel_tool_calls if turn.tools else None),
        ("reasoning_effort", r.reasoning.effort if r.reasoning else None),
    ):
        if value is not None:
            body[name] = value
    if r.logprobs():
        body["logprobs"], body["top_logprobs"] = True, r.top_logprobs or 0
    if "cache" in (r.model_extra or {}):  # the gateway's own field (README "Cache"), as on every door
        body["cache"] = (r.model_extra or {})["cache"]
    if turn.tools:
        body["tools"] = [tool for t in turn.tools for tool in chat_tools(t)]
    if isinstance(r.tool_choice, FunctionChoice):
        body["tool_choice"] = {"type": "function", "function": {"name": chat_name(None, r.tool_choice.name)}}
    elif r.tool_choice is not None and r.tools and not turn.tools:  # only web search, left out
        if r.tool_choice == "required":
            raise InvalidRequest(
                "tool_choice 'required' with only web search offered can't be served: no route here searches the web.",
                param="tool_choice",
            )
    elif r.tool_choice is not None:
        body["tool_choice"] = r.tool_choice
    if r.text is not None and r.text.format is not None and r.text.format.type != "text":
        f = r.text.format
        body["response_format"] = (
            {"type": "json_object"}
            if f.type == "json_object"
            else {
                "type": "json_schema",
                "json_schema": f.model_dump(by_alias=True, exclude={"type"}, exclude_none=True),
            }
        )
    if turn.compacting:
        asking_for_summary(body)
    try:
        return ChatCompletionRequest.model_validate(body)
    except ValidationError as e:
        raise validation_error(e) from None


def chat_tools(tool: Offered) -> list[Json]:
    """A tool as chat tools: a function as itself, a namespace as its functions, each by its chat name; a
    custom tool as a function of one string (`custom_function`); a client's tool search as a function
    (`search_function`)."""
    if isinstance(tool, CustomTool):
        return [custom_function(tool)]
    if isinstance(tool, ToolSearchTool):
        return [search_function(tool)]
    namespace, functions = (tool.name, tool.tools) if isinstance(tool, NamespaceTool) else (None, [tool])
    return [
        {
            "type": "function",
            "function": f.model_dump(exclude={"type", "defer_loading"}, exclude_none=True)
            | {"name": chat_name(namespace, f.name)},
        }
        for f in functions
    ]


def chat_messages(items: list[Json]) -> list[Json]:
    """Responses items as chat messages (past a compaction: `compacted`)."""
    items = compacted(items)
    out: list[Json] = []
    joinable = False  # the last message is an assistant turn a function call may join
    reasoning: Json = {}  # a reasoning item's, for the assistant turn it belongs to
    for item in items:
        kind = item["type"]
        if kind == "reasoning":
            reasoning = _reasoning_fields(item)
            joinable = False
        elif kind == "message":
            out.append(_chat_message(item) | (reasoning if item["role"] == "assistant" else {}))
            joinable, reasoning = item["role"] == "assistant", {}
        elif kind in ("function_call", "custom_tool_call") or (kind == "tool_search_call" and item.get("call_id")):
            if kind == "tool_search_call":  # a client's search (a server's, without a call id, was never a route's)
                name, arguments = SEARCH, json.dumps(item.get("arguments") or {})
            else:
                name = chat_name(item.get("namespace"), item["name"])
                arguments = item["arguments"] if kind == "function_call" else json.dumps({"input": item["input"]})
            call = {"id": item["call_id"], "type": "function", "function": {"name": name, "arguments": arguments}}
            if not joinable:
                out.append({"role": "assistant", "content": None, **reasoning})
                joinable, reasoning = True, {}
            out[-1].setdefault("tool_calls", []).append(call)
        elif kind in ("function_call_output", "custom_tool_call_output"):
            output = item["output"]
            content = output if isinstance(output, str) else [_chat_part(p) for p in output]
            out.append({"role": "tool", "tool_call_id": item["call_id"], "content": content})
            joinable = False
        elif kind == "tool_search_output" and item.get("call_id"):  # what it loaded is offered (`tool_search`)
            out.append({"role": "tool", "tool_call_id": item["call_id"], "content": found(item)})
            joinable = False
        elif kind == "compaction":  # the turns it stands for, summarized (`compaction`)
            out.extend(compaction_messages(item["encrypted_content"]))
            joinable, reasoning = False, {}
    return out


def _reasoning_fields(item: Json) -> Json:
    """A reasoning item sent back, as the chat fields an Anthropic route turns into its signed thinking."""
    text = "".join(p.get("text", "") for p in item.get("content") or [] if isinstance(p, dict))
    signature = item.get("encrypted_content")
    if not isinstance(signature, str) or not signature:
        return {}  # nothing a route could check: not sent
    return {"reasoning_content": text, "reasoning_signature": signature}


def _chat_message(item: Json) -> Json:
    role = "system" if item["role"] == "developer" else item["role"]
    if role == "assistant":
        text = "".join(p.get("text", "") for p in item["content"] if p["type"] in ("output_text", "input_text"))
        return {"role": "assistant", "content": text or None}
    return {"role": role, "content": [_chat_part(p) for p in item["content"]]}


def _chat_part(part: Json) -> Json:
    if part["type"] == "input_image":
        return {"type": "image_url", "image_url": {"url": part["image_url"], "detail": part.get("detail", "auto")}}
    return {"type": "text", "text": part.get("text") or part.get("refusal") or ""}


# --------------------------------------------------------------------------- answer -> output items


def output_of(completion: ChatCompletion, turn: Turn) -> tuple[list[Json], str | None]:
    """A whole chat answer as output items, and its finish reason."""
    choice = completion.choices[0]
    out: list[Json] = []
    message = choice.message
    if message.reasoning_content or message.reasoning_signature:
        item = reasoning_item(message.reasoning_content or "")
        out.append(item | ({"encrypted_content": message.reasoning_signature} if message.reasoning_signature else {}))
    if message.content:
        out.append(message_item([output_text(message.content, logprobs_of(choice.logprobs))]))
    elif message.refusal:
        out.append(message_item([{"type": "refusal", "refusal": message.refusal}]))
    for call in message.tool_calls or []:
        out.append(turn.call_item(call.id, call.function.name, call.function.arguments))
    return out, choice.finish_reason
