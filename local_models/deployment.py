"""`LocalModel`: the Ray Serve deployment that serves one local engine.

Responsibilities:
1. prepare the model on its node (the catalog caches, so this is instant
   after the first time) and start the engine, bounded by a timeout;
2. stream `Batch`es over a `DeploymentHandle` (`generate`, called with
   `handle.options(stream=True)`), plain data only;
3. abort the engine request when the caller goes away (Serve cancels the
   generator; the engine's `finally` aborts);
4. answer `stats()` and `info()` cheaply, for the scheduler and the gateway;
5. fail Serve's health check when the engine is dead, so Serve replaces it.

The engine class is injected (`engine_factory`), so tests can run the real
deployment around a fake engine.
"""

from __future__ import annotations

from collections.abc import AsyncGenerator, Awaitable, Callable
from dataclasses import replace
from pathlib import Path
from typing import Any, cast

from .interface import Batch, EmbedResult, Engine, EngineConfig, GenerateRequest, LoadStats, ModelInfo

EngineFactory = Callable[[EngineConfig], Awaitable[Engine]]


class LocalModel:
    """One replica: one engine for one model."""

    async def __init__(  # type: ignore[misc]  # Serve awaits async constructors
        self,
        config: EngineConfig,
        data_dir: str | None = None,
        engine_factory: EngineFactory | None = None,
    ):
        if data_dir is not None:
            config = replace(config, model_path=_prepare(config.model_path, Path(data_dir)))
        self._engine = await (engine_factory or _start_vllm)(config)

    async def generate(self, request: GenerateRequest) -> AsyncGenerator[Batch, None]:
        async for batch in self._engine.generate(request):
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
        engine = getattr(self, "_engine", None)
        if engine is not None:
            engine.shutdown()


async def _start_vllm(config: EngineConfig) -> Engine:
    from .engine import VllmEngine  # imports vLLM: only where an engine runs

    return await VllmEngine.start(config)


def _prepare(model: str, data_dir: Path) -> str:
    from .catalog import prepare

    return str(prepare(model, data_dir, progress=False).path)


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
) -> Any:
    """The bound `LocalModel` deployment, ready to pass to another deployment."""
    from ray import serve
    from ray.serve.deployment import Deployment

    deployment = cast(Deployment, serve.deployment(LocalModel)).options(
        name=name,
        num_replicas=num_replicas,
        max_ongoing_requests=max_ongoing_requests,
        max_queued_requests=max_queued_requests,
        ray_actor_options={"num_cpus": num_cpus, "num_gpus": num_gpus},
        health_check_period_s=10,
        health_check_timeout_s=30,
        graceful_shutdown_timeout_s=5,
    )
    return deployment.bind(config, str(data_dir) if data_dir else None)
