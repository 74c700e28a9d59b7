"""Requests as client frameworks send them, replayed with plain HTTP (CI can't run every framework).

Each body is what the framework sent to the gateway, trimmed to what the test
needs (recorded with pydantic-ai 2.38, LangChain (langchain-openai 1.7,
langchain-anthropic 1.7), LlamaIndex 0.14, instructor 1.17, LiteLLM 1.110 and
the OpenAI Agents SDK 0.24, over the openai 2.54 and anthropic 0.125-2.15
SDKs). Served by the in-process gateway of `anthropic_gateway` on a real
socket: a fake Anthropic provider ("claude"), an OpenAI-compatible one
("alpha") and the fake local engine ("fake-chat").
"""

from __future__ import annotations

from typing import Any

import httpx
import pytest
from anthropic_gateway import BROKE, TEAM, Gateway
from openai_schema import validate

from orchestrator.testing.provider import FakeProvider

pytest_plugins = ["anthropic_fixtures"]  # fakes, tokenizer, gw

HI = [{"role": "user", "content": "Hi"}]
ANTHROPIC = {"anthropic-version": "2023-06-01", "x-api-key": BROKE}
OPENAI = {"authorization": f"Bearer {BROKE}"}


async def test_a_spent_budget_tells_the_sdks_not_to_retry(gw: Gateway) -> None:
    # The anthropic SDK (under pydantic-ai's AnthropicModel, LangChain's ChatAnthropic, LlamaIndex, instructor)
    # slept for the whole Retry-After of a spent budget (the rest of the month) before each of its retries.
    async with httpx.AsyncClient(base_url=gw.url, timeout=20) as http:
        messages = {"model": "claude/haiku", "max_tokens": 5, "messages": HI}
        assert (await http.post("/v1/messages", json=messages, headers=ANTHROPIC)).status_code == 200  # spends it
        refused = [
            await http.post("/v1/messages", json=messages, headers=ANTHROPIC),
            await http.post("/v1/chat/completions", json={"model": "claude/haiku", "messages": HI}, headers=OPENAI),
        ]
    validate("ErrorResponse", refused[1].json())
    for r in refused:
        assert r.status_code == 429, r.text
        assert int(r.headers["retry-after"]) > 60 and r.headers["x-should-retry"] == "false"


CITY = {
    "type": "object",
    "description": "A city.",
    "title": "City",
    "properties": {
        "name": {"type": "string", "title": "Name"},
        "population": {"type": "integer", "title": "Population"},
    },
    "additionalProperties": False,
    "required": ["name", "population"],
}
# LangChain's ChatAnthropic(...).with_structured_output(City, method="json_schema"); `output_format` is the same
# under the beta structured-outputs-2025-11-13, as older SDKs send it.
STRUCTURED = [
    {"output_config": {"format": {"type": "json_schema", "schema": CITY}}},
    {"output_format": {"type": "json_schema", "schema": CITY}},
]


def posted(fake: FakeProvider) -> dict[str, Any]:
    [request] = [r for r in fake.requests if r.method == "POST"]
    assert isinstance(request.body, dict)
    return request.body


@pytest.mark.parametrize("asked", STRUCTURED, ids=["output_config", "output_format"])
async def test_anthropic_structured_output_is_a_json_schema_on_every_route(
    gw: Gateway, fakes: dict[str, FakeProvider], asked: dict[str, Any]
) -> None:
    # It was dropped on the way to a route that is not Anthropic's: the answer was free text, not the JSON asked.
    body = {"max_tokens": 4096, "messages": [{"role": "user", "content": "Paris"}], **asked}
    headers = {"anthropic-version": "2023-06-01", "x-api-key": TEAM}
    async with httpx.AsyncClient(base_url=gw.url, timeout=20) as http:
        for model in ("alpha/m", "claude/haiku"):
            r = await http.post("/v1/messages", json=body | {"model": model}, headers=headers)
            assert r.status_code == 200, r.text
    assert posted(fakes["alpha"])["response_format"] == {
        "type": "json_schema",
        "json_schema": {"name": "output", "schema": CITY, "strict": True},
    }
    assert {k: posted(fakes["claude"])[k] for k in asked} == asked  # Anthropic's route gets the client's own
