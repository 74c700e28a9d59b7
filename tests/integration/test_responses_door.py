"""`POST /v1/responses` and the stored responses through the official openai SDK, against the in-process app.

Local answers come from the fake engines of `conftest.py` (the chat fake parrots
the last user turn); tool round trips go to fake providers that support tools,
one speaking OpenAI's chat wire format ("alpha") and one Anthropic's ("claude").
Every body and stream event is held to the shared OpenAPI spec.
"""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import httpx
import httpx2
import openai
import pytest
from fastapi import FastAPI
from http_checks import CHAT_MODEL, EVENT_SCHEMAS
from openai_schema import validate
from two_fakes import OTHER_KEY, TEAM_KEY, gateway
from two_fakes import fakes_fixture as fakes_fixture
from two_fakes import healthy_fixture as healthy_fixture

from orchestrator.testing.provider import FakeProvider

WEATHER = {
    "type": "function",
    "name": "get_weather",
    "description": "The weather in a city.",
    "parameters": {"type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]},
}


def sdk(app: FastAPI, api_key: str = "x") -> openai.AsyncOpenAI:
    http = httpx2.AsyncClient(transport=httpx2.ASGITransport(app=app), base_url="http://t")
    return openai.AsyncOpenAI(api_key=api_key, base_url="http://t/v1", http_client=http, max_retries=0)


async def post(
    app: FastAPI, body: dict[str, Any], api_key: str | None = None, path: str = "/v1/responses"
) -> httpx.Response:
    headers = {"Authorization": f"Bearer {api_key}"} if api_key else {}
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://t") as http:
        return await http.post(path, json=body, headers=headers)


async def raw_events(app: FastAPI, body: dict[str, Any], api_key: str | None = None) -> list[dict[str, Any]]:
    """The stream's events as sent, each held to the spec, numbered in order."""
    r = await post(app, {**body, "stream": True}, api_key)
    assert r.status_code == 200 and r.headers["content-type"].startswith("text/event-stream"), r.text
    events = []
    for frame in r.text.split("\n\n"):
        if frame.strip():
            kind, data = frame.split("\n")
            event = json.loads(data.removeprefix("data: "))
            assert kind == f"event: {event['type']}"
            validate(EVENT_SCHEMAS[event["type"]], event)  # the precise schema: clearer than the union's
            validate("ResponseStreamEvent", event)
            events.append(event)
    assert [e["sequence_number"] for e in events] == list(range(len(events)))
    return events


def kinds(events: list[dict[str, Any]]) -> list[str]:
    return [e["type"] for e in events]


# ------------------------------------------------------------------------------ local (fake engines)


async def test_a_whole_response(app: FastAPI) -> None:
    raw = await sdk(app).responses.with_raw_response.create(model=CHAT_MODEL, input="hello there")
    body = json.loads(raw.content)
    validate("Response", body)
    assert raw.headers["x-served-by"].endswith(CHAT_MODEL) and raw.headers["x-cache"]
    response = raw.parse()
    assert response.id.startswith("resp_") and response.object == "response" and response.status == "completed"
    assert response.output_text == "hello there"
    assert [item.type for item in response.output] == ["message"]
    assert response.usage is not None and response.usage.output_tokens == 2
    assert response.usage.total_tokens == response.usage.input_tokens + 2


async def test_a_stream_says_what_the_whole_response_says(app: FastAPI) -> None:
    client = sdk(app)
    whole = await client.responses.create(model=CHAT_MODEL, input="one two three four")
    async with client.responses.stream(model=CHAT_MODEL, input="one two three four") as stream:
        pieces = [e.delta async for e in stream if e.type == "response.output_text.delta"]
        final = await stream.get_final_response()
    assert len(pieces) > 1 and "".join(pieces) == whole.output_text == final.output_text
    assert final.status == "completed" and final.usage is not None and whole.usage is not None
    assert final.usage.output_tokens == whole.usage.output_tokens


async def test_the_stream_events_come_in_the_official_order(app: FastAPI) -> None:
    events = await raw_events(app, {"model": CHAT_MODEL, "input": "a b c"})
    assert kinds(events)[:4] == [
        "response.created",
        "response.in_progress",
        "response.output_item.added",
        "response.content_part.added",
    ]
    assert set(kinds(events)[4:-4]) == {"response.output_text.delta"}
    assert kinds(events)[-4:] == [
        "response.output_text.done",
        "response.content_part.done",
        "response.output_item.done",
        "response.completed",
    ]
    done = events[-1]["response"]
    assert done["status"] == "completed" and done["output"][0]["content"][0]["text"] == "a b c"
    assert done["usage"]["output_tokens"] == 3


async def test_the_output_texts_logprobs_come_when_included(app: FastAPI) -> None:
    """`include: ["message.output_text.logprobs"]` and `top_logprobs` were accepted and nothing came back."""
    ask: dict[str, Any] = {
        "model": CHAT_MODEL,
        "input": "one two three",
        "include": ["message.output_text.logprobs"],
        "top_logprobs": 2,
    }
    whole = await post(app, ask)
    validate("Response", whole.json())
    assert whole.json()["top_logprobs"] == 2
    [part] = whole.json()["output"][0]["content"]
    assert [t["token"] for t in part["logprobs"]] == ["one", " two", " three"]
    assert all(len(t["top_logprobs"]) == 2 and t["bytes"] == list(t["token"].encode()) for t in part["logprobs"])
    events = await raw_events(app, ask)
    deltas = [e for e in events if e["type"] == "response.output_text.delta"]
    assert [t["token"] for e in deltas for t in e["logprobs"]] == ["one", " two", " three"]
    [done] = [e for e in events if e["type"] == "response.output_text.done"]
    assert done["logprobs"] == part["logprobs"] == events[-1]["response"]["output"][0]["content"][0]["logprobs"]
    plain = await post(app, {"model": CHAT_MODEL, "input": "one two three"})  # none unless asked
    assert plain.json()["output"][0]["content"][0]["logprobs"] == []


async def test_instructions_and_message_items(app: FastAPI) -> None:
    client = sdk(app)
    response = await client.responses.create(
        model=CHAT_MODEL,
        instructions="You are terse.",
        input=[
            {"role": "developer", "content": "Answer in English."},
            {"role": "user", "content": "first question"},
            {"type": "message", "role": "assistant", "content": [{"type": "output_text", "text": "first answer"}]},
            {"role": "user", "content": [{"type": "input_text", "text": "second question"}]},
        ],
        max_output_tokens=30,
        temperature=0.5,
        top_p=0.9,
        metadata={"team": "a"},
    )
    assert response.output_text == "second question"
    assert response.instructions == "You are terse." and response.metadata == {"team": "a"}
    bare = await client.responses.create(model=CHAT_MODEL, input="second question")
    assert response.usage is not None and bare.usage is not None
    assert response.usage.input_tokens > bare.usage.input_tokens  # instructions and history were in the prompt


async def test_max_output_tokens_makes_an_incomplete_response(app: FastAPI) -> None:
    response = await sdk(app).responses.create(model=CHAT_MODEL, input="one two three four five", max_output_tokens=2)
    assert response.status == "incomplete"
    assert response.incomplete_details is not None and response.incomplete_details.reason == "max_output_tokens"
    assert [item.status for item in response.output] == ["incomplete"]  # the message it cut, as OpenAI marks it
    events = await raw_events(app, {"model": CHAT_MODEL, "input": "one two three four five", "max_output_tokens": 2})
    assert events[-1]["type"] == "response.incomplete"
    assert [e["item"]["status"] for e in events if e["type"] == "response.output_item.done"] == ["incomplete"]
    assert [item["status"] for item in events[-1]["response"]["output"]] == ["incomplete"]
    whole = await sdk(app).responses.create(model=CHAT_MODEL, input="one two three four five")
    assert whole.status == "completed" and [item.status for item in whole.output] == ["completed"]


async def test_a_conversation_continues_by_previous_response_id(app: FastAPI) -> None:
    client = sdk(app)
    first = await client.responses.create(model=CHAT_MODEL, input="my name is Ada")
    second = await client.responses.create(model=CHAT_MODEL, input="what is my name", previous_response_id=first.id)
    fresh = await client.responses.create(model=CHAT_MODEL, input="what is my name")
    assert second.previous_response_id == first.id
    assert second.usage is not None and fresh.usage is not None and first.usage is not None
    # the first turn (question and answer) was in the second's prompt
    assert second.usage.input_tokens > fresh.usage.input_tokens + first.usage.output_tokens
    third = await client.responses.create(model=CHAT_MODEL, input="and again", previous_response_id=second.id)
    assert third.usage is not None and third.usage.input_tokens > second.usage.input_tokens


async def test_a_stored_response_is_read_listed_and_deleted(app: FastAPI) -> None:
    client = sdk(app)
    created = await client.responses.create(
        model=CHAT_MODEL, input=[{"role": "user", "content": "keep me"}, {"role": "user", "content": "and me"}]
    )
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://t") as http:
        got = await http.get(f"/v1/responses/{created.id}")
        validate("Response", got.json())
        assert got.json() == created.model_dump(mode="json", exclude_unset=True)
        listed = await http.get(f"/v1/responses/{created.id}/input_items")
        validate("ResponseItemList", listed.json())
    fetched = await client.responses.retrieve(created.id)
    assert fetched.output_text == "and me"
    items = await client.responses.input_items.list(created.id, order="asc")
    texts = [item.content[0].text for item in items.data if item.type == "message"]  # type: ignore[union-attr]
    assert texts == ["keep me", "and me"]
    page = await client.responses.input_items.list(created.id, limit=1)
    assert page.has_more and page.data[0].content[0].text == "and me"  # type: ignore[union-attr]
    await client.responses.delete(created.id)
    with pytest.raises(openai.NotFoundError) as e:
        await client.responses.retrieve(created.id)
    assert created.id in e.value.message


async def test_a_streamed_response_is_stored_before_it_completes(app: FastAPI) -> None:
    events = await raw_events(app, {"model": CHAT_MODEL, "input": "stream and keep"})
    done = events[-1]["response"]
    assert (await sdk(app).responses.retrieve(done["id"])).output_text == "stream and keep"


async def test_store_false_keeps_nothing(app: FastAPI) -> None:
    client = sdk(app)
    response = await client.responses.create(model=CHAT_MODEL, input="forget me", store=False)
    assert response.store is False
    with pytest.raises(openai.NotFoundError):
        await client.responses.retrieve(response.id)
    with pytest.raises(openai.BadRequestError) as e:  # OpenAI's word for it, on which clients resend it all
        await client.responses.create(model=CHAT_MODEL, input="again", previous_response_id=response.id)
    assert e.value.body["param"] == "previous_response_id"  # type: ignore[index]
    assert e.value.code == "previous_response_not_found"


@pytest.mark.parametrize(
    ("body", "param"),
    [
        ({"tools": [{"type": "code_interpreter", "container": {"type": "auto"}}]}, "tools[0].type"),
        ({"tools": [{"type": "file_search", "vector_store_ids": ["vs_1"]}]}, "tools[0].type"),
        ({"background": True}, "background"),
        ({"conversation": "thread_1"}, "conversation"),  # not a conversation's id (served: test_conversations_api)
        ({"input": [{"type": "item_search_call", "id": "x"}]}, "input[0].type"),
        ({"input": []}, "input"),
        ({"input": [{"role": "user", "content": [{"type": "input_image", "file_id": "file_1"}]}]}, "input[0].content"),
        ({"tool_choice": {"type": "web_search_preview"}}, "tool_choice"),
        # A named function that isn't among the tools (a remote route answered it as if it were).
        (
            {
                "tools": [{"type": "function", "name": "a", "parameters": {}}],
                "tool_choice": {"type": "function", "name": "b"},
            },
            "tool_choice",
        ),
        ({"tool_choice": "required"}, "tool_choice"),  # a tool call forced with no tool to call: was a 200
        ({"text": {"format": {"type": "json_schema"}}}, "text.format"),
        # A schema no value matches: the local engine answered it with empty content.
        ({"text": {"format": {"type": "json_schema", "name": "s", "schema": {"$ref": "#"}}}}, "text.format.schema"),
        ({"max_output_tokens": 0}, "max_output_tokens"),
        ({"temperature": 3}, "temperature"),
        ({"model": ""}, "model"),
    ],
)
async def test_what_no_route_here_can_do_is_a_400_naming_the_field(
    app: FastAPI, body: dict[str, Any], param: str
) -> None:
    r = await post(app, {"model": CHAT_MODEL, "input": "hi", **body})
    assert r.status_code == 400, r.text
    error = r.json()["error"]
    assert error["type"] == "invalid_request_error" and error["param"].startswith(param), error
    assert error["message"]


@pytest.mark.parametrize(
    "raw",
    [b"not json", b"[]", b'{"model": "m"}', b'{"model": 1, "input": "x"}', b'{"model": "m", "input": {"a": 1}}'],
)
async def test_hostile_bodies_are_a_400_in_openais_shape(app: FastAPI, raw: bytes) -> None:
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://t") as http:
        r = await http.post("/v1/responses", content=raw, headers={"content-type": "application/json"})
    assert r.status_code == 400 and r.json()["error"]["type"] == "invalid_request_error", r.text


async def test_unknown_stored_ids_and_bad_list_params_are_4xx(app: FastAPI) -> None:
    created = await sdk(app).responses.create(model=CHAT_MODEL, input="x")
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://t") as http:
        assert (await http.get("/v1/responses/resp_nope")).status_code == 404
        assert (await http.delete("/v1/responses/resp_nope")).status_code == 404
        # "²" and "١٠" are digits to str.isdigit; int() refused the first (a 500), took the second.
        bad = ("limit=0", "limit=101", "limit=x", "limit=\u00b2", "limit=\u0661\u0660", "order=up", "after=msg_nope")
        for query in bad:
            r = await http.get(f"/v1/responses/{created.id}/input_items?{query}")
            assert r.status_code == 400 and r.json()["error"]["param"] == query.split("=")[0], r.text


async def test_responses_requests_are_accounted_under_their_own_endpoint(client: httpx.AsyncClient) -> None:
    r = await client.post("/v1/responses", json={"model": CHAT_MODEL, "input": "count me"})
    assert r.status_code == 200
    metrics = (await client.get("/metrics")).text
    assert 'endpoint="/v1/responses"' in metrics


# ------------------------------------------------------------------------------ remote (fake providers)


@pytest.fixture
async def remote(fakes: dict[str, FakeProvider], tmp_path: Path) -> AsyncIterator[FastAPI]:
    async with gateway(fakes, tmp_path, {"both": {"routes": ["alpha/m", "claude/haiku"]}}) as app:
        yield app


@pytest.mark.parametrize("model", ["alpha/m", "claude/haiku"])
@pytest.mark.parametrize("stream", [False, True], ids=["json", "sse"])
async def test_a_function_tool_round_trip(remote: FastAPI, model: str, stream: bool) -> None:
    client = sdk(remote, TEAM_KEY)

    async def ask(**kwargs: Any) -> Any:
        if not stream:
            return await client.responses.create(model=model, tools=[WEATHER], **kwargs)  # type: ignore[list-item]
        async with client.responses.stream(model=model, tools=[WEATHER], **kwargs) as s:  # type: ignore[list-item]
            return await s.get_final_response()

    first = await ask(input="What is the weather in Paris?", tool_choice="required")
    calls = [item for item in first.output if item.type == "function_call"]
    assert len(calls) == 1 and calls[0].name == "get_weather"
    assert isinstance(json.loads(calls[0].arguments), dict)
    output = {"type": "function_call_output", "call_id": calls[0].call_id, "output": '{"sky": "sunny"}'}
    second = await ask(input=[output], previous_response_id=first.id)
    assert second.output_text and second.status == "completed"


async def test_the_tool_call_stream_sends_argument_deltas(remote: FastAPI) -> None:
    events = await raw_events(
        remote, {"model": "alpha/m", "input": "weather in Oslo?", "tools": [WEATHER]}, api_key=TEAM_KEY
    )
    names = kinds(events)
    assert names[2] == "response.output_item.added" and events[2]["item"]["type"] == "function_call"
    assert "response.function_call_arguments.delta" in names
    done = next(e for e in events if e["type"] == "response.function_call_arguments.done")
    deltas = "".join(e["delta"] for e in events if e["type"] == "response.function_call_arguments.delta")
    assert done["arguments"] == deltas and json.loads(deltas)
    assert events[-1]["response"]["output"][0]["arguments"] == deltas


async def test_a_json_schema_format_reaches_the_route(remote: FastAPI, fakes: dict[str, FakeProvider]) -> None:
    schema = {"type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]}
    await sdk(remote, TEAM_KEY).responses.create(
        model="alpha/m",
        input="a city",
        text={"format": {"type": "json_schema", "name": "place", "schema": schema, "strict": True}},
    )
    sent = fakes["alpha"].requests[-1].body
    assert sent["response_format"] == {
        "type": "json_schema",
        "json_schema": {"name": "place", "schema": schema, "strict": True},
    }


async def test_one_key_never_reads_anothers_responses(remote: FastAPI) -> None:
    team, other = sdk(remote, TEAM_KEY), sdk(remote, OTHER_KEY)
    mine = await team.responses.create(model="alpha/m", input="a secret")
    for attempt in (
        other.responses.retrieve(mine.id),
        other.responses.input_items.list(mine.id),
        other.responses.delete(mine.id),
    ):
        with pytest.raises(openai.NotFoundError):
            await attempt
    with pytest.raises(openai.BadRequestError) as e:  # as a response that isn't there
        await other.responses.create(model="alpha/m", input="go on", previous_response_id=mine.id)
    assert e.value.code == "previous_response_not_found"
    assert (await team.responses.retrieve(mine.id)).output_text == mine.output_text  # still there


async def test_cancelling_a_response_says_none_here_runs_in_the_background(remote: FastAPI) -> None:
    client = sdk(remote, TEAM_KEY)
    mine = await client.responses.create(model="alpha/m", input="hi")
    with pytest.raises(openai.BadRequestError, match="background"):
        await client.responses.cancel(mine.id)
    for attempt in (client.responses.cancel("resp_nope"), sdk(remote, OTHER_KEY).responses.cancel(mine.id)):
        with pytest.raises(openai.NotFoundError):
            await attempt


async def test_failover_before_the_first_event_is_invisible(remote: FastAPI, fakes: dict[str, FakeProvider]) -> None:
    fakes["alpha"].set_fault("server_error")
    client = sdk(remote, TEAM_KEY)
    async with client.responses.stream(model="both", input="hello") as stream:
        final = await stream.get_final_response()
    assert final.status == "completed" and final.output_text
    assert fakes["claude"].counts["/v1/messages"] >= 1
    raw = await client.responses.with_raw_response.create(model="both", input="hello")
    assert raw.headers["x-served-by"] == "claude/claude-test"


async def test_a_failure_mid_stream_ends_with_error_and_response_failed(
    remote: FastAPI, fakes: dict[str, FakeProvider]
) -> None:
    fakes["alpha"].set_fault("stream_error", stall_after=2)
    events = await raw_events(remote, {"model": "alpha/m", "input": "one two three four five"}, api_key=TEAM_KEY)
    assert "response.output_text.delta" in kinds(events)
    assert kinds(events)[-2:] == ["error", "response.failed"]
    failed = events[-1]["response"]
    assert failed["status"] == "failed" and failed["error"]["message"]
    assert failed["output"][0]["status"] == "incomplete"


async def test_a_reproducible_request_is_replayed_from_the_cache_as_a_real_event_stream(
    remote: FastAPI, fakes: dict[str, FakeProvider]
) -> None:
    ask = {"model": "alpha/m", "input": "cache me", "temperature": 0}
    first = await post(remote, ask, TEAM_KEY)
    again = await post(remote, ask, TEAM_KEY)
    assert (first.headers["x-cache"], again.headers["x-cache"]) == ("MISS", "HIT")
    assert again.json()["id"] != first.json()["id"]  # a response of its own, stored under its own id
    assert again.json()["output"][0]["content"] == first.json()["output"][0]["content"]
    events = await raw_events(remote, ask, TEAM_KEY)  # replayed: the official sequence, from the cache
    assert kinds(events)[-1] == "response.completed"
    assert events[-1]["response"]["output"][0]["content"][0]["text"] == first.json()["output"][0]["content"][0]["text"]
    assert fakes["alpha"].counts["/v1/chat/completions"] == 1
    assert (await sdk(remote, TEAM_KEY).responses.retrieve(again.json()["id"])).output_text
    # The body's own cache directives, as on every door (they were dropped: no_store stored, no_cache read).
    private = {"model": "alpha/m", "input": "private", "temperature": 0, "cache": {"no_store": True}}
    assert [(await post(remote, private, TEAM_KEY)).headers["x-cache"] for _ in range(2)] == ["MISS", "MISS"]
    fresh = await post(remote, {**ask, "cache": {"no_cache": True}}, TEAM_KEY)
    assert fresh.headers["x-cache"] == "BYPASS" and fakes["alpha"].counts["/v1/chat/completions"] == 4
    bad = await post(remote, {**ask, "cache": {"ttl": -1}}, TEAM_KEY)
    assert bad.status_code == 400 and bad.json()["error"]["param"] == "cache.ttl"
