"""The Responses API on the default deployment, with the official openai client and the OpenAI Agents SDK.

Text, structured output and forced tool calls (tool_choice "required") are
answered by SmolLM2 on vLLM; tool calls the model must choose itself need a
route with a tool-call parser, so `auto` spills them to a remote fake. Every
body and stream event is held to the shared OpenAPI spec.
"""

from __future__ import annotations

import asyncio
import json
from typing import Any

import httpx
import openai
import pytest
from openai_schema import validate
from websockets.exceptions import InvalidStatus

pytestmark = pytest.mark.e2e

CHAT_MODEL = "smollm2-135m"
WEATHER: Any = {
    "type": "function",
    "name": "get_weather",
    "description": "The weather in a city.",
    "parameters": {"type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]},
}


def test_a_local_model_answers_a_response(client: openai.OpenAI) -> None:
    raw = client.responses.with_raw_response.create(
        model=CHAT_MODEL, input="What is the capital of France?", temperature=0, max_output_tokens=24
    )
    validate("Response", raw.http_response.json())
    assert raw.headers["x-served-by"] == f"local/{CHAT_MODEL}"
    response = raw.parse()
    assert "Paris" in response.output_text
    assert response.usage is not None and response.usage.output_tokens > 0
    assert client.responses.retrieve(response.id).output_text == response.output_text


def test_a_streamed_response_from_the_local_model(client: openai.OpenAI, base_url: str) -> None:
    ask: Any = {
        "model": CHAT_MODEL,
        "input": "What is the capital of France?",
        "temperature": 0,
        "max_output_tokens": 24,
    }
    with client.responses.stream(**ask) as stream:
        events = list(stream)
        final = stream.get_final_response()
    assert events[0].type == "response.created" and events[-1].type in ("response.completed", "response.incomplete")
    text = "".join(e.delta for e in events if e.type == "response.output_text.delta")
    assert text == final.output_text and "Paris" in text
    # The same stream as sent, every event held to the spec.
    sent = httpx.post(
        f"{base_url}/responses",
        json={**ask, "stream": True},
        headers={"Authorization": "Bearer not-needed"},
        timeout=120,
    )
    frames = [f for f in sent.text.split("\n\n") if f.strip()]
    for frame in frames:
        validate("ResponseStreamEvent", json.loads(frame.split("\n")[1].removeprefix("data: ")))
    assert len(frames) == len(events)


def test_structured_output_from_the_local_model(client: openai.OpenAI) -> None:
    schema = {"type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]}
    response = client.responses.create(
        model=CHAT_MODEL,
        input="Which city is the capital of France? Answer in JSON.",
        text={"format": {"type": "json_schema", "name": "capital", "schema": schema, "strict": True}},
        temperature=0,
        max_output_tokens=40,
    )
    assert isinstance(json.loads(response.output_text)["city"], str)


def test_a_function_tool_round_trip_on_auto_continues_by_previous_response_id(client: openai.OpenAI) -> None:
    raw = client.responses.with_raw_response.create(
        model="auto",
        input="What is the weather in Paris?",
        tools=[WEATHER],
        tool_choice="required",
        parallel_tool_calls=False,  # one call, whoever makes it
    )
    # A forced call is SmolLM2's to serve (structured output); a remote route takes over if it is slow.
    assert "capability" not in raw.headers["x-route-reason"]
    first = raw.parse()
    calls = [item for item in first.output if item.type == "function_call"]
    assert len(calls) == 1 and calls[0].name == "get_weather"
    second = client.responses.create(
        model="auto",
        tools=[WEATHER],
        previous_response_id=first.id,
        input=[{"type": "function_call_output", "call_id": calls[0].call_id, "output": '{"sky": "sunny"}'}],
    )
    assert second.status == "completed" and second.output_text
    items = client.responses.input_items.list(second.id)
    assert [item.type for item in items.data] == ["function_call_output"]


def test_a_one_tool_agent_runs_against_auto(base_url: str) -> None:
    from agents import Agent, OpenAIResponsesModel, Runner, function_tool, set_tracing_disabled

    set_tracing_disabled(True)  # nothing leaves the machine
    asked: list[str] = []

    @function_tool
    def get_weather(city: str) -> str:
        """The weather in a city."""
        asked.append(city)
        return f"It is sunny in {city}."

    async def run() -> Any:
        async with openai.AsyncOpenAI(base_url=base_url, api_key="not-needed", max_retries=0) as client:
            model = OpenAIResponsesModel("auto", client)
            agent = Agent(name="weather", instructions="Use the tool to answer.", tools=[get_weather], model=model)
            return await Runner.run(agent, "What is the weather in Paris?")

    result = asyncio.run(run())
    assert asked, "the agent never called its tool"
    assert isinstance(result.final_output, str) and result.final_output


def test_a_conversation_on_the_local_model(client: openai.OpenAI) -> None:
    """OpenAI's Conversations API on the deployment (its store a named Ray actor): each turn's input and
    answer are added to the conversation, and the next turn is asked with them before its own input."""
    conv = client.conversations.create(items=[{"role": "user", "content": "My name is Ada."}])
    turns = [
        client.responses.create(
            model=CHAT_MODEL, conversation=conv.id, input=question, temperature=0, max_output_tokens=16
        )
        for question in ("What is the capital of France?", "And of Italy?")
    ]
    assert all(t.conversation is not None and t.conversation.id == conv.id for t in turns)
    first, second = (t.usage.input_tokens for t in turns if t.usage is not None)
    assert second > first + 5  # asked with the first turn's question and answer
    items = list(client.conversations.items.list(conv.id, order="asc"))
    said = [i.content[0].text for i in items if i.type == "message"]  # type: ignore[union-attr]
    assert said == [
        "My name is Ada.",
        "What is the capital of France?",
        turns[0].output_text,
        "And of Italy?",
        turns[1].output_text,
    ]
    client.conversations.delete(conv.id)
    with pytest.raises(openai.NotFoundError):
        client.conversations.retrieve(conv.id)


def test_the_local_model_compacts_a_conversation_codex_style(client: openai.OpenAI) -> None:
    """Codex CLI's remote compaction (the history, then a `compaction_trigger`) on SmolLM2: one compaction
    item comes back, and the next turn sent with it is asked with its summary, not with what it replaced."""
    history: Any = [
        {"role": "user", "content": "My name is Ada. I am planning a train trip from Paris to Rome."},
        {"role": "assistant", "content": "That sounds lovely, Ada. The trip takes about eleven hours."},
    ]
    compacted = client.responses.create(
        model=CHAT_MODEL,
        input=[*history, {"type": "compaction_trigger"}],
        temperature=0,
        max_output_tokens=32,
        store=False,
    )
    assert [item.type for item in compacted.output] == ["compaction"]
    assert compacted.usage is not None and compacted.usage.output_tokens > 0
    item = compacted.output[0].model_dump(exclude_none=True)
    follow_up: Any = [*history, item, {"role": "user", "content": "What is my name?"}]
    answer = client.responses.create(model=CHAT_MODEL, input=follow_up, temperature=0, max_output_tokens=16)
    assert answer.status in ("completed", "incomplete") and answer.output_text
    asked = client.responses.input_tokens.count(model=CHAT_MODEL, input=follow_up).input_tokens
    whole = client.responses.input_tokens.count(model=CHAT_MODEL, input=[*history, follow_up[-1]]).input_tokens
    assert answer.usage is not None and answer.usage.input_tokens == asked != whole  # asked compacted


def test_two_turns_over_a_websocket_through_serve(client: openai.OpenAI, base_url: str) -> None:
    """OpenAI's WebSocket mode through the deployment's own listener (Serve's direct ingress): two turns
    on one socket, the second continuing a `store: false` one (as Codex chains its turns); a bad key is
    refused at the handshake with OpenAI's 401."""
    ends = ("response.completed", "response.incomplete", "response.failed")

    def answer(conn: Any) -> list[dict[str, Any]]:
        events = [json.loads(conn.recv_bytes())]
        while events[-1]["type"] not in ends and events[-1]["type"] != "error":
            events.append(json.loads(conn.recv_bytes()))
        for event in events:
            validate("ResponsesServerEvent", event)
        return events

    ask: Any = {"model": CHAT_MODEL, "temperature": 0, "max_output_tokens": 24}
    with client.responses.connect() as conn:
        conn.response.create(input="What is the capital of France?", store=False, **ask)
        first = answer(conn)
        conn.response.create(input="And of Italy?", previous_response_id=first[-1]["response"]["id"], **ask)
        second = answer(conn)
    assert first[0]["type"] == "response.created" and first[-1]["type"] in ends[:2], first[-1]
    assert "Paris" in "".join(e["delta"] for e in first if e["type"] == "response.output_text.delta")
    assert (
        second[-1]["type"] in ends[:2] and second[-1]["response"]["previous_response_id"] == first[-1]["response"]["id"]
    )
    with openai.OpenAI(base_url=base_url, api_key="sk-orch-not-a-key", max_retries=0) as stranger:
        with pytest.raises(InvalidStatus) as refused:
            with stranger.responses.connect():
                pass
    assert refused.value.response.status_code == 401
    validate("ErrorResponse", json.loads(refused.value.response.body or b""))
