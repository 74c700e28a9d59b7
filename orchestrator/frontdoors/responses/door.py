"""OpenAI's Responses API: `POST /v1/responses` through the chat flow, and the stored responses.

A request is validated (`wire`), its `previous_response_id` read from the
store (the owner's only) or its `conversation`'s items from the stored
conversations (`conversation_store`), and translated into the chat request the flow
answers (`translate.to_chat`), so it is resolved, admitted, cached, spilled
and billed like any chat request. The answer goes back as a `Response`
object, or as the Responses event stream (`events`). With `store` (the
default, as OpenAI's) the response, its input items and the conversation so
far are kept (`store`) before the client is told it completed, so a
`GET /v1/responses/{id}` or a `previous_response_id` right after it finds it.
A response in a conversation adds its input and output items to it when it
completes, with `store` or without (as OpenAI's: `store` is about the response
object; the conversation is the client's own), before the client is told, so
the next turn finds them. Errors are OpenAI's JSON.

A response that asks for server-side compaction (`context_management`) and
crossed its threshold is answered from its context compacted first
(`compacted`, which the edge calls between the parse and the flow): its output
begins with the compaction item.

The WebSocket mode (`orchestrator.websocket`) asks this door the same way:
its parse (`call`, from a body already validated), `compacted`, the flow, then the same
events, sent as lines of JSON (`socket_events`); a door bound to one connection
(`remembering`) also finds that connection's latest responses, stored or not
(`store.Recent`), and a response asked with `generate: false` is answered and
kept without asking a model (`unasked`).
"""

from __future__ import annotations

import copy
import logging
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping
from typing import TYPE_CHECKING, Any

from fastapi import FastAPI, Request
from pydantic import TypeAdapter
from starlette.responses import JSONResponse, Response

from orchestrator.accounting.accounts import Tab
from orchestrator.calls import CHAT, Call
from orchestrator.errors import InvalidRequest, NotFound, OrchestratorError, UpstreamError
from orchestrator.failover import OpenStream
from orchestrator.frontdoors.base import tenant
from orchestrator.frontdoors.openai import SSE_HEADERS, error_response, parse_body, route_headers
from orchestrator.frontdoors.responses.compaction import SUMMARY_TURNS, compaction_item
from orchestrator.frontdoors.responses.context_management import compact_first
from orchestrator.frontdoors.responses.conversation_store import (
    Conversation,
    ConversationStore,
    Limits,
    Refused,
    item_bytes,
)
from orchestrator.frontdoors.responses.conversations import check_room, not_found
from orchestrator.frontdoors.responses.events import ResponseEvents
from orchestrator.frontdoors.responses.response_object import mark_cut, response_object
from orchestrator.frontdoors.responses.store import Recent, ResponseStore, Stored
from orchestrator.frontdoors.responses.tool_search import carried
from orchestrator.frontdoors.responses.translate import Json, Turn, output_of, to_chat
from orchestrator.frontdoors.responses.wire import TAGS, ItemReference, ResponsesRequest, StoredItem, TokenCountRequest
from orchestrator.frontdoors.sse import EventStream
from orchestrator.protocol import ChatCompletion, ChatCompletionChunk
from orchestrator.routes import Routed

if TYPE_CHECKING:  # the pipeline is handed to a side door by the edge
    from orchestrator.pipeline import Pipeline

log = logging.getLogger(__name__)


class ResponsesDoor:
    """`POST /v1/responses` over the chat flow, keeping what it answered in `store`."""

    path = "/v1/responses"

    def __init__(self, store: ResponseStore, conversations: ConversationStore, room: Limits):
        self._store = store
        self._conversations = conversations
        self._room = room  # how large a conversation may grow
        self._recent: Recent | None = None  # one WebSocket connection's latest responses (`remembering`)

    def remembering(self, recent: Recent) -> ResponsesDoor:
        """This door for one WebSocket connection: every response it answers is remembered in `recent`,
        stored or not, and a `previous_response_id` is looked for there first (OpenAI's connection-local
        state, which a `store: false` chain over the socket relies on)."""
        door = copy.copy(self)
        door._recent = recent
        return door

    async def parse(self, raw: bytes, headers: Mapping[str, str], tab: Tab) -> Call:
        return await self.call(parse_body(raw, ResponsesRequest, tags=TAGS), headers, tab)

    async def call(self, request: ResponsesRequest, headers: Mapping[str, str], tab: Tab) -> Call:
        """A valid request as the call the flow answers."""
        turn = await self.turn(request, tab)
        if turn.compacting and not (turn.items or turn.context):  # as `POST /v1/responses/compact` refuses it
            raise InvalidRequest(
                "There is nothing to compact: send the conversation before the 'compaction_trigger', or name a "
                "stored response with 'previous_response_id' or a conversation with 'conversation'.",
                param="input",
                code="missing_required_parameter",
            )
        keep = (SUMMARY_TURNS if turn.compacting else 1) if request.truncation == "auto" else None
        return Call(CHAT, to_chat(turn), headers, tab, turn.owner, origin=turn, keep_turns=keep)

    async def compacted(self, call: Call, pipeline: Pipeline) -> Call:
        """`call` (this door's) answered from its context compacted first, where its request asks for
        server-side compaction and its input crossed the threshold (`context_management`); else as it is. The
        edge calls it once the body is parsed (a large body's slot given back: a compaction asks a model)."""
        return await compact_first(call, pipeline)

    async def turn(self, request: ResponsesRequest, tab: Tab, *, room: bool = True) -> Turn:
        """`request` as the turn it asks for, the tab's key's only: its `item_reference`s resolved, after
        the chain its `previous_response_id` names or its `conversation`'s items (with `room` for it there:
        a full one is a 400 before a model is asked)."""
        owner = tenant(tab)
        if not isinstance(request.input, str):
            await resolve_references(self._store, request.input, owner)
        context: list[Json] = []
        conversation: Conversation | None = None
        if request.previous_response_id is not None:
            context = (await self._previous(request.previous_response_id, owner)).context
        elif (conversation_id := request.conversation_id()) is not None:
            conversation = await self._conversations.get(owner, conversation_id)
            if conversation is None:
                raise not_found(conversation_id, param="conversation")
            context = conversation.items
        turn = Turn.of(request, owner, context, conversation.id if conversation is not None else None)
        if conversation is not None and room:
            check_room(conversation, turn.items, self._room)  # full: a 400 before a model is asked
        return turn

    async def _previous(self, response_id: str, owner: str) -> Stored:
        recent = self._recent.get(response_id) if self._recent is not None else None
        if recent is not None and recent.owner == owner:
            return recent
        return await read_stored(self._store, response_id, owner, "previous_response_id")

    async def encode(self, call: Call, routed: Routed[Any]) -> Response:
        turn: Turn = call.origin
        headers = route_headers(routed.route)
        if left_out := turn.request.left_out():
            headers["x-tools-left-out"] = ",".join(left_out)
        if isinstance(routed.result, OpenStream):
            events = _events(routed.result, ResponseEvents(turn), turn, self._keep)
            return EventStream(events, media_type="text/event-stream", headers={**SSE_HEADERS, **headers})
        response = await self._whole(turn, routed.result)
        if turn.request.stream:  # a compaction asked as a stream: its events, now that it is whole
            body = ResponseEvents(turn).whole(response)
            return Response(body, media_type="text/event-stream", headers={**SSE_HEADERS, **headers})
        return JSONResponse(response, headers=headers)

    async def _whole(self, turn: Turn, completion: ChatCompletion) -> Json:
        """A whole answer as its `Response`, kept, after the compaction its context had first (if any). A
        compaction (its summary asked whole, `asking_for_summary`, streamed or not) answers with its compaction
        item alone."""
        if turn.compacting:
            output, finish = [compaction_item(completion, tools=carried(turn.context + turn.items))], None
        else:
            output, finish = output_of(completion, turn)
            mark_cut(output, finish)
        if turn.compaction is not None:
            output = [turn.compaction, *output]
        response = response_object(
            turn, completion.model, output=output, status="completed", usage=completion.usage, finish=finish
        )
        await self._keep(turn, response)
        return response

    def error(self, exc: OrchestratorError) -> Response:
        return error_response(exc)

    def socket_events(self, call: Call, routed: Routed[Any], stream_id: str | None) -> AsyncIterator[bytes]:
        """The flow's answer to a streamed call as the WebSocket mode sends it: a streamed POST's events,
        each a line of JSON (one message each) naming its lane (`stream_id`), kept as `encode` keeps them."""
        turn: Turn = call.origin
        events = ResponseEvents(turn, lines=True, stream_id=stream_id)
        if not isinstance(routed.result, OpenStream):  # a compaction: its summary asked whole
            return self._said_whole(turn, routed.result, events)
        return _events(routed.result, events, turn, self._keep)

    async def _said_whole(self, turn: Turn, completion: ChatCompletion, events: ResponseEvents) -> AsyncIterator[bytes]:
        yield events.whole(await self._whole(turn, completion))

    async def unasked(self, turn: Turn, stream_id: str | None) -> AsyncIterator[bytes]:
        """A response asked with `generate: false` (the WebSocket mode's): no model is asked; it is created and
        completed with no output, and kept as any other (stored, remembered, added to its conversation) so
        that a later response continues from it: a client warms up its tools and instructions so (Codex)."""
        events = ResponseEvents(turn, lines=True, stream_id=stream_id)
        said = events.begin() + events.close()
        assert events.done is not None
        await self._keep(turn, events.done)
        yield said

    async def _keep(self, turn: Turn, response: Json) -> None:
        """A finished response's items added to its conversation, and the response stored (when its
        request asked to). The conversation gone or grown full meanwhile (turns at once each found room
        for themselves) costs it these items, not the answer; the output always has room past the
        limits, as the request's input had when it was checked, before the model was asked. On a
        WebSocket the connection remembers it too, stored or not (`remembering`)."""
        if turn.conversation is not None:
            output = response["output"]
            added = await self._conversations.append(
                turn.owner, turn.conversation, [*turn.items, *output], _with_room_for(self._room, output)
            )
            if isinstance(added, Refused):
                log.warning("response %s not added to conversation %s: %s", turn.id, turn.conversation, added)
        stored = Stored(turn.owner, response, turn.items, turn.context)
        if self._recent is not None:
            self._recent.remember(stored)
        if turn.request.store:
            await self._store.put([stored])


class ResponsesTokenCount:
    """`POST /v1/responses/input_tokens`: the input tokens a `POST /v1/responses` with this body would
    send (its stored chain or conversation, instructions and tools too), as the gateway counts a prompt
    (the local model's tokenizer and chat template; no model is asked)."""

    path = "/v1/responses/input_tokens"

    def __init__(self, door: ResponsesDoor):
        self._door = door  # whose stored responses and conversations a request may name

    async def answer(self, raw: bytes, headers: Mapping[str, str], tab: Tab, pipeline: Pipeline) -> Response:
        request = parse_body(raw, TokenCountRequest, tags=TAGS)
        turn = await self._door.turn(request, tab, room=False)  # counting adds nothing to a conversation
        if not (turn.items or turn.context or request.instructions):
            raise InvalidRequest(
                "There is nothing to count: send 'input', or name a stored response or a conversation.",
                param="input",
                code="missing_required_parameter",
            )
        tokens = await pipeline.count(Call(CHAT, to_chat(turn), headers, tab, turn.owner))
        return JSONResponse({"object": "response.input_tokens", "input_tokens": tokens})

    def error(self, exc: OrchestratorError) -> Response:
        return error_response(exc)


async def _events(
    stream: OpenStream[ChatCompletionChunk],
    events: ResponseEvents,
    turn: Turn,
    keep: Callable[[Turn, Json], Awaitable[None]],
) -> AsyncIterator[bytes]:
    """The stream as Responses `events`; kept (`ResponsesDoor._keep`) before `response.completed` goes out."""
    try:
        yield b"".join(events.feed(c) for c in stream.prefix)
        async for batch in stream.rest:
            if out := b"".join(events.feed(c) for c in batch):
                yield out
        closing = events.close()
    except OrchestratorError as e:
        yield events.fail(e.code, e.message, e.param, e.error_type)
        return
    except Exception as e:  # never a silent truncation: say the stream broke
        log.exception("stream failed")
        broke = UpstreamError(f"The stream failed: {type(e).__name__}.")
        yield events.fail("server_error", broke.message, kind=broke.error_type)
        return
    finally:
        await stream.aclose()
    assert events.done is not None
    await keep(turn, events.done)
    yield closing


def _with_room_for(room: Limits, output: list[Json]) -> Limits:
    """`room` grown by `output`, as a conversation's items count it (one item each, and its JSON)."""
    return Limits(room.max_items + len(output), room.max_bytes + sum(map(item_bytes, output)))


_STORED_ITEM: TypeAdapter[Any] = TypeAdapter(StoredItem)


async def resolve_references(store: ResponseStore, items: list[Any], owner: str) -> None:
    """Each `item_reference` in `items` (a request's input) replaced by the item it names, of a response
    this key stored."""
    for i, item in enumerate(items):
        if not isinstance(item, ItemReference):
            continue
        stored = await store.get_item(owner, item.id)
        found = stored.item(item.id) if stored is not None and stored.owner == owner else None
        if found is None:
            raise NotFound(f"Item with id '{item.id}' not found.", param=f"input[{i}].id")
        items[i] = _STORED_ITEM.validate_python(found)


async def read_stored(store: ResponseStore, response_id: str, owner: str, param: str | None = None) -> Stored:
    """A stored response its owner may read; anyone else's is not there: a 404, or, named as the one a
    request continues (`previous_response_id`), OpenAI's 400 `previous_response_not_found`, on which clients
    send the whole conversation again."""
    stored = await store.get(response_id)
    if stored is None or stored.owner != owner:
        if param == "previous_response_id":
            raise InvalidRequest(
                f"Previous response with id '{response_id}' not found.",
                param=param,
                code="previous_response_not_found",
            )
        raise NotFound(f"Response with id '{response_id}' not found.", param=param)
    return stored


# --------------------------------------------------------------------------- stored responses


def add_stored_routes(app: FastAPI, store: ResponseStore, authenticate: Callable[[Request], Awaitable[Tab]]) -> None:
    """`GET` and `DELETE /v1/responses/{id}`, `GET /v1/responses/{id}/input_items` and `POST
    /v1/responses/{id}/cancel` (a 400: no response here is a background one), each reading only the
    presenting key's own responses."""

    async def get(request: Request) -> Response:
        tab = await authenticate(request)
        if request.query_params.get("stream", "false").lower() not in ("false", "0"):
            raise InvalidRequest("Streaming a stored response again is not supported by this gateway.", param="stream")
        stored = await read_stored(store, request.path_params["response_id"], tenant(tab))
        return JSONResponse(stored.response)

    async def delete(request: Request) -> Response:
        tab = await authenticate(request)
        response_id = request.path_params["response_id"]
        await read_stored(store, response_id, tenant(tab))
        await store.delete(response_id)
        return JSONResponse({"id": response_id, "object": "response", "deleted": True})

    async def input_items(request: Request) -> Response:
        tab = await authenticate(request)
        stored = await read_stored(store, request.path_params["response_id"], tenant(tab))
        return JSONResponse(item_page(stored.input_items, request.query_params))

    async def cancel(request: Request) -> Response:
        tab = await authenticate(request)
        await read_stored(store, request.path_params["response_id"], tenant(tab))
        raise InvalidRequest(
            "Only a response created with 'background' can be cancelled, and this gateway makes none: "
            "its responses are answered while the request waits (end that request to stop one).",
            code="invalid_request",
        )

    app.add_route("/v1/responses/{response_id}", get, methods=["GET"])
    app.add_route("/v1/responses/{response_id}/cancel", cancel, methods=["POST"])
    app.add_route("/v1/responses/{response_id}", delete, methods=["DELETE"])
    app.add_route("/v1/responses/{response_id}/input_items", input_items, methods=["GET"])


def item_page(items: list[Json], query: Mapping[str, str], after_missing: str | None = None) -> Json:
    """One page of `items` as OpenAI lists them: `order` (desc by default), `after` an item id
    (one not there: a 400 saying `after_missing`), `limit` 1 to 100 (20)."""
    order = query.get("order", "desc")
    if order not in ("asc", "desc"):
        raise InvalidRequest(
            "Invalid value for 'order': expected 'asc' or 'desc'.", param="order", code="invalid_value"
        )
    limit_text = query.get("limit", "20")
    if not (limit_text.isascii() and limit_text.isdigit() and 1 <= int(limit_text) <= 100):  # "²" is a digit
        raise InvalidRequest(
            "Invalid value for 'limit': expected an integer from 1 to 100.", param="limit", code="invalid_value"
        )
    ordered = items if order == "asc" else items[::-1]
    after = query.get("after")
    if after is not None:
        ids = [item.get("id") for item in ordered]
        if after not in ids:
            raise InvalidRequest(
                after_missing or f"No input item with id '{after}' in this response.",
                param="after",
                code="invalid_value",
            )
        ordered = ordered[ids.index(after) + 1 :]
    page = ordered[: int(limit_text)]
    return {
        "object": "list",
        "data": page,
        "first_id": page[0]["id"] if page else None,
        "last_id": page[-1]["id"] if page else None,
        "has_more": len(ordered) > len(page),
    }
