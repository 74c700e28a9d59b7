"""`LocalModel`: the Ray Serve deployment that serves one local engine.

Responsibilities:
1. prepare the model on its node (the catalog caches, so this is instant
   after the first time) and start the engine, bounded by a timeout;
2. stream `Batch`es over a `DeploymentHandle` (`generate`, called with
   `handle.options(stream=True)`), plain data only; a request the engine refuses
   as its own fault (`BadRequest`) is answered `Refused`, not raised (Serve logs
   what a replica method raises as the replica's failure);
3. abort the engine request when the caller goes away (Serve cancels the
   generator; the engine's `finally` aborts);
4. answer `stats()` and `info()` cheaply, for the scheduler and the gateway,
   and push `stats()` to the gateway's load board every `report_interval_s` while they change,
   every `heartbeat_s` while they don't (an idle engine), so the scheduler sees every replica,
   not the one a handle call reaches; `info()` once (so a gateway starting while no replica is up
   need not wait for one);
5. when the engine dies, leave (`_leave_when_dead`): shut the engine down and end the replica's process, so
   that Serve replaces it and, meanwhile, routes no request to it; Serve's health check fails too;
6. with a tracer provider (`tracing`, a factory run in the replica), trace each generation that
   carries its caller's `traceparent` (`tracing.py`).

The engine class is injected (`engine_factory`), so tests can run the real
deployment around a fake engine.
"""

from __future__ import annotations

import asyncio
import gc
import logging
import os
import uuid
from collections.abc import AsyncGenerator, Awaitable, Callable
from dataclasses import replace
from pathlib import Path
from typing import TYPE_CHECKING, Any, cast

from .errors import BadRequest, EngineFailure
from .interface import (
    OVERFLOW_METRIC,
    Batch,
    EmbedResult,
    Engine,
    EngineConfig,
    GenerateRequest,
    LoadStats,
    ModelInfo,
    Refused,
)
from .tracing import GenerationTracer

if TYPE_CHECKING:
    from opentelemetry.sdk.trace import TracerProvider

EngineFactory = Callable[[EngineConfig], Awaitable[Engine]]
TracingFactory = Callable[[], "TracerProvider | None"]
Exit = Callable[[int], object]

WATCH_INTERVAL_S = 0.1  # how soon a replica whose engine died leaves
LEAVE_WAIT_S = 10.0  # the most a call that failed with the engine waits for its replica's end

log = logging.getLogger(__name__)


class LocalModel:
    """One replica: one engine for one model."""

    async def __init__(  # type: ignore[misc]  # Serve awaits async constructors
        self,
        config: EngineConfig,
        data_dir: str | None = None,
        engine_factory: EngineFactory | None = None,
        board: Any = None,
        report_interval_s: float = 0.1,
        heartbeat_s: float = 0.25,
        tracing: TracingFactory | None = None,
        exit_process: Exit = os._exit,
    ):
        if data_dir is not None:
            path, tool_parser, reasoning_parser = _prepare(config.model_path, Path(data_dir))
            config = replace(
                config,
                model_path=path,
                tool_parser=config.tool_parser or tool_parser,
                reasoning_parser=config.reasoning_parser or reasoning_parser,
            )
        self._engine = await (engine_factory or _start_vllm)(config)
        self._traces = tracing() if tracing is not None else None
        self._tracer = GenerationTracer(self._traces, config.served_name) if self._traces is not None else None
        self._reporter: asyncio.Task[None] | None = None
        self._overflow = 0  # requests the gateways spilled from this model for load, in flight (the board's answer)
        self._watch = asyncio.get_running_loop().create_task(_leave_when_dead(self._engine, self._traces, exit_process))
        if board is not None:
            self._reporter = asyncio.get_running_loop().create_task(
                _report(board, config.served_name, self._engine, report_interval_s, self._heard, heartbeat_s)
            )
        # What the replica holds from its start (Ray, Serve, the engine's client) left out of every later
        # garbage collection: a full one would stall the tokens' way out (see orchestrator.app.freeze_heap).
        gc.collect()
        gc.freeze()

    async def generate(self, request: GenerateRequest) -> AsyncGenerator[Batch | Refused, None]:
        batches = self._engine.generate(request)
        if self._tracer is not None and "traceparent" in request:
            batches = self._tracer.traced(request, batches)
        try:
            async for batch in batches:
                yield batch
        except BadRequest as e:
            yield Refused(refused=e)
        except EngineFailure:
            await self._gone_if_dead()
            raise

    async def embed(self, inputs: list[str] | list[list[int]]) -> EmbedResult | Refused:
        try:
            return await self._engine.embed(inputs)
        except BadRequest as e:
            return Refused(refused=e)
        except EngineFailure:
            await self._gone_if_dead()
            raise

    async def _gone_if_dead(self) -> None:
        """If the engine died, wait for the replica's end (`_leave_when_dead`) before a call fails.

        The caller then learns of the failure from a replica that is gone, so its next attempt meets a
        process that Serve's router routes around, never this one again while it is still up and failing
        whatever it takes. Bounded (`LEAVE_WAIT_S`); at once when the engine is alive.
        """
        try:
            self._engine.stats()
        except EngineFailure:
            await asyncio.wait({self._watch}, timeout=LEAVE_WAIT_S)

    def stats(self) -> LoadStats:
        return self._engine.stats()

    def _heard(self, overflow: object) -> None:
        self._overflow = overflow if isinstance(overflow, int) else 0

    def record_autoscaling_stats(self) -> dict[str, float]:
        """Serve's custom autoscaling metric: the demand spilled from this model for load, which
        `orchestrator.scheduling.autoscale.overflow_aware` adds to the requests the replicas hold."""
        return {OVERFLOW_METRIC: float(self._overflow)}

    def info(self) -> ModelInfo:
        return self._engine.info()

    def check_health(self) -> None:
        # Raising marks the replica unhealthy; Serve then restarts it.
        self._engine.stats()

    def __del__(self) -> None:
        for task in (getattr(self, "_reporter", None), getattr(self, "_watch", None)):
            if task is not None:
                task.cancel()
        engine = getattr(self, "_engine", None)
        if engine is not None:
            engine.shutdown()
        traces = getattr(self, "_traces", None)
        if traces is not None:
            traces.shutdown()  # what is batched is exported


async def _leave_when_dead(engine: Engine, traces: TracerProvider | None, exit_process: Exit) -> None:
    """Once the engine has died, end this replica's process (the engine's processes ended first).

    A replica that only failed its health check would keep taking requests until Serve's next check
    (`health_check_period_s`) and fail each at once: the least busy replica, so Serve's router would send
    it most of them, each request's retry too. A replica process that has ended is one Serve's router
    skips: a request it routed here goes to another replica (its `ActorDiedError` is retried there), and
    the controller replaces the replica at its next health check.
    """
    while True:
        await asyncio.sleep(WATCH_INTERVAL_S)
        try:
            engine.stats()
        except EngineFailure as e:
            log.error("%s This replica exits, for Serve to replace it.", e)
            break
    for close in (engine.shutdown, traces.shutdown if traces is not None else None):
        try:
            if close is not None:
                close()  # no engine process orphaned; what traces are batched, exported
        except Exception as e:
            log.warning("while leaving: %s: %s", type(e).__name__, e)
    exit_process(1)


async def _report(
    board: Any,
    model: str,
    engine: Engine,
    interval_s: float,
    heard: Callable[[object], None] = lambda _: None,
    heartbeat_s: float = 0.0,
) -> None:
    """Push this replica's load to the board until cancelled; a missed report only ages the view.
    `heard` gets the board's answer (the demand spilled from the model, for the autoscaler).

    Every `interval_s` while the figures change; a report that would say what the last one said
    (an idle engine's) goes only once `heartbeat_s` has passed, to keep the replica on the board
    (which drops reports older than its `max_age_s`; give it a fraction of that). Each report is
    a Serve call that costs the board, this replica and Ray a few milliseconds of CPU together,
    and an idle deployment made ten a second per engine. A change is still on the board within
    one interval, as before: skipped reports are ones with nothing new.
    """
    replica = _replica_id()
    loop = asyncio.get_running_loop()
    failing = False
    described = False
    said: dict[str, Any] | None = None  # the last report that reached the board, without its time
    said_at = 0.0
    while True:
        try:
            if not described:  # what it serves, for gateways that start while no replica is up
                await board.describe.remote(model, engine.info())
                described = True
            stats = engine.stats()
            figures = {k: v for k, v in stats.items() if k != "updated_at"}
            if figures != said or loop.time() - said_at >= heartbeat_s:
                said = None  # until the board has it
                heard(await board.report.remote(model, replica, stats))
                said, said_at = figures, loop.time()
            failing = False
        except asyncio.CancelledError:
            raise
        except Exception as e:
            if not failing:
                log.warning("cannot report load to the board (%s: %s)", type(e).__name__, e)
            failing = True
        await asyncio.sleep(interval_s)


def _replica_id() -> str:
    try:
        from ray import serve

        return str(serve.get_replica_context().replica_id.unique_id)
    except Exception:  # outside a Serve replica (tests)
        return uuid.uuid4().hex


async def _start_vllm(config: EngineConfig) -> Engine:
    from .engine import VllmEngine  # imports vLLM: only where an engine runs

    return await VllmEngine.start(config)


def _prepare(model: str, data_dir: Path) -> tuple[str, str | None, str | None]:
    """The model's directory, and the catalog's tool-call and reasoning parsers for it (if any)."""
    from .catalog import prepare

    prepared = prepare(model, data_dir, progress=False)
    return str(prepared.path), prepared.tool_parser, prepared.reasoning_parser


def local_model_app(
    config: EngineConfig,
    *,
    data_dir: Path | None,
    name: str,
    num_replicas: int,
    max_ongoing_requests: int,
    max_queued_requests: int,
    num_cpus: float = 0.0,
    num_gpus: float = 0.0,
    resources: dict[str, float] | None = None,
    board: Any = None,
    report_interval_s: float = 0.1,
    heartbeat_s: float = 0.25,
    autoscaling: dict[str, Any] | None = None,
    tracing: TracingFactory | None = None,
    drain_s: float = 120.0,
) -> Any:
    """The bound `LocalModel` deployment, ready to pass to another deployment.

    `drain_s`: how long a replica being removed (scaled down, redeployed) may take to finish the
    requests it is running; give it the longest a request may last, so none is cut off.
    """
    from ray import serve
    from ray.serve.deployment import Deployment

    scaling: dict[str, Any] = {"autoscaling_config": autoscaling} if autoscaling else {"num_replicas": num_replicas}
    deployment = cast(Deployment, serve.deployment(LocalModel)).options(
        name=name,
        **scaling,
        max_ongoing_requests=max_ongoing_requests,
        max_queued_requests=max_queued_requests,
        ray_actor_options={
            "num_cpus": num_cpus,
            "num_gpus": num_gpus,
            **({"resources": resources} if resources else {}),
        },
        health_check_period_s=10,
        health_check_timeout_s=30,
        graceful_shutdown_timeout_s=drain_s,
    )
    return deployment.bind(
        config,
        str(data_dir) if data_dir else None,
        board=board,
        report_interval_s=report_interval_s,
        heartbeat_s=heartbeat_s,
        tracing=tracing,
    )
