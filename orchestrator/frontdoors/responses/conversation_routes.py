"""`/v1/conversations…`: OpenAI's Conversations API over the stored conversations, per key.

    POST   /v1/conversations                          create (`items` up to 20, `metadata`)
    GET    /v1/conversations/{id}                     the conversation
    POST   /v1/conversations/{id}                     its metadata replaced
    DELETE /v1/conversations/{id}                     `conversation.deleted`
    GET    /v1/conversations/{id}/items               a page (`after`, `limit` 1-100, `order`, `include`)
    POST   /v1/conversations/{id}/items               items added (up to 20): the list of them
    GET    /v1/conversations/{id}/items/{item_id}     one item
    DELETE /v1/conversations/{id}/items/{item_id}     the item removed: the conversation

Every route reads and changes only the presenting key's own conversations: another key's is a 404,
worded as for one that never was. Bodies are read with the gateway's body limit; what they say is
checked by `conversations` (the policy) before the store is asked.
"""

from __future__ import annotations

import time
from collections.abc import Awaitable, Callable
from typing import TypeVar

from fastapi import FastAPI, Request
from starlette.responses import JSONResponse, Response

from orchestrator.accounting.accounts import Tab
from orchestrator.frontdoors.base import tenant
from orchestrator.frontdoors.openai import parse_body
from orchestrator.frontdoors.responses.conversation_store import Conversation, ConversationStore, Limits, Refused
from orchestrator.frontdoors.responses.conversations import (
    CreateConversationBody,
    ItemsBody,
    UpdateConversationBody,
    check_include,
    conversation_items,
    not_found,
    refusal,
)
from orchestrator.frontdoors.responses.door import item_page
from orchestrator.frontdoors.responses.ids import new_id
from orchestrator.frontdoors.responses.translate import Json
from orchestrator.frontdoors.responses.wire import TAGS, _Wire, conversation_id

Body = TypeVar("Body", bound=_Wire)


def add_conversation_routes(
    app: FastAPI,
    store: ConversationStore,
    authenticate: Callable[[Request], Awaitable[Tab]],
    read_body: Callable[[Request, Tab], Awaitable[bytes]],
    room: Limits,
) -> None:
    """The Conversations API's routes on `app`: `authenticate` a request's key, `read_body` within the
    gateway's limit, and a conversation grown no larger than `room`."""

    async def body(request: Request, tab: Tab, model: type[Body]) -> Body:
        return parse_body(await read_body(request, tab) or b"{}", model, tags=TAGS)  # the SDK may send none

    def named(request: Request) -> str:
        return conversation_id(request.path_params["conversation_id"], "conversation_id")

    async def listed(tab: Tab, cid: str, item_ids: list[str]) -> list[Json]:
        """Those items of the conversation (only they are read), or its 404."""
        found = await store.items(tenant(tab), cid, item_ids)
        if found is None:
            raise not_found(cid)
        return found

    async def create(request: Request) -> Response:
        tab = await authenticate(request)
        asked = await body(request, tab, CreateConversationBody)
        items = conversation_items(asked.items or [])
        conversation = Conversation(tenant(tab), new_id("conv"), int(time.time()), asked.metadata or {})
        await store.create(conversation)
        if items and isinstance(added := await store.append(conversation.owner, conversation.id, items, room), Refused):
            await store.delete(conversation.owner, conversation.id)
            raise refusal(added, conversation.id)
        return JSONResponse(conversation.resource())

    async def get(request: Request) -> Response:
        tab = await authenticate(request)
        found = await store.get(tenant(tab), cid := named(request), with_items=False)
        if found is None:
            raise not_found(cid)
        return JSONResponse(found.resource())

    async def update(request: Request) -> Response:
        tab = await authenticate(request)
        cid = named(request)
        asked = await body(request, tab, UpdateConversationBody)
        updated = await store.update(tenant(tab), cid, asked.metadata)
        if updated is None:
            raise not_found(cid)
        return JSONResponse(updated.resource())

    async def delete(request: Request) -> Response:
        tab = await authenticate(request)
        cid = named(request)
        if not await store.delete(tenant(tab), cid):
            raise not_found(cid)
        return JSONResponse({"id": cid, "object": "conversation.deleted", "deleted": True})

    async def list_items(request: Request) -> Response:
        tab = await authenticate(request)
        check_include(_include(request))
        ids = await store.item_ids(tenant(tab), cid := named(request))
        if ids is None:
            raise not_found(cid)
        after = f"No item with id '{request.query_params.get('after')}' in this conversation."
        page = item_page([{"id": i} for i in ids], request.query_params, after_missing=after)  # a page of ids
        by_id = {item["id"]: item for item in await listed(tab, cid, [p["id"] for p in page["data"]])}
        page["data"] = [by_id[p["id"]] for p in page["data"] if p["id"] in by_id]  # gone meanwhile: left out
        return JSONResponse(page)

    async def add_items(request: Request) -> Response:
        tab = await authenticate(request)
        check_include(_include(request))
        cid = named(request)
        items = conversation_items((await body(request, tab, ItemsBody)).items)
        added = await store.append(tenant(tab), cid, items, room)
        if isinstance(added, Refused):
            raise refusal(added, cid)
        ids = [item["id"] for item in items]
        first, last = (ids[0], ids[-1]) if ids else (None, None)
        return JSONResponse({"object": "list", "data": items, "first_id": first, "last_id": last, "has_more": False})

    async def get_item(request: Request) -> Response:
        tab = await authenticate(request)
        check_include(_include(request))
        item_id = request.path_params["item_id"]
        found = await listed(tab, named(request), [item_id])
        if not found:
            raise refusal(Refused("missing_item"), "", item_id)
        return JSONResponse(found[0])

    async def delete_item(request: Request) -> Response:
        tab = await authenticate(request)
        cid = named(request)
        item_id = request.path_params["item_id"]
        left = await store.delete_item(tenant(tab), cid, item_id)
        if isinstance(left, Refused):
            raise refusal(left, cid, item_id)
        return JSONResponse(left.resource())

    base, one, items, item = (
        "/v1/conversations",
        "/v1/conversations/{conversation_id}",
        "/v1/conversations/{conversation_id}/items",
        "/v1/conversations/{conversation_id}/items/{item_id}",
    )
    app.add_route(base, create, methods=["POST"])
    app.add_route(one, get, methods=["GET"])
    app.add_route(one, update, methods=["POST"])
    app.add_route(one, delete, methods=["DELETE"])
    app.add_route(items, list_items, methods=["GET"])
    app.add_route(items, add_items, methods=["POST"])
    app.add_route(item, get_item, methods=["GET"])
    app.add_route(item, delete_item, methods=["DELETE"])


def _include(request: Request) -> list[str]:
    """`include`, as the openai SDK sends it (`include[]=…`) or repeated (`include=…`)."""
    return [*request.query_params.getlist("include[]"), *request.query_params.getlist("include")]
