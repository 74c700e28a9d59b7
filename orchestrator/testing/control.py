"""The fake provider's endpoints that call no model: health, the model lists, its own controls, and 404s."""

from __future__ import annotations

import math
from typing import TYPE_CHECKING

from aiohttp import web

from orchestrator.testing import anthropic_wire, openai_wire
from orchestrator.testing.faults import error_response, problem_response
from orchestrator.testing.replies import Api

if TYPE_CHECKING:
    from orchestrator.testing.provider import FakeProvider


class Control:
    """The endpoints that call no model: health, the model list, the fake's own controls, and 404s."""

    def __init__(self, provider: FakeProvider) -> None:
        self.provider = provider

    def routes(self) -> list[web.RouteDef]:
        return [
            web.get("/health", self.health),
            web.get("/v1/models", self.list_models),
            web.get("/v1/models/{model}", self.get_model),
            web.get("/_fake/stats", self.stats),
            web.post("/_fake/fault", self.set_fault),
            web.post("/_fake/pace", self.set_pace),
            web.post("/_fake/reset", self.reset),
        ]

    async def health(self, request: web.Request) -> web.Response:
        return web.json_response({"status": "ok"})

    async def stats(self, request: web.Request) -> web.Response:
        return web.json_response(self.provider.stats())

    async def set_fault(self, request: web.Request) -> web.Response:
        try:
            spec = await request.json()
            self.provider.set_fault(spec.pop("mode", None), **spec)
        except (ValueError, TypeError, AttributeError) as exc:
            return web.json_response({"error": str(exc)}, status=400)
        return web.json_response(self.provider.stats())

    async def set_pace(self, request: web.Request) -> web.Response:
        """`{"ttft_ms": ..., "tokens_per_s": ...}` (either) from the next request on; 0 is no delay."""
        try:
            spec = await request.json()
            pace = {name: float(spec.pop(name)) for name in ("ttft_ms", "tokens_per_s") if name in spec}
            if spec or not all(0 <= v < math.inf for v in pace.values()):
                raise ValueError("expected only 'ttft_ms' and 'tokens_per_s', each a number >= 0")
        except (ValueError, TypeError, AttributeError) as exc:
            return web.json_response({"error": str(exc)}, status=400)
        for name, value in pace.items():
            setattr(self.provider, name, value)
        return web.json_response({"ttft_ms": self.provider.ttft_ms, "tokens_per_s": self.provider.tokens_per_s})

    async def reset(self, request: web.Request) -> web.Response:
        self.provider.clear_fault()
        self.provider.reset_stats()
        return web.json_response(self.provider.stats())

    async def not_found(self, request: web.Request) -> web.Response:
        api: Api = "anthropic" if "anthropic-version" in request.headers else "openai"
        kind = "not_found_error" if api == "anthropic" else "invalid_request_error"
        return error_response(api, 404, kind, f"Invalid URL ({request.method} {request.path})")

    async def list_models(self, request: web.Request) -> web.Response:
        api: Api = "anthropic" if "anthropic-version" in request.headers else "openai"
        check = openai_wire.auth_problem if api == "openai" else anthropic_wire.auth_problem
        if (denied := check(request.headers, self.provider.api_key)) is not None:
            return problem_response(api, denied)
        models = self.provider.models
        wire = openai_wire.models_body(models) if api == "openai" else anthropic_wire.models_body(models)
        return web.json_response(wire)

    async def get_model(self, request: web.Request) -> web.Response:
        model = request.match_info["model"]
        if (denied := openai_wire.auth_problem(request.headers, self.provider.api_key)) is not None:
            return problem_response("openai", denied)
        if model not in self.provider.models:
            return problem_response("openai", openai_wire.unknown_model(model))
        return web.json_response(openai_wire.model_json(model))
