"""Providers' departures from OpenAI's API, met against fakes that speak them over real sockets.

"mistral" is the fake in Mistral's flavour: its tool-call ids are 9 letters or
digits, and any other id in a request's history is a 400 (as Mistral answers
"Tool call id was call_… but must be a-z, A-Z, 0-9, with a length of 9").
"""

from __future__ import annotations

import json
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from fastapi import FastAPI

from orchestrator.api import build_app
from orchestrator.app import build_pipeline
from orchestrator.settings import load_settings
from orchestrator.testing.engine import FakeEngine
from orchestrator.testing.provider import FakeProvider

KEYS = {"ALPHA_KEY": "sk-alpha-1", "MISTRAL_KEY": "sk-mistral-2"}
TOOL = {
    "type": "function",
    "function": {"name": "get_weather", "parameters": {"type": "object", "properties": {"city": {"type": "string"}}}},
}
LONG_ID = "call_0123456789abcdef01234567"  # an id another provider made
HISTORY: list[dict[str, Any]] = [
    {"role": "user", "content": "Weather in Paris?"},
    {
        "role": "assistant",
        "content": None,
        "tool_calls": [{"id": LONG_ID, "type": "function", "function": {"name": "get_weather", "arguments": "{}"}}],
    },
    {"role": "tool", "tool_call_id": LONG_ID, "content": "sunny"},
]


@pytest.fixture(scope="module")
def fakes() -> Iterator[dict[str, FakeProvider]]:
    with (
        FakeProvider(api_key=KEYS["ALPHA_KEY"]) as alpha,
        FakeProvider(api_key=KEYS["MISTRAL_KEY"], short_tool_ids=True) as mistral,
        FakeProvider(api_key=KEYS["ALPHA_KEY"], max_tokens_ceiling=8192) as deepseek,
    ):
        yield {"alpha": alpha, "mistral": mistral, "deepseek": deepseek}


@pytest.fixture
async def app(fakes: dict[str, FakeProvider], tmp_path: Path) -> AsyncIterator[FastAPI]:
    for fake in fakes.values():
        fake.clear_fault()
        fake.reset_stats()
    settings = load_settings(
        data_dir=str(tmp_path),
        providers={
            "alpha": {
                "base_url": fakes["alpha"].base_url + "/v1",
                "api_key_env": "ALPHA_KEY",
                "models": {"m": {"id": "a"}},
            },
            "mistral": {
                "base_url": fakes["mistral"].base_url + "/v1",
                "api_key_env": "MISTRAL_KEY",
                "quirks": {"stream_usage": False, "tool_call_ids": "alnum9"},
                "models": {"small": {"id": "mistral-small-latest"}},
            },
            "raw": {
                "base_url": fakes["mistral"].base_url + "/v1",
                "api_key_env": "MISTRAL_KEY",
                "models": {"small": {"id": "m"}},
            },
            "seek": {
                "base_url": fakes["deepseek"].base_url + "/v1",
                "api_key_env": "ALPHA_KEY",
                "quirks": {"max_tokens_ceiling": 8192, "json_schema": False},
                "models": {"chat": {"id": "deepseek-chat"}},
            },
        },
        models={"chain": ["alpha/m", "mistral/small"]},
        resilience={"backoff_base_s": 0.01},
        cache={"enabled": False},
        ledger={"path": str(tmp_path / "ledger.sqlite"), "owner": "process"},
    )
    engine = FakeEngine("fake-chat")
    async with httpx.AsyncClient() as upstream:
        pipeline = await build_pipeline({"local": (engine, engine.info())}, settings, env=KEYS, client=upstream)
        yield build_app(pipeline)


async def chat(app: FastAPI, body: dict[str, Any]) -> httpx.Response:
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://t") as c:
        return await c.post("/v1/chat/completions", json=body)


async def test_another_providers_tool_call_ids_reach_mistral_as_nine_characters(
    app: FastAPI, fakes: dict[str, FakeProvider]
) -> None:
    r = await chat(app, {"model": "mistral/small", "messages": HISTORY, "tools": [TOOL]})
    assert r.status_code == 200, r.text
    sent = fakes["mistral"].requests[-1].body["messages"]
    call_id, result_id = sent[1]["tool_calls"][0]["id"], sent[2]["tool_call_id"]
    assert call_id == result_id and len(call_id) == 9 and call_id.isalnum()  # mapped, still paired
    assert "stream_options" not in fakes["mistral"].requests[-1].body


async def test_a_spill_to_mistral_mid_tool_use_keeps_working(app: FastAPI, fakes: dict[str, FakeProvider]) -> None:
    fakes["alpha"].set_fault("server_error")
    r = await chat(app, {"model": "chain", "messages": HISTORY, "tools": [TOOL]})
    assert r.status_code == 200 and r.headers["x-served-by"] == "mistral/mistral-small-latest", r.text


async def test_mistrals_own_ids_come_back_and_go_back_unchanged(app: FastAPI, fakes: dict[str, FakeProvider]) -> None:
    first = await chat(
        app, {"model": "mistral/small", "messages": HISTORY[:1], "tools": [TOOL], "tool_choice": "required"}
    )
    call = first.json()["choices"][0]["message"]["tool_calls"][0]
    assert len(call["id"]) == 9 and call["type"] == "function"
    turn = [*HISTORY[:1], {"role": "assistant", "content": None, "tool_calls": [call]}]
    second = await chat(
        app,
        {
            "model": "mistral/small",
            "messages": [*turn, {"role": "tool", "tool_call_id": call["id"], "content": "sunny"}],
        },
    )
    assert second.status_code == 200
    assert fakes["mistral"].requests[-1].body["messages"][1]["tool_calls"][0]["id"] == call["id"]


async def test_without_the_quirk_the_providers_400_is_the_requests(app: FastAPI) -> None:
    # The same fake configured without the quirk: Mistral's refusal comes back as a 400, not a 5xx.
    r = await chat(app, {"model": "raw/small", "messages": HISTORY, "tools": [TOOL]})
    assert r.status_code == 400 and "length of 9" in r.json()["error"]["message"]


SCHEMA = {"type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]}


async def test_a_json_schema_for_deepseeks_json_mode_carries_its_schema_and_a_max_tokens_it_takes(
    app: FastAPI, fakes: dict[str, FakeProvider]
) -> None:
    fmt = {"type": "json_schema", "json_schema": {"name": "place", "schema": SCHEMA}}
    ask = {"model": "seek/chat", "messages": [{"role": "user", "content": "A city?"}], "max_tokens": 50_000}
    r = await chat(app, {**ask, "response_format": fmt})
    assert r.status_code == 200, r.text  # the fake, like DeepSeek, refuses JSON mode without "json" in the prompt
    sent = fakes["deepseek"].requests[-1].body  # a fake that, like DeepSeek, refuses max_tokens over 8192
    assert sent["response_format"] == {"type": "json_object"} and sent["max_tokens"] == 8192
    assert json.dumps(SCHEMA, separators=(",", ":")) in sent["messages"][-1]["content"]
    plain = await chat(app, {**ask, "response_format": {"type": "json_object"}})  # the client's own JSON mode
    assert plain.status_code == 400 and "json" in plain.json()["error"]["message"]
