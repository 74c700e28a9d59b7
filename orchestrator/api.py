"""The HTTP edge: FastAPI routes, SSE encoding, and OpenAI-shaped errors.

The only place that knows HTTP. It parses and validates request bodies into
the wire models, calls the pipeline, and encodes what comes back as JSON or
as Server-Sent Events. Errors from anywhere in the gateway become OpenAI's
error JSON here and nowhere else. A stream is committed (status 200 sent)
only after its first chunk exists; a failure after that ends the stream with
an explicit `error` event and no `[DONE]`, never a silent truncation.
"""

from __future__ import annotations

import json
import logging
from collections.abc import AsyncIterator
from typing import Any, TypeVar

from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse, Response, StreamingResponse
from pydantic import BaseModel, ValidationError
from starlette.exceptions import HTTPException as StarletteHTTPException

from orchestrator.accounting import Accounts, Tab
from orchestrator.admin import add_admin_routes
from orchestrator.capabilities import Feature, Task, chat_needs
from orchestrator.errors import (
    InvalidRequest,
    MethodNotAllowed,
    NotFound,
    OrchestratorError,
    RequestTooLarge,
    UpstreamError,
)
from orchestrator.failover import OpenStream
from orchestrator.metrics import CONTENT_TYPE_LATEST
from orchestrator.pipeline import Pipeline, Route, Routed
from orchestrator.protocol import (
    ChatCompletionChunk,
    ChatCompletionRequest,
    CompletionChunk,
    CompletionRequest,
    EmbeddingRequest,
    ModelList,
    WireModel,
)
from orchestrator.scope import RequestScope

log = logging.getLogger(__name__)

M = TypeVar("M", bound=BaseModel)
R = TypeVar("R", ChatCompletionRequest, CompletionRequest, EmbeddingRequest)
Chunk = ChatCompletionChunk | CompletionChunk

SSE_HEADERS = {"Cache-Control": "no-cache", "X-Accel-Buffering": "no"}
DEFAULT_MAX_BODY_BYTES = 8 << 20  # server.max_body_mb


def build_app(
    pipeline: Pipeline, accounts: Accounts | None = None, *, max_body_bytes: int = DEFAULT_MAX_BODY_BYTES
) -> FastAPI:
    """The OpenAI-compatible ASGI app over one pipeline; `accounts` checks keys and budgets
    and accounts for every request (default: an open endpoint that logs and meters); bodies
    over `max_body_bytes` get a 413."""
    app = FastAPI(title="burst-orchestrator", docs_url=None, redoc_url=None, openapi_url=None)
    acct = accounts or Accounts(registry=pipeline.registry, prices=pipeline.prices)
    app.add_middleware(RequestScope, accounts=acct)  # type: ignore[arg-type]
    add_admin_routes(app, acct)

    async def admitted(request: Request, body: R, task: Task, needs: set[Feature]) -> R:
        """`body` if the key may send it, perhaps on the key's cheaper model (soft limit)."""
        model = await acct.admit(_tab(request), body, task, needs)
        return body if model == body.model else body.model_copy(update={"model": model})  # type: ignore[attr-defined]

    @app.exception_handler(OrchestratorError)
    async def _orchestrator_error(request: Request, exc: Exception) -> Response:
        assert isinstance(exc, OrchestratorError)
        _tab(request).error_code = exc.code
        return error_response(exc)

    @app.exception_handler(StarletteHTTPException)
    async def _http_error(request: Request, exc: Exception) -> Response:
        assert isinstance(exc, StarletteHTTPException)
        if exc.status_code == 405:
            return error_response(MethodNotAllowed(f"Method {request.method} is not allowed for {request.url.path}."))
        return error_response(NotFound(f"Unknown request URL: {request.method} {request.url.path}."))

    @app.exception_handler(Exception)
    async def _unexpected(_: Request, exc: Exception) -> Response:
        log.exception("unhandled error")
        return error_response(OrchestratorError("The server had an error processing your request."))

    async def health(_: Request) -> Response:
        return JSONResponse({"status": "ok"})

    async def metrics(request: Request) -> Response:
        acct.check_metrics_reader(request.headers)  # it shows key ids and per-key spend
        return Response(acct.metrics.exposition(), media_type=CONTENT_TYPE_LATEST)

    async def models(request: Request) -> Response:
        key = await acct.authenticate(_tab(request), request.headers)
        listed = pipeline.models()
        if key is not None:
            listed = ModelList(data=[m for m in listed.data if key.allows(m.id)])
        return _json(listed)

    async def chat(request: Request) -> Response:
        await acct.authenticate(_tab(request), request.headers)
        body = await parse(request, ChatCompletionRequest, max_body_bytes)
        body = await admitted(request, body, "chat", chat_needs(body))
        tenant = _tenant(request)
        if body.stream:
            return stream_response(await pipeline.chat_stream(body, request.headers, tenant), body.include_usage())
        routed = await pipeline.chat(body, request.headers, tenant)
        return _json(routed.result, routed.route)

    async def completions(request: Request) -> Response:
        await acct.authenticate(_tab(request), request.headers)
        body = await parse(request, CompletionRequest, max_body_bytes)
        body = await admitted(request, body, "completions", set())
        tenant = _tenant(request)
        if body.stream:
            return stream_response(
                await pipeline.complete_stream(body, request.headers, tenant), body.include_usage()
            )
        routed = await pipeline.complete(body, request.headers, tenant)
        return _json(routed.result, routed.route)

    async def embeddings(request: Request) -> Response:
        await acct.authenticate(_tab(request), request.headers)
        body = await parse(request, EmbeddingRequest, max_body_bytes)
        body = await admitted(request, body, "embeddings", set())
        routed = await pipeline.embed(body, request.headers)
        acct.record_embedding(_tab(request), routed)
        return _json(routed.result, routed.route)

    # Starlette's own routes: the handlers take the request and return a response, so FastAPI's
    # per-request dependency solving would only cost time.
    app.add_route("/health", health, methods=["GET"])
    app.add_route("/metrics", metrics, methods=["GET"])
    app.add_route("/v1/models", models, methods=["GET"])
    app.add_route("/v1/chat/completions", chat, methods=["POST"])
    app.add_route("/v1/completions", completions, methods=["POST"])
    app.add_route("/v1/embeddings", embeddings, methods=["POST"])
    return app


def _tenant(request: Request) -> str:
    """Whose cache entries and flights the request may share: its key's (everyone's on an open endpoint)."""
    key = _tab(request).key
    return f"key:{key.id}" if key is not None else "open"


def _tab(request: Request) -> Tab:
    """The request's tab, opened by `RequestScope`; an app without it gets a detached one."""
    state = request.scope.setdefault("state", {})
    tab = state.get("tab")
    if tab is None:
        tab = state["tab"] = Tab(Accounts(), "", request.method, request.url.path)
    assert isinstance(tab, Tab)
    return tab


# ---------------------------------------------------------------------------- parsing


async def read_body(request: Request, limit: int) -> bytes:
    """The whole body, or `RequestTooLarge` as soon as it is known to be over `limit` bytes
    (from its Content-Length, else while it arrives): a huge body is never held in memory."""
    declared = request.headers.get("content-length", "")
    if declared.isdigit() and int(declared) > limit:
        raise _too_large(limit)
    parts: list[bytes] = []
    size = 0
    async for part in request.stream():
        size += len(part)
        if size > limit:
            raise _too_large(limit)
        parts.append(part)
    return b"".join(parts)


def _too_large(limit: int) -> RequestTooLarge:
    return RequestTooLarge(
        f"The request body is larger than this gateway accepts ({limit / 2**20:g} MB, server.max_body_mb)."
    )


async def parse(request: Request, model: type[M], max_body_bytes: int = DEFAULT_MAX_BODY_BYTES) -> M:
    """The request body as `model`, or an `InvalidRequest` that says what is wrong."""
    raw = await read_body(request, max_body_bytes)
    try:
        return model.model_validate_json(raw)  # one pass, bytes to model: the common case
    except ValidationError as e:
        # Not JSON to pydantic's parser (which refuses lone surrogates and nesting past its
        # recursion limit): not JSON to us either. Otherwise say what is wrong the careful way.
        bad_json = next((err["msg"] for err in e.errors(include_url=False) if err["type"] == "json_invalid"), None)
    if bad_json is not None:
        raise InvalidRequest(
            f"We could not parse the JSON body of your request ({bad_json.removeprefix('Invalid JSON: ')}). "
            "(HINT: This likely means you aren't using your HTTP library correctly. The OpenAI API expects "
            "a JSON payload.)"
        )
    try:
        data = json.loads(raw)
    except (json.JSONDecodeError, UnicodeDecodeError, RecursionError):
        raise InvalidRequest(
            "We could not parse the JSON body of your request. (HINT: This likely means you "
            "aren't using your HTTP library correctly. The OpenAI API expects a JSON payload.)"
        ) from None
    if not isinstance(data, dict):
        raise InvalidRequest("The request body must be a JSON object.")
    try:
        return model.model_validate(data)
    except ValidationError as e:
        raise _validation_error(e) from None


def _validation_error(e: ValidationError) -> InvalidRequest:
    """The most specific of pydantic's errors, in OpenAI's words, naming the field."""
    errors = [(_field_path(err["loc"]), err) for err in e.errors(include_url=False)]
    # A field accepting several types yields one error per type; the one that got
    # furthest into the value ("at most 4 items", an inner field) says what is wrong.
    param, err = max(errors, key=lambda pe: (len(pe[0]), not pe[1]["type"].endswith("_type")))
    path = "".join(f"[{p}]" if isinstance(p, int) else f".{p}" for p in param).lstrip(".")
    if err["type"] == "missing":
        return InvalidRequest(f"Missing required parameter: '{path}'.", param=path, code="missing_required_parameter")
    message = err["msg"].removeprefix("Value error, ")
    if path:
        message = f"Invalid value for '{path}': {message}"
    return InvalidRequest(message, param=path or None, code="invalid_value")


def _field_path(loc: tuple[int | str, ...]) -> list[int | str]:
    """`loc` without pydantic's labels for union members and validators."""
    return [p for p in loc if not _is_union_tag(p)]


def _is_union_tag(part: object) -> bool:
    # e.g. 'str', 'list[str]', 'constrained-str', 'function-after[...]', 'tagged-union[...]'
    return isinstance(part, str) and (
        "[" in part or "-" in part or part in ("str", "int", "float", "bool", "list", "dict")
    )


# ---------------------------------------------------------------------------- responses


def route_headers(route: Route | None) -> dict[str, str]:
    if route is None:
        return {}
    return {"x-served-by": f"{route.provider}/{route.model}", "x-route-reason": route.reason, "x-cache": route.cache}


def _json(model: WireModel, route: Route | None = None) -> Response:
    return Response(
        content=model.model_dump_json(),
        media_type="application/json",
        headers=route_headers(route),
    )


def error_response(exc: OrchestratorError) -> Response:
    retry_after = getattr(exc, "retry_after", None)
    headers = {"Retry-After": str(max(1, round(retry_after)))} if retry_after is not None else None
    return JSONResponse(exc.to_dict(), status_code=exc.status_code, headers=headers)


def stream_response(routed: Routed[OpenStream[Any]], include_usage: bool) -> Response:
    """SSE for a stream the pipeline already committed (its first content exists)."""
    return StreamingResponse(
        sse_events(routed.result, include_usage),
        media_type="text/event-stream",
        headers={**SSE_HEADERS, **route_headers(routed.route)},
    )


async def sse_events(stream: OpenStream[Chunk], include_usage: bool) -> AsyncIterator[bytes]:
    """Encode chunks as SSE; end with `[DONE]`, or with an error event on failure.

    What arrived before the first content (the role chunk) goes out in the same
    write as it: one packet, and no small-write stall in front of the first token.
    """
    try:
        yield b"".join(_event(c, include_usage) for c in stream.prefix)
        async for chunk in stream.rest:
            if event := _event(chunk, include_usage):
                yield event
    except OrchestratorError as e:
        yield _error_event(e)
        return
    except Exception as e:  # never a silent truncation: say the stream broke
        log.exception("stream failed")
        yield _error_event(UpstreamError(f"The stream failed: {type(e).__name__}."))
        return
    finally:
        await stream.aclose()  # the client may have gone before the first write: release upstream work
    yield b"data: [DONE]\n\n"


def _event(chunk: Chunk, include_usage: bool) -> bytes:
    # Chunks may be shared by several clients (single-flight): never mutate them here.
    if chunk.usage is not None and not include_usage:
        if not chunk.choices:
            return b""
        return b"data: " + chunk.model_dump_json(exclude={"usage"}).encode() + b"\n\n"
    return b"data: " + chunk.model_dump_json().encode() + b"\n\n"


def _error_event(exc: OrchestratorError) -> bytes:
    return b"data: " + json.dumps(exc.to_dict()).encode() + b"\n\n"
