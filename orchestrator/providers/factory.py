"""Remote providers from configuration: which are available, and the models they serve.

A provider is available when the environment variable its config names holds
a key. Availability is decided once, at start, and said in the log (the
variable's name, never its value).
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from typing import Any

import httpx
from httpx_aiohttp import HttpxAiohttpClient

from orchestrator.providers.base import Provider
from orchestrator.providers.openai_compat import OpenAICompatProvider, Quirks
from orchestrator.scheduling.capabilities import Backend, Feature
from orchestrator.settings import ProviderSettings, RemoteModel, ResilienceSettings
from orchestrator.telemetry.traces import traceparent_header

log = logging.getLogger(__name__)


def http_client(resilience: ResilienceSettings, *, traced: bool = False) -> httpx.AsyncClient:
    """One pooled client for every provider (connections are reused per host).

    An `httpx.AsyncClient` whose transport is aiohttp (httpx-aiohttp, what the
    openai SDK ships as `DefaultAioHttpClient`): httpx's own pool checks every
    idle connection with a syscall on each request and response, which made it
    most of the gateway's CPU per request at 32 concurrent streams
    (benchmarks/README.md). The aiohttp session is made on the loop of the
    first request; aiohttp keeps up to `max_connections` alive (httpx's
    `max_keepalive_connections` has no equivalent). Its errors are mapped in
    `providers.http.map_transport_errors`. Cookies are neither kept nor sent
    (`ProviderClient`). `traced`: each request carries the current span's
    W3C `traceparent` (the gateway's attempt), so a traced provider joins the trace.
    """
    return ProviderClient(
        event_hooks={"request": [traceparent_header]} if traced else None,
        timeout=httpx.Timeout(
            connect=resilience.connect_timeout_s,
            read=resilience.idle_timeout_s,
            write=resilience.connect_timeout_s,
            pool=resilience.connect_timeout_s,
        ),
        limits=httpx.Limits(max_connections=512, max_keepalive_connections=128),
    )


class ProviderClient(HttpxAiohttpClient):
    """The providers' client: httpx's interface on aiohttp, and no cookies.

    A provider's cookies (a load balancer's, say) mean nothing to the gateway and must not
    cross from one user's request to another's; httpx would parse every response's headers
    for them (a twentieth of the gateway's CPU per request).
    """

    def __init__(self, **kwargs: Any):
        super().__init__(**kwargs)
        self._none = NoCookies()

    @property
    def cookies(self) -> httpx.Cookies:
        return self._none

    @cookies.setter
    def cookies(self, cookies: Any) -> None:
        pass  # none kept


class NoCookies(httpx.Cookies):
    """A cookie store that takes nothing from responses (so it never has anything to send)."""

    def extract_cookies(self, response: httpx.Response) -> None:
        return None


def remote_backend(provider: str, model: RemoteModel, kind: str = "openai") -> Backend:
    if model.kind == "embedding":
        return Backend(
            provider=provider,
            model=model.id,
            tasks=frozenset({"embeddings"}),
            context_length=model.context_length,
            owned_by=provider,
        )
    features: set[Feature] = set()
    if model.tools:
        features.update(("tools", "auto_tools"))
        if kind == "openai":
            features.add("functions")  # passed on as the client sent them
    if model.vision:
        features.add("vision")
    if model.json_schema:
        features.add("json_schema")
    if kind == "anthropic":
        features.add("anthropic")  # takes the client's own Messages body, documents and server tools too
        features.add("many_stops")
    return Backend(
        provider=provider,
        model=model.id,
        tasks=frozenset({"chat", "completions"}),
        features=frozenset(features),
        context_length=model.context_length,
        owned_by=provider,
        weights=model.same_weights_as,
    )


def build_remote(
    configs: Mapping[str, ProviderSettings], client: httpx.AsyncClient, env: Mapping[str, str]
) -> tuple[dict[str, Provider], dict[str, Backend]]:
    """(providers by name, backends by "provider/model") for every provider with a key."""
    providers: dict[str, Provider] = {}
    backends: dict[str, Backend] = {}
    for name, cfg in configs.items():
        key = env.get(cfg.api_key_env, "").strip()
        if not key:
            log.info("provider %s unavailable: %s is not set", name, cfg.api_key_env)
            continue
        providers[name] = _provider(name, cfg, client, key)
        for model_name, model in cfg.models.items():
            backends[f"{name}/{model_name}"] = remote_backend(name, model, cfg.kind)
        log.info("provider %s available with %d models", name, len(cfg.models))
    return providers, backends


def availability(configs: Mapping[str, ProviderSettings], env: Mapping[str, str]) -> list[str]:
    """One line per provider saying whether it is available, and why not."""
    return [
        f"provider {name}: available ({len(cfg.models)} models)"
        if env.get(cfg.api_key_env, "").strip()
        else f"provider {name}: unavailable, {cfg.api_key_env} is not set"
        for name, cfg in configs.items()
    ]


def _provider(name: str, cfg: ProviderSettings, client: httpx.AsyncClient, key: str) -> Provider:
    if cfg.kind == "anthropic":
        from orchestrator.providers.anthropic import AnthropicProvider

        provider: Provider = AnthropicProvider(name, client, cfg.base_url, key, key_env=cfg.api_key_env)
        return provider
    return OpenAICompatProvider(
        name,
        client,
        cfg.base_url,
        key,
        quirks=Quirks(**cfg.quirks.model_dump()),
        headers=cfg.headers,
        key_env=cfg.api_key_env,
    )
