"""The Responses API's WebSocket mode on the wire: what a client sends, and the `error` event.

A client message is a JSON object with a `type` (`ResponsesClientEvent`):

    response.create     a `POST /v1/responses` body (`wire.ResponsesRequest`) and the socket's own fields:
                        `stream_id`, its lane (1 to 256 of A-Z a-z 0-9 _ . -), and `generate` (false: a
                        response that asks no model, kept to be continued: a client's warm-up). `stream`
                        is implied (Codex sends `stream: true`; whatever it says, the answer streams).
    response.processed  Codex's word that it handled a response (it sends OpenAI the same): nothing to answer
    anything else       an `error` event; `response.steer` (OpenAI's steering, beta) is not served here

An `error` event says what a POST's error response would have said
(`ResponseWsError`): its HTTP status as `status`, its error object as
`error`, its `Retry-After` in `headers`, and the lane when the message named
a valid one. A failure after a response's events began is the events' own
(`events.ResponseEvents.fail`).
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from typing import Any

from pydantic import Field

from orchestrator.errors import InvalidRequest, OrchestratorError
from orchestrator.frontdoors.base import retry_headers
from orchestrator.frontdoors.openai import json_object, validate_body
from orchestrator.frontdoors.responses.wire import TAGS, Item, ResponsesRequest

CREATE = "response.create"
PROCESSED = "response.processed"  # Codex's acknowledgement (`ResponseProcessedWsRequest`)
STEER = "response.steer"
STREAM_ID = re.compile(r"[A-Za-z0-9_.-]{1,256}")
NOT_JSON = "We could not parse the WebSocket message as JSON{why}. Each message must be a JSON object."


class WarmUp(ResponsesRequest):
    """A `response.create` with `generate: false`: its input may be empty (Codex warms up with `input: []`)."""

    input: str | list[Item] = Field(default_factory=list)


@dataclass(frozen=True)
class Create:
    """A response to create: the body, its lane and whether a model is asked (`generate`)."""

    request: ResponsesRequest
    stream_id: str | None = None
    generate: bool = True


@dataclass(frozen=True)
class Refused:
    """A message answered with an `error` event: in its lane's turn when it named a valid lane."""

    error: OrchestratorError
    stream_id: str | None = None


def read(raw: bytes) -> Create | Refused | None:
    """A client message as what to do: create a response, refuse it, or nothing (None)."""
    try:
        data = json_object(raw, NOT_JSON, what="A WebSocket message")
    except InvalidRequest as e:
        return Refused(e)
    kind = data.pop("type", None)
    if kind == PROCESSED:
        return None
    if kind != CREATE:
        return Refused(_not_served(kind))
    stream_id = data.pop("stream_id", None)
    if stream_id is not None and not (isinstance(stream_id, str) and STREAM_ID.fullmatch(stream_id)):
        return Refused(_invalid("stream_id", "expected 1 to 256 characters of A-Z, a-z, 0-9, '_', '.' and '-'"))
    generate = data.pop("generate", True)
    if not isinstance(generate, bool):
        return Refused(_invalid("generate", "expected a boolean"), stream_id)
    data["stream"] = True
    try:
        return Create(validate_body(data, ResponsesRequest if generate else WarmUp, TAGS), stream_id, generate)
    except InvalidRequest as e:
        return Refused(e, stream_id)


def error_event(exc: OrchestratorError, stream_id: str | None = None) -> str:
    """The `error` event for an error before a response's events began (a POST's error response, as an event)."""
    event: dict[str, Any] = {"type": "error", "status": exc.status_code, **exc.to_dict()}
    if headers := retry_headers(exc):
        event["headers"] = headers
    if stream_id is not None:
        event["stream_id"] = stream_id
    return json.dumps(event)


def _not_served(kind: Any) -> InvalidRequest:
    if kind is None:
        return InvalidRequest("Missing required parameter: 'type'.", param="type", code="missing_required_parameter")
    if kind == STEER:
        return InvalidRequest(
            "'response.steer' is not supported by this gateway: send the input in the next 'response.create'.",
            param="type",
            code="unsupported_parameter",
        )
    shown = kind[:100] if isinstance(kind, str) else json.dumps(kind)[:100]
    return InvalidRequest(
        f"Invalid value: '{shown}'. Supported values are: '{CREATE}'.", param="type", code="invalid_value"
    )


def _invalid(param: str, expected: str) -> InvalidRequest:
    return InvalidRequest(f"Invalid value for '{param}': {expected}.", param=param, code="invalid_value")
