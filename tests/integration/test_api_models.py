"""`GET /v1/models` and `GET /health`."""

from __future__ import annotations

import httpx
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
