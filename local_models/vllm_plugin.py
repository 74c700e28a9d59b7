"""vLLM's general plugin (entry point `vllm.general_plugins`, loaded in each of vLLM's processes): on the CPU
build, vLLM's processes sleep while they wait for each other instead of spinning.

vLLM's engine-core process hands each step to its worker process through shared memory and waits for the
result the same way. A reader that has read within the last second doesn't sleep on the writer's notification
but spins (`shm_broadcast.SpinCondition`: `sched_yield` in a loop), so the engine core spins for the whole of
every step. On a GPU host that saves microseconds a step on a spare core. On the CPU build the model computes on
the CPUs vLLM binds its compute threads to and the engine core spins on the one it keeps out of them (on two
cores: all the rest of the machine), so the replicas', the Gateway's and Ray's work, finding no idle CPU, runs
on the compute thread's and every step waits for it. Asleep, the engine core wakes on the notification every
write sends (a few microseconds a step); the local engine's capacity in the deployment grew, and so did the
share the burst kept local (benchmarks/README.md, "Engine-core spinning").

GPU platforms keep vLLM's own waiting. `VLLM_PLUGINS`, where an operator sets it, must name
`orchestrator_cpu_wait` for this to load.
"""

from __future__ import annotations

import time
from typing import Any

NAME = "orchestrator_cpu_wait"


def register() -> None:
    """On the CPU platform, every shared-memory reader vLLM creates in this process sleeps between reads."""
    from vllm.platforms import current_platform

    if current_platform.is_cpu():
        sleep_between_reads()


RECHECK_MS = 1
"""How long a reader that read within vLLM's own spinning window (`SpinCondition.busy_loop_s`, a second) sleeps
at most before it looks at the shared memory again. The writer's notification is best-effort (a PUB socket with a
high-water mark of 1 drops it silently; vLLM relies on its spinning to miss few and, in this build, waits for the
next one without a limit), so a reader that only slept on it stalled: the engine idled mid-request until another
write came, which at low load was never. A lost notification costs a step at most this."""

IDLE_RECHECK_MS = 50
"""The same for a reader that hasn't read within that window (an idle engine's worker waiting for the next step):
it wakes this often instead of a thousand times a second. Its next notification, the first after a quiet
second, finds the writer's queue empty and isn't dropped in practice; were it, the step waits this long."""


def sleep_between_reads() -> None:
    """Make `SpinCondition` readers sleep on the writer's notification at once (no busy loop), for at most
    `RECHECK_MS` at a time while reads are recent and `IDLE_RECHECK_MS` after. Idempotent."""
    from vllm.distributed.device_communicators import shm_broadcast

    condition: Any = shm_broadcast.SpinCondition
    if getattr(condition, "_orchestrator_sleeps", False):
        return
    init, wait = condition.__init__, condition.wait

    def __init__(self: Any, *args: Any, **kwargs: Any) -> None:
        init(self, *args, **kwargs)
        if self.is_reader:  # `wait` spins only within busy_loop_s of the last read: the window becomes ours
            self._recent_s, self.busy_loop_s = self.busy_loop_s, 0.0

    def bounded_wait(self: Any, timeout_ms: int | None = None) -> None:
        window = getattr(self, "_recent_s", self.busy_loop_s)  # one made before the patch keeps its own
        recent = time.monotonic() - self.last_read <= window
        cap = RECHECK_MS if recent else IDLE_RECHECK_MS
        wait(self, cap if timeout_ms is None else min(timeout_ms, cap))

    condition.__init__ = __init__
    condition.wait = bounded_wait
    condition._orchestrator_sleeps = True
