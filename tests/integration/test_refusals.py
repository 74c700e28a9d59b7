"""A model's refusal reaches the client whole as it does streamed, on every door.

The gateway asks every upstream for a stream and folds it for a whole answer; the fold dropped a refusal
(`delta.refusal`), so a refused structured-output request came back as an empty answer: the openai SDK's
`parse` gave `parsed=None, refusal=None`, the Responses door no output item, the Messages door no content.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import anthropic
import httpx2
import openai
import pytest
from fastapi import FastAPI
from openai_schema import validate
from pydantic import BaseModel
from two_fakes import TEAM_KEY, gateway, heal
from two_fakes import fakes_fixture as fakes_fixture

from orchestrator.testing.provider import FakeProvider

REFUSAL = "I can't help with that."


class Answer(BaseModel):
    city: str


@pytest.fixture
async def app(fakes: dict[str, FakeProvider], tmp_path: Path) -> AsyncIterator[FastAPI]:
    heal(fakes)
    for fake in fakes.values():
        fake.reply, fake.refuse = REFUSAL, True
    try:
        async with gateway(fakes, tmp_path) as app:
            yield app
    finally:
        for fake in fakes.values():
            fake.reply, fake.refuse = "It is sunny.", False


def openai_sdk(app: FastAPI) -> openai.AsyncOpenAI:
    http = httpx2.AsyncClient(transport=httpx2.ASGITransport(app=app), base_url="http://t")
    return openai.AsyncOpenAI(api_key=TEAM_KEY, base_url="http://t/v1", http_client=http, max_retries=0)


def anthropic_sdk(app: FastAPI) -> anthropic.AsyncAnthropic:
    http = httpx2.AsyncClient(transport=httpx2.ASGITransport(app=app), base_url="http://t")
    return anthropic.AsyncAnthropic(api_key=TEAM_KEY, base_url="http://t", http_client=http, max_retries=0)


async def test_a_refused_structured_output_is_a_refusal_whole_and_streamed(app: FastAPI) -> None:
    client = openai_sdk(app)
    ask: dict[str, Any] = {"model": "alpha/m", "messages": [{"role": "user", "content": "Where?"}]}
    parsed = await client.chat.completions.parse(**ask, response_format=Answer)
    message = parsed.choices[0].message
    assert message.refusal == REFUSAL and message.parsed is None and message.content is None
    raw = await client.chat.completions.with_raw_response.create(**ask)
    validate("CreateChatCompletionResponse", raw.http_response.json())
    streamed = [c async for c in await client.chat.completions.create(**ask, stream=True)]
    assert "".join(c.choices[0].delta.refusal or "" for c in streamed if c.choices) == REFUSAL


@pytest.mark.parametrize("stream", [False, True], ids=["json", "sse"])
async def test_the_responses_door_answers_a_refusal_item(app: FastAPI, stream: bool) -> None:
    client = openai_sdk(app)
    if stream:
        async with client.responses.stream(model="alpha/m", input="Where?") as events:
            response = await events.get_final_response()
    else:
        response = await client.responses.create(model="alpha/m", input="Where?")
    [item] = response.output
    assert item.type == "message" and [(p.type, getattr(p, "refusal", None)) for p in item.content] == [
        ("refusal", REFUSAL)
    ]


@pytest.mark.parametrize("model", ["alpha/m", "claude/haiku"])
@pytest.mark.parametrize("stream", [False, True], ids=["json", "sse"])
async def test_the_messages_door_answers_the_refusal(app: FastAPI, model: str, stream: bool) -> None:
    client = anthropic_sdk(app)
    ask: dict[str, Any] = {"model": model, "max_tokens": 50, "messages": [{"role": "user", "content": "Where?"}]}
    if stream:
        async with client.messages.stream(**ask) as events:
            message = await events.get_final_message()
    else:
        message = await client.messages.create(**ask)
    assert [b.text for b in message.content if b.type == "text"] == [REFUSAL]
    if model == "claude/haiku":  # Anthropic's own refusal is a stop reason, kept
        assert message.stop_reason == "refusal"
