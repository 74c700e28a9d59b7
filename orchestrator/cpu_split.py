"""On a machine of two CPUs, the local CPU engine computes on one and everything else runs on the other.

vLLM's CPU build binds its compute threads itself (`VLLM_CPU_OMP_THREADS_BIND`, `auto`) and keeps one CPU
out of them for its scheduler process: on two CPUs it computes on the first and leaves the second. Nothing
kept the rest off the first: Ray, Serve, the Gateway, the engine's own scheduler and output handling ran on
both CPUs, preempted the compute thread, and every step waited for it. `orchestrator serve` (and whatever
starts the deployment through `orchestrator.runtime.start`) now starts Ray's processes on the second CPU,
so every worker, replica and engine process runs there, and binds the engines' compute threads to the
first. The same burst on the same arrivals kept 85 % local against 75 % (benchmarks/README.md, "A fourth
host"). Both cores for the compute threads were tried and lost (69 %): the second thread shares its core
with the rest, and a parallel step waits for the slower thread.

Only where the deployment starts its own Ray on a machine whose CPUs this process may use are exactly two,
for a local model on the CPU (`local.num_gpus` 0), and only when no binding is set in the environment
(`VLLM_CPU_OMP_THREADS_BIND=auto` keeps vLLM's own, and nothing is pinned). On larger machines vLLM's
reserved CPU is a small share and its binding also keeps to one NUMA node and one thread per physical core:
it stands there.
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Collection, Iterator, Mapping
from dataclasses import dataclass

from orchestrator.settings import Settings

BIND = "VLLM_CPU_OMP_THREADS_BIND"


@dataclass(frozen=True)
class Split:
    engine: tuple[int, ...]  # the engines' compute threads
    rest: tuple[int, ...]  # Ray and every process it starts

    def binding(self) -> str:
        """`engine` as vLLM's `VLLM_CPU_OMP_THREADS_BIND` lists CPUs."""
        return ",".join(str(cpu) for cpu in self.engine)


def split(cpus: Collection[int]) -> Split | None:
    """The first CPU for the engine and the second for the rest, on two CPUs; else None."""
    if len(cpus) != 2:
        return None
    first, second = sorted(cpus)
    return Split(engine=(first,), rest=(second,))


def plan(settings: Settings, environ: Mapping[str, str]) -> Split | None:
    """The split for a deployment that starts its own Ray with `settings`, or None (see the module)."""
    local = settings.local
    if settings.ray.address is not None or not local.model or local.num_gpus > 0 or BIND in environ:
        return None
    if not hasattr(os, "sched_getaffinity"):
        return None
    return split(os.sched_getaffinity(0))


@contextlib.contextmanager
def pinned(cpus: Collection[int] | None) -> Iterator[None]:
    """This thread, and the processes it starts meanwhile, on `cpus` (None: as it is); then as it was."""
    if cpus is None:
        yield
        return
    before = os.sched_getaffinity(0)
    os.sched_setaffinity(0, cpus)
    try:
        yield
    finally:
        os.sched_setaffinity(0, before)
