"""Experiment (reverted): on two CPUs, the engine core process starts on the second CPU and the compute
thread is bound to the first; other processes are left where the OS puts them."""

from __future__ import annotations

import contextlib
import os
from collections.abc import Collection, Iterator, Mapping
from dataclasses import dataclass

BIND = "VLLM_CPU_OMP_THREADS_BIND"


@dataclass(frozen=True)
class Split:
    compute: int
    rest: int

    def binding(self) -> str:
        return str(self.compute)


def split(cpus: Collection[int], environ: Mapping[str, str]) -> Split | None:
    if len(cpus) != 2 or BIND in environ:
        return None
    first, second = sorted(cpus)
    return Split(compute=first, rest=second)


def this_process() -> Split | None:
    if not hasattr(os, "sched_getaffinity"):
        return None
    return split(os.sched_getaffinity(0), os.environ)


@contextlib.contextmanager
def spawning(cpus: Split | None) -> Iterator[None]:
    if cpus is None:
        yield
        return
    before = os.sched_getaffinity(0)
    os.sched_setaffinity(0, {cpus.rest})
    os.environ[BIND] = cpus.binding()
    try:
        yield
    finally:
        del os.environ[BIND]
        os.sched_setaffinity(0, before)
