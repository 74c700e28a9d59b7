"""Anthropic's Messages API on the default deployment, with the official anthropic client.

Text is answered by SmolLM2 on vLLM; a tool round trip goes to the Anthropic
fake (`claude-haiku`), natively. Bodies and events are held to the SDK's own types.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import anthropic
import pytest
from anthropic.types import Message, RawMessageStreamEvent
from pydantic import TypeAdapter

pytestmark = pytest.mark.e2e

CHAT_MODEL = "smollm2-135m"
FRANCE: Any = [{"role": "user", "content": "What is the capital of France?"}]
WEATHER: Any = {
    "name": "get_weather",
    "description": "The weather in a city.",
    "input_schema": {"type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]},
}


@pytest.fixture(scope="module")
def claude(base_url: str) -> Iterator[anthropic.Anthropic]:
    with anthropic.Anthropic(base_url=base_url.removesuffix("/v1"), api_key="not-needed", max_retries=0) as c:
        yield c


def text_of(message: Message) -> str:
    return "".join(b.text for b in message.content if b.type == "text")


def test_the_local_model_answers_a_message(claude: anthropic.Anthropic) -> None:
    raw = claude.messages.with_raw_response.create(
        model=CHAT_MODEL, max_tokens=24, messages=FRANCE, extra_body={"temperature": 0}
    )
    assert raw.headers["x-served-by"] == f"local/{CHAT_MODEL}"
    message = raw.parse()
    Message.model_validate(message.model_dump())
    assert "Paris" in text_of(message) and message.usage.output_tokens > 0


def test_a_streamed_message_from_the_local_model(claude: anthropic.Anthropic) -> None:
    events: TypeAdapter[Any] = TypeAdapter(RawMessageStreamEvent)
    with claude.messages.stream(
        model=CHAT_MODEL, max_tokens=24, messages=FRANCE, extra_body={"temperature": 0}
    ) as stream:
        seen = list(stream)
        final = stream.get_final_message()
    raw = [e for e in seen if e.type in ("message_start", "content_block_start", "content_block_delta", "message_stop")]
    for event in raw:
        events.validate_python(event.model_dump())
    assert "Paris" in text_of(final) and final.stop_reason in ("end_turn", "max_tokens")


def test_a_tool_round_trip_on_an_anthropic_route(claude: anthropic.Anthropic) -> None:
    first = claude.messages.create(
        model="claude-haiku",
        max_tokens=100,
        tools=[WEATHER],
        tool_choice={"type": "any"},
        messages=[{"role": "user", "content": "What is the weather in Paris?"}],
    )
    uses = [b for b in first.content if b.type == "tool_use"]
    assert first.stop_reason == "tool_use" and len(uses) == 1 and uses[0].name == "get_weather"
    second = claude.messages.create(
        model="claude-haiku",
        max_tokens=100,
        tools=[WEATHER],
        messages=[
            {"role": "user", "content": "What is the weather in Paris?"},
            {"role": "assistant", "content": first.content},  # type: ignore[typeddict-item]
            {"role": "user", "content": [{"type": "tool_result", "tool_use_id": uses[0].id, "content": "sunny"}]},
        ],
    )
    assert second.stop_reason == "end_turn" and text_of(second)


def test_an_unknown_model_is_anthropics_not_found_error(claude: anthropic.Anthropic) -> None:
    with pytest.raises(anthropic.NotFoundError) as e:
        claude.messages.create(model="no-such-model", max_tokens=5, messages=FRANCE)
    assert e.value.body["type"] == "error" and e.value.body["error"]["type"] == "not_found_error"  # type: ignore[index]
