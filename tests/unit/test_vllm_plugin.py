"""The vLLM plugin this package installs: on the CPU build, vLLM's engine core sleeps while its worker computes
a step instead of spinning on the CPU the replicas and the Gateway need (local_models/vllm_plugin.py)."""

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


def test_a_reader_that_just_read_sleeps_until_the_writer_notifies() -> None:
    vllm_plugin.register()  # this machine is vLLM's CPU platform
    vllm_plugin.register()  # loaded again in the same process: no second wrapper
    context = zmq.Context()
    address = get_open_zmq_ipc_path()
    writer = SpinCondition(is_reader=False, context=context, notify_address=address)
    reader = SpinCondition(is_reader=True, context=context, notify_address=address)
    try:
        time.sleep(0.2)  # the subscription reaches the publisher
        reader.record_read()  # a step's result was just read: vLLM's own reader would spin for 1 s now
        started = time.monotonic()
        reader.wait(timeout_ms=300)  # nothing written: it sleeps the whole timeout, no busy loop
        assert time.monotonic() - started >= 0.25

        reader.record_read()
        timer = threading.Timer(0.1, writer.notify)
        timer.start()
        started = time.monotonic()
        reader.wait(timeout_ms=5000)  # a write's notification wakes it
        assert 0.05 <= time.monotonic() - started < 2.0
        timer.join()
    finally:
        for condition in (reader, writer):
            condition.local_notify_socket.close(linger=0)
        reader.read_cancel_socket.close(linger=0)
        reader.write_cancel_socket.close(linger=0)
        context.term()
