"""Stored conversations: what `/v1/conversations…` and a response's `conversation` read and grow.

A conversation is one entry (its owner, the key's tenant; its id, creation time,
metadata, and its items' ids in order) and its items, each written once beside it
(`DiskConversations`). Like the stored responses (`store`), one store
serves every gateway replica on every node: a named Ray actor around one
`Shelf` (its own directory, `conversations.directory`), or that shelf
in this process. Every change is a read, a change and a write in one
step (the actor runs one call at a time; in a process, the shelf's lock
orders the threads), so two replicas appending at once both land, in some
order, and a limit checked is a limit kept. Writes are not behind the answer
(as the responses' are): a conversation's next turn may come to any replica
the moment the last one is answered, and must find its items.

An entry lives `ttl_days` from its last change (OpenAI keeps conversations
until deleted; a gateway's disk is bounded: past `size_limit_mb` the least
recently written of the key holding the most go first, `shelf`). Reads name the owner: another tenant's
conversation is `None` here, as if it were not there. What can be refused
(the conversation gone, full, an item id it already holds) comes back as a
`Refused`, plain data, so it crosses the actor's handle as it is.
"""

from __future__ import annotations

import asyncio
import json
import logging
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any, Literal, Protocol

from orchestrator.actors import named_actor
from orchestrator.frontdoors.responses.shelf import Shelf
from orchestrator.settings import Settings

log = logging.getLogger(__name__)

Json = dict[str, Any]


@dataclass(frozen=True)
class Conversation:
    """A conversation; `items` is empty where only its resource was asked for (every change but `get`)."""

    owner: str
    id: str
    created_at: int
    metadata: dict[str, str]
    items: list[Json] = field(default_factory=list)

    def resource(self) -> Json:
        """The `Conversation` object."""
        return {"id": self.id, "object": "conversation", "created_at": self.created_at, "metadata": self.metadata}

    def item(self, item_id: str) -> Json | None:
        return next((item for item in self.items if item.get("id") == item_id), None)


@dataclass(frozen=True)
class Limits:
    """How large a client may grow one conversation."""

    max_items: int
    max_bytes: int


@dataclass(frozen=True)
class Refused:
    """Why a change was not made: the conversation (or item) is not there, it would grow past its
    limits (`detail`: which), or an item's id is already in it (`detail`: that id)."""

    reason: Literal["missing", "missing_item", "full", "duplicate"]
    detail: str = ""


class ConversationStore(Protocol):
    async def create(self, conversation: Conversation) -> None: ...

    async def get(self, owner: str, conversation_id: str, with_items: bool = True) -> Conversation | None: ...

    async def item_ids(self, owner: str, conversation_id: str) -> list[str] | None: ...

    async def items(self, owner: str, conversation_id: str, item_ids: list[str]) -> list[Json] | None: ...

    async def update(self, owner: str, conversation_id: str, metadata: dict[str, str]) -> Conversation | None: ...

    async def delete(self, owner: str, conversation_id: str) -> bool: ...

    async def append(
        self, owner: str, conversation_id: str, items: list[Json], limits: Limits | None
    ) -> Conversation | Refused: ...

    async def delete_item(self, owner: str, conversation_id: str, item_id: str) -> Conversation | Refused: ...


class DiskConversations:
    """The conversations on disk, each with its time to live (synchronous: the actor's and the in-process
    store's body). A conversation is a `Shelf` entry (its owner, time, metadata and the ids and sizes of
    its items, in order) with its items as the entry's children, each written once: adding or removing
    one costs that item and the list of ids, not the conversation (a 16 MB one rewritten whole took
    0.3 s of the one store every key shares, for a call that costs no tokens). The directory is opened at
    the first use (`None`: a temporary one)."""

    def __init__(self, directory: Path | None = None, *, ttl_s: float = 30 * 86400, size_limit_bytes: int = 1 << 30):
        self._shelf = Shelf(directory, ttl_s=ttl_s, size_limit_bytes=size_limit_bytes)

    def create(self, conversation: Conversation) -> None:
        items = conversation.items
        head = _Head(conversation.owner, conversation.id, conversation.created_at, conversation.metadata, [])
        head.items = [(item["id"], item_bytes(item)) for item in items]
        self._shelf.put(conversation.owner, conversation.id, head.encode(), _children(conversation.id, items))

    def get(self, owner: str, conversation_id: str, with_items: bool = True) -> Conversation | None:
        """The conversation, its items read only `with_items` (the resource alone reads one entry)."""
        with self._shelf.locked():
            head = self._head(owner, conversation_id)
            if head is None:
                return None
            if not with_items:
                return head.resource()
            items = [self._shelf.get(_item_key(conversation_id, item_id)) for item_id, _ in head.items]
        return replace(head.resource(), items=[json.loads(raw) for raw in items if raw is not None])

    def item_ids(self, owner: str, conversation_id: str) -> list[str] | None:
        """Its items' ids, in order (None: no such conversation of `owner`'s); none of their contents read."""
        head = self._head(owner, conversation_id)
        return None if head is None else [item_id for item_id, _ in head.items]

    def items(self, owner: str, conversation_id: str, item_ids: list[str]) -> list[Json] | None:
        """Those of its items, in the order asked, that it holds (a page: only they are read)."""
        with self._shelf.locked():
            head = self._head(owner, conversation_id)
            if head is None:
                return None
            held = {item_id for item_id, _ in head.items}
            found = [self._shelf.get(_item_key(conversation_id, i)) for i in item_ids if i in held]
        return [json.loads(raw) for raw in found if raw is not None]

    def update(self, owner: str, conversation_id: str, metadata: dict[str, str]) -> Conversation | None:
        with self._shelf.locked():
            head = self._head(owner, conversation_id)
            if head is None:
                return None
            head.metadata = metadata
            self._shelf.update(conversation_id, head.encode())
        return head.resource()

    def delete(self, owner: str, conversation_id: str) -> bool:
        with self._shelf.locked():
            if self._head(owner, conversation_id) is None:
                return False
            return self._shelf.delete(conversation_id)

    def append(
        self, owner: str, conversation_id: str, items: list[Json], limits: Limits | None
    ) -> Conversation | Refused:
        """`items` after the conversation's own, all or none: none past `limits` (None: no limit), none
        with an id it holds (or twice)."""
        with self._shelf.locked():
            head = self._head(owner, conversation_id)
            if head is None:
                return Refused("missing")
            held = {item_id for item_id, _ in head.items}
            for item in items:
                if item["id"] in held:
                    return Refused("duplicate", item["id"])
                held.add(item["id"])
            grown = [*head.items, *((item["id"], item_bytes(item)) for item in items)]
            if limits is not None and len(grown) > limits.max_items:
                return Refused("full", f"at most {limits.max_items} items")
            if limits is not None and sum(n for _, n in grown) > limits.max_bytes:
                return Refused("full", f"at most {limits.max_bytes / 2**20:g} MB of items")
            head.items = grown
            self._shelf.update(conversation_id, head.encode(), add=_children(conversation_id, items))
        return head.resource()

    def delete_item(self, owner: str, conversation_id: str, item_id: str) -> Conversation | Refused:
        with self._shelf.locked():
            head = self._head(owner, conversation_id)
            if head is None:
                return Refused("missing")
            if all(held != item_id for held, _ in head.items):
                return Refused("missing_item")
            head.items = [(held, n) for held, n in head.items if held != item_id]
            self._shelf.update(conversation_id, head.encode(), remove=[_item_key(conversation_id, item_id)])
        return head.resource()

    def _head(self, owner: str, conversation_id: str) -> _Head | None:
        raw = self._shelf.get(conversation_id)
        if raw is None:
            return None
        try:
            head = _Head.decode(raw)
        except (KeyError, TypeError, ValueError):  # written by another version of this store: as good as gone
            log.warning("stored conversation %s is unreadable; treated as absent", conversation_id)
            return None
        return head if head.owner == owner else None


@dataclass
class _Head:
    """A conversation's own entry: all but its items' contents."""

    owner: str
    id: str
    created_at: int
    metadata: dict[str, str]
    items: list[tuple[str, int]]  # (id, size as `item_bytes` counts it), in order

    def resource(self) -> Conversation:
        return Conversation(self.owner, self.id, self.created_at, self.metadata)

    def encode(self) -> str:
        return json.dumps(
            {"owner": self.owner, "id": self.id, "created_at": self.created_at, "metadata": self.metadata,
             "items": self.items}
        )  # fmt: skip

    @classmethod
    def decode(cls, raw: str) -> _Head:
        d = json.loads(raw)
        return cls(d["owner"], d["id"], d["created_at"], d["metadata"], [(i, n) for i, n in d["items"]])


def item_bytes(item: Json) -> int:
    """An item's size as a conversation's limit counts it: its JSON."""
    return len(json.dumps(item))


def _item_key(conversation_id: str, item_id: str) -> str:
    """An item's own key: no conversation id (which a client names, always 'conv…') starts so."""
    return f"item:{conversation_id}:{item_id}"


def _children(conversation_id: str, items: list[Json]) -> dict[str, str]:
    return {_item_key(conversation_id, item["id"]): json.dumps(item) for item in items}


class InProcessConversations:
    """A `ConversationStore` over conversations on this process's disk, off the event loop."""

    def __init__(self, disk: DiskConversations):
        self._disk = disk

    async def create(self, conversation: Conversation) -> None:
        await asyncio.to_thread(self._disk.create, conversation)

    async def get(self, owner: str, conversation_id: str, with_items: bool = True) -> Conversation | None:
        return await asyncio.to_thread(self._disk.get, owner, conversation_id, with_items)

    async def item_ids(self, owner: str, conversation_id: str) -> list[str] | None:
        return await asyncio.to_thread(self._disk.item_ids, owner, conversation_id)

    async def items(self, owner: str, conversation_id: str, item_ids: list[str]) -> list[Json] | None:
        return await asyncio.to_thread(self._disk.items, owner, conversation_id, item_ids)

    async def update(self, owner: str, conversation_id: str, metadata: dict[str, str]) -> Conversation | None:
        return await asyncio.to_thread(self._disk.update, owner, conversation_id, metadata)

    async def delete(self, owner: str, conversation_id: str) -> bool:
        return await asyncio.to_thread(self._disk.delete, owner, conversation_id)

    async def append(
        self, owner: str, conversation_id: str, items: list[Json], limits: Limits | None
    ) -> Conversation | Refused:
        return await asyncio.to_thread(self._disk.append, owner, conversation_id, items, limits)

    async def delete_item(self, owner: str, conversation_id: str, item_id: str) -> Conversation | Refused:
        return await asyncio.to_thread(self._disk.delete_item, owner, conversation_id, item_id)


class ActorConversations:
    """A `ConversationStore` over the named actor every replica shares."""

    def __init__(self, handle: Any):
        self._handle = handle

    async def create(self, conversation: Conversation) -> None:
        await self._handle.create.remote(conversation)

    async def get(self, owner: str, conversation_id: str, with_items: bool = True) -> Conversation | None:
        result: Conversation | None = await self._handle.get.remote(owner, conversation_id, with_items)
        return result

    async def item_ids(self, owner: str, conversation_id: str) -> list[str] | None:
        result: list[str] | None = await self._handle.item_ids.remote(owner, conversation_id)
        return result

    async def items(self, owner: str, conversation_id: str, item_ids: list[str]) -> list[Json] | None:
        result: list[Json] | None = await self._handle.items.remote(owner, conversation_id, item_ids)
        return result

    async def update(self, owner: str, conversation_id: str, metadata: dict[str, str]) -> Conversation | None:
        result: Conversation | None = await self._handle.update.remote(owner, conversation_id, metadata)
        return result

    async def delete(self, owner: str, conversation_id: str) -> bool:
        return bool(await self._handle.delete.remote(owner, conversation_id))

    async def append(
        self, owner: str, conversation_id: str, items: list[Json], limits: Limits | None
    ) -> Conversation | Refused:
        result: Conversation | Refused = await self._handle.append.remote(owner, conversation_id, items, limits)
        return result

    async def delete_item(self, owner: str, conversation_id: str, item_id: str) -> Conversation | Refused:
        result: Conversation | Refused = await self._handle.delete_item.remote(owner, conversation_id, item_id)
        return result


def conversations_for(settings: Settings) -> ConversationStore:
    """The store `settings.conversations` describes; its owner, time to live and disk limit are the
    stored responses' (`settings.responses`): both are the Responses API's state. The actor's calls are
    not run again after a crash (an append run twice would add its items twice)."""
    r = settings.responses
    directory = settings.conversations.directory or settings.data_dir / "conversations"
    ttl_s, size = r.ttl_days * 86400, r.size_limit_mb << 20
    if r.owner == "process":
        return InProcessConversations(DiskConversations(directory, ttl_s=ttl_s, size_limit_bytes=size))
    handle = named_actor(
        DiskConversations,
        "conversations",
        directory,
        directory,
        ttl_s=ttl_s,
        size_limit_bytes=size,
        retry_tasks=False,
    )
    return ActorConversations(handle)
