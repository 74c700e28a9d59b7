"""Independent simulator runs spread over processes, their results in the order asked for.

A run is one process's work (the real scheduler is pure Python: threads would share one core).
The runs of a table or a validation are seeded and independent of each other, so a pool of
processes gives the figures one process gives, in the time of the longest share. Workers are
spawned (a fresh interpreter each, importing what the run needs), not forked from a parent that
may hold threads or a plotting backend.
"""

from __future__ import annotations

import multiprocessing
import os
from collections.abc import Callable, Iterable, Iterator
from concurrent.futures import ProcessPoolExecutor
from typing import TypeVar

A = TypeVar("A")
R = TypeVar("R")


def cores() -> int:
    """The cores this process may run on (the default number of workers)."""
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # not on Linux
        return os.cpu_count() or 1


def ordered(fn: Callable[[A], R], items: Iterable[A], jobs: int) -> Iterator[R]:
    """`map(fn, items)` over up to `jobs` processes, each result yielded as soon as it and every
    one before it are done. `fn` and the items must pickle (a module-level function, plain data)."""
    work = list(items)
    if jobs <= 1 or len(work) <= 1:
        yield from map(fn, work)
        return
    context = multiprocessing.get_context("spawn")
    with ProcessPoolExecutor(min(jobs, len(work)), mp_context=context) as pool:
        yield from pool.map(fn, work)
