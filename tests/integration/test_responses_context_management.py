"""Server-side compaction (`context_management` on `POST /v1/responses`), through the official openai SDK.

A response whose input crosses its `compact_threshold` is answered from its context compacted first: its
output begins with the compaction item, and the route that answers reads the summary instead of the turns
it replaced (the fake provider records what it was asked). Under the threshold nothing changes. Chained
with `previous_response_id`, in a conversation, or sent back with what came before the item dropped, the
next turn goes on from the compacted context. Bodies and events are held to the shared OpenAPI spec.
"""

from __future__ import annotations

import json
import logging
from pathlib import Path
from typing import Any

import httpx
import pytest
from anthropic_gateway import tiny_tokenizer
from fastapi import FastAPI
from http_checks import CHAT_MODEL
from loopback import serving
from openai_schema import validate
from test_responses_compact import text_of
from test_responses_door import WEATHER, kinds, post, raw_events, sdk
from test_responses_tool_search import LOADED, SEARCH, offered, searched
from test_responses_websocket import WS, answer, connect
from two_fakes import TEAM_KEY, gateway
from two_fakes import fakes_fixture as fakes_fixture
from two_fakes import healthy_fixture as healthy_fixture
from two_fakes import remote_fixture as remote_fixture

from local_models.interface import ModelInfo
from orchestrator.api import build_app
from orchestrator.app import build_pipeline
from orchestrator.frontdoors.responses.compaction import PROMPT, SUMMARY_HEADER, unseal
from orchestrator.testing.engine import FakeEngine
from orchestrator.testing.provider import FakeProvider

LONG_ANSWER = "It snows in Oslo, and the fjords are frozen. " * 40  # ~1,800 bytes: past a threshold of 1,000
HISTORY: list[dict[str, Any]] = [
    {"role": "user", "content": "Weather in Oslo?"},
    {"type": "function_call", "call_id": "call_1", "name": "get_weather", "arguments": '{"city": "Oslo"}'},
    {"type": "function_call_output", "call_id": "call_1", "output": '{"sky": "snow"}'},
    {"role": "assistant", "content": LONG_ANSWER},
    {"role": "user", "content": "And Bergen?"},
]
COMPACT_AT_1000 = [{"type": "compaction", "compact_threshold": 1000}]
SUMMARY = SUMMARY_HEADER + "It is sunny."  # the fake provider's reply, as a route reads it back

# What a route is asked for the turn after the compaction: the user's messages the item carries, its summary,
# the answer that came with it, and the new message.
NEXT_TURN = [
    ("user", "Weather in Oslo?"),
    ("user", "And Bergen?"),
    ("user", SUMMARY),
    ("assistant", "It is sunny."),
    ("user", "And Trondheim?"),
]


def asked(fake: FakeProvider) -> list[tuple[str, str]]:
    """What the provider's last request read: each message's role and text."""
    return [(m["role"], text_of(m.get("content") or "")) for m in fake.requests[-1].body["messages"]]


# ------------------------------------------------------------------------------ past the threshold


async def test_a_response_past_its_threshold_is_answered_from_its_compacted_context(
    remote: FastAPI, fakes: dict[str, FakeProvider]
) -> None:
    client = sdk(remote, TEAM_KEY)
    count = await client.responses.input_tokens.count(model="alpha/m", input=HISTORY, tools=[WEATHER])  # type: ignore[arg-type,list-item]
    assert count.input_tokens > 1000  # counted as the door counts a response's input
    raw = await client.responses.with_raw_response.create(
        model="alpha/m",
        input=HISTORY,  # type: ignore[arg-type]
        instructions="You are a weather bot.",
        tools=[WEATHER],  # type: ignore[list-item]
        max_output_tokens=50,
        context_management=COMPACT_AT_1000,  # type: ignore[arg-type]
    )
    body = json.loads(raw.content)
    validate("Response", body)
    # The compaction item, then the answer: the fake calls the tool it is offered.
    assert [item["type"] for item in body["output"]] == ["compaction", "function_call"]
    assert unseal(body["output"][0]["encrypted_content"]).summary == "It is sunny."
    assert raw.parse().output[1].type == "function_call"

    summary, answer = (r.body for r in fakes["alpha"].requests)  # two calls: the summary, then the answer
    assert summary["messages"][-1]["content"] == PROMPT
    assert summary["tool_choice"] == "none" and LONG_ANSWER.strip() in json.dumps(summary["messages"])
    assert "max_tokens" not in summary and answer["max_tokens"] == 50  # the answer's limit is not the summary's
    # The answer reads the user's messages and the summary, not the turns it replaced.
    assert asked(fakes["alpha"]) == [
        ("system", "You are a weather bot."),
        ("user", "Weather in Oslo?"),
        ("user", "And Bergen?"),
        ("user", SUMMARY),
    ]
    assert answer["tools"][0]["function"]["name"] == "get_weather"  # still offered: only the context changed


async def test_under_the_threshold_nothing_changes(remote: FastAPI, fakes: dict[str, FakeProvider]) -> None:
    client = sdk(remote, TEAM_KEY)
    count = (await client.responses.input_tokens.count(model="alpha/m", input=HISTORY)).input_tokens  # type: ignore[arg-type]
    for threshold in (count, None):  # at it, not past it; null: it fits the route (no context is known here)
        response = await client.responses.create(
            model="alpha/m",
            input=HISTORY,  # type: ignore[arg-type]
            context_management=[{"type": "compaction", "compact_threshold": threshold}],
        )
        assert [item.type for item in response.output] == ["message"]
    assert len(fakes["alpha"].requests) == 2  # one call each: no summary was asked
    assert ("assistant", LONG_ANSWER) in asked(fakes["alpha"])


async def test_counting_the_input_against_the_threshold_is_no_request_of_its_own(
    fakes: dict[str, FakeProvider], tmp_path: Path
) -> None:
    """The count is the response's own, not a token count's (`POST /v1/responses/input_tokens` is a request of
    its key's minute): a key of one request per minute gets its response, then a 429."""
    asking = [{"type": "compaction", "compact_threshold": 100_000}]
    async with gateway(fakes, tmp_path, limits={"team": {"rpm": 1}}) as app:
        r = await post(app, {"model": "alpha/m", "input": HISTORY, "context_management": asking}, TEAM_KEY)
        assert r.status_code == 200, r.text
        assert [item["type"] for item in r.json()["output"]] == ["message"]
        r = await post(app, {"model": "alpha/m", "input": HISTORY, "context_management": asking}, TEAM_KEY)
        assert r.status_code == 429, r.text


async def test_a_conversation_of_only_the_users_messages_has_nothing_to_compact(
    remote: FastAPI, fakes: dict[str, FakeProvider]
) -> None:
    """The user's messages are kept as they are: a summary would only add to them."""
    response = await sdk(remote, TEAM_KEY).responses.create(
        model="alpha/m",
        input=[{"role": "developer", "content": "Be brief."}, {"role": "user", "content": "Tell me. " * 200}],
        context_management=COMPACT_AT_1000,  # type: ignore[arg-type]
    )
    assert [item.type for item in response.output] == ["message"] and len(fakes["alpha"].requests) == 1


async def test_the_stream_sends_the_compaction_item_first_then_the_answer(
    remote: FastAPI, fakes: dict[str, FakeProvider]
) -> None:
    body = {"model": "alpha/m", "input": HISTORY, "context_management": COMPACT_AT_1000, "store": False}
    events = await raw_events(remote, body, TEAM_KEY)  # each held to its schema, numbered in order
    assert kinds(events)[:6] == [
        "response.created",
        "response.in_progress",
        "response.output_item.added",
        "response.output_item.done",
        "response.output_item.added",
        "response.content_part.added",
    ]
    assert kinds(events)[-1] == "response.completed"
    added, done, message = events[2], events[3], events[4]
    assert added["output_index"] == done["output_index"] == 0 and message["output_index"] == 1
    assert added["item"] == done["item"] and done["item"]["type"] == "compaction"
    assert unseal(done["item"]["encrypted_content"]).summary == "It is sunny."
    completed = events[-1]["response"]
    assert [item["type"] for item in completed["output"]] == ["compaction", "message"]
    assert completed["output"][0] == done["item"]
    assert asked(fakes["alpha"])[-1] == ("user", SUMMARY)

    async with sdk(remote, TEAM_KEY).responses.stream(  # the SDK's own accumulation of the events
        model="alpha/m",
        input=HISTORY,  # type: ignore[arg-type]
        context_management=COMPACT_AT_1000,  # type: ignore[arg-type]
    ) as stream:
        final = await stream.get_final_response()
    assert [item.type for item in final.output] == ["compaction", "message"] and final.output_text == "It is sunny."


# ------------------------------------------------------------------------------ what comes after it


async def test_previous_response_id_goes_on_from_the_compacted_context(
    remote: FastAPI, fakes: dict[str, FakeProvider]
) -> None:
    client = sdk(remote, TEAM_KEY)
    first = await client.responses.create(
        model="alpha/m",
        input=HISTORY,  # type: ignore[arg-type]
        context_management=COMPACT_AT_1000,  # type: ignore[arg-type]
    )
    assert first.output[0].type == "compaction"
    # The next turn passes only its new message, as OpenAI says to; it is under the threshold now.
    second = await client.responses.create(
        model="alpha/m",
        input="And Trondheim?",
        previous_response_id=first.id,
        context_management=COMPACT_AT_1000,  # type: ignore[arg-type]
    )
    assert [item.type for item in second.output] == ["message"]
    assert len(fakes["alpha"].requests) == 3  # the summary, the first answer, the second: nothing compacted again
    assert asked(fakes["alpha"]) == NEXT_TURN
    stored = await client.responses.retrieve(first.id)  # as it was answered: the compaction item first
    assert [item.type for item in stored.output] == ["compaction", "message"]


async def test_a_client_that_drops_what_came_before_the_item_loses_nothing(
    remote: FastAPI, fakes: dict[str, FakeProvider]
) -> None:
    """OpenAI's advice for stateless chaining: append the output, and drop every item before the latest
    compaction. The item carries the user's messages as well as the summary."""
    client = sdk(remote, TEAM_KEY)
    raw = await client.responses.with_raw_response.create(
        model="alpha/m",
        input=HISTORY,  # type: ignore[arg-type]
        context_management=COMPACT_AT_1000,  # type: ignore[arg-type]
        store=False,
    )
    output = json.loads(raw.content)["output"]
    for given in (
        [*HISTORY, *output, {"role": "user", "content": "And Trondheim?"}],  # everything appended
        [*output, {"role": "user", "content": "And Trondheim?"}],  # what came before the item dropped
    ):
        await client.responses.create(model="alpha/m", input=given, store=False)  # type: ignore[arg-type]
        assert asked(fakes["alpha"]) == NEXT_TURN


async def test_the_item_carries_the_tools_a_search_had_loaded(remote: FastAPI, fakes: dict[str, FakeProvider]) -> None:
    """The compaction replaces a tool search's call and output with its summary: the tools they loaded go in
    its item, as `/v1/responses/compact`'s do, so a client that drops what came before it is still offered
    them (the model needn't search again)."""
    history = [
        *searched([LOADED]),
        {"role": "assistant", "content": LONG_ANSWER},
        {"role": "user", "content": "Bergen?"},
    ]
    body = {"model": "alpha/m", "tools": [SEARCH], "store": False}
    r = await post(remote, {**body, "input": history, "context_management": COMPACT_AT_1000}, TEAM_KEY)
    assert r.status_code == 200, r.text
    validate("Response", r.json())
    compaction, call = r.json()["output"]  # the fake calls the first tool it is offered: the search
    assert compaction["type"] == "compaction" and call["type"] == "tool_search_call"
    assert [tool["name"] for tool in unseal(compaction["encrypted_content"]).tools] == ["mcp__weather"]
    assert offered(fakes["alpha"]) == ["tool_search", "mcp__weather__get_weather"]
    # What came before the item dropped, and the search found nothing new: what it had loaded is still offered.
    found = {"type": "tool_search_output", "call_id": call["call_id"], "execution": "client", "tools": []}
    r = await post(remote, {**body, "input": [compaction, call, found]}, TEAM_KEY)
    assert r.status_code == 200, r.text
    validate("Response", r.json())
    assert offered(fakes["alpha"]) == ["tool_search", "mcp__weather__get_weather"]
    assert asked(fakes["alpha"])[:2] == [("user", "Weather?"), ("user", "Bergen?")]  # carried too


async def test_a_conversation_goes_on_from_its_compacted_context(
    remote: FastAPI, fakes: dict[str, FakeProvider]
) -> None:
    client = sdk(remote, TEAM_KEY)
    conv = await client.conversations.create(items=HISTORY[:-1])  # type: ignore[arg-type]
    turn = await client.responses.create(
        model="alpha/m",
        conversation=conv.id,
        input="And Bergen?",
        context_management=COMPACT_AT_1000,  # type: ignore[arg-type]
    )
    assert [item.type for item in turn.output] == ["compaction", "message"]
    listed = await client.conversations.items.with_raw_response.list(conv.id, order="asc")
    validate("ConversationItemList", json.loads(listed.content))
    assert [item["type"] for item in json.loads(listed.content)["data"]][-3:] == ["message", "compaction", "message"]
    await client.responses.create(model="alpha/m", conversation=conv.id, input="And Trondheim?")
    assert asked(fakes["alpha"])[-3:] == [("user", SUMMARY), ("assistant", "It is sunny."), ("user", "And Trondheim?")]
    assert LONG_ANSWER not in json.dumps(fakes["alpha"].requests[-1].body)


# ------------------------------------------------------------------------------ billing, failures, bad values


async def test_the_compaction_is_billed_to_the_key_as_a_request_of_its_own(
    remote: FastAPI, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger="orchestrator.requests")
    r = await post(remote, {"model": "alpha/m", "input": HISTORY, "context_management": COMPACT_AT_1000}, TEAM_KEY)
    assert r.status_code == 200, r.text
    rows = [json.loads(rec.getMessage()) for rec in caplog.records if rec.name == "orchestrator.requests"]
    compaction, response = sorted(rows, key=lambda row: row["endpoint"], reverse=True)
    assert compaction["endpoint"] == "/v1/responses/compact" and response["endpoint"] == "/v1/responses"
    assert compaction["request_id"] == response["request_id"] + "-compaction"
    for row in (compaction, response):
        assert row["key_id"] == "team" and row["status"] == 200 and row["route"] == "remote"
        assert row["prompt_tokens"] > 0 and row["completion_tokens"] > 0
    assert compaction["prompt_tokens"] > response["prompt_tokens"]  # it read the turns the answer did not


async def test_a_compaction_that_fails_is_the_responses_failure(
    remote: FastAPI, fakes: dict[str, FakeProvider]
) -> None:
    fakes["alpha"].set_fault("bad_request")
    r = await post(remote, {"model": "alpha/m", "input": HISTORY, "context_management": COMPACT_AT_1000}, TEAM_KEY)
    assert r.status_code == 400, r.text
    validate("ErrorResponse", r.json())
    assert len(fakes["alpha"].requests) == 1  # the summary only: the answer was never asked


@pytest.mark.parametrize(
    ("value", "param"),
    [
        ([{"type": "truncation"}], "context_management[0].type"),
        ([{"type": "compaction", "compact_threshold": 999}], "context_management[0].compact_threshold"),
        ([{"type": "compaction", "compact_threshold": 2.5}], "context_management[0].compact_threshold"),
        ([{"type": "compaction", "compact_threshold": "high"}], "context_management[0].compact_threshold"),
        ([{"type": "compaction"}, {"type": "compaction", "compact_threshold": 5000}], "context_management[1]"),
        ([{"compact_threshold": 5000}], "context_management[0].type"),
        ([], "context_management"),
        ({"type": "compaction"}, "context_management"),
    ],
)
async def test_a_bad_context_management_is_a_400_naming_it(
    remote: FastAPI, fakes: dict[str, FakeProvider], value: Any, param: str
) -> None:
    for path in ("/v1/responses", "/v1/responses/input_tokens"):
        r = await post(remote, {"model": "alpha/m", "input": "hi", "context_management": value}, TEAM_KEY, path)
        assert r.status_code == 400, r.text
        validate("ErrorResponse", r.json())
        error = r.json()["error"]
        assert error["param"] == param and error["type"] == "invalid_request_error" and error["message"]
    assert not fakes["alpha"].requests  # no model was asked


# ------------------------------------------------------------------------------ the local model, the socket


async def local(tmp_path: Path, max_model_len: int) -> tuple[FastAPI, FakeEngine]:
    """The app over the local fake engine, its context known and a tokenizer that counts for it."""
    engine = FakeEngine(CHAT_MODEL, max_model_len=max_model_len)
    info: ModelInfo = {**engine.info(), "tokenizer_path": str(tiny_tokenizer(tmp_path))}
    return build_app(await build_pipeline({"local": (engine, info)})), engine


LOCAL_HISTORY: list[dict[str, Any]] = [
    {"role": "user", "content": "Plan a trip to Rome."},
    {"role": "assistant", "content": "Day one: the Forum. " * 100},  # ~1,200 tokens
    {"role": "user", "content": "And day two?"},
]


async def test_a_null_threshold_compacts_what_no_longer_fits_the_model(tmp_path: Path) -> None:
    app, engine = await local(tmp_path, max_model_len=800)
    client = sdk(app)
    fitting = await client.responses.create(
        model=CHAT_MODEL,
        input=LOCAL_HISTORY[:1],  # type: ignore[arg-type]
        context_management=[{"type": "compaction", "compact_threshold": None}],
    )
    assert [item.type for item in fitting.output] == ["message"] and len(engine.generations) == 1
    engine.enqueue(["Rome, day one done.", "Day two: the Vatican."])
    days = [{"role": "assistant", "content": f"Day {i}: the Forum. " * 10} for i in range(8)]  # ~130 tokens each
    too_long = [LOCAL_HISTORY[0], *days, LOCAL_HISTORY[2]]
    response = await client.responses.create(
        model=CHAT_MODEL,
        input=too_long,  # type: ignore[arg-type]
        context_management=[{"type": "compaction"}],  # type: ignore[typeddict-item]
    )
    assert [item.type for item in response.output] == ["compaction", "message"]
    assert response.output_text == "Day two: the Vatican."
    summary, answer = (g.request["messages"] for g in engine.generations[-2:])
    assert PROMPT in json.dumps(summary[-1])
    assert "Forum" not in json.dumps(answer) and "Rome, day one done." in json.dumps(answer)


async def test_over_the_socket_the_compaction_item_comes_first(tmp_path: Path) -> None:
    app, engine = await local(tmp_path, max_model_len=4096)
    engine.enqueue(["Rome, day one done.", "Day two: the Vatican."])
    async with serving(app, ws=WS) as url, connect(url) as conn:
        await conn.response.create(
            model=CHAT_MODEL,
            input=LOCAL_HISTORY,  # type: ignore[arg-type]
            context_management=COMPACT_AT_1000,  # type: ignore[arg-type]
            store=False,
        )
        events = await answer(conn)  # each held to its schema and the socket's, numbered in order
        assert kinds(events)[:5] == [
            "response.created",
            "response.in_progress",
            "response.output_item.added",
            "response.output_item.done",
            "response.output_item.added",
        ]
        done = events[-1]["response"]
        assert done["status"] == "completed" and [i["type"] for i in done["output"]] == ["compaction", "message"]
        assert unseal(done["output"][0]["encrypted_content"]).summary == "Rome, day one done."
        # The socket remembers it (store: false): the next turn goes on from the compacted context.
        await conn.response.create(model=CHAT_MODEL, input="And day three?", previous_response_id=done["id"])
        assert (await answer(conn))[-1]["type"] == "response.completed"
    seen = json.dumps(engine.generations[-1].request["messages"])
    assert "Rome, day one done." in seen and "Forum" not in seen and "Plan a trip to Rome." in seen


async def test_an_empty_summary_is_a_502_and_no_answer_is_asked(tmp_path: Path) -> None:
    app, engine = await local(tmp_path, max_model_len=4096)
    engine.enqueue([""])
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://t") as http:
        r = await http.post(
            "/v1/responses",
            json={"model": CHAT_MODEL, "input": LOCAL_HISTORY, "context_management": COMPACT_AT_1000},
        )
    assert r.status_code == 502 and "no summary" in r.json()["error"]["message"], r.text
    validate("ErrorResponse", r.json())
    assert len(engine.generations) == 1  # the summary's: the answer was never asked
