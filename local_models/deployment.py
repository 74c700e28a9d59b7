"""`LocalModel`: the Ray Serve deployment that serves one local engine.

Responsibilities:
1. prepare the model on its node (the catalog caches, so this is instant
   after the first time) and start the engine, bounded by a timeout;
2. stream `Batch`es over a `DeploymentHandle` (`generate`, called with
   `handle.options(stream=True)`), plain data only;
3. abort the engine request when the caller goes away (Serve cancels the
   generator; the engine's `finally` aborts);
4. answer `stats()` and `info()` cheaply, for the scheduler and the gateway,
   and push `stats()` to the gateway's load board every `report_interval_s`
   (so the scheduler sees every replica, not the one a handle call reaches);
5. fail Serve's health check when the engine is dead, so Serve replaces it;
6. with a tracer provider (`tracing`, a factory run in the replica), trace each generation that
   carries its caller's `traceparent` (`tracing.py`).

The engine class is injected (`engine_factory`), so tests can run the real
deployment around a fake engine.
"""

from __future__ import annotations

import asyncio
import logging
import uuid
from collections.abc import AsyncGenerator, Awaitable, Callable
from dataclasses import replace
from pathlib import Path
from typing import TYPE_CHECKING, Any, cast

from .interface import Batch, EmbedResult, Engine, EngineConfig, GenerateRequest, LoadStats, ModelInfo
from .tracing import GenerationTracer

if TYPE_CHECKING:
    from opentelemetry.sdk.trace import TracerProvider

EngineFactory = Callable[[EngineConfig], Awaitable[Engine]]
TracingFactory = Callable[[], "TracerProvider | None"]

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
        tracing: TracingFactory | None = None,
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
        if board is not None:
            self._reporter = asyncio.get_running_loop().create_task(
                _report(board, config.served_name, self._engine, report_interval_s)
            )

    async def generate(self, request: GenerateRequest) -> AsyncGenerator[Batch, None]:
        batches = self._engine.generate(request)
        if self._tracer is not None and "traceparent" in request:
            batches = self._tracer.traced(request, batches)
        async for batch in batches:
            yield batch

    async def embed(self, inputs: list[str] | list[list[int]]) -> EmbedResult:
        return await self._engine.embed(inputs)

    def stats(self) -> LoadStats:
        return self._engine.stats()

    def info(self) -> ModelInfo:
        return self._engine.info()

    def check_health(self) -> None:
        # Raising marks the replica unhealthy; Serve then restarts it.
        self._engine.stats()

    def __del__(self) -> None:
        reporter = getattr(self, "_reporter", None)
        if reporter is not None:
            reporter.cancel()
        engine = getattr(self, "_engine", None)
        if engine is not None:
            engine.shutdown()
        traces = getattr(self, "_traces", None)
        if traces is not None:
            traces.shutdown()  # what is batched is exported


async def _report(board: Any, model: str, engine: Engine, interval_s: float) -> None:
    """Push this replica's load to the board until cancelled; a missed report only ages the view."""
    replica = _replica_id()
    failing = False
    while True:
        try:
            await board.report.remote(model, replica, engine.stats())
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
        tracing=tracing,
    )
