"""Entries kept on one disk for many owners, shared fairly: what the stored responses and conversations sit on.

Each entry is a JSON text under a key, with its owner (a key's tenant), a time to live, and its
children: keys of their own, each with its value, that go with it (a stored response's items, each
pointing back to it; a conversation's items, so that one added or removed is written alone). The
values are a `diskcache.Cache`; beside it an index (SQLite, `owners.sqlite3` in the same directory)
keeps each entry's owner, size and time, so the disk's limit is shared **max-min**: when a new entry
would pass it, the oldest entries of the owner holding the most go first, whoever is writing. One
key filling the store with its own entries (a conversation's items cost no tokens to add) pushes out
its own oldest, never another key's while it holds more than they do; nor does a key holding little
with one entry larger than what any other key holds (that entry goes in past the limit, and is the
first to go at the next write). (The cache's own eviction,
least recently stored of anyone's, would let any key wipe every other's.)

Synchronous, for one process at a time (the store's actor, or a gateway's threads through
`asyncio.to_thread`): `locked()` makes a read, a change and a write one step.
"""

from __future__ import annotations

import sqlite3
import tempfile
import threading
import time
from collections.abc import Callable, Iterable, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import diskcache

_EXPIRE_EVERY_S = 60.0  # how often expired entries leave the index (a read never returns one)


@dataclass(frozen=True)
class Owned:
    """Whose a value found on disk is: an entry of `owner`'s, or (with `parent`) a child of that entry."""

    owner: str
    parent: str | None = None


class Shelf:
    """Owned entries on disk under `size_limit_bytes` (their JSON, children included), each for `ttl_s`
    from its last write. Opened at the first use (`directory` None: a temporary one)."""

    def __init__(
        self,
        directory: Path | None = None,
        *,
        ttl_s: float,
        size_limit_bytes: int,
        clock: Callable[[], float] = time.time,
        owned: Callable[[str, str], Owned | None] | None = None,
    ):
        self._directory = directory
        self._owned = owned  # for values written before the index: whose each is (`_adopt`)
        self._ttl_s = ttl_s
        self._limit = size_limit_bytes
        self._clock = clock
        self._lock = threading.RLock()
        self._values: diskcache.Cache | None = None
        self._index: sqlite3.Connection | None = None
        self._held: dict[str, int] = {}  # bytes by owner
        self._expired_at = 0.0

    @contextmanager
    def locked(self) -> Iterator[None]:
        """One step for everything done inside: no other thread's read or write between."""
        with self._lock:
            yield

    def get(self, key: str) -> str | None:
        with self._lock:
            self._open()
            assert self._values is not None
            value = self._values.get(key)
        return value if isinstance(value, str) else None

    def put(self, owner: str, key: str, value: str, children: Mapping[str, str] | None = None) -> None:
        """`value` under `key` for `owner`, with `children` (keys of their own, each with its value, found
        by key and gone with the entry: a response's items pointing back to it), replacing what was there;
        room made first (`_make_room`)."""
        children = dict(children or {})
        with self._lock:
            self._open()
            now = self._clock()
            self._expire(now)
            self._drop(key, keeping={key, *children})  # what is written again stays until overwritten
            self._write(owner, key, value, children, now)

    def update(self, key: str, value: str, add: Mapping[str, str] | None = None, remove: Iterable[str] = ()) -> bool:
        """The entry `key` rewritten as `value` (its time starts again: now its owner's newest), children
        added and removed, the rest kept as they are; False where it is not there. A conversation's items
        are its children: one added or removed costs that item and the entry's own value, not the whole."""
        with self._lock:
            db = self._open()
            assert self._values is not None
            row = db.execute("SELECT owner FROM entries WHERE key = ? AND parent IS NULL", (key,)).fetchone()
            if row is None:
                return False
            owner = row[0]
            now = self._clock()
            gone = self._forget([key, *remove], parent=key)
            with self._values.transact():
                for k in gone:
                    self._values.delete(k)
            self._write(owner, key, value, dict(add or {}), now)
            return True

    def delete(self, key: str) -> bool:
        """The entry at `key` and its children gone; whether it was there."""
        with self._lock:
            self._open()
            return self._drop(key)

    def held(self, owner: str) -> int:
        """The bytes `owner`'s entries take, as the limit counts them."""
        with self._lock:
            self._open()
            return self._held.get(owner, 0)

    # ------------------------------------------------------------------ inside

    def _open(self) -> sqlite3.Connection:
        if self._index is not None:
            return self._index
        directory = str(self._directory) if self._directory is not None else tempfile.mkdtemp(prefix="shelf-")
        # No eviction of the cache's own: `_make_room` is the only one.
        self._values = diskcache.Cache(directory, eviction_policy="none", cull_limit=0, size_limit=2**62)
        db = sqlite3.connect(Path(directory) / "owners.sqlite3", check_same_thread=False)
        db.execute("PRAGMA journal_mode=WAL")
        db.execute("PRAGMA synchronous=NORMAL")  # as the cache's own (a crash may lose the last writes, not the file)
        db.execute(
            "CREATE TABLE IF NOT EXISTS entries (key TEXT PRIMARY KEY, owner TEXT NOT NULL, bytes INTEGER NOT NULL,"
            " stored_at REAL NOT NULL, expires_at REAL NOT NULL, parent TEXT)"
        )
        db.execute("CREATE INDEX IF NOT EXISTS by_owner ON entries (owner, stored_at) WHERE parent IS NULL")
        db.execute("CREATE INDEX IF NOT EXISTS by_parent ON entries (parent) WHERE parent IS NOT NULL")
        db.execute("CREATE INDEX IF NOT EXISTS by_expiry ON entries (expires_at) WHERE parent IS NULL")
        self._index = db
        if self._owned is not None and db.execute("SELECT 1 FROM entries LIMIT 1").fetchone() is None:
            self._adopt(self._owned)
        self._held = dict(db.execute("SELECT owner, SUM(bytes) FROM entries GROUP BY owner").fetchall())
        return db

    def _adopt(self, owned: Callable[[str, str], Owned | None]) -> None:
        """Index the values a store wrote before it had an index (an upgraded deployment's stored
        responses), so the limit counts them and they go in their turn: each entry with its owner (the
        time it has left as written), each child with its entry; what `owned` doesn't know stays as it
        is, to expire. Once, on a store's first open with this index."""
        db, values = self._index, self._values
        assert db is not None and values is not None
        now = self._clock()
        entries: list[tuple[str, str, int, float, float, None]] = []
        children: list[tuple[str, str, int]] = []  # key, parent, bytes
        for key in list(values.iterkeys()):
            value, expire_time = values.get(key, expire_time=True)
            if not isinstance(key, str) or not isinstance(value, str) or (whose := owned(key, value)) is None:
                continue
            size = len(key) + len(value)
            if whose.parent is None:
                entries.append((key, whose.owner, size, now, expire_time or now + self._ttl_s, None))
            else:
                children.append((key, whose.parent, size))
        owners = {key: owner for key, owner, *_ in entries}
        expiry = {key: expires for key, _, _, _, expires, _ in entries}
        with db:
            db.executemany("INSERT OR IGNORE INTO entries VALUES (?, ?, ?, ?, ?, ?)", entries)
            db.executemany(
                "INSERT OR IGNORE INTO entries VALUES (?, ?, ?, ?, ?, ?)",
                [(k, owners[p], n, now, expiry[p], p) for k, p, n in children if p in owners],
            )

    def _write(self, owner: str, key: str, value: str, children: dict[str, str], now: float) -> None:
        """Index, then write, the entry `key` and `children` (rows of neither left in the index)."""
        db, values = self._index, self._values
        assert db is not None and values is not None
        self._forget(list(children), parent=None)  # a child that another entry of the owner held: this one's now
        size = len(key) + len(value)
        sizes = {c: len(c) + len(v) for c, v in children.items()}
        self._make_room(owner, size + sum(sizes.values()))
        expires = now + self._ttl_s
        with db:
            db.execute("INSERT INTO entries VALUES (?, ?, ?, ?, ?, NULL)", (key, owner, size, now, expires))
            db.executemany(
                "INSERT INTO entries VALUES (?, ?, ?, ?, ?, ?)",
                [(c, owner, n, now, expires, key) for c, n in sizes.items()],
            )
        with values.transact():
            values.set(key, value, expire=self._ttl_s)
            for c, v in children.items():
                values.set(c, v)  # no time of its own: it goes with its entry (`_expire`)
        self._held[owner] = self._held.get(owner, 0) + size + sum(sizes.values())

    def _forget(self, keys: list[str], parent: str | None) -> list[str]:
        """`keys` out of the index (entries only as children of `parent` where given, and then no entry
        itself but `parent`), their bytes out of their owners' counts; the keys that were there."""
        db = self._index
        assert db is not None
        found: list[str] = []
        for k in keys:
            row = db.execute("SELECT owner, bytes, parent FROM entries WHERE key = ?", (k,)).fetchone()
            if row is None or (parent is not None and k != parent and row[2] != parent):
                continue
            owner, size, _ = row
            with db:
                db.execute("DELETE FROM entries WHERE key = ?", (k,))
            self._count_out(owner, size)
            found.append(k)
        return found

    def _count_out(self, owner: str, size: int) -> None:
        left = self._held.get(owner, 0) - size
        if left > 0:
            self._held[owner] = left
        else:
            self._held.pop(owner, None)

    def _drop(self, key: str, keeping: set[str] | frozenset[str] = frozenset()) -> bool:
        """Remove the entry `key` and its children from the index, and from the values but those in
        `keeping` (about to be written again: a crash between the two leaves the old value, not none)."""
        db, values = self._index, self._values
        assert db is not None and values is not None
        row = db.execute("SELECT owner FROM entries WHERE key = ? AND parent IS NULL", (key,)).fetchone()
        if row is None:
            return False
        children = [c for (c,) in db.execute("SELECT key FROM entries WHERE parent = ?", (key,))]
        gone = self._forget([key, *children], parent=key)
        with values.transact():
            for k in gone:
                if k not in keeping:
                    values.delete(k)
        return True

    def _make_room(self, writer: str, size: int) -> None:
        """`size` bytes more for `writer`: the oldest entries of whoever holds the most with them (the writer
        counted with its new entry) dropped until they fit, or until the writer, with nothing left to drop,
        would hold the most: then its entry goes in past the limit (by at most itself, and first out at
        the next write), never at the cost of a key holding less."""
        db = self._index
        assert db is not None
        while sum(self._held.values()) + size > self._limit:
            # The writer is a candidate even holding nothing yet (last: on a tie, one holding entries gives way,
            # so keys writing one large entry each pass the limit by one of them, not one each).
            largest = max([*self._held, writer], key=lambda owner: self._held.get(owner, 0) + (owner == writer) * size)
            if largest not in self._held:  # its new entry alone outweighs what anyone holds: over the limit by it
                return
            oldest = db.execute(
                "SELECT key FROM entries WHERE owner = ? AND parent IS NULL ORDER BY stored_at LIMIT 1", (largest,)
            ).fetchone()
            if oldest is None:  # counted, but no entry left to drop: the count was off
                self._held.pop(largest)
                continue
            self._drop(oldest[0])

    def _expire(self, now: float) -> None:
        """Entries past their time leave the index (and the disk), once a minute at most."""
        if now - self._expired_at < _EXPIRE_EVERY_S:
            return
        self._expired_at = now
        db, values = self._index, self._values
        assert db is not None and values is not None
        for (key,) in db.execute("SELECT key FROM entries WHERE parent IS NULL AND expires_at < ?", (now,)).fetchall():
            self._drop(key)
        values.expire()
