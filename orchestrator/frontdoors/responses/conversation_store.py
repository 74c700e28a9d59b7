"""Stored conversations: what `/v1/conversations…` and a response's `conversation` read and grow.

A conversation is one entry: its owner (the key's tenant), id, creation time,
metadata and items, in order. Like the stored responses (`store`), one store
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

    async def get(self, owner: str, conversation_id: str) -> Conversation | None: ...

    async def update(self, owner: str, conversation_id: str, metadata: dict[str, str]) -> Conversation | None: ...

    async def delete(self, owner: str, conversation_id: str) -> bool: ...

    async def append(
        self, owner: str, conversation_id: str, items: list[Json], limits: Limits | None
    ) -> Conversation | Refused: ...

    async def delete_item(self, owner: str, conversation_id: str, item_id: str) -> Conversation | Refused: ...


class DiskConversations:
    """The conversations on disk, as JSON, each with its time to live (synchronous: the actor's and the
    in-process store's body). The directory is opened at the first use (`None`: a temporary one)."""

    def __init__(self, directory: Path | None = None, *, ttl_s: float = 30 * 86400, size_limit_bytes: int = 1 << 30):
        self._shelf = Shelf(directory, ttl_s=ttl_s, size_limit_bytes=size_limit_bytes)

    def create(self, conversation: Conversation) -> None:
        self._write(conversation)

    def get(self, owner: str, conversation_id: str) -> Conversation | None:
        return self._read(owner, conversation_id)

    def update(self, owner: str, conversation_id: str, metadata: dict[str, str]) -> Conversation | None:
        with self._shelf.locked():
            found = self._read(owner, conversation_id)
            if found is None:
                return None
            self._write(replace(found, metadata=metadata))
        return replace(found, metadata=metadata, items=[])

    def delete(self, owner: str, conversation_id: str) -> bool:
        with self._shelf.locked():
            if self._read(owner, conversation_id) is None:
                return False
            return self._shelf.delete(conversation_id)

    def append(
        self, owner: str, conversation_id: str, items: list[Json], limits: Limits | None
    ) -> Conversation | Refused:
        """`items` after the conversation's own, all or none: none past `limits` (None: no limit, for
        a response's output, which its request's limits were checked for), none with an id it holds."""
        with self._shelf.locked():
            found = self._read(owner, conversation_id)
            if found is None:
                return Refused("missing")
            held = {item.get("id") for item in found.items}
            if duplicate := next((i["id"] for i in items if i.get("id") in held), None):
                return Refused("duplicate", duplicate)
            grown = replace(found, items=[*found.items, *items])
            if limits is not None and len(grown.items) > limits.max_items:
                return Refused("full", f"at most {limits.max_items} items")
            size = self._write(grown, limit=limits.max_bytes if limits is not None else None)
            if size is None:
                assert limits is not None
                return Refused("full", f"at most {limits.max_bytes / 2**20:g} MB of items")
        return replace(found, items=[])

    def delete_item(self, owner: str, conversation_id: str, item_id: str) -> Conversation | Refused:
        with self._shelf.locked():
            found = self._read(owner, conversation_id)
            if found is None:
                return Refused("missing")
            if found.item(item_id) is None:
                return Refused("missing_item")
            self._write(replace(found, items=[i for i in found.items if i.get("id") != item_id]))
        return replace(found, items=[])

    def _read(self, owner: str, conversation_id: str) -> Conversation | None:
        raw = self._shelf.get(conversation_id)
        if raw is None:
            return None
        try:
            found = Conversation(**json.loads(raw))
        except (TypeError, ValueError):  # written by another version of this store: as good as gone
            log.warning("stored conversation %s is unreadable; treated as absent", conversation_id)
            return None
        return found if found.owner == owner else None

    def _write(self, conversation: Conversation, limit: int | None = None) -> int | None:
        """Write it (its time to live starts again); not past `limit` bytes (then None)."""
        raw = encode(conversation)
        if limit is not None and len(raw) > limit:
            return None
        self._shelf.put(conversation.owner, conversation.id, raw)
        return len(raw)


def encode(conversation: Conversation) -> str:
    """The conversation as it is stored: what `Limits.max_bytes` measures."""
    return json.dumps(
        {
            "owner": conversation.owner,
            "id": conversation.id,
            "created_at": conversation.created_at,
            "metadata": conversation.metadata,
            "items": conversation.items,
        }
    )


class InProcessConversations:
    """A `ConversationStore` over conversations on this process's disk, off the event loop."""

    def __init__(self, disk: DiskConversations):
        self._disk = disk

    async def create(self, conversation: Conversation) -> None:
        await asyncio.to_thread(self._disk.create, conversation)

    async def get(self, owner: str, conversation_id: str) -> Conversation | None:
        return await asyncio.to_thread(self._disk.get, owner, conversation_id)

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

    async def get(self, owner: str, conversation_id: str) -> Conversation | None:
        result: Conversation | None = await self._handle.get.remote(owner, conversation_id)
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
