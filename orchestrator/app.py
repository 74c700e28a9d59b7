"""The Ray Serve application: the Gateway ingress and the local models it calls.

`build_application(settings)` binds the deployment graph:

    Gateway (FastAPI ingress, `orchestrator.api`)
      ├── LocalModel  "local-model"   (chat + completions, vLLM)
      ├── LocalModel  "local-embed"   (embeddings, vLLM pooling; optional)
      └── LoadBoard                   (local load and overflow spend, `orchestrator.scheduling.load`)

Every LocalModel replica reports its engine's load to the LoadBoard; every
Gateway replica polls it for the scheduler (`orchestrator.scheduling.router`).

The Gateway builds its pipeline at replica start, from what each LocalModel
reports (`info()`; while none is up, what the last one told the board, so a
gateway never waits for a cold start) and the remote providers whose keys its environment holds,
and keeps remote routes (and, later, cache hits) inside its own replica: only
local generation crosses a `DeploymentHandle`.
"""

from __future__ import annotations

import asyncio
import gc
import logging
import os
import time
import uuid
from collections.abc import Mapping
from dataclasses import dataclass, field
from functools import partial
from typing import Any, cast

import httpx
from fastapi import FastAPI

from local_models.deployment import local_model_app
from local_models.interface import EngineConfig, ModelInfo
from orchestrator.accounting.local_prices import EngineFigures
from orchestrator.accounting.prices import Prices
from orchestrator.accounting.setup import StatsReader, build_accounts
from orchestrator.actors import HEAD_NODE
from orchestrator.api import build_app
from orchestrator.caching.cache import ResponseCache
from orchestrator.frontdoors.responses.conversation_store import conversations_for
from orchestrator.frontdoors.responses.conversations import limits
from orchestrator.frontdoors.responses.store import store_for
from orchestrator.pipeline import Pipeline
from orchestrator.providers.base import Provider
from orchestrator.providers.factory import build_remote, http_client
from orchestrator.providers.local import HandleClient, LocalModelClient, LocalProvider
from orchestrator.rebind import rebind_at_once
from orchestrator.scheduling.autoscale import with_overflow_policy
from orchestrator.scheduling.capabilities import Backend, build_registry, local_backend
from orchestrator.scheduling.load import LoadBoard, LoadView
from orchestrator.scheduling.router import Router, blended_prices, policies_from
from orchestrator.scheduling.tokens import ByteCounter, HfTokenCounter, TokenCounter
from orchestrator.settings import (
    CacheSettings,
    EngineSettings,
    LocalModelSettings,
    ResilienceSettings,
    SchedulerSettings,
    Settings,
    served_name,
)
from orchestrator.telemetry import Telemetry, build_telemetry, replica_tracer_provider

log = logging.getLogger(__name__)

LOCAL = "local"
LOCAL_EMBED = "local-embed"
SHUTDOWN_DRAIN_S = 10.0  # the most a stopping Gateway waits for the ledger to take its last settlements


async def build_pipeline(
    clients: dict[str, tuple[LocalModelClient, ModelInfo]],
    settings: Settings | None = None,
    env: Mapping[str, str] | None = None,
    client: httpx.AsyncClient | None = None,
    load: LoadView | None = None,
    telemetry: Telemetry | None = None,
) -> Pipeline:
    """A pipeline over local model clients (keyed by provider name, each with its
    info) and the remote providers `settings` configures and `env` has keys for,
    all sharing one pooled HTTP `client`; `load` is the local load the scheduler
    plans with (None: it keeps each alias's configured order)."""
    configs = settings.providers if settings else {}
    chains = settings.models if settings else {}
    r = settings.resilience if settings else ResilienceSettings()
    local = _local_routes(clients)
    http = client or http_client(r, traced=telemetry is not None and telemetry.tracer is not None)
    remote_providers, remote = build_remote(configs, http, os.environ if env is None else env)
    registry = build_registry(local.backends, remote, {name: m.routes for name, m in chains.items()})
    router = Router(
        registry,
        local=local.names,
        embedders=local.embedders,
        policies=policies_from(chains),
        knobs=settings.scheduler if settings else SchedulerSettings(),
        load=load,
        counter=local.counter,
        prices=blended_prices(configs),
    )
    cache, cache_settings = _response_cache(settings)
    return Pipeline(
        registry,
        {**local.providers, **remote_providers},
        router=router,
        created=int(time.time()),
        policy=r,
        cache=cache,
        cache_config=cache_settings,
        prices=Prices.from_providers(configs),
        telemetry=telemetry,
    )


@dataclass
class _LocalRoutes:
    providers: dict[str, Provider] = field(default_factory=dict)
    backends: dict[str, Backend] = field(default_factory=dict)  # by served model name
    names: dict[str, str] = field(default_factory=dict)  # generation provider -> its served model name
    embedders: set[str] = field(default_factory=set)
    counter: TokenCounter = field(default_factory=ByteCounter)


def _local_routes(clients: dict[str, tuple[LocalModelClient, ModelInfo]]) -> _LocalRoutes:
    """The local models as providers and routes; the generation model's tokenizer counts tokens."""
    out = _LocalRoutes()
    for name, (local_client, info) in clients.items():
        out.providers[name] = LocalProvider(local_client)
        out.backends[info["name"]] = local_backend(info, name)
        if info["task"] != "generate":
            out.embedders.add(name)
            continue
        out.names[name] = info["name"]
        if "tokenizer_path" in info:
            out.counter = HfTokenCounter.load(info["tokenizer_path"])
    return out


def _response_cache(settings: Settings | None) -> tuple[ResponseCache | None, CacheSettings]:
    """The disk cache as configured; a broken one is logged and left out, never an endpoint down."""
    if settings is None or not settings.cache.enabled:
        return None, CacheSettings(mode="never")
    c = settings.cache
    directory = c.directory or settings.data_dir / "response-cache"
    try:
        return ResponseCache(directory, size_limit_bytes=c.size_limit_mb << 20), c
    except Exception as e:
        log.error("response cache at %s unusable (%s: %s); serving without it", directory, type(e).__name__, e)
        return None, CacheSettings(mode="never")


async def model_info(board: Any, handle: Any, model: str) -> ModelInfo:
    """What the local `model` serves: asked of a replica, or, while none is up (scaled to zero, all
    restarting), what the last one told the board; asking a replica then would hold this gateway, and
    every route it serves, until a new one had started."""
    if board is not None:
        try:
            state = await board.read.remote()
            if (
                not state["models"].get(model, {}).get("replicas")
                and (info := await board.described.remote(model)) is not None
            ):
                return cast(ModelInfo, info)
        except Exception as e:  # the board restarting: a replica answers
            log.warning("load board unreachable for %s's description (%s: %s)", model, type(e).__name__, e)
    return cast(ModelInfo, await handle.info.remote())


def board_figures(view: LoadView, model: str) -> StatsReader:
    """The local model's price figures from the load board this gateway already reads.

    Not a call to the model's deployment: a call a second from every gateway is demand Serve's
    autoscaler counts, so a model allowed to scale to zero would be woken again within a second.
    """

    async def read() -> EngineFigures:
        snap = view.snapshot(model, planning=False)  # an idle gateway's dozing poll is fresh enough for a price
        if snap is None:
            raise LookupError(f"no load data for {model}")  # the poller keeps the last figures
        per_replica = max(snap.replicas, 1)
        return EngineFigures(
            waiting=snap.waiting,
            running=snap.running,
            prefill_tokens_per_s=snap.prefill_tokens_per_s / per_replica,
            decode_tokens_per_s=snap.decode_tokens_per_s / per_replica,
        )

    return read


class Gateway:
    """Serve ingress replica: one pipeline, one ASGI app."""

    async def __init__(  # type: ignore[misc]  # Serve awaits it
        self, settings: Settings, local: Any, embed: Any = None, board: Any = None
    ):
        rebind_at_once()  # before Serve starts this replica's listener (after the constructor)
        if settings.server.request_log:
            request_log_lines()
        clients: dict[str, tuple[LocalModelClient, ModelInfo]] = {
            LOCAL: (HandleClient(local), await model_info(board, local, served_name(settings.local)))
        }
        if embed is not None:
            embed_info = await model_info(board, embed, served_name(settings.embedding))
            clients[LOCAL_EMBED] = (HandleClient(embed), embed_info)
        load = None
        if board is not None:
            s = settings.scheduler
            handles = {clients[LOCAL][1]["name"]: local}
            if embed is not None:
                handles[clients[LOCAL_EMBED][1]["name"]] = embed
            gateway = uuid.uuid4().hex
            load = LoadView(
                lambda overflow: board.read.remote(gateway, overflow),
                report=lambda by_tenant: board.spent.remote(by_tenant),
                wake=lambda model: handles[model].info.remote(),
                interval_s=s.poll_interval_ms / 1000,
                max_staleness_s=s.max_staleness_ms / 1000,
            )
            await load.poll_once()
            self._poller = asyncio.get_running_loop().create_task(load.run())
        telemetry = build_telemetry(settings.telemetry)  # this replica's own provider; off unless configured
        self._pipeline = await build_pipeline(clients, settings, load=load, telemetry=telemetry)
        self._max_body_mb = settings.server.max_body_mb
        self._responses = store_for(settings)
        self._conversations = conversations_for(settings)
        self._conversation_room = limits(settings.conversations.max_items, settings.conversations.max_mb)
        info = clients[LOCAL][1]
        figures = board_figures(load, info["name"]) if load is not None else (lambda: local.stats.remote())
        self._accounts = await build_accounts(settings, self._pipeline, local={LOCAL: (figures, info)})
        freeze_heap()

    async def _stop(self) -> None:
        """Serve's graceful shutdown (scaled down, redeployed, stopped), once the replica's requests ended
        (the app's ASGI lifespan shutdown, which Serve's ingress awaits): the settlements still batched go
        to the ledger, so no answered request is missing there."""
        poller = getattr(self, "_poller", None)
        if poller is not None:
            poller.cancel()
        try:
            await asyncio.wait_for(self._accounts.drain(), SHUTDOWN_DRAIN_S)
        except Exception as e:  # the ledger gone too: what it didn't take is logged by the settlements
            log.warning("settlements not all sent at shutdown (%s: %s)", type(e).__name__, e)

    def model_ids(self) -> list[str]:
        """Every model this replica serves (whatever a key may see), for `orchestrator serve`'s ready line."""
        return [card.id for card in self._pipeline.models().data]

    def __serve_build_asgi_app__(self) -> FastAPI:
        return build_app(
            self._pipeline,
            self._accounts,
            max_body_bytes=int(self._max_body_mb * 2**20),
            responses=self._responses,
            conversations=self._conversations,
            conversation_room=self._conversation_room,
            ingress_request_ids=True,  # Serve answers with its own x-request-id
            on_stop=self._stop,
        )


def request_log_lines() -> None:
    """Each request's JSON line written to this process's stderr (a Ray worker's log, streamed to the
    driver's terminal): in a worker, nothing of ours above WARNING reaches a handler by itself."""
    requests = logging.getLogger("orchestrator.requests")
    requests.setLevel(logging.INFO)
    if not requests.handlers:
        requests.addHandler(logging.StreamHandler())  # stderr, the line as it is
        requests.propagate = False


def freeze_heap() -> None:
    """Leave what the replica holds from its start out of every later garbage collection.

    A full collection walks every object the process holds while the event loop waits: with Ray, Serve
    and the pipeline that is ~180,000 objects, and under load it ran every few thousand requests for up
    to ~0.3 s (`python -m benchmarks.gc_pauses`). Frozen, it walks only what came after. vLLM's
    engine core does the same after its start (`vllm.utils.gc_utils.freeze_gc_heap`)."""
    gc.collect()
    gc.freeze()


def engine_config(section: EngineSettings, settings: Settings, task: str) -> EngineConfig:
    model = section.model
    assert model is not None
    return EngineConfig(
        model_path=model,
        served_name=served_name(section),
        task=task,
        max_model_len=section.max_model_len,
        kv_cache_bytes=int(section.kv_cache_gib * (1 << 30)),
        max_num_seqs=section.max_num_seqs,
        dtype=section.dtype,
        startup_timeout_s=section.startup_timeout_s,
        stream_interval_s=section.stream_interval_ms / 1000,
        cache_dir=str(settings.data_dir / "vllm-cache"),
        tool_parser=section.tool_parser if isinstance(section, LocalModelSettings) else None,
        reasoning_parser=section.reasoning_parser if isinstance(section, LocalModelSettings) else None,
        extra_engine_args=section.engine_args,
    )


def build_application(settings: Settings) -> Any:
    """The bound Serve application for `serve.run`."""
    from ray import serve
    from ray.serve.deployment import Deployment

    board = (
        cast(Deployment, serve.deployment(LoadBoard))
        # On the head, with the cluster's other single owners (orchestrator/actors.py).
        .options(
            name="LoadBoard",
            num_replicas=1,
            max_ongoing_requests=1000,
            ray_actor_options={"num_cpus": 0, "resources": HEAD_NODE},
        )
        .bind(max_age_s=settings.scheduler.max_staleness_ms / 1000)
    )

    def bind(section: EngineSettings, task: str, name: str) -> Any:
        return local_model_app(
            engine_config(section, settings, task),
            data_dir=settings.data_dir,
            name=name,
            num_replicas=section.num_replicas,
            max_ongoing_requests=section.max_ongoing_requests,
            max_queued_requests=section.max_queued_requests,
            num_cpus=section.num_cpus,
            num_gpus=section.num_gpus,
            resources=section.resources,
            board=board,
            report_interval_s=settings.scheduler.poll_interval_ms / 1000,
            # An idle engine's unchanged report, at a quarter of the board's max age (it drops older ones).
            heartbeat_s=settings.scheduler.max_staleness_ms / 4000,
            autoscaling=with_overflow_policy(section.autoscaling),
            drain_s=settings.resilience.deadline_s,
            tracing=partial(replica_tracer_provider, settings.telemetry),
        )

    local_app = bind(settings.local, "generate", "LocalModel")
    embed_app = bind(settings.embedding, "embed", "LocalEmbedder") if settings.embedding.model else None
    per_node = {"max_replicas_per_node": n} if (n := settings.gateway.max_replicas_per_node) else {}
    gateway = cast(Deployment, serve.deployment(serve.ingress()(Gateway))).options(
        name="Gateway",
        num_replicas=settings.gateway.num_replicas,
        max_ongoing_requests=settings.gateway.max_ongoing_requests,
        **cast(dict[str, Any], per_node),
        ray_actor_options={
            "num_cpus": settings.gateway.num_cpus,
            **({"resources": settings.gateway.resources} if settings.gateway.resources else {}),
        },
    )
    return gateway.bind(settings, local_app, embed_app, board)
