"""A LocalModel replica whose engine died ends its process (so Serve routes around it and replaces it).

The real deployment class around the fake engine; the process exit is injected. Under Ray Serve with
vLLM: tests/cluster/test_multinode.py (an engine core SIGKILLed mid-burst) and benchmarks/engine_death.py.
"""

from __future__ import annotations

import asyncio

import pytest

from local_models.deployment import WATCH_INTERVAL_S, LocalModel
from local_models.errors import EngineFailure
from local_models.interface import Engine, EngineConfig, GenerateRequest
from orchestrator.testing.engine import FakeEngine


def _given(engine: FakeEngine):  # type: ignore[no-untyped-def]
    async def factory(config: EngineConfig) -> Engine:
        return engine

    return factory


async def _replica(engine: FakeEngine, exits: list[int]) -> LocalModel:
    replica = LocalModel.__new__(LocalModel)
    await replica.__init__(EngineConfig("m", "m"), engine_factory=_given(engine), exit_process=exits.append)  # type: ignore[misc]
    return replica


async def test_a_replica_whose_engine_died_shuts_it_down_and_exits() -> None:
    engine, exits = FakeEngine("m"), list[int]()
    replica = await _replica(engine, exits)
    await asyncio.sleep(5 * WATCH_INTERVAL_S)
    assert exits == [] and not engine.shut_down  # alive: it stays
    engine.dead = True
    with pytest.raises(EngineFailure):
        replica.check_health()  # Serve's health check fails too
    for _ in range(50):
        if exits:
            break
        await asyncio.sleep(WATCH_INTERVAL_S)
    assert exits == [1]
    assert engine.shut_down  # its processes ended before the replica's


async def test_a_replica_stopped_by_serve_stops_watching() -> None:
    engine, exits = FakeEngine("m"), list[int]()
    replica = await _replica(engine, exits)
    replica.__del__()  # what Serve calls at a graceful stop
    engine.dead = True  # shut down: its stats may raise now
    await asyncio.sleep(3 * WATCH_INTERVAL_S)
    assert exits == []


async def test_a_call_that_failed_with_the_dead_engine_fails_once_the_replica_has_left() -> None:
    """Its caller's next attempt then meets a replica that is gone (Serve's router routes around it),
    never this one still up and failing."""
    engine, exits = FakeEngine("m", fail_after=0), list[int]()
    replica = await _replica(engine, exits)
    request = GenerateRequest(
        request_id="r", kind="chat", messages=[{"role": "user", "content": "hi"}], sampling={}, stream=True
    )
    with pytest.raises(EngineFailure):
        async for _ in replica.generate(request):
            pass
    assert exits == []  # a failure of a live engine: at once, and the replica stays
    engine.dead = True
    with pytest.raises(EngineFailure):
        async for _ in replica.generate(request):
            pass
    assert exits == [1] and engine.shut_down
