"""Chat chunks -> the Responses API's stream events, in the official order.

    response.created, response.in_progress
    a compaction its context had first (`context_management`): response.output_item.added
                      and .done, whole, at output index 0
    per output item:  response.output_item.added
        reasoning:    response.reasoning_text.delta …, response.reasoning_text.done
        a message:    response.content_part.added, response.output_text.delta … (or
                      response.refusal.delta …), response.output_text.done (refusal.done),
                      response.content_part.done
        a tool call:  response.function_call_arguments.delta …, …arguments.done (a custom tool's:
                      response.custom_tool_call_input.delta and .done, at its end: its input
                      is the string inside the JSON a route streams; a client's tool search:
                      none, its arguments in the item done)
                      response.output_item.done
    response.completed (or response.incomplete: a finish by length or filter)

A compaction (`compaction_trigger`) is summarized whole, then sent as the same events with
its one item (`whole`).

A failure after the stream started ends it with an `error` event and a
`response.failed` carrying what was produced so far: never a silent end.
Every event has its `sequence_number`.

The same events go out as SSE frames (a streamed `POST`) or as lines of
JSON, one WebSocket message each (the WebSocket mode, `orchestrator.websocket`),
where every event names its lane (`stream_id`) when the client named one and
the `error` event has the socket's shape (`ResponseWsError`: the error object
under `error`).
"""

from __future__ import annotations

import json
from typing import Any

from orchestrator.frontdoors.responses.custom_tools import custom_input
from orchestrator.frontdoors.responses.ids import new_id
from orchestrator.frontdoors.responses.output_items import logprobs_of, message_item, output_text, reasoning_item
from orchestrator.frontdoors.responses.response_object import cut_index, response_object
from orchestrator.frontdoors.responses.tool_search import search_arguments
from orchestrator.frontdoors.responses.translate import Json, Turn
from orchestrator.protocol import ChatCompletionChunk, ToolCallDelta, Usage

WHOLE = ("custom_tool_call", "tool_search_call")  # call items whose arguments are not streamed as they come


class ResponseEvents:
    """One response's events, fed one chunk at a time; `done` is the final `Response`.

    Output items are numbered as they are added; a message item is done when a tool call
    or another part kind starts, tool-call items at the end (a route may interleave the
    arguments of parallel calls)."""

    def __init__(self, turn: Turn, *, lines: bool = False, stream_id: str | None = None):
        """`lines`: each event a line of JSON (a WebSocket message) instead of an SSE frame; `stream_id`: the
        WebSocket lane every event names."""
        self._turn = turn
        self._lines = lines
        self._stream_id = stream_id
        self._seq = 0
        self._model = turn.request.model
        self._started = False
        self._items: list[Json] = []  # every item added, at its output index
        self._finished: set[int] = set()
        self._text: int | None = None  # the open message item's index
        self._reasoning: int | None = None  # the open reasoning item's index
        self._kind = ""  # its part's kind: "output_text" or "refusal"
        self._tools: dict[int, int] = {}  # chat tool-call index -> its item's index
        self._custom: dict[int, str] = {}  # a custom tool's or a search's call arguments so far, by item index
        self._usage: Usage | None = None
        self._finish: str | None = None
        self.done: Json | None = None

    def feed(self, chunk: ChatCompletionChunk) -> bytes:
        out = b"" if self._started else self._start(chunk.model or self._model)
        if chunk.usage is not None:
            self._usage = chunk.usage
        for choice in chunk.choices[:1]:
            if choice.delta.reasoning_content or choice.delta.reasoning_signature:
                out += self._reasoning_delta(choice.delta.reasoning_content, choice.delta.reasoning_signature)
            if choice.delta.content:
                out += self._text_delta("output_text", choice.delta.content, logprobs_of(choice.logprobs))
            if choice.delta.refusal:
                out += self._text_delta("refusal", choice.delta.refusal)
            for call in choice.delta.tool_calls or []:
                out += self._tool_delta(call)
            if choice.finish_reason is not None:
                self._finish = choice.finish_reason
        return out

    def close(self) -> bytes:
        """The open items' done events and `response.completed` (or `response.incomplete`)."""
        out = self._finish_all()
        self.done = response_object(
            self._turn, self._model, output=self._items, status="completed", usage=self._usage, finish=self._finish
        )
        kind = "response.completed" if self.done["status"] == "completed" else "response.incomplete"
        return out + self._event(kind, response=self.done)

    def whole(self, response: Json) -> bytes:
        """A response answered whole (a compaction's) as its events: created and in progress, each
        output item added and done, completed."""
        snapshot = {**response, "status": "in_progress", "output": [], "completed_at": None}
        snapshot.pop("usage", None)
        out = self._event("response.created", response=snapshot) + self._event(
            "response.in_progress", response=snapshot
        )
        for index, item in enumerate(response["output"]):
            out += self._event("response.output_item.added", output_index=index, item=item)
            out += self._event("response.output_item.done", output_index=index, item=item)
        return out + self._event("response.completed", response=response)

    def begin(self) -> bytes:
        """`response.created` and `response.in_progress` with no chunk yet: a response that asks no model
        (the WebSocket mode's `generate: false`) goes straight on to `close`."""
        return self._start(self._model)

    def fail(self, code: str | None, message: str, param: str | None = None, kind: str = "server_error") -> bytes:
        """An `error` event and `response.failed`, with the unfinished items marked incomplete (`kind`: the
        error's type, which the socket's `error` event says)."""
        for index, item in enumerate(self._items):
            if index not in self._finished:
                item["status"] = "incomplete"
        error = {"code": "rate_limit_exceeded" if code == "rate_limit_exceeded" else "server_error", "message": message}
        failed = response_object(self._turn, self._model, output=self._items, status="failed", error=error)
        if self._lines:
            said = self._event("error", error={"type": kind, "code": code, "message": message, "param": param})
        else:
            said = self._event("error", code=code, message=message, param=param)
        return said + self._event("response.failed", response=failed)

    # ------------------------------------------------------------------ events

    def _start(self, model: str) -> bytes:
        self._started = True
        self._model = model
        snapshot = response_object(self._turn, self._model, output=[], status="in_progress")
        out = self._event("response.created", response=snapshot)
        out += self._event("response.in_progress", response=snapshot)
        if (compaction := self._turn.compaction) is not None:  # made before the answer was asked: done already
            self._items.append(compaction)
            self._finished.add(0)
            out += self._event("response.output_item.added", output_index=0, item=compaction)
            out += self._event("response.output_item.done", output_index=0, item=compaction)
        return out

    def _add(self, item: Json) -> bytes:
        self._items.append(item)
        shown = {**item, "content": []} if item["type"] == "message" else dict(item)
        return self._event("response.output_item.added", output_index=len(self._items) - 1, item=shown)

    def _reasoning_delta(self, text: str | None, signature: str | None) -> bytes:
        out = b""
        if self._reasoning is None:
            out += self._add(reasoning_item("", new_id("rs"), status="in_progress"))
            self._reasoning = len(self._items) - 1
        item = self._items[self._reasoning]
        if signature:
            item["encrypted_content"] = item.get("encrypted_content", "") + signature
        if text:
            item["content"][0]["text"] += text
            out += self._event("response.reasoning_text.delta", **self._where(self._reasoning), delta=text)
        return out

    def _finish_reasoning(self) -> bytes:
        index, self._reasoning = self._reasoning, None
        if index is None:
            return b""
        text = self._items[index]["content"][0]["text"]
        return self._event("response.reasoning_text.done", **self._where(index), text=text) + self._finish_item(index)

    def _text_delta(self, kind: str, delta: str, logprobs: list[Json] | None = None) -> bytes:
        out = self._finish_reasoning()
        if self._text is None or self._kind != kind:
            out += self._finish_text()
            part: Json = output_text("") if kind == "output_text" else {"type": "refusal", "refusal": ""}
            out += self._add(message_item([part], new_id("msg"), status="in_progress"))
            self._text, self._kind = len(self._items) - 1, kind
            out += self._event("response.content_part.added", **self._where(self._text), part=dict(part))
        part = self._items[self._text]["content"][0]
        if kind == "output_text":
            part["text"] += delta
            part["logprobs"].extend(logprobs or [])
            where = self._where(self._text)
            return out + self._event("response.output_text.delta", **where, delta=delta, logprobs=logprobs or [])
        part["refusal"] += delta
        return out + self._event("response.refusal.delta", **self._where(self._text), delta=delta)

    def _tool_delta(self, call: ToolCallDelta) -> bytes:
        out = b""
        if call.index not in self._tools:
            out += self._finish_reasoning() + self._finish_text()
            name = call.function.name if call.function and call.function.name else ""
            out += self._add(self._turn.call_item(call.id or "", name, "", status="in_progress"))
            self._tools[call.index] = len(self._items) - 1
        index = self._tools[call.index]
        item = self._items[index]
        arguments = call.function.arguments if call.function else None
        if arguments and item["type"] in WHOLE:  # JSON of its input or search so far: told whole, at its end
            self._custom[index] = self._custom.get(index, "") + arguments
        elif arguments:
            item["arguments"] += arguments
            out += self._event(
                "response.function_call_arguments.delta", item_id=item["id"], output_index=index, delta=arguments
            )
        return out

    def _finish_all(self) -> bytes:
        out = self._finish_reasoning() + self._finish_text()
        for index in self._tools.values():
            item = self._items[index]
            where = {"item_id": item["id"], "output_index": index}
            if item["type"] == "custom_tool_call":
                item["input"] = custom_input(self._custom.get(index, ""))
                out += self._event("response.custom_tool_call_input.delta", **where, delta=item["input"])
                out += self._event("response.custom_tool_call_input.done", **where, input=item["input"])
            elif item["type"] == "tool_search_call":  # no events of its own: the item done carries its arguments
                item["arguments"] = search_arguments(self._custom.get(index, ""))
            else:
                out += self._event(
                    "response.function_call_arguments.done", **where, name=item["name"], arguments=item["arguments"]
                )
            out += self._finish_item(index)
        return out

    def _finish_text(self) -> bytes:
        index, self._text = self._text, None
        if index is None:
            return b""
        part = self._items[index]["content"][0]
        where = self._where(index)
        if self._kind == "output_text":
            out = self._event("response.output_text.done", **where, text=part["text"], logprobs=part["logprobs"])
        else:
            out = self._event("response.refusal.done", **where, refusal=part["refusal"])
        out += self._event("response.content_part.done", **where, part=part)
        return out + self._finish_item(index)

    def _finish_item(self, index: int) -> bytes:
        item = self._items[index]
        # The last item is still open when a finish by length or filter comes: the one it cut.
        item["status"] = "incomplete" if index == cut_index(len(self._items), self._finish) else "completed"
        self._finished.add(index)
        return self._event("response.output_item.done", output_index=index, item=item)

    def _where(self, index: int) -> Json:
        return {"item_id": self._items[index]["id"], "output_index": index, "content_index": 0}

    def _event(self, kind: str, **data: Any) -> bytes:
        event = {"type": kind, "sequence_number": self._seq, **data}
        if self._stream_id is not None:
            event["stream_id"] = self._stream_id
        self._seq += 1
        body = json.dumps(event)  # ASCII: no line break inside it, so a line is one event
        return f"{body}\n".encode() if self._lines else f"event: {kind}\ndata: {body}\n\n".encode()
