"""`POST /v1/embeddings` through the ASGI app."""

from __future__ import annotations

import base64
import math
import struct

import pytest
from http_checks import CHAT_MODEL, EMBED_MODEL, Api, assert_routed
from openai_schema import validate

from orchestrator.testing.engine import FakeEngine

PATH = "/v1/embeddings"


async def test_embed_one(api: Api, embed_engine: FakeEngine) -> None:
    data = await api.ok(PATH, {"model": EMBED_MODEL, "input": "the quick brown fox"})
    assert api.last is not None and api.last.headers["x-served-by"] == f"local-embed/{EMBED_MODEL}"
    assert data["object"] == "list" and data["model"] == EMBED_MODEL
    [item] = data["data"]
    assert item["object"] == "embedding" and item["index"] == 0
    assert item["embedding"] == embed_engine.vector("the quick brown fox")
    assert len(item["embedding"]) == 8
    assert math.isclose(math.sqrt(sum(x * x for x in item["embedding"])), 1.0, rel_tol=1e-6)
    assert data["usage"] == {"prompt_tokens": 4, "total_tokens": 4}
    assert embed_engine.embed_calls == [["the quick brown fox"]]


@pytest.mark.parametrize(
    ("value", "inputs"),
    [(["a", "b c"], ["a", "b c"]), ([1, 2, 3], [[1, 2, 3]]), ([[1], [2, 3]], [[1], [2, 3]])],
)
async def test_embed_many(api: Api, embed_engine: FakeEngine, value: object, inputs: list[object]) -> None:
    data = await api.ok(PATH, {"model": EMBED_MODEL, "input": value})
    assert embed_engine.embed_calls == [inputs]
    assert [d["index"] for d in data["data"]] == list(range(len(inputs)))
    assert [d["embedding"] for d in data["data"]] == [embed_engine.vector(i) for i in inputs]  # type: ignore[arg-type]


def decode(embedding: str) -> list[float]:
    raw = base64.b64decode(embedding)
    return list(struct.unpack(f"<{len(raw) // 4}f", raw))


async def test_base64_decodes_to_the_same_floats(api: Api) -> None:
    request = {"model": EMBED_MODEL, "input": ["alpha", "beta"]}
    floats = await api.ok(PATH, request)
    r = await api.client.post(PATH, json={**request, "encoding_format": "base64"})
    assert r.status_code == 200
    assert_routed(r)
    packed = r.json()
    assert all(isinstance(d["embedding"], str) for d in packed["data"])
    # OpenAI's spec types `embedding` as floats only, though it sends base64 as a
    # string; the decoded body is what must match the schema.
    decoded = {**packed, "data": [{**d, "embedding": decode(d["embedding"])} for d in packed["data"]]}
    validate("CreateEmbeddingResponse", decoded)
    assert decoded["data"] == floats["data"]


async def test_dimensions(api: Api) -> None:
    await api.ok(PATH, {"model": EMBED_MODEL, "input": "x", "dimensions": 8})
    error = await api.error(PATH, {"model": EMBED_MODEL, "input": "x", "dimensions": 4}, status=400)
    assert error["param"] == "dimensions"
    assert "8-dimensional" in error["message"]


async def test_embeddings_on_the_chat_model(api: Api, chat_engine: FakeEngine) -> None:
    error = await api.error(PATH, {"model": CHAT_MODEL, "input": "x"}, status=400)
    assert (error["param"], error["code"]) == ("model", "unsupported_task")
    assert "embeddings" in error["message"]


async def test_chat_on_the_embedding_model(api: Api) -> None:
    body = {"model": EMBED_MODEL, "messages": [{"role": "user", "content": "hi"}]}
    error = await api.error("/v1/chat/completions", body, status=400)
    assert (error["param"], error["code"]) == ("model", "unsupported_task")


async def test_input_too_long(api: Api) -> None:
    error = await api.error(PATH, {"model": EMBED_MODEL, "input": " ".join(["w"] * 40)}, status=400)
    assert (error["param"], error["code"]) == ("input", "context_length_exceeded")


async def test_empty_input(api: Api) -> None:
    error = await api.error(PATH, {"model": EMBED_MODEL, "input": ""}, status=400)
    assert error["param"] == "input"


async def test_engine_failure(api: Api, embed_engine: FakeEngine) -> None:
    embed_engine.fail_after = 0
    error = await api.error(PATH, {"model": EMBED_MODEL, "input": "x"}, status=500)
    assert (error["type"], error["code"]) == ("api_error", "engine_error")
