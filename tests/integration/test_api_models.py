"""`GET /v1/models`, `GET /v1/models/{model}` (through the official openai and anthropic SDKs) and `GET /health`."""

from __future__ import annotations

from typing import Any, cast

import anthropic
import httpx
import httpx2
import openai
import pytest
from anthropic.types import ModelInfo
from fastapi import FastAPI
from http_checks import BASE_MODEL, CHAT_MODEL, EMBED_MODEL
from openai_schema import validate


async def test_models(client: httpx.AsyncClient) -> None:
    r = await client.get("/v1/models")
    assert r.status_code == 200
    data = r.json()
    validate("ListModelsResponse", data)
    assert data["object"] == "list"
    assert [m["id"] for m in data["data"]] == [CHAT_MODEL, BASE_MODEL, EMBED_MODEL]
    assert {m["object"] for m in data["data"]} == {"model"}
    assert {m["owned_by"] for m in data["data"]} == {"local"}
    assert len({m["created"] for m in data["data"]}) == 1


async def test_health(client: httpx.AsyncClient) -> None:
    r = await client.get("/health")
    assert r.status_code == 200
    assert r.json() == {"status": "ok"}


# ------------------------------------------------------------------------------ one model, and the SDKs' calls


def openai_sdk(app: FastAPI) -> openai.AsyncOpenAI:
    http = httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://t")
    return openai.AsyncOpenAI(api_key="x", base_url="http://t/v1", http_client=http, max_retries=0)


def anthropic_sdk(app: FastAPI) -> anthropic.AsyncAnthropic:
    http = httpx2.AsyncClient(transport=httpx2.ASGITransport(app=app), base_url="http://t")
    return anthropic.AsyncAnthropic(api_key="x", base_url="http://t", http_client=http, max_retries=0)


async def test_the_openai_sdk_retrieves_a_model_and_gets_a_404_for_an_unknown_one(app: FastAPI) -> None:
    client = openai_sdk(app)
    listed = {m.id: m for m in (await client.models.list()).data}
    got = await client.models.retrieve(CHAT_MODEL)
    assert got == listed[CHAT_MODEL]
    raw = await client.models.with_raw_response.retrieve(EMBED_MODEL)
    validate("Model", raw.http_response.json())
    with pytest.raises(openai.NotFoundError) as caught:
        await client.models.retrieve("no-such-model")
    body = cast(dict[str, Any], caught.value.body)
    validate("Error", body)
    assert (body["code"], body["param"]) == ("model_not_found", "model")
    assert "'no-such-model'" in body["message"]


async def test_a_model_id_with_a_slash_and_a_trailing_slash(client: httpx.AsyncClient) -> None:
    r = await client.get(f"/v1/models/{CHAT_MODEL}/extra")  # an id is matched whole: no such model
    assert r.status_code == 404 and r.json()["error"]["code"] == "model_not_found"
    r = await client.get("/v1/models/")
    assert r.status_code == 404 and r.json()["error"]["code"] == "not_found"


async def test_the_anthropic_sdk_lists_and_retrieves_models_in_anthropics_shape(app: FastAPI) -> None:
    client = anthropic_sdk(app)
    listed = [m async for m in client.models.list()]
    assert [m.id for m in listed] == [CHAT_MODEL, BASE_MODEL, EMBED_MODEL]
    for m in listed:  # held to the SDK's own type (it builds pages without validating)
        ModelInfo.model_validate(m.model_dump())
        assert (m.type, m.display_name, m.lifecycle) == ("model", m.id, "active")
        assert m.created_at.tzinfo is not None and m.created_at.year >= 2026
    got = await client.models.retrieve(BASE_MODEL)
    assert got.id == BASE_MODEL and got.created_at == listed[1].created_at
    with pytest.raises(anthropic.NotFoundError) as caught:
        await client.models.retrieve("no-such-model")
    body = cast(dict[str, Any], caught.value.body)
    assert body["type"] == "error" and body["error"]["type"] == "not_found_error"


async def test_anthropics_model_pages_follow_limit_and_the_cursors(app: FastAPI) -> None:
    client = anthropic_sdk(app)
    first = await client.models.list(limit=2)
    assert [m.id for m in first.data] == [CHAT_MODEL, BASE_MODEL]
    assert (first.first_id, first.last_id, first.has_more) == (CHAT_MODEL, BASE_MODEL, True)
    assert [m.id async for m in await client.models.list(limit=1)] == [CHAT_MODEL, BASE_MODEL, EMBED_MODEL]
    after = await client.models.list(after_id=BASE_MODEL)
    assert ([m.id for m in after.data], after.has_more) == ([EMBED_MODEL], False)
    before = await client.models.list(before_id=EMBED_MODEL, limit=1)
    assert ([m.id for m in before.data], before.has_more) == ([BASE_MODEL], True)
    empty = await client.models.list(after_id=EMBED_MODEL)
    assert (empty.data, empty.first_id, empty.last_id, empty.has_more) == ([], None, None, False)
    both = {"after_id": CHAT_MODEL, "before_id": EMBED_MODEL}
    for bad in ({"limit": 0}, {"limit": 1001}, {"after_id": "nope"}, both):
        with pytest.raises(anthropic.BadRequestError) as caught:
            await client.models.list(**bad)  # type: ignore[arg-type]
        assert cast(dict[str, Any], caught.value.body)["error"]["type"] == "invalid_request_error"


async def test_an_anthropic_client_gets_anthropics_error_shape_on_the_models_routes(client: httpx.AsyncClient) -> None:
    headers = {"anthropic-version": "2023-06-01"}
    for r in (
        await client.get("/v1/models?limit=abc", headers=headers),
        await client.get("/v1/models?limit=²", headers=headers),
        await client.get("/v1/models/nope", headers=headers),
        await client.get("/v1/models", headers={"anthropic-version": "yesterday"}),
    ):
        body = r.json()
        assert r.status_code in (400, 404) and body["type"] == "error", r.text
        assert set(body["error"]) == {"type", "message"}
    # On OpenAI's paths, and without the header, OpenAI's shape (under /v1/messages, always Anthropic's).
    for r in (await client.get("/v1/chat/completions/x", headers=headers), await client.get("/v1/models/nope")):
        validate("ErrorResponse", r.json())
