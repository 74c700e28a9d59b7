"""OpenAI's wire format: the chat completions, completions and embeddings front doors.

Bodies are parsed in one pass into the wire models (`orchestrator.protocol`),
with OpenAI's words for what is wrong and the field it is in; answers go out
as JSON or SSE; errors as OpenAI's error JSON. A stream goes out only once the
flow committed it (its first content exists); a failure after that ends it with
an explicit `error` event and no `[DONE]`, never a silent truncation.
"""

from __future__ import annotations

import json
import logging
from collections.abc import AsyncIterator, Mapping
from typing import Any, TypeVar

import pydantic_core
from pydantic import BaseModel, ValidationError
from starlette.responses import JSONResponse, Response

from orchestrator.accounting.accounts import Tab
from orchestrator.calls import CHAT, COMPLETION, EMBEDDING, Call, Kind
from orchestrator.errors import InvalidRequest, OrchestratorError, UpstreamError
from orchestrator.failover import OpenStream
from orchestrator.frontdoors.base import retry_headers, tenant
from orchestrator.frontdoors.sse import EventStream
from orchestrator.protocol import (
    ChatCompletionChunk,
    ChatCompletionRequest,
    CompletionChunk,
    CompletionRequest,
    EmbeddingRequest,
    WireModel,
)
from orchestrator.routes import Route, Routed

log = logging.getLogger(__name__)

M = TypeVar("M", bound=BaseModel)
Chunk = ChatCompletionChunk | CompletionChunk

SSE_HEADERS = {"Cache-Control": "no-cache", "X-Accel-Buffering": "no"}
_NOT_JSON = (
    "We could not parse the JSON body of your request{why}. (HINT: This likely means you aren't using your "
    "HTTP library correctly. The OpenAI API expects a JSON payload.)"
)


# ---------------------------------------------------------------------------- parsing


MAX_PATH_SHOWN = 200  # characters of a field's path that an error shows (message and param)


def parse_body(raw: bytes, model: type[M], not_json: str = _NOT_JSON, tags: frozenset[str] = frozenset()) -> M:
    """`raw` as `model`, or an `InvalidRequest` that says what is wrong, naming the field
    (`not_json`, with `{why}`, when it isn't JSON at all; `tags`: the tag values of the body's
    discriminated unions, which pydantic puts in an error's location and the field's name leaves out).

    JSON as the standard has it: no NaN or Infinity, no lone surrogate, nesting within the
    parser's limit (a number too large for a float parses as infinity; a provider's body that
    can't be encoded then is a 400 too: `providers.http.json_body`). Parsed to Python first, then
    validated: on a 5 MB body this is several times faster than pydantic's own JSON validation.
    """
    return validate_body(json_object(raw, not_json), model, tags)


def json_object(raw: bytes | str, not_json: str = _NOT_JSON, what: str = "The request body") -> dict[str, Any]:
    """`raw` parsed as a JSON object (as `parse_body` parses one), or an `InvalidRequest` saying it isn't
    one (`what`: what the client sent, in the message)."""
    try:
        data = pydantic_core.from_json(raw, allow_inf_nan=False)
    except ValueError as e:
        raise InvalidRequest(not_json.format(why=f" ({e})")) from None
    if not isinstance(data, dict):
        raise InvalidRequest(f"{what} must be a JSON object.")
    return data


def validate_body(data: dict[str, Any], model: type[M], tags: frozenset[str] = frozenset()) -> M:
    """A parsed JSON object as `model`, or an `InvalidRequest` naming the field (`parse_body`'s second half:
    the Responses API's WebSocket messages are a body with a few fields of their own around it)."""
    try:
        return model.model_validate(data, strict=True)  # "5" is no integer, nor "yes" a boolean, as OpenAI has it
    except ValidationError as e:
        raise validation_error(e, tags) from None


def validation_error(e: ValidationError, tags: frozenset[str] = frozenset()) -> InvalidRequest:
    """The most specific of pydantic's errors, in OpenAI's words, naming the field."""
    errors = [(_field_path(err["loc"], tags), err) for err in e.errors(include_url=False)]
    # A field accepting several types yields one error per type; the one that got
    # furthest into the value ("at most 4 items", an inner field) says what is wrong.
    param, err = max(errors, key=lambda pe: (len(pe[0]), not pe[1]["type"].endswith("_type")))
    path = "".join(f"[{p}]" if isinstance(p, int) else f".{p}" for p in param).lstrip(".")
    path = path[:MAX_PATH_SHOWN]  # a client's own key (an unknown field, a metadata key) is not echoed whole, twice
    if err["type"] == "missing":
        return InvalidRequest(f"Missing required parameter: '{path}'.", param=path, code="missing_required_parameter")
    message = err["msg"].removeprefix("Value error, ")
    if path:
        message = f"Invalid value for '{path}': {message}"
    return InvalidRequest(message, param=path or None, code="invalid_value")


def _field_path(loc: tuple[int | str, ...], tags: frozenset[str] = frozenset()) -> list[int | str]:
    """`loc` without pydantic's labels for union members and validators."""
    return [p for p in loc if not _is_union_tag(p) and p not in tags]


def _is_union_tag(part: object) -> bool:
    # e.g. 'str', 'list[str]', 'constrained-str', 'function-after[...]', 'tagged-union[...]'
    return isinstance(part, str) and (
        "[" in part or "-" in part or part in ("str", "int", "float", "bool", "list", "dict")
    )


# ---------------------------------------------------------------------------- responses


def route_headers(route: Route | None) -> dict[str, str]:
    """Who served the answer, why, and what the cache did."""
    if route is None:
        return {}
    return {"x-served-by": f"{route.provider}/{route.model}", "x-route-reason": route.reason, "x-cache": route.cache}


def json_response(model: WireModel, route: Route | None = None) -> Response:
    return Response(content=model.json_bytes(), media_type="application/json", headers=route_headers(route))


def error_response(exc: OrchestratorError) -> Response:
    """OpenAI's error JSON (`error.message`, `type`, `param`, `code`) with its status and `Retry-After`."""
    return JSONResponse(exc.to_dict(), status_code=exc.status_code, headers=retry_headers(exc))


def stream_response(routed: Routed[OpenStream[Any]], include_usage: bool) -> Response:
    """SSE for a stream the flow already committed (its first content exists)."""
    return EventStream(
        sse_events(routed.result, include_usage),
        media_type="text/event-stream",
        headers={**SSE_HEADERS, **route_headers(routed.route)},
    )


async def sse_events(stream: OpenStream[Chunk], include_usage: bool) -> AsyncIterator[bytes]:
    """Encode chunks as SSE; end with `[DONE]`, or with an error event on failure.

    What arrived before the first content (the role chunk) goes out in the same
    write as it: one packet, and no small-write stall in front of the first token.
    After it, the chunks that came together go out together: one write a batch.
    """
    try:
        yield b"".join(_event(c, include_usage) for c in stream.prefix)
        async for batch in stream.rest:
            if events := b"".join(_event(c, include_usage) for c in batch):
                yield events
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
        return b"".join((b"data: ", chunk.json_bytes(exclude={"usage"}), b"\n\n"))
    return b"".join((b"data: ", chunk.json_bytes(), b"\n\n"))


def _error_event(exc: OrchestratorError) -> bytes:
    return b"data: " + json.dumps(exc.to_dict()).encode() + b"\n\n"


# ---------------------------------------------------------------------------- the doors


class OpenAIDoor:
    """One OpenAI route: its path, the kind of work, and the body model it takes."""

    def __init__(self, path: str, kind: Kind, body: type[BaseModel]):
        self.path = path
        self._kind = kind
        self._body = body

    async def parse(self, raw: bytes, headers: Mapping[str, str], tab: Tab) -> Call:
        return Call(self._kind, parse_body(raw, self._body), headers, tab, tenant(tab))

    async def encode(self, call: Call, routed: Routed[Any]) -> Response:
        if isinstance(routed.result, OpenStream):
            return stream_response(routed, call.body.include_usage())
        return json_response(routed.result, routed.route)

    def error(self, exc: OrchestratorError) -> Response:
        return error_response(exc)


def openai_doors() -> list[OpenAIDoor]:
    return [
        OpenAIDoor("/v1/chat/completions", CHAT, ChatCompletionRequest),
        OpenAIDoor("/v1/completions", COMPLETION, CompletionRequest),
        OpenAIDoor("/v1/embeddings", EMBEDDING, EmbeddingRequest),
    ]
