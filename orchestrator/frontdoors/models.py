"""The models a key may use, in the asking client's protocol: `GET /v1/models` and `GET /v1/models/{model}`.

OpenAI's `list` of `model` objects and its `model` object by default; Anthropic's `ModelInfo`
(`id`, `type`, `display_name`, `created_at`, `lifecycle` "active": what is listed can be asked) and
its page (`data`, `first_id`, `last_id`, `has_more`, with the `limit`, `after_id` and `before_id`
query parameters) when the request carries `anthropic-version`, as every Anthropic SDK's does. A
model the key may not use is as unknown as one that doesn't exist: 404 `model_not_found`, in either
shape (the edge shapes errors the same way).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from datetime import UTC, datetime
from typing import Any

from starlette.responses import JSONResponse, Response

from orchestrator.accounting.keys import KeyPolicy
from orchestrator.errors import InvalidRequest, ModelNotFound
from orchestrator.frontdoors.anthropic_request import VERSION_HEADER, check_version
from orchestrator.frontdoors.openai import json_response
from orchestrator.protocol import ModelCard, ModelList

DEFAULT_LIMIT, MAX_LIMIT = 20, 1000  # Anthropic's page size: default and range 1..1000


def speaks_anthropic(headers: Mapping[str, str]) -> bool:
    return VERSION_HEADER in headers


def visible(listed: ModelList, key: KeyPolicy | None) -> list[ModelCard]:
    """The models `key` may use, in the gateway's order (every model on an open endpoint)."""
    return listed.data if key is None else [m for m in listed.data if key.allows(m.id)]


def list_response(cards: list[ModelCard], headers: Mapping[str, str], query: Mapping[str, str]) -> Response:
    if not speaks_anthropic(headers):
        return json_response(ModelList(data=cards))
    check_version(headers)
    return JSONResponse(anthropic_page(cards, query))


def model_response(cards: list[ModelCard], model: str, headers: Mapping[str, str]) -> Response:
    card = next((m for m in cards if m.id == model), None)
    if speaks_anthropic(headers):
        check_version(headers)
    if card is None:
        raise ModelNotFound(f"The model {_shown(model)} does not exist or you do not have access to it.", param="model")
    return JSONResponse(model_info(card)) if speaks_anthropic(headers) else json_response(card)


def model_info(card: ModelCard) -> dict[str, Any]:
    """Anthropic's `ModelInfo` for one model (its release date: when this gateway started serving it)."""
    created = datetime.fromtimestamp(card.created, UTC).isoformat().replace("+00:00", "Z")
    return {"type": "model", "id": card.id, "display_name": card.id, "created_at": created, "lifecycle": "active"}


def anthropic_page(cards: Sequence[ModelCard], query: Mapping[str, str]) -> dict[str, Any]:
    """One page of Anthropic's model list: `limit` models after `after_id`, or the `limit` before
    `before_id`, or the first `limit`; `has_more` says whether the list goes on in that direction."""
    limit = _limit(query.get("limit"))
    after, before = query.get("after_id"), query.get("before_id")
    if after is not None and before is not None:
        raise InvalidRequest("Use after_id or before_id, not both.", param="before_id")
    ids = [m.id for m in cards]
    if before is not None:
        end = _position(ids, before, "before_id")
        start = max(0, end - limit)
        page, more = cards[start:end], start > 0
    else:
        start = 0 if after is None else _position(ids, after, "after_id") + 1
        page, more = cards[start : start + limit], start + limit < len(cards)
    return {
        "data": [model_info(m) for m in page],
        "first_id": page[0].id if page else None,
        "last_id": page[-1].id if page else None,
        "has_more": more,
    }


def _limit(raw: str | None) -> int:
    if raw is None:
        return DEFAULT_LIMIT
    digits = raw.strip()
    value = int(digits) if digits.isascii() and digits.isdigit() and len(digits) <= 4 else 0
    if not 1 <= value <= MAX_LIMIT:
        raise InvalidRequest(f"limit: must be a whole number from 1 to {MAX_LIMIT}, got {_shown(raw)}.", param="limit")
    return value


def _position(ids: list[str], cursor: str, param: str) -> int:
    try:
        return ids.index(cursor)
    except ValueError:
        raise InvalidRequest(f"{param}: {_shown(cursor)} is not a model in this list.", param=param) from None


def _shown(value: str) -> str:
    """A client's string in a message: quoted, and cut short."""
    return repr(value[:64] + ("..." if len(value) > 64 else ""))
