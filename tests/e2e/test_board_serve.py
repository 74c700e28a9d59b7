"""The load board under real Ray Serve: several LocalModel replicas, several gateway views.

It starts its own small Ray, so it runs before the e2e session's deployment starts (tests/e2e/conftest.py
puts its tests first): that one owns the only direct-ingress port.

Two `LocalModel` replicas (fake engines, injected through the deployment's
`engine_factory`) report to one `LoadBoard` deployment; two `LoadView`s (as
two gateway replicas would) read it through Serve handles. Each replica's
load shows up in the sum, a replica that goes away stops counting, and both
views agree.
"""

from __future__ import annotations

import asyncio
import os
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any, cast

import pytest

from local_models.deployment import LocalModel
from local_models.interface import Engine, EngineConfig
from orchestrator.scheduling.load import LoadBoard, LoadView
from orchestrator.testing.engine import FakeEngine

TESTS = Path(__file__).resolve().parent.parent


async def busy_engine(config: EngineConfig) -> Engine:
    """A fake engine that says it runs 3 requests with 2 waiting (importable by Ray workers)."""
    engine = FakeEngine(config.served_name, max_num_seqs=3)

    class Busy:
        def __getattr__(self, name: str) -> Any:
            return getattr(engine, name)

        def stats(self) -> Any:
            s = engine.stats()
            return {**s, "running": 3, "waiting": 2, "queued_prompt_tokens": 40}

    return cast(Engine, Busy())


def build(replicas: int) -> Any:
    from ray import serve
    from test_board_serve import busy_engine as factory  # by module name, as the workers import it

    # The workers import this module and the fakes: tell them where (a Ray started by the e2e
    # session, when the whole suite runs, knows nothing of this directory).
    paths = f"{TESTS / 'e2e'}:{TESTS}:{TESTS.parent}"
    actor = {"num_cpus": 0, "runtime_env": {"env_vars": {"PYTHONPATH": paths}}}
    board = serve.deployment(LoadBoard).options(name="BoardUnderTest", ray_actor_options=actor).bind()
    local = (
        serve.deployment(LocalModel)
        .options(name="LocalUnderTest", num_replicas=replicas, ray_actor_options=actor)
        .bind(EngineConfig("m", "fake-chat"), None, factory, board=board, report_interval_s=0.05)
    )
    return serve.deployment(Probe).options(ray_actor_options=actor).bind(board, local)


class Probe:
    """Reads the board through a handle, as a gateway replica does."""

    def __init__(self, board: Any, local: Any):
        self.board, self.local = board, local

    async def read(self) -> Any:
        return await self.board.read.remote()


APP = "load-board-test"


@pytest.fixture(scope="module")
def serve_app(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Any]:
    import ray
    from ray import serve

    if ray.is_initialized():  # run on its own, after the e2e session's deployment started
        pytest.skip("needs a Ray of its own: the running one's direct ingress has no port for another app")
    os.environ["RAY_TMPDIR"] = str(tmp_path_factory.mktemp("ray"))
    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False)
    try:
        yield serve.run(build(2), name=APP, route_prefix=None)
    finally:
        serve.shutdown()
        ray.shutdown()


def wait_for(handle: Any, pred: Any, timeout_s: float = 30.0) -> Any:
    deadline = time.monotonic() + timeout_s
    while True:
        state = handle.read.remote().result()
        snap = state["models"].get("fake-chat")
        if snap is not None and pred(snap):
            return state
        assert time.monotonic() < deadline, state
        time.sleep(0.1)


pytestmark = pytest.mark.e2e


def test_every_replica_counts_and_both_gateways_see_the_sum(serve_app: Any) -> None:
    state = wait_for(serve_app, lambda s: s["replicas"] == 2)
    snap = state["models"]["fake-chat"]
    assert (snap["slots"], snap["running"], snap["waiting"], snap["queued_prompt_tokens"]) == (6, 6, 4, 80)

    async def two_views() -> list[Any]:
        views = [LoadView(lambda overflow: serve_app.read.remote(), max_staleness_s=2.0) for _ in range(2)]
        for v in views:
            await v.poll_once()
        return [v.snapshot("fake-chat") for v in views]

    a, b = asyncio.run(two_views())
    assert a is not None and b is not None and (a.replicas, a.waiting) == (b.replicas, b.waiting) == (2, 4)


def test_a_replica_that_goes_away_stops_counting(serve_app: Any) -> None:
    from ray import serve

    wait_for(serve_app, lambda s: s["replicas"] == 2)
    handle = serve.run(build(1), name=APP, route_prefix=None)  # scale LocalModel down in place
    wait_for(handle, lambda s: s["replicas"] == 1 and s["slots"] == 3, timeout_s=60)


class Stopping:
    """Stops as `orchestrator.app.Gateway` does: an ingress whose app (`__serve_build_asgi_app__`) does the
    work still to do (the Gateway's: the settlements it batches) in its ASGI lifespan's shutdown, which Serve
    must await before the replica goes."""

    def __init__(self, marker: str):
        self.marker = marker

    def __serve_build_asgi_app__(self) -> Any:
        from contextlib import asynccontextmanager

        from fastapi import FastAPI

        @asynccontextmanager
        async def lifespan(app: FastAPI) -> Any:
            yield
            await asyncio.sleep(0.5)  # the ledger's answer takes a while
            Path(self.marker).write_text("drained")

        app = FastAPI(lifespan=lifespan)
        app.get("/")(lambda: "up")
        return app


def test_serve_awaits_a_stopping_ingress_apps_shutdown(serve_app: Any, tmp_path: Path) -> None:
    """The contract the Gateway's drain rests on (Serve 2.60, `ASGIAppReplicaWrapper.__del__`): a replica
    stopped gracefully runs its ASGI app's lifespan shutdown to its end. Were it dropped, a stopped
    Gateway's last settlements would never reach the ledger. (What a wrapped class's own `__del__`
    returns, Serve's ingress wrapper drops: the Gateway's drain was there until 2026-12-02.)"""
    from ray import serve

    marker = tmp_path / "stopped"
    paths = f"{TESTS / 'e2e'}:{TESTS}:{TESTS.parent}"
    actor = {"num_cpus": 0, "runtime_env": {"env_vars": {"PYTHONPATH": paths}}}
    ingress = serve.deployment(serve.ingress()(Stopping))
    app = ingress.options(name="StopUnderTest", ray_actor_options=actor).bind(str(marker))
    serve.run(app, name="stopping-test", route_prefix=None)
    assert not marker.exists()
    serve.delete("stopping-test")
    deadline = time.monotonic() + 30
    while not marker.exists():
        assert time.monotonic() < deadline, "the replica's app never finished its shutdown"
        time.sleep(0.1)
    assert marker.read_text() == "drained"
