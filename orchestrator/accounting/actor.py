"""The ledger's single owner across a Ray cluster: one named actor around one `Book`.

Every gateway replica, on every node, gets the same actor by name
(get-or-create), so budgets are checked and spent in one place. The actor
is synchronous: Ray runs its calls one at a time, in the order each caller
sent them, which is what makes a reservation and its settlement exact
without locks. The book is on disk (`ledger.path`), so a new actor after a
restart picks up every settled request.

The actor should sit where that file is: with `ledger.path` on a shared or
head-node disk, pin it there (it asks for no CPU and no resources).
"""

from __future__ import annotations

from collections.abc import Awaitable
from pathlib import Path
from typing import Any, TypeVar

from orchestrator.accounting.book import Book, Command
from orchestrator.actors import named_actor

R = TypeVar("R")

LEDGER = "ledger"  # the actor's name: ledger-<hash of its file>


class LedgerActor:
    """The actor class: a book and one method."""

    def __init__(self, path: str, reservation_ttl_s: float = 900.0):
        self._book = Book(Path(path), reservation_ttl_s=reservation_ttl_s)

    def call(self, command: Command[Any]) -> Any:
        return command.apply(self._book)


class ActorOwner:
    """A `LedgerOwner` over the named actor."""

    def __init__(self, handle: Any):
        self._handle = handle

    def call(self, command: Command[R]) -> Awaitable[R]:
        # Sent now (Ray keeps one caller's calls to an actor in order); the ObjectRef is awaitable.
        ref: Awaitable[R] = self._handle.call.remote(command)
        return ref


def get_or_create(path: Path, *, reservation_ttl_s: float = 900.0) -> ActorOwner:
    """The ledger actor for `path`, started if no replica has started it yet. A crashed owner comes
    back and reloads the book from disk; a command that was running then fails (never applied twice)."""
    return ActorOwner(named_actor(LedgerActor, LEDGER, path, str(path), reservation_ttl_s, retry_tasks=False))
