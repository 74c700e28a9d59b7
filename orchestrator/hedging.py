"""A hedge: a second route tried beside a slow first one, the first to answer serving.

The policy gives a local route with a remote route behind it a hedge time (`Target.hedge_after_s`,
`scheduler.hedge_at` × the SLO). When the local attempt has no first content by then, the failover
(`failover._Run._race`) starts the remote route beside it instead of waiting out the local
attempt's patience: whichever reaches its first content first serves, and the other is cancelled
(a local request is aborted in the engine; a remote stream is closed). The prediction that put the
request local can be wrong, or the host can stall; the hedge turns what would be a missed SLO into a
spill made before it, at the price of the remote call.

Pieces here: `HedgedAttempt`, one attempt run as a task that says when its first content came (the
attempt's `open_stream` or `read_whole` calls `first_content()`, found through a context variable of
the task), and `discard`, which cancels the loser and releases whatever it produced.
"""

from __future__ import annotations

import asyncio
import contextlib
import contextvars
import time
from collections.abc import Awaitable, Callable, Iterator
from typing import Any, Generic, TypeVar

R = TypeVar("R")
T = TypeVar("T")

_FIRST_CONTENT: contextvars.ContextVar[asyncio.Event | None] = contextvars.ContextVar("first_content", default=None)


class Deadline:
    """An attempt's time limit: the request's deadline up to its first content, then `answer_s` more for the
    rest of the answer (a whole answer's generation is bounded by the answer's time, not the deadline)."""

    __slots__ = ("answer_s", "reached", "timeout")

    def __init__(self, timeout: asyncio.Timeout, answer_s: float):
        self.timeout, self.answer_s, self.reached = timeout, answer_s, False

    def reach(self) -> None:
        """The first content came: from now on the answer's time runs."""
        if not self.reached:
            self.reached = True
            self.timeout.reschedule(asyncio.get_running_loop().time() + self.answer_s)


_DEADLINE: contextvars.ContextVar[Deadline | None] = contextvars.ContextVar("deadline", default=None)


def first_content(answering: bool = False) -> None:
    """The attempt running in this task reached its first content: a hedged attempt's race hears of it,
    and, where the attempt goes on `answering` (a whole answer read to its end; a stream's attempt ends
    here), its `Deadline` moves from the request's deadline to the answer's time."""
    event = _FIRST_CONTENT.get()
    if event is not None:
        event.set()
    if answering and (deadline := _DEADLINE.get()) is not None:
        deadline.reach()


@contextlib.contextmanager
def attempt_deadline(deadline: Deadline) -> Iterator[Deadline]:
    """`deadline` moved by the first content of the attempt run inside (`first_content`)."""
    token = _DEADLINE.set(deadline)
    try:
        yield deadline
    finally:
        _DEADLINE.reset(token)


class HedgedAttempt(Generic[T, R]):
    """`attempt(target)` as a task of its own, with an event set at its first content."""

    def __init__(self, attempt: Callable[[T], Awaitable[R]], target: T):
        self.target = target
        self.first = asyncio.Event()
        self.started = time.monotonic()
        context = contextvars.copy_context()
        context.run(_FIRST_CONTENT.set, self.first)
        self.task: asyncio.Task[R] = asyncio.create_task(_run(attempt, target), context=context)
        self._waiter: asyncio.Task[Any] | None = None

    @property
    def answered(self) -> bool:
        """Its first content came, or it ended (with an answer or an error)."""
        return self.first.is_set() or self.task.done()

    def waiters(self) -> set[asyncio.Future[Any]]:
        """What to wait on for `answered`."""
        if self._waiter is None:
            self._waiter = asyncio.create_task(self.first.wait())
        return {self.task, self._waiter}

    def elapsed_ms(self) -> float:
        return (time.monotonic() - self.started) * 1000

    def stop_waiting(self) -> None:
        if self._waiter is not None:
            self._waiter.cancel()


async def _run(attempt: Callable[[T], Awaitable[R]], target: T) -> R:
    return await attempt(target)


# The message a race's loser is cancelled with: the attempt can tell it from its request's own end (its client
# gone, its deadline passed), which cuts off every attempt in progress (`lost_race`).
LOST_RACE = "lost its race"


def lost_race(e: asyncio.CancelledError) -> bool:
    """Whether the cancel that stopped an attempt was its race's decision (`discard(..., lost=True)`)."""
    return bool(e.args) and e.args[0] == LOST_RACE


async def discard(hedged: HedgedAttempt[Any, Any], *, lost: bool = False) -> None:
    """Cancel the attempt (`lost`: the loser of a race; otherwise cut off with its request) and release what
    it produced if it finished anyway (a stream opened in the same moment as the winner's is closed)."""
    hedged.stop_waiting()
    task = hedged.task
    task.cancel(LOST_RACE if lost else None)
    await asyncio.wait({task})
    if task.cancelled() or task.exception() is not None:
        return
    aclose = getattr(task.result(), "aclose", None)
    if aclose is not None:
        await aclose()
