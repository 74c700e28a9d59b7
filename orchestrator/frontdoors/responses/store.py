"""Stored responses: what `GET /v1/responses/{id}`, `input_items` and `previous_response_id` read.

One store for every gateway replica on every node: a named Ray actor
(`responses.owner: actor`, get-or-create, like the ledger's) around one
`diskcache.Cache` on `responses.directory`, or that cache in this process
(`process`, for a single replica and tests). Entries expire after
`responses.ttl_days`; past `responses.size_limit_mb` the oldest of the key holding
the most go first (`shelf`: one key's entries never push out another's smaller share).
Each entry names its owner (the key's tenant); the door never shows an entry
to anyone else, and to them it does not exist. Each item of an entry (its input
items and its output) is found by its owner and its id too (`get_item`: the entry
that holds it), for an `item_reference` in a later request's input: a client may
name its input items' ids, so one tenant's ids never hide another's.

Writes leave the answer's path (`WriteBehind`): a replica answers at once,
reads its own writes at once, and sends what was stored meanwhile in one
batch as soon as the previous batch is written (a group commit: one actor
call and one SQLite transaction for many responses under load).
"""

from __future__ import annotations

import asyncio
import json
import logging
from collections import OrderedDict
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

from orchestrator.actors import named_actor
from orchestrator.frontdoors.responses.shelf import Owned, Shelf
from orchestrator.settings import Settings

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Stored:
    """A response, the input items it was asked with, and its conversation (for continuing it)."""

    owner: str
    response: dict[str, Any]
    input_items: list[dict[str, Any]]
    earlier: list[dict[str, Any]]  # the chain's items before this response's input (its previous responses)

    @property
    def context(self) -> list[dict[str, Any]]:
        """Every item of the conversation up to and including this response's output."""
        return [*self.earlier, *self.input_items, *self.response["output"]]

    @property
    def id(self) -> str:
        return str(self.response["id"])

    @property
    def items(self) -> list[dict[str, Any]]:
        """This response's own items: its input items and its output."""
        return [*self.input_items, *self.response.get("output", [])]

    def item(self, item_id: str) -> dict[str, Any] | None:
        return next((item for item in self.items if item.get("id") == item_id), None)


class ResponseStore(Protocol):
    async def get(self, response_id: str) -> Stored | None: ...

    async def get_item(self, owner: str, item_id: str) -> Stored | None: ...

    async def put(self, entries: list[Stored]) -> None: ...

    async def delete(self, response_id: str) -> bool: ...


class DiskResponses:
    """The entries on disk, as JSON, each with its time to live, the disk shared fairly between owners
    (`Shelf`; synchronous: the actor's and the in-process store's body). The directory is opened at the
    first use (`None`: a temporary one), so an app that never stores a response never opens one."""

    def __init__(self, directory: Path | None = None, *, ttl_s: float = 30 * 86400, size_limit_bytes: int = 1 << 30):
        self._shelf = Shelf(directory, ttl_s=ttl_s, size_limit_bytes=size_limit_bytes, owned=_owned)

    def get(self, response_id: str) -> Stored | None:
        raw = self._shelf.get(response_id)
        if raw is None:
            return None
        try:
            return Stored(**json.loads(raw))
        except (TypeError, ValueError):  # written by another version of this store: as good as gone
            log.warning("stored response %s is unreadable; treated as absent", response_id)
            return None

    def get_item(self, owner: str, item_id: str) -> Stored | None:
        """`owner`'s entry that holds the item `item_id` (an input item or an output item)."""
        response_id = self._shelf.get(item_key(owner, item_id))
        stored = self.get(response_id) if response_id is not None else None
        if stored is None or stored.owner != owner or stored.item(item_id) is None:
            return None
        return stored

    def put(self, entries: list[Stored]) -> None:
        for stored in entries:
            ids = [i["id"] for i in stored.items if isinstance(i.get("id"), str)]
            pointers = {item_key(stored.owner, item_id): stored.id for item_id in ids}
            self._shelf.put(stored.owner, stored.id, encode(stored), pointers)

    def delete(self, response_id: str) -> bool:
        return self._shelf.delete(response_id)


def _owned(key: str, value: str) -> Owned | None:
    """Whose a value a store wrote before its owner index is: an entry names its owner; an item's key
    holds its entry's id (`item_key`)."""
    if key.startswith("item:"):
        return Owned("", parent=value)
    try:
        owner = json.loads(value).get("owner")
    except (ValueError, AttributeError):
        return None
    return Owned(owner) if isinstance(owner, str) else None


def item_key(owner: str, item_id: str) -> str:
    """An item's key, whose value is its entry's id: its owner's own (no response id starts so)."""
    return f"item:{len(owner)}:{owner}:{item_id}"


def encode(stored: Stored) -> str:
    return json.dumps(
        {
            "owner": stored.owner,
            "response": stored.response,
            "input_items": stored.input_items,
            "earlier": stored.earlier,
        }
    )


class InProcessStore:
    """A `ResponseStore` over entries on this process's disk, off the event loop."""

    def __init__(self, disk: DiskResponses):
        self._disk = disk

    async def get(self, response_id: str) -> Stored | None:
        return await asyncio.to_thread(self._disk.get, response_id)

    async def get_item(self, owner: str, item_id: str) -> Stored | None:
        return await asyncio.to_thread(self._disk.get_item, owner, item_id)

    async def put(self, entries: list[Stored]) -> None:
        await asyncio.to_thread(self._disk.put, entries)

    async def delete(self, response_id: str) -> bool:
        return await asyncio.to_thread(self._disk.delete, response_id)


class ActorStore:
    """A `ResponseStore` over the named actor every replica shares."""

    def __init__(self, handle: Any):
        self._handle = handle

    async def get(self, response_id: str) -> Stored | None:
        result: Stored | None = await self._handle.get.remote(response_id)
        return result

    async def get_item(self, owner: str, item_id: str) -> Stored | None:
        result: Stored | None = await self._handle.get_item.remote(owner, item_id)
        return result

    async def put(self, entries: list[Stored]) -> None:
        await self._handle.put.remote(entries)

    async def delete(self, response_id: str) -> bool:
        return bool(await self._handle.delete.remote(response_id))


def get_or_create(directory: Path, *, ttl_s: float, size_limit_bytes: int) -> ActorStore:
    """The store actor for `directory`, started if no replica has started it yet. A crashed store comes
    back with its entries (they are on disk); reads, writes of whole entries and deletes are safe to repeat."""
    handle = named_actor(
        DiskResponses,
        "responses",
        directory,
        directory,
        ttl_s=ttl_s,
        size_limit_bytes=size_limit_bytes,
        retry_tasks=True,
    )
    return ActorStore(handle)


class WriteBehind:
    """A `ResponseStore` whose writes leave the answer's path.

    `put` returns at once; what was put is written in batches, one at a time, each holding all
    that arrived while the one before was written. This replica reads its own writes at once
    (they are kept until written); a read another replica's write may not have reached yet (the
    client was answered by one replica and asks the next at once) is tried again after
    `settle_s` before it is a miss; a delete waits for the writes in progress. A failed write is
    logged: it costs a later lookup, never an answer."""

    def __init__(self, store: ResponseStore, settle_s: float = 0.05):
        self._store = store
        self._settle_s = settle_s
        self._unwritten: dict[str, Stored] = {}
        self._queue: list[Stored] = []
        self._writing: asyncio.Task[None] | None = None

    async def get(self, response_id: str) -> Stored | None:
        if (stored := self._unwritten.get(response_id)) is not None:
            return stored
        found = await self._store.get(response_id)
        if found is None:
            await asyncio.sleep(self._settle_s)
            found = await self._store.get(response_id)
        return found

    async def get_item(self, owner: str, item_id: str) -> Stored | None:
        unwritten = (s for s in self._unwritten.values() if s.owner == owner and s.item(item_id) is not None)
        if (stored := next(unwritten, None)) is not None:
            return stored
        found = await self._store.get_item(owner, item_id)
        if found is None:
            await asyncio.sleep(self._settle_s)
            found = await self._store.get_item(owner, item_id)
        return found

    async def put(self, entries: list[Stored]) -> None:
        for stored in entries:
            self._unwritten[stored.id] = stored
        self._queue.extend(entries)
        if self._writing is None:
            self._writing = asyncio.get_running_loop().create_task(self._write())

    async def delete(self, response_id: str) -> bool:
        if response_id in self._unwritten and self._writing is not None:
            await asyncio.shield(self._writing)
        return await self._store.delete(response_id)

    async def _write(self) -> None:
        try:
            while self._queue:
                batch, self._queue = self._queue, []
                try:
                    await self._store.put(batch)
                except Exception:
                    log.exception("could not store %d response(s): %s", len(batch), ", ".join(s.id for s in batch))
                for stored in batch:
                    if self._unwritten.get(stored.id) is stored:
                        del self._unwritten[stored.id]
        finally:
            self._writing = None


class Recent:
    """One WebSocket connection's latest responses, stored or not: what a `previous_response_id` on that
    socket finds first. OpenAI keeps each lane's latest response in the connection's memory, so that a
    chain of `store: false` responses goes on over one socket (Codex's turns are such a chain) and a
    continuation needs no store read. Here the connection's last `size` responses are kept (one per lane,
    for as many lanes as a connection may name), their conversations within `max_bytes` (as JSON, each
    response's whole conversation counted: a chain's turns share theirs, so this errs only towards keeping
    fewer), the oldest going first; one alone over it is not kept (stored, it is still found in the store;
    if not, a continuation is OpenAI's `previous_response_not_found`, on which clients send the whole
    conversation again). By count alone, 32 lanes of full-size messages held 32 bodies' worth for as long
    as the socket stayed open, and a chain continued with `truncation: "auto"` grew without end. They go
    with the connection."""

    def __init__(self, size: int = 32, max_bytes: int = 32 << 20):
        self._size = size
        self._max_bytes = max_bytes
        self._latest: OrderedDict[str, tuple[Stored, int]] = OrderedDict()  # each with its conversation's size
        self._bytes = 0

    def remember(self, stored: Stored) -> None:
        weight = self._weight(stored)
        self._forget(stored.id)
        if weight > self._max_bytes:
            return
        self._latest[stored.id] = (stored, weight)
        self._bytes += weight
        while len(self._latest) > self._size or self._bytes > self._max_bytes:
            self._forget(next(iter(self._latest)))

    def get(self, response_id: str) -> Stored | None:
        kept = self._latest.get(response_id)
        return kept[0] if kept is not None else None

    def _weight(self, stored: Stored) -> int:
        """The size of `stored`'s conversation: its own items', and those before them (the size this
        connection already counted for the response it continues, else measured)."""
        own = sum(map(_json_bytes, stored.input_items)) + sum(map(_json_bytes, stored.response.get("output", [])))
        previous = self._latest.get(stored.response.get("previous_response_id") or "")
        return own + (previous[1] if previous is not None else sum(map(_json_bytes, stored.earlier)))

    def _forget(self, response_id: str) -> None:
        kept = self._latest.pop(response_id, None)
        if kept is not None:
            self._bytes -= kept[1]


def _json_bytes(item: dict[str, Any]) -> int:
    return len(json.dumps(item))


def store_for(settings: Settings) -> ResponseStore:
    """The store `settings.responses` describes."""
    r = settings.responses
    directory = r.directory or settings.data_dir / "responses"
    ttl_s, size = r.ttl_days * 86400, r.size_limit_mb << 20
    if r.owner == "process":
        return WriteBehind(InProcessStore(DiskResponses(directory, ttl_s=ttl_s, size_limit_bytes=size)))
    return WriteBehind(get_or_create(directory, ttl_s=ttl_s, size_limit_bytes=size))
