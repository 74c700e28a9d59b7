"""The ledger's book: keys, spend, reservations and rate windows, persisted in sqlite.

One `Book` is the single owner of every budget (in production inside one
named Ray actor, `ledger_actor.py`; in tests in-process). The gateway talks
to it through one method, `LedgerOwner.call(command)`; each command is a
small frozen dataclass that knows how to apply itself to a book, so the
actor is a one-line dispatcher and an in-process owner is the same book
behind the same method.

Admission reserves, completion settles:

    Reserve(key, worst case $ and tokens)  ──▶ Admitted(model, downgraded) | Refused(reason, retry_after)
    AdmitUnasked(key)                       ──▶ None | Refused: a request no model answers (a token count)
                                                counts in the key's requests per minute, and only there
    Settle(reservation, the request's row)  ──▶ spend += real cost; the row goes into the request log
                                                (a replica sends them in batches: SettleMany)

A key is admitted while its period's spend plus what is reserved is still
under its budget, so concurrent requests can overshoot a budget by at most
the one reservation that crossed it (and never more than that, however many
run at once). Past a soft limit, the reservation is made for the key's
cheaper `downgrade_to` model instead. Requests per minute count at admission;
tokens per minute count the reservation's tokens, replaced by the real ones
at settlement. Spend and the request log are on disk (every settlement is
one transaction); reservations and minute windows live in memory: a restart
drops only work in flight, and a reservation never settled is released after
`reservation_ttl_s`. What is held per key in memory stays bounded: a key's
window and spend go with the key, and of its spend only the current and the
previous period are kept (an older one is read from disk again if a late
settlement needs it). A period's spend is a row per key and period start; a
period without one (a new period, or every period of a key whose `period`
changed: its old rows are dropped) starts from what the request log holds
for the period's time, so a key moved from a month to a week or to its
whole life keeps what it spent in it.
"""

from __future__ import annotations

import asyncio
import json
import math
import sqlite3
import time
from collections import deque
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import asdict, dataclass, field, replace
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any, Generic, Literal, Protocol, TypeVar

from orchestrator.accounting.keys import KeyPolicy

R = TypeVar("R")
R_co = TypeVar("R_co", covariant=True)

WINDOW_S = 60.0
PERIODS_HELD = 2  # per key, in memory: the current period's spend and the previous one's

# The request log: one row per answered (or failed) request; what reports are made of.
REQUEST_COLUMNS: tuple[tuple[str, str], ...] = (
    ("ts", "REAL"),
    ("request_id", "TEXT"),
    ("key_id", "TEXT"),
    ("endpoint", "TEXT"),
    ("model", "TEXT"),
    ("provider", "TEXT"),
    ("provider_model", "TEXT"),
    ("route", "TEXT"),
    ("route_reason", "TEXT"),
    ("cache", "TEXT"),
    ("stream", "INTEGER"),
    ("status", "INTEGER"),
    ("prompt_tokens", "INTEGER"),
    ("completion_tokens", "INTEGER"),
    ("cached_tokens", "INTEGER"),
    ("cost_usd", "REAL"),
    ("reference_usd", "REAL"),
    ("saved_usd", "REAL"),
    ("estimated", "INTEGER"),
    ("complete", "INTEGER"),
    ("discarded_tokens", "INTEGER"),
    ("latency_ms", "REAL"),
    ("ttft_ms", "REAL"),
    ("overhead_ms", "REAL"),
)


# What a request spends of its key's tokens: these columns, unless its answer was free (a cache hit, or an answer
# shared with the request that paid for it). One rule for a settlement (`Book._settle`) and the request log's sum.
_FREE_CACHE = ("HIT", "SHARED")
_SPENT_TOKENS = ("prompt_tokens", "completion_tokens", "discarded_tokens")

# A key's spend in [start, end) from the request log, counted as a settlement counts it.
_LOGGED_SPEND = (
    "SELECT COALESCE(SUM(cost_usd), 0), COALESCE(SUM(CASE WHEN cache IN ("
    + ", ".join(f"'{c}'" for c in _FREE_CACHE)
    + ") THEN 0 ELSE "
    + " + ".join(f"COALESCE({n}, 0)" for n in _SPENT_TOKENS)
    + " END), 0) FROM requests WHERE key_id = ? AND ts >= ? AND ts < ?"
)

_INSERT_REQUEST = (
    f"INSERT INTO requests ({', '.join(n for n, _ in REQUEST_COLUMNS)}) "
    f"VALUES ({', '.join('?' * len(REQUEST_COLUMNS))})"
)


class Command(Generic[R_co]):
    """Something the owner does to its book, returning `R`."""

    def apply(self, book: Book) -> R_co:
        raise NotImplementedError


class LedgerOwner(Protocol):
    """The one seam between the gateway and whoever owns the book.

    `call` sends the command at once and returns what to await for its result:
    commands from one caller are applied in the order they were sent, so a
    settlement sent (and not awaited) before the next admission counts in it.
    """

    def call(self, command: Command[R]) -> Awaitable[R]: ...


class InProcessOwner:
    """A book in this process (tests, single-process tools): applied when sent."""

    def __init__(self, book: Book):
        self.book = book

    def call(self, command: Command[R]) -> Awaitable[R]:
        done: asyncio.Future[R] = asyncio.get_running_loop().create_future()
        try:
            done.set_result(command.apply(self.book))
        except Exception as e:
            done.set_exception(e)
        return done


# ------------------------------------------------------------------------------ results


@dataclass(frozen=True)
class Admitted:
    reservation_id: str
    model: str  # what to serve: the asked model, or the key's downgrade model past its soft limit
    downgraded: bool = False


@dataclass(frozen=True)
class Refused:
    reason: Literal["revoked", "rpm", "tpm", "budget_usd", "budget_tokens"]
    message: str
    retry_after: float | None = None


@dataclass(frozen=True)
class KeySpend:
    period_start: float
    spent_usd: float
    spent_tokens: int
    reserved_usd: float
    reserved_tokens: int


# ------------------------------------------------------------------------------ commands


@dataclass(frozen=True)
class Choice:
    """One model the request could be served by, with its worst-case cost."""

    model: str
    usd: float
    tokens: int


@dataclass(frozen=True)
class Settle(Command[None]):
    """Close a reservation (if any) with what the request really used, and log the request."""

    reservation_id: str | None
    row: dict[str, Any]

    def apply(self, book: Book) -> None:
        book.settle(self)


@dataclass(frozen=True)
class Reserve(Command[Admitted | Refused]):
    key_id: str
    request_id: str
    primary: Choice
    downgrade: Choice | None = None  # the key's cheaper model, if the request isn't for it already
    # Settlements the caller had waiting, applied first: they count in this admission, in the same round trip.
    settles: tuple[Settle, ...] = ()

    def apply(self, book: Book) -> Admitted | Refused:
        if self.settles:
            book.settle_many(self.settles)
        return book.reserve(self)


@dataclass(frozen=True)
class AdmitUnasked(Command[Refused | None]):
    """A request no model answers (a token count, a response made with `generate: false`): a request of its
    key's minute, refused past its `rpm`; no tokens, no reservation, no spend."""

    key_id: str
    settles: tuple[Settle, ...] = ()  # as `Reserve`'s: applied first

    def apply(self, book: Book) -> Refused | None:
        if self.settles:
            book.settle_many(self.settles)
        return book.admit_unasked(self.key_id)


@dataclass(frozen=True)
class SettleMany(Command[None]):
    """Several settlements at once, applied in order (what a gateway replica batches)."""

    settles: tuple[Settle, ...]

    def apply(self, book: Book) -> None:
        book.settle_many(self.settles)


@dataclass(frozen=True)
class SyncKeys(Command[None]):
    """The keys config defines: added or updated; config keys no longer there are removed."""

    keys: tuple[KeyPolicy, ...]

    def apply(self, book: Book) -> None:
        book.sync_keys(self.keys)


@dataclass(frozen=True)
class Lookup(Command[KeyPolicy | None]):
    sha256: str

    def apply(self, book: Book) -> KeyPolicy | None:
        return book.lookup(self.sha256)


@dataclass(frozen=True)
class CreateKey(Command[KeyPolicy | Literal["taken", "retired"]]):
    """The key, or why it can't be made (`Book.create_key`)."""

    policy: KeyPolicy

    def apply(self, book: Book) -> KeyPolicy | Literal["taken", "retired"]:
        return book.create_key(self.policy)


@dataclass(frozen=True)
class DeleteKey(Command[bool]):
    key_id: str

    def apply(self, book: Book) -> bool:
        return book.delete_key(self.key_id)


@dataclass(frozen=True)
class UpdateKey(Command[KeyPolicy | Literal["missing", "config"]]):
    """New limits for a key the admin API made (`Book.update_key`): `changes` are `KeyPolicy` fields."""

    key_id: str
    changes: tuple[tuple[str, Any], ...]

    def apply(self, book: Book) -> KeyPolicy | Literal["missing", "config"]:
        return book.update_key(self.key_id, dict(self.changes))


@dataclass(frozen=True)
class RotateKey(Command[KeyPolicy | Literal["missing", "config", "taken"]]):
    """A new secret for a key the admin API made, its id, limits and tenancy kept (`Book.rotate_key`)."""

    key_id: str
    sha256: str

    def apply(self, book: Book) -> KeyPolicy | Literal["missing", "config", "taken"]:
        return book.rotate_key(self.key_id, self.sha256)


@dataclass(frozen=True)
class GetKey(Command[tuple[KeyPolicy, KeySpend] | None]):
    key_id: str

    def apply(self, book: Book) -> tuple[KeyPolicy, KeySpend] | None:
        k = book.key(self.key_id)
        return (k, book.spend(k.id)) if k is not None else None


@dataclass(frozen=True)
class ListKeys(Command[list[tuple[KeyPolicy, KeySpend]]]):
    def apply(self, book: Book) -> list[tuple[KeyPolicy, KeySpend]]:
        return [(k, book.spend(k.id)) for k in book.keys()]


@dataclass(frozen=True)
class Query(Command[R_co]):
    """Run a read-only function over the book's database (reports)."""

    fn: Callable[[sqlite3.Connection], R_co]

    def apply(self, book: Book) -> R_co:
        return self.fn(book.db)


# ------------------------------------------------------------------------------ periods


def period_bounds(period: str, now: float) -> tuple[float, float | None]:
    """The calendar period (UTC) holding `now`: its start and end (None: never ends)."""
    if period == "total":
        return 0.0, None
    t = datetime.fromtimestamp(now, UTC)
    if period == "hour":
        start = t.replace(minute=0, second=0, microsecond=0)
        end = start + timedelta(hours=1)
    elif period == "day":
        start = t.replace(hour=0, minute=0, second=0, microsecond=0)
        end = start + timedelta(days=1)
    elif period == "week":
        start = (t - timedelta(days=t.weekday())).replace(hour=0, minute=0, second=0, microsecond=0)
        end = start + timedelta(weeks=1)
    elif period == "month":
        start = t.replace(day=1, hour=0, minute=0, second=0, microsecond=0)
        end = (start + timedelta(days=32)).replace(day=1)
    else:
        raise ValueError(f"unknown budget period {period!r}")
    return start.timestamp(), end.timestamp()


# ------------------------------------------------------------------------------ the book


@dataclass
class _Reservation:
    key_id: str
    usd: float
    tokens: int
    at: float
    window_entry: list[float]  # [time, tokens] in the key's minute window


@dataclass
class _Held:
    usd: float = 0.0
    tokens: int = 0
    ids: set[str] = field(default_factory=set)


class RetiredKeyId(ValueError):
    """The config names a key by the id of one the admin API created and deleted."""


class Book:
    """Keys, spend per period, reservations and minute windows; see the module docstring."""

    def __init__(self, path: Path, *, clock: Callable[[], float] = time.time, reservation_ttl_s: float = 900.0):
        path.parent.mkdir(parents=True, exist_ok=True)
        self.path = path
        self.db = sqlite3.connect(str(path), check_same_thread=False, isolation_level=None)
        self.db.execute("PRAGMA journal_mode=WAL")
        self.db.execute("PRAGMA synchronous=NORMAL")
        self._clock = clock
        self._ttl = reservation_ttl_s
        _create_schema(self.db)
        self._keys: dict[str, KeyPolicy] = {}
        self._by_hash: dict[str, str] = {}
        for row in self.db.execute("SELECT policy FROM keys"):
            self._index(_policy_from_json(row[0]))
        # Ids of deleted keys: never given to another key (their spend, requests and data stay theirs).
        # Each with where the deleted key came from ("admin", "config"; None: deleted before that was kept).
        self._retired: dict[str, str | None] = dict(self.db.execute("SELECT id, source FROM retired_keys"))
        self._spent: dict[str, dict[float, list[float]]] = {}  # key -> period start -> [usd, tokens]
        self._reservations: dict[str, _Reservation] = {}
        self._held: dict[str, _Held] = {}
        self._windows: dict[str, deque[list[float]]] = {}

    def close(self) -> None:
        self.db.close()

    # -------------------------------------------------------------------- keys

    def _index(self, k: KeyPolicy) -> None:
        self._keys[k.id] = k
        self._by_hash[k.sha256] = k.id

    def _unindex(self, key_id: str) -> None:
        k = self._keys.pop(key_id, None)
        if k is not None:
            self._by_hash.pop(k.sha256, None)

    def _forget_state(self, key_id: str) -> None:
        """A removed key's memory: its window and spend (on disk still); what it holds once settled."""
        self._windows.pop(key_id, None)
        self._spent.pop(key_id, None)
        held = self._held.get(key_id)
        if held is not None and not held.ids:
            del self._held[key_id]

    def _save_key(self, k: KeyPolicy) -> None:
        self.db.execute(
            "INSERT INTO keys (id, sha256, policy) VALUES (?, ?, ?) "
            "ON CONFLICT(id) DO UPDATE SET sha256 = excluded.sha256, policy = excluded.policy",
            (k.id, k.sha256, json.dumps(asdict(k))),
        )

    def keys(self) -> list[KeyPolicy]:
        return sorted(self._keys.values(), key=lambda k: k.id)

    def key(self, key_id: str) -> KeyPolicy | None:
        return self._keys.get(key_id)

    def lookup(self, sha256: str) -> KeyPolicy | None:
        key_id = self._by_hash.get(sha256)
        return self._keys.get(key_id) if key_id is not None else None

    def _retire(self, key_id: str) -> None:
        source = self._keys[key_id].source if key_id in self._keys else None
        self.db.execute("DELETE FROM keys WHERE id = ?", (key_id,))
        self.db.execute(
            "INSERT OR IGNORE INTO retired_keys (id, retired, source) VALUES (?, ?, ?)", (key_id, self._clock(), source)
        )
        self._retired.setdefault(key_id, source)
        self._unindex(key_id)
        self._forget_state(key_id)

    def sync_keys(self, keys: Sequence[KeyPolicy]) -> None:
        """The config's keys, as the config declares them: its ids are its own (one deleted at runtime
        and still in the config comes back), and one it no longer has is deleted. An id of a key that
        the admin API created and deleted is never the config's (`RetiredKeyId`): it is that key's
        tenancy, its stored responses, cache entries and spend."""
        wanted = {k.id: k for k in keys}
        taken = sorted(i for i in wanted if self._retired.get(i, "") == "admin")
        if taken:
            raise RetiredKeyId(
                f"keys: {', '.join(taken)}: the id of a key created and deleted through the admin API; an id is "
                "its key's tenancy (stored responses, cache entries, spend), never another key's: choose another id."
            )
        with self._transaction():
            for k in list(self._keys.values()):
                if k.source == "config" and k.id not in wanted:
                    self._retire(k.id)
            for key_id in self._retired.keys() & wanted.keys():
                self.db.execute("DELETE FROM retired_keys WHERE id = ?", (key_id,))
                del self._retired[key_id]
            for k in wanted.values():
                current = self._keys.get(k.id)
                other = self._by_hash.get(k.sha256)
                if other is not None and other != k.id:  # the same key under another id: config wins
                    self.db.execute("DELETE FROM keys WHERE id = ?", (other,))
                    self._unindex(other)
                    self._forget_state(other)
                if current is None or current != k:
                    if current is not None:
                        self._unindex(k.id)
                    self._save_key(k)
                    self._repartition(current, k)
                    self._index(k)

    def create_key(self, policy: KeyPolicy) -> KeyPolicy | Literal["taken", "retired"]:
        """The new key, or why not: its id or hash is in use ("taken"), or its id was a deleted key's
        ("retired": a key's id is its tenancy, so another key under it would see the old one's stored
        responses, cache entries and spend)."""
        if policy.id in self._keys or policy.sha256 in self._by_hash:
            return "taken"
        if policy.id in self._retired:
            return "retired"
        with self._transaction():
            self._save_key(policy)
        self._index(policy)
        return policy

    def _admins(self, key_id: str) -> KeyPolicy | Literal["missing", "config"]:
        k = self._keys.get(key_id)
        if k is None:
            return "missing"
        return "config" if k.source == "config" else k  # a config key is the config's: changed there

    def update_key(self, key_id: str, changes: dict[str, Any]) -> KeyPolicy | Literal["missing", "config"]:
        """The key with `changes` (`KeyPolicy` fields), or why not. Its spend, windows and reservations
        are its id's and stay."""
        k = self._admins(key_id)
        if isinstance(k, str):
            return k
        updated = replace(k, **changes)
        with self._transaction():
            self._save_key(updated)
            self._repartition(k, updated)
        self._index(updated)
        return updated

    def _repartition(self, old: KeyPolicy | None, new: KeyPolicy) -> None:
        """A key whose period changed: its spend rows are the old period's, so they go, and each period of the
        new one is read again from the request log when it is first needed (`_spend_row`)."""
        if old is not None and old.period != new.period:
            self.db.execute("DELETE FROM spend WHERE key_id = ?", (new.id,))
            self._spent.pop(new.id, None)

    def rotate_key(self, key_id: str, sha256: str) -> KeyPolicy | Literal["missing", "config", "taken"]:
        """The key under a new secret (`sha256` its hash), or why not; the old secret is no key from now."""
        k = self._admins(key_id)
        if isinstance(k, str):
            return k
        if sha256 in self._by_hash:
            return "taken"
        updated = replace(k, sha256=sha256)
        with self._transaction():
            self._save_key(updated)
        self._unindex(key_id)
        self._index(updated)
        return updated

    def delete_key(self, key_id: str) -> bool:
        if key_id not in self._keys:
            return False
        with self._transaction():
            self._retire(key_id)
        return True

    # ------------------------------------------------------------------- spend

    def _spend_row(self, key_id: str, period_start: float) -> list[float]:
        """The key's [usd, tokens] in the period from `period_start` (of the key's period): its row in `spend`,
        or, where the period has none yet (new, or the key's period changed), what the request log holds for
        the period's time."""
        periods = self._spent.setdefault(key_id, {})
        slot = periods.get(period_start)
        if slot is None:
            row = self.db.execute(
                "SELECT usd, tokens FROM spend WHERE key_id = ? AND period_start = ?", (key_id, period_start)
            ).fetchone()
            if row is None:
                k = self._keys.get(key_id)
                _, end = period_bounds(k.period if k else "total", period_start)
                until = math.inf if end is None else end
                row = self.db.execute(_LOGGED_SPEND, (key_id, period_start, until)).fetchone()
            slot = [float(row[0]), float(row[1])]
            periods[period_start] = slot
            while len(periods) > PERIODS_HELD:  # written through to disk: the oldest can go
                del periods[min(periods)]
        return slot

    def spend(self, key_id: str) -> KeySpend:
        k = self._keys.get(key_id)
        start, _ = period_bounds(k.period if k else "total", self._clock())
        usd, tokens = self._spend_row(key_id, start)
        held = self._held.get(key_id, _Held())
        return KeySpend(start, usd, int(tokens), held.usd, held.tokens)

    # -------------------------------------------------------------- admission

    def reserve(self, r: Reserve) -> Admitted | Refused:
        now = self._clock()
        self._expire(now)
        k = self._keys.get(r.key_id)
        if k is None:
            return Refused("revoked", "This API key has been revoked.")
        window = self._window(k.id, now)
        if (over := _over_rpm(k, window, now)) is not None:
            return over
        if k.tpm is not None:
            used = int(sum(e[1] for e in window))
            if used >= k.tpm:
                return Refused(
                    "tpm",
                    f"Rate limit reached for tokens per min (TPM): Limit {k.tpm}, Used {used}.",
                    _tokens_free_after(window, used - k.tpm + 1, now),
                )
        start, end = period_bounds(k.period, now)
        spent_usd, spent_tokens = self._spend_row(k.id, start)
        held = self._held.setdefault(k.id, _Held())
        committed_usd, committed_tokens = spent_usd + held.usd, spent_tokens + held.tokens
        retry = end - now if end is not None else None
        if k.budget_usd is not None and committed_usd >= k.budget_usd:
            return Refused("budget_usd", f"This key's budget of ${k.budget_usd:g} per {k.period} is spent.", retry)
        if k.budget_tokens is not None and committed_tokens >= k.budget_tokens:
            return Refused(
                "budget_tokens", f"This key's budget of {k.budget_tokens} tokens per {k.period} is spent.", retry
            )
        choice, downgraded = r.primary, False
        soft = (k.soft_limit_usd is not None and committed_usd >= k.soft_limit_usd) or (
            k.soft_limit_tokens is not None and committed_tokens >= k.soft_limit_tokens
        )
        if soft and r.downgrade is not None:
            choice, downgraded = r.downgrade, True
        entry = [now, float(choice.tokens)]
        window.append(entry)
        self._reservations[r.request_id] = _Reservation(k.id, choice.usd, choice.tokens, now, entry)
        held.usd += choice.usd
        held.tokens += choice.tokens
        held.ids.add(r.request_id)
        return Admitted(r.request_id, choice.model, downgraded)

    def admit_unasked(self, key_id: str) -> Refused | None:
        """`AdmitUnasked`: None once counted in the key's minute window (as a request of no tokens)."""
        now = self._clock()
        k = self._keys.get(key_id)
        if k is None:
            return Refused("revoked", "This API key has been revoked.")
        window = self._window(k.id, now)
        if (over := _over_rpm(k, window, now)) is not None:
            return over
        window.append([now, 0.0])
        return None

    def _window(self, key_id: str, now: float) -> deque[list[float]]:
        window = self._windows.setdefault(key_id, deque())
        while window and window[0][0] <= now - WINDOW_S:
            window.popleft()
        return window

    def _release(self, reservation_id: str) -> _Reservation | None:
        res = self._reservations.pop(reservation_id, None)
        if res is not None:
            held = self._held[res.key_id]
            held.ids.discard(reservation_id)
            held.usd = max(0.0, held.usd - res.usd) if held.ids else 0.0
            held.tokens = max(0, held.tokens - res.tokens) if held.ids else 0
        return res

    def _expire(self, now: float) -> None:
        stale = [rid for rid, res in self._reservations.items() if now - res.at > self._ttl]
        for rid in stale:
            self._release(rid)

    # ------------------------------------------------------------- settlement

    def settle(self, s: Settle) -> None:
        self.settle_many([s])

    def settle_many(self, settles: Sequence[Settle]) -> None:
        """Settle a batch in one transaction (one disk sync for many requests)."""
        with self._transaction():
            for s in settles:
                self._settle(s)

    def _settle(self, s: Settle) -> None:
        res = self._release(s.reservation_id) if s.reservation_id else None
        row = {name: s.row.get(name) for name, _ in REQUEST_COLUMNS}
        # A cache hit or an answer shared with the request that paid for it: free in tokens as in dollars
        # (its row keeps the tokens it carried; no key's budget or minute window spends them).
        free = row["cache"] in _FREE_CACHE
        tokens = 0 if free else sum(int(row[n] or 0) for n in _SPENT_TOKENS)
        if res is not None:
            res.window_entry[1] = float(tokens)  # the minute window counts what was really used
        key_id = row["key_id"]
        if key_id is not None and key_id in self._keys:
            # The period it was admitted in (its reservation's time), of the key's period now (it may have changed).
            at = res.at if res is not None else float(row["ts"] or self._clock())
            start = period_bounds(self._keys[key_id].period, at)[0]
            slot = self._spend_row(key_id, start)
            slot[0] += float(row["cost_usd"] or 0.0)
            slot[1] += tokens
            self.db.execute(
                "INSERT INTO spend (key_id, period_start, usd, tokens) VALUES (?, ?, ?, ?) "
                "ON CONFLICT(key_id, period_start) DO UPDATE SET usd = excluded.usd, tokens = excluded.tokens",
                (key_id, start, slot[0], int(slot[1])),
            )
        self.db.execute(_INSERT_REQUEST, [row[name] for name, _ in REQUEST_COLUMNS])

    def _transaction(self) -> _Transaction:
        return _Transaction(self.db)


class _Transaction:
    def __init__(self, db: sqlite3.Connection):
        self._db = db

    def __enter__(self) -> None:
        self._db.execute("BEGIN IMMEDIATE")

    def __exit__(self, exc_type: object, *_: object) -> None:
        self._db.execute("ROLLBACK" if exc_type is not None else "COMMIT")


def _over_rpm(k: KeyPolicy, window: deque[list[float]], now: float) -> Refused | None:
    """The refusal for a request of `k` whose minute `window` holds its `rpm` already."""
    if k.rpm is None or len(window) < k.rpm:
        return None
    return Refused(
        "rpm",
        f"Rate limit reached for requests per min (RPM): Limit {k.rpm}, Used {len(window)}, Requested 1.",
        window[0][0] + WINDOW_S - now,
    )


def _tokens_free_after(window: deque[list[float]], needed: float, now: float) -> float:
    """Seconds until `needed` tokens have left the minute window."""
    freed = 0.0
    for t, tokens in window:
        freed += tokens
        if freed >= needed:
            return max(0.0, t + WINDOW_S - now)
    return WINDOW_S


def _policy_from_json(text: str) -> KeyPolicy:
    data = json.loads(text)
    if data.get("models") is not None:
        data["models"] = tuple(data["models"])
    return KeyPolicy(**data)


def _create_schema(db: sqlite3.Connection) -> None:
    columns = ", ".join(f"{name} {kind}" for name, kind in REQUEST_COLUMNS)
    db.executescript(
        f"""
        CREATE TABLE IF NOT EXISTS keys (id TEXT PRIMARY KEY, sha256 TEXT NOT NULL UNIQUE, policy TEXT NOT NULL);
        CREATE TABLE IF NOT EXISTS retired_keys (id TEXT PRIMARY KEY, retired REAL NOT NULL, source TEXT);
        CREATE TABLE IF NOT EXISTS spend (
            key_id TEXT NOT NULL, period_start REAL NOT NULL, usd REAL NOT NULL, tokens INTEGER NOT NULL,
            PRIMARY KEY (key_id, period_start));
        CREATE TABLE IF NOT EXISTS requests ({columns});
        CREATE INDEX IF NOT EXISTS requests_ts ON requests (ts);
        CREATE INDEX IF NOT EXISTS requests_key_ts ON requests (key_id, ts);
        """
    )
    # Ledgers made before a deleted key's source was kept: its deletions' sources stay unknown.
    if "source" not in {row[1] for row in db.execute("PRAGMA table_info(retired_keys)")}:
        db.execute("ALTER TABLE retired_keys ADD COLUMN source TEXT")
    # Ledgers made before attempts that didn't serve were counted in tokens: their rows' are unknown (null).
    if "discarded_tokens" not in {row[1] for row in db.execute("PRAGMA table_info(requests)")}:
        db.execute("ALTER TABLE requests ADD COLUMN discarded_tokens INTEGER")
