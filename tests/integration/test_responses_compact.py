"""`POST /v1/responses/compact` and compaction items, through the official openai SDK.

A conversation is compacted by the route's model (the local fake engine, or a fake provider on a real
socket that records what it was asked), and the compacted output sent back as the next turn's input
puts the summary where the turns were. Bodies are held to the shared OpenAPI spec.
"""

from __future__ import annotations

import base64
import json
from pathlib import Path
from typing import Any

import httpx
import openai
import pytest
from anthropic_gateway import tiny_tokenizer
from fastapi import FastAPI
from http_checks import CHAT_MODEL
from openai_schema import validate
from test_responses_door import WEATHER, kinds, post, raw_events, sdk
from two_fakes import OTHER_KEY, TEAM_KEY
from two_fakes import fakes_fixture as fakes_fixture
from two_fakes import healthy_fixture as healthy_fixture
from two_fakes import remote_fixture as remote_fixture

from local_models.interface import ModelInfo
from orchestrator.api import build_app
from orchestrator.app import build_pipeline
from orchestrator.frontdoors.responses.compaction import PROMPT, SUMMARY_HEADER, seal, unseal
from orchestrator.testing.engine import FakeEngine
from orchestrator.testing.provider import FakeProvider

CONVERSATION: list[dict[str, Any]] = [
    {"role": "user", "content": "Plan a trip to Paris."},
    {"role": "assistant", "content": "Which month?"},
    {"role": "user", "content": "May, please."},
]


async def compact_raw(app: FastAPI, body: dict[str, Any], api_key: str | None = None) -> httpx.Response:
    headers = {"Authorization": f"Bearer {api_key}"} if api_key else {}
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://t") as http:
        return await http.post("/v1/responses/compact", json=body, headers=headers)


def compaction_of(output: list[Any]) -> Any:
    (item,) = [i for i in output if i.type == "compaction"]
    return item


def text_of(content: Any) -> str:
    """A chat message's text, as a provider was sent it (a string, or text parts)."""
    return content if isinstance(content, str) else "".join(p["text"] for p in content)


async def compacted_output(client: openai.AsyncOpenAI, **kwargs: Any) -> list[dict[str, Any]]:
    """A compaction's output items as sent: what a client hands back as the next turn's input."""
    raw = await client.responses.with_raw_response.compact(**kwargs)
    body = json.loads(raw.content)
    validate("CompactResource", body)
    return list(body["output"])


@pytest.fixture
def chat_engine() -> FakeEngine:
    return FakeEngine(CHAT_MODEL, max_model_len=1024)  # room for a conversation and the request for its summary


# ------------------------------------------------------------------------------ the local model


async def test_the_local_model_compacts_a_conversation_and_the_next_turn_reads_its_summary(
    app: FastAPI, chat_engine: FakeEngine
) -> None:
    client = sdk(app)
    chat_engine.enqueue(["The user plans a trip to Paris in May."])
    raw = await client.responses.with_raw_response.compact(model=CHAT_MODEL, input=CONVERSATION)  # type: ignore[arg-type]
    validate("CompactResource", json.loads(raw.content))
    assert raw.headers["x-served-by"].endswith(CHAT_MODEL)
    compacted = raw.parse()
    assert compacted.object == "response.compaction" and compacted.id.startswith("resp_")
    # Every user message as it was, then one compaction item: the assistant's turn is in the summary.
    assert [(i.type, getattr(i, "role", None)) for i in compacted.output] == [
        ("message", "user"),
        ("message", "user"),
        ("compaction", None),
    ]
    assert unseal(compaction_of(compacted.output).encrypted_content).summary == "The user plans a trip to Paris in May."
    assert compacted.usage.output_tokens > 0 and compacted.usage.input_tokens > 0
    asked = chat_engine.generations[-1].request
    assert PROMPT in json.dumps(asked["messages"][-1]) and "Which month?" in json.dumps(asked["messages"])

    kept = json.loads(raw.content)["output"]
    answer = await client.responses.create(model=CHAT_MODEL, input=[*kept, {"role": "user", "content": "Hotels?"}])
    assert answer.status == "completed" and answer.output_text == "Hotels?"  # the fake parrots the last turn
    seen = json.dumps(chat_engine.generations[-1].request["messages"])
    assert "The user plans a trip to Paris in May." in seen and "Which month?" not in seen


# ------------------------------------------------------------------------------ a remote route


async def test_a_tool_using_conversation_is_summarized_in_its_own_context(
    remote: FastAPI, fakes: dict[str, FakeProvider]
) -> None:
    """The summary is asked as the next turn would be (instructions, tools), told to call none."""
    client = sdk(remote, TEAM_KEY)
    history = [
        {"role": "user", "content": "Weather in Oslo?"},
        {"type": "function_call", "call_id": "call_1", "name": "get_weather", "arguments": '{"city": "Oslo"}'},
        {"type": "function_call_output", "call_id": "call_1", "output": '{"sky": "snow"}'},
        {"role": "assistant", "content": "It snows in Oslo."},
    ]
    compacted = await client.responses.compact(
        model="alpha/m",
        input=history,  # type: ignore[arg-type]
        instructions="You are a weather bot.",
        extra_body={"tools": [WEATHER], "parallel_tool_calls": False},
    )
    sent = fakes["alpha"].requests[-1].body
    assert sent["messages"][0] == {"role": "system", "content": "You are a weather bot."}
    assert [m["role"] for m in sent["messages"]] == ["system", "user", "assistant", "tool", "assistant", "user"]
    assert sent["messages"][-1]["content"] == PROMPT
    assert sent["tool_choice"] == "none" and sent["tools"][0]["function"]["name"] == "get_weather"
    assert [i.type for i in compacted.output] == ["message", "compaction"]
    assert unseal(compaction_of(compacted.output).encrypted_content).summary == "It is sunny."

    kept = await compacted_output(client, model="alpha/m", input=history, extra_body={"tools": [WEATHER]})
    await client.responses.create(model="alpha/m", input=[*kept, {"role": "user", "content": "And Bergen?"}])
    messages = fakes["alpha"].requests[-1].body["messages"]
    assert [m["role"] for m in messages] == ["user", "user", "user"]  # no tool turns: they are in the summary
    assert text_of(messages[1]["content"]) == SUMMARY_HEADER + "It is sunny."


async def test_an_anthropic_route_compacts_a_conversation_with_tool_calls(
    remote: FastAPI, fakes: dict[str, FakeProvider]
) -> None:
    history = [
        {"role": "user", "content": "Weather in Oslo?"},
        {"type": "function_call", "call_id": "toolu_1", "name": "get_weather", "arguments": '{"city": "Oslo"}'},
        {"type": "function_call_output", "call_id": "toolu_1", "output": "snow"},
    ]
    compacted = await sdk(remote, TEAM_KEY).responses.compact(
        model="claude/haiku",
        input=history,  # type: ignore[arg-type]
        extra_body={"tools": [WEATHER]},
    )
    sent = fakes["claude"].requests[-1].body
    assert sent["tool_choice"] == {"type": "none"} and sent["tools"][0]["name"] == "get_weather"
    assert PROMPT in json.dumps(sent["messages"][-1])
    assert unseal(compaction_of(compacted.output).encrypted_content).summary  # the fake's answer to a tool result


async def test_a_stored_response_is_compacted_with_the_input_after_it(
    remote: FastAPI, fakes: dict[str, FakeProvider]
) -> None:
    client = sdk(remote, TEAM_KEY)
    first = await client.responses.create(model="alpha/m", input="Plan a trip to Paris.")
    compacted = await client.responses.compact(
        model="alpha/m", previous_response_id=first.id, input="In May.", extra_body={"max_output_tokens": 40}
    )
    assert fakes["alpha"].requests[-1].body["max_tokens"] == 40  # the gateway's own cap on the summary
    texts = [text_of(m["content"]) for m in fakes["alpha"].requests[-1].body["messages"]]
    assert texts[1] == "It is sunny." and texts[-1] == PROMPT  # the stored answer, then the new input
    users = [i.content[0].text for i in compacted.output if i.type == "message"]
    assert users == ["Plan a trip to Paris.", "In May."]
    with pytest.raises(openai.BadRequestError) as e:  # another key's stored response is not there
        await sdk(remote, OTHER_KEY).responses.compact(model="alpha/m", previous_response_id=first.id)
    assert e.value.code == "previous_response_not_found"


async def test_a_compaction_item_is_kept_in_the_stored_response_and_its_chain(
    remote: FastAPI, fakes: dict[str, FakeProvider]
) -> None:
    client = sdk(remote, TEAM_KEY)
    item = {"type": "compaction", "encrypted_content": seal("Earlier: the user likes trains.")}
    first = await client.responses.create(model="alpha/m", input=[item, {"role": "user", "content": "Go on."}])  # type: ignore[list-item]
    listed = await client.responses.input_items.with_raw_response.list(first.id)
    validate("ResponseItemList", json.loads(listed.content))
    assert [i["type"] for i in json.loads(listed.content)["data"]] == ["message", "compaction"]  # newest first
    await client.responses.create(model="alpha/m", input="More.", previous_response_id=first.id)
    messages = fakes["alpha"].requests[-1].body["messages"]
    assert text_of(messages[0]["content"]) == SUMMARY_HEADER + "Earlier: the user likes trains."


async def test_codexs_older_item_name_is_read_as_a_compaction(remote: FastAPI, fakes: dict[str, FakeProvider]) -> None:
    item = {"type": "compaction_summary", "encrypted_content": seal("Summary.")}
    await sdk(remote, TEAM_KEY).responses.create(model="alpha/m", input=[item, {"role": "user", "content": "Hi"}])  # type: ignore[list-item]
    assert text_of(fakes["alpha"].requests[-1].body["messages"][0]["content"]) == SUMMARY_HEADER + "Summary."


# ------------------------------------------------------------------------------ what it refuses


@pytest.mark.parametrize(
    ("content", "words"),
    [
        ("gAAAAABpM0Yj-another-services-token=", "not made by this gateway"),
        ("orch-cmp-v1." + base64.urlsafe_b64encode(b"not json").decode(), "damaged"),
        ("orch-cmp-v1.%%%", "damaged"),
        # Sealed by a client, not by this gateway: nested past any parser (Python's raised a RecursionError,
        # a 500), and a lone surrogate (no route could be sent it: a 500 on every route).
        ("orch-cmp-v1." + base64.urlsafe_b64encode(b"[" * 100_000).decode(), "damaged"),
        ("orch-cmp-v1." + base64.urlsafe_b64encode(b'{"summary": "\\ud800"}').decode(), "damaged"),
    ],
)
async def test_a_compaction_item_this_gateway_cant_read_is_a_400(remote: FastAPI, content: str, words: str) -> None:
    item = {"type": "compaction", "encrypted_content": content}
    for path, body in (
        ("/v1/responses", {"model": "alpha/m", "input": [item]}),
        ("/v1/responses/compact", {"model": "alpha/m", "input": [item]}),
        ("/v1/responses/input_tokens", {"model": "alpha/m", "input": [item]}),
    ):
        async with httpx.AsyncClient(transport=httpx.ASGITransport(app=remote), base_url="http://t") as http:
            r = await http.post(path, json=body, headers={"Authorization": f"Bearer {TEAM_KEY}"})
        assert r.status_code == 400, r.text
        error = r.json()["error"]
        assert words in error["message"] and error["param"] == "input[0].encrypted_content"
        validate("ErrorResponse", r.json())


@pytest.mark.parametrize(
    ("body", "param"),
    [
        ({"model": "alpha/m"}, "input"),
        ({"model": "alpha/m", "input": []}, "input"),
        ({"model": "alpha/m", "input": "hi", "stream": True}, "stream"),
        ({"model": "alpha/m", "input": "hi", "conversation": "conv_1"}, "conversation"),
        ({"model": "alpha/m", "input": "hi", "tools": [{"type": "file_search"}]}, "tools[0].type"),
        ({"input": "hi"}, "model"),
        ({"model": "alpha/m", "input": [{"type": "mystery"}]}, "input[0].type"),
    ],
)
async def test_a_bad_compaction_request_is_a_400_naming_its_field(
    remote: FastAPI, fakes: dict[str, FakeProvider], body: dict[str, Any], param: str
) -> None:
    r = await compact_raw(remote, body, TEAM_KEY)
    assert r.status_code == 400, r.text
    assert r.json()["error"]["param"] == param
    validate("ErrorResponse", r.json())
    assert not fakes["alpha"].requests  # no model was asked


async def test_an_empty_summary_is_the_routes_failure_not_a_compaction(app: FastAPI, chat_engine: FakeEngine) -> None:
    chat_engine.enqueue([""])
    r = await compact_raw(app, {"model": CHAT_MODEL, "input": CONVERSATION})
    assert r.status_code == 502 and "no summary" in r.json()["error"]["message"]


async def test_a_compaction_is_accounted_under_its_own_endpoint_and_billed(app: FastAPI) -> None:
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://t") as http:
        r = await http.post("/v1/responses/compact", json={"model": CHAT_MODEL, "input": CONVERSATION})
        assert r.status_code == 200, r.text
        metrics = (await http.get("/metrics")).text
    line = next(x for x in metrics.splitlines() if 'endpoint="/v1/responses/compact"' in x and "requests_total" in x)
    assert 'status="200"' in line and line.endswith(" 1.0")


# ------------------------------------------------------------------------------ POST /v1/responses/input_tokens


async def test_input_tokens_counts_what_the_response_would_send(
    remote: FastAPI, fakes: dict[str, FakeProvider]
) -> None:
    client = sdk(remote, TEAM_KEY)
    raw = await client.responses.input_tokens.with_raw_response.count(model="alpha/m", input="Plan a trip to Paris.")
    body = json.loads(raw.content)
    validate("TokenCountsResource", body)
    short = raw.parse().input_tokens
    longer = await client.responses.input_tokens.count(
        model="alpha/m",
        input="Plan a trip to Paris.",
        instructions="Be brief. " * 20,
        tools=[WEATHER],  # type: ignore[list-item]
    )
    assert 0 < short < longer.input_tokens
    first = await client.responses.create(model="alpha/m", input="Plan a trip to Paris.")
    chained = await client.responses.input_tokens.count(model="alpha/m", previous_response_id=first.id)
    assert chained.input_tokens > short  # the stored turn and its answer
    conv = await client.conversations.create(items=[{"role": "user", "content": "Plan a trip to Paris."}])
    assert (await client.responses.input_tokens.count(model="alpha/m", conversation=conv.id)).input_tokens == short
    assert not fakes["alpha"].requests[1:]  # counting asks no model (the one request: the stored turn)
    stranger = sdk(remote, OTHER_KEY)  # another key's stored turns are not there
    with pytest.raises(openai.BadRequestError):
        await stranger.responses.input_tokens.count(model="alpha/m", previous_response_id=first.id)
    with pytest.raises(openai.NotFoundError):
        await stranger.responses.input_tokens.count(model="alpha/m", conversation=conv.id)


@pytest.mark.parametrize(
    ("body", "status", "param"),
    [
        ({"model": "alpha/m"}, 400, "input"),
        ({"input": "hi"}, 400, "model"),
        ({"model": "no-such-model", "input": "hi"}, 404, "model"),
        ({"model": "alpha/m", "input": [{"type": "mystery"}]}, 400, "input[0].type"),
        ({"model": "alpha/m", "previous_response_id": "resp_nope"}, 400, "previous_response_id"),
    ],
)
async def test_a_bad_token_count_is_a_4xx_naming_its_field(
    remote: FastAPI, body: dict[str, Any], status: int, param: str
) -> None:
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=remote), base_url="http://t") as http:
        r = await http.post("/v1/responses/input_tokens", json=body, headers={"Authorization": f"Bearer {TEAM_KEY}"})
    assert r.status_code == status, r.text
    assert r.json()["error"]["param"] == param
    validate("ErrorResponse", r.json())


async def test_a_conversation_too_long_for_the_model_is_summarized_from_its_latest_turns(tmp_path: Path) -> None:
    """Compaction is for a conversation that outgrew its context: the oldest turns that don't fit are left
    out of what the model reads (as `truncation: auto` leaves them), every user message is still kept."""
    engine = FakeEngine(CHAT_MODEL, max_model_len=800)
    info: ModelInfo = {**engine.info(), "tokenizer_path": str(tiny_tokenizer(tmp_path))}  # the router counts
    app = build_app(await build_pipeline({"local": (engine, info)}))
    history = [
        {"role": "user" if i % 2 == 0 else "assistant", "content": f"turn{i} " + "word " * 40} for i in range(10)
    ]
    engine.enqueue(["A summary."])
    output = await compacted_output(sdk(app), model=CHAT_MODEL, input=history)
    asked = json.dumps(engine.generations[-1].request["messages"])
    assert "turn9" in asked and "turn0" not in asked and PROMPT in asked
    assert [item["content"][0]["text"].split()[0] for item in output[:-1]] == [f"turn{i}" for i in range(0, 10, 2)]
    assert unseal(output[-1]["encrypted_content"]).summary == "A summary."


async def test_a_conversation_whose_last_turn_alone_is_too_long_is_a_400_not_a_summary_of_nothing(
    tmp_path: Path,
) -> None:
    """Codex compacts when its context fills, often on a huge tool output: that last turn alone didn't fit, so
    truncation dropped every turn of the conversation and kept only the request for its summary; the model
    "summarized" nothing and the 200's compaction item stood for turns it never read (so did the capability
    checks: a conversation's tool turns dropped, a model without tools took it). Now it is the 400 a turn too
    long for every route is, on both ways of asking for a compaction."""
    engine = FakeEngine(CHAT_MODEL, max_model_len=800)
    info: ModelInfo = {**engine.info(), "tokenizer_path": str(tiny_tokenizer(tmp_path))}
    app = build_app(await build_pipeline({"local": (engine, info)}))
    history = [
        {"role": "user", "content": "Show me the file."},
        {"role": "assistant", "content": "line " * 2_000},  # as a tool's output would be, on a model with tools
    ]
    engine.enqueue(["A summary of nothing."] * 2)
    for r in (
        await compact_raw(app, {"model": CHAT_MODEL, "input": history}),
        await post(
            app, {"model": CHAT_MODEL, "input": [*history, {"type": "compaction_trigger"}], "truncation": "auto"}
        ),
    ):
        assert r.status_code == 400 and r.json()["error"]["code"] == "context_length_exceeded", r.text
        validate("ErrorResponse", r.json())
    assert not engine.generations  # no model was asked to summarize what it could not read


# ------------------------------------------------------------------------------ compaction_trigger (Codex's remote v2)

TOOL_HISTORY: list[dict[str, Any]] = [
    {"role": "user", "content": "Weather in Oslo?"},
    {"type": "function_call", "call_id": "call_1", "name": "get_weather", "arguments": '{"city": "Oslo"}'},
    {"type": "function_call_output", "call_id": "call_1", "output": '{"sky": "snow"}'},
    {"role": "assistant", "content": "It snows in Oslo."},
]


async def test_a_streamed_compaction_trigger_answers_with_one_compaction_item(
    remote: FastAPI, fakes: dict[str, FakeProvider]
) -> None:
    """As Codex CLI's remote compaction asks: the history, then `compaction_trigger`, streamed; exactly one
    compaction item comes back, then `response.completed`."""
    body = {
        "model": "alpha/m",
        "instructions": "You are a weather bot.",
        "input": [*TOOL_HISTORY, {"type": "compaction_trigger"}],
        "tools": [WEATHER],
        "store": False,
    }
    events = await raw_events(remote, body, TEAM_KEY)
    assert kinds(events) == [
        "response.created",
        "response.in_progress",
        "response.output_item.added",
        "response.output_item.done",
        "response.completed",
    ]
    done = events[3]["item"]
    assert done["type"] == "compaction" and unseal(done["encrypted_content"]).summary == "It is sunny."
    assert events[-1]["response"]["output"] == [done] and events[-1]["response"]["usage"]["output_tokens"] > 0
    sent = fakes["alpha"].requests[-1].body
    assert sent["messages"][-1]["content"] == PROMPT and sent["tool_choice"] == "none"
    assert [m["role"] for m in sent["messages"]] == ["system", "user", "assistant", "tool", "assistant", "user"]


async def test_a_whole_compaction_trigger_and_what_the_chain_after_it_sends(
    remote: FastAPI, fakes: dict[str, FakeProvider]
) -> None:
    client = sdk(remote, TEAM_KEY)
    raw = await post(remote, {"model": "alpha/m", "input": [*TOOL_HISTORY, {"type": "compaction_trigger"}]}, TEAM_KEY)
    assert raw.status_code == 200, raw.text
    validate("Response", raw.json())
    compacted = raw.json()
    assert [i["type"] for i in compacted["output"]] == ["compaction"]
    items = await client.responses.input_items.with_raw_response.list(compacted["id"], order="asc")
    assert "compaction_trigger" not in [i["type"] for i in json.loads(items.content)["data"]]  # a control, not kept
    await client.responses.create(model="alpha/m", input="And Bergen?", previous_response_id=compacted["id"])
    messages = fakes["alpha"].requests[-1].body["messages"]
    # Past the compaction only the user's messages before it: the tool turns are in its summary.
    assert [m["role"] for m in messages] == ["user", "user", "user"]
    assert [text_of(m["content"]) for m in messages] == [
        "Weather in Oslo?",
        SUMMARY_HEADER + "It is sunny.",
        "And Bergen?",
    ]


async def test_a_history_with_a_compaction_appended_sends_only_what_it_did_not_replace(
    remote: FastAPI, fakes: dict[str, FakeProvider]
) -> None:
    """Stateless chaining: the client appends the compaction to the whole history and goes on."""
    item = {"type": "compaction", "encrypted_content": seal("Oslo: snow.")}
    given = [*TOOL_HISTORY, item, {"role": "assistant", "content": "Noted."}, {"role": "user", "content": "Bergen?"}]
    client = sdk(remote, TEAM_KEY)
    await client.responses.create(model="alpha/m", input=given, tools=[WEATHER], store=False)  # type: ignore[arg-type,list-item]
    messages = fakes["alpha"].requests[-1].body["messages"]
    assert [m["role"] for m in messages] == ["user", "user", "assistant", "user"]
    assert text_of(messages[1]["content"]) == SUMMARY_HEADER + "Oslo: snow."
    whole = await client.responses.input_tokens.count(model="alpha/m", input=TOOL_HISTORY + given[-2:])  # type: ignore[arg-type]
    after = await client.responses.input_tokens.count(model="alpha/m", input=given)  # type: ignore[arg-type]
    assert after.input_tokens < whole.input_tokens


async def test_instructions_a_client_puts_before_the_compaction_still_reach_the_route(
    remote: FastAPI, fakes: dict[str, FakeProvider]
) -> None:
    """Codex rebuilds its history after a remote compaction as the compaction's user messages with its own
    instructions (a `developer` message) and environment put before the last of them, the compaction item last,
    as OpenAI reads them; the next turn sends that, then its input. The instructions were dropped with the
    turns the summary replaced: every turn after a compaction ran without Codex's permissions and rules."""
    client = sdk(remote, TEAM_KEY)
    raw = await post(remote, {"model": "alpha/m", "input": [*TOOL_HISTORY, {"type": "compaction_trigger"}]}, TEAM_KEY)
    [item] = raw.json()["output"]
    rules = {"role": "developer", "content": "Sandbox: read-only. Never run rm."}
    history = [*TOOL_HISTORY[:1], rules, {"role": "user", "content": "<environment_context/>"}, item]
    await client.responses.create(model="alpha/m", input=[*history, {"role": "user", "content": "Go on."}])  # type: ignore[arg-type]
    messages = fakes["alpha"].requests[-1].body["messages"]
    assert [(m["role"], text_of(m["content"])) for m in messages] == [
        ("user", "Weather in Oslo?"),
        ("system", "Sandbox: read-only. Never run rm."),
        ("user", "<environment_context/>"),
        ("user", SUMMARY_HEADER + "It is sunny."),
        ("user", "Go on."),
    ]


async def test_a_compaction_trigger_that_isnt_last_is_a_400(remote: FastAPI, fakes: dict[str, FakeProvider]) -> None:
    body = {"model": "alpha/m", "input": [{"type": "compaction_trigger"}, {"role": "user", "content": "hi"}]}
    r = await post(remote, body, TEAM_KEY)
    assert r.status_code == 400 and r.json()["error"]["param"] == "input[0]", r.text
    # Alone, with nothing before it to compact: a billed model call "summarized" nothing into a 200.
    r = await post(
        remote, {"model": "alpha/m", "input": [{"type": "compaction_trigger"}], "instructions": "Hi."}, TEAM_KEY
    )
    assert r.status_code == 400 and r.json()["error"]["code"] == "missing_required_parameter", r.text
    assert not fakes["alpha"].requests
    r = await compact_raw(remote, {"model": "alpha/m", "input": [{"type": "compaction_trigger"}]}, TEAM_KEY)
    assert r.status_code == 400 and r.json()["error"]["param"] == "input[0].type", r.text
