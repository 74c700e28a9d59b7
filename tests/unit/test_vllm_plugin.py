"""The vLLM plugin this package installs: on the CPU build, vLLM's engine core sleeps while its worker computes
a step instead of spinning on the CPU the replicas and the Gateway need, never waits long on a notification
that was dropped, and wakes rarely while idle (local_models/vllm_plugin.py)."""

from __future__ import annotations

import threading
import time
from importlib.metadata import entry_points

import zmq
from vllm.distributed.device_communicators.shm_broadcast import SpinCondition
from vllm.utils.network_utils import get_open_zmq_ipc_path

from local_models import vllm_plugin


def test_vllm_finds_the_plugin_among_its_general_plugins() -> None:
    [plugin] = [e for e in entry_points(group="vllm.general_plugins") if e.name == vllm_plugin.NAME]
    assert plugin.load() is vllm_plugin.register


def test_a_waiting_reader_sleeps_and_a_lost_notification_never_stalls_it() -> None:
    vllm_plugin.register()  # this machine is vLLM's CPU platform
    vllm_plugin.register()  # loaded again in the same process: no second wrapper
    context = zmq.Context()
    address = get_open_zmq_ipc_path()
    writer = SpinCondition(is_reader=False, context=context, notify_address=address)
    reader = SpinCondition(is_reader=True, context=context, notify_address=address)
    try:
        time.sleep(0.2)  # the subscription reaches the publisher
        reader.record_read()  # a step's result was just read: vLLM's own reader would spin for 1 s now
        started, cpu = time.monotonic(), time.thread_time()
        while time.monotonic() - started < 0.3:  # vLLM's read loop: wait, look at the buffer, wait again
            reader.wait(timeout_ms=300)
        assert time.thread_time() - cpu < 0.1, "the reader spun instead of sleeping"

        # Nothing notifies, as when the writer's notification is dropped after a write: vLLM waits without a
        # limit here (timeout None) and the engine stalled until the next write; a reader in the middle of a
        # request (it read just now) looks at the buffer again within milliseconds.
        waiting = threading.Thread(target=_wait_times, args=(reader, 20), daemon=True)
        reader.record_read()
        started = time.monotonic()
        waiting.start()
        waiting.join(timeout=2)
        assert not waiting.is_alive(), "the reader slept on a notification that never came"
        assert time.monotonic() - started < 0.5, "a lost notification held up a request's step"

        # An idle engine's reader (no read for seconds) wakes a few times a second, not a thousand.
        reader.last_read = time.monotonic() - 5
        wakes, started = 0, time.monotonic()
        while time.monotonic() - started < 0.5:
            reader.wait(timeout_ms=None)
            wakes += 1
        assert wakes <= 0.5 * 1000 / vllm_plugin.IDLE_RECHECK_MS + 3, f"an idle reader woke {wakes} times in 0.5 s"
    finally:
        for condition in (reader, writer):
            condition.local_notify_socket.close(linger=0)
        reader.read_cancel_socket.close(linger=0)
        reader.write_cancel_socket.close(linger=0)
        context.term()


def _wait_times(reader: SpinCondition, times: int) -> None:
    for _ in range(times):
        reader.wait(timeout_ms=None)
