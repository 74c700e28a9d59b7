"""OpenAI's Conversations API through the official openai SDK and the Agents SDK, against the in-process app.

Remote turns go to the fake providers of `two_fakes` ("alpha" speaks OpenAI's chat
wire format, "claude" Anthropic's; both reply "It is sunny."), local ones to the
fake engine ("local-chat"). Every body is held to the shared OpenAPI spec; what a
provider was sent is read from its recorder.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import httpx
import httpx2
import openai
import pytest
from fastapi import FastAPI
from openai_schema import validate
from two_fakes import OTHER_KEY, TEAM_KEY, gateway, heal
from two_fakes import fakes_fixture as fakes_fixture

from orchestrator.frontdoors.responses import DiskConversations, InProcessConversations, Limits
from orchestrator.testing.provider import FakeProvider

SAID = "It is sunny."  # what both fakes answer


@pytest.fixture
async def app(fakes: dict[str, FakeProvider], tmp_path: Path) -> AsyncIterator[FastAPI]:
    heal(fakes)
    async with gateway(fakes, tmp_path) as a:
        yield a


def sdk(app: FastAPI, api_key: str = TEAM_KEY) -> openai.AsyncOpenAI:
    http = httpx2.AsyncClient(transport=httpx2.ASGITransport(app=app), base_url="http://t")
    return openai.AsyncOpenAI(api_key=api_key, base_url="http://t/v1", http_client=http, max_retries=0)


def raw(app: FastAPI, api_key: str = TEAM_KEY) -> httpx.AsyncClient:
    return httpx.AsyncClient(
        transport=httpx.ASGITransport(app=app), base_url="http://t", headers={"Authorization": f"Bearer {api_key}"}
    )


def user(text: str) -> dict[str, Any]:
    return {"type": "message", "role": "user", "content": [{"type": "input_text", "text": text}]}


def texts(messages: list[dict[str, Any]]) -> list[str]:
    """Every text a chat request's messages carry, in order."""
    out = []
    for m in messages:
        content = m.get("content")
        parts = [content] if isinstance(content, str) else [p.get("text", "") for p in content or []]
        out += [p for p in parts if p]
    return out


# ------------------------------------------------------------------------------ the resource and its items


async def test_a_conversation_and_its_items_through_the_sdk(app: FastAPI) -> None:
    client = sdk(app)
    created = await client.conversations.with_raw_response.create(
        items=[user("Hello."), {"role": "assistant", "content": "Hi!"}], metadata={"topic": "greetings"}
    )
    validate("ConversationResource", json.loads(created.content))
    conv = created.parse()
    assert conv.id.startswith("conv_") and conv.object == "conversation" and conv.metadata == {"topic": "greetings"}
    assert (await client.conversations.retrieve(conv.id)).model_dump() == conv.model_dump()

    updated = await client.conversations.update(conv.id, metadata={"topic": "weather"})
    assert updated.id == conv.id and updated.metadata == {"topic": "weather"}
    assert (await client.conversations.retrieve(conv.id)).metadata == {"topic": "weather"}

    async with raw(app) as http:
        listed = (await http.get(f"/v1/conversations/{conv.id}/items", params={"order": "asc"})).json()
    validate("ConversationItemList", listed)
    assert [(i["role"], i["content"][0]["text"]) for i in listed["data"]] == [("user", "Hello."), ("assistant", "Hi!")]
    assert listed["data"][1]["content"][0]["type"] == "output_text"  # an assistant's text is output text
    assert listed["first_id"] == listed["data"][0]["id"] and listed["has_more"] is False

    added = await client.conversations.items.with_raw_response.create(conv.id, items=[user("Sunny?")])
    validate("ConversationItemList", json.loads(added.content))
    [new] = added.parse().data
    assert new.type == "message" and new.id
    got = await client.conversations.items.retrieve(new.id, conversation_id=conv.id)
    assert got.model_dump() == new.model_dump()

    left = await client.conversations.items.with_raw_response.delete(new.id, conversation_id=conv.id)
    validate("ConversationResource", json.loads(left.content))
    assert left.parse().id == conv.id
    assert [i.id async for i in client.conversations.items.list(conv.id)] == [i["id"] for i in listed["data"]][::-1]

    deleted = await client.conversations.with_raw_response.delete(conv.id)
    validate("DeletedConversationResource", json.loads(deleted.content))
    assert deleted.parse().deleted is True and deleted.parse().object == "conversation.deleted"
    with pytest.raises(openai.NotFoundError) as gone:
        await client.conversations.retrieve(conv.id)
    assert gone.value.body == {  # type: ignore[comparison-overlap]
        "message": f"Conversation with id '{conv.id}' not found.",
        "type": "invalid_request_error",
        "param": None,
        "code": "not_found",
    }


async def test_another_key_sees_nothing_of_a_conversation(app: FastAPI, fakes: dict[str, FakeProvider]) -> None:
    team, other = sdk(app), sdk(app, OTHER_KEY)
    conv = await team.conversations.create(items=[user("secret")], metadata={"owner": "team"})
    [item] = [i async for i in team.conversations.items.list(conv.id)]
    attempts = [
        lambda: other.conversations.retrieve(conv.id),
        lambda: other.conversations.update(conv.id, metadata={"owner": "other"}),
        lambda: other.conversations.delete(conv.id),
        lambda: other.conversations.items.list(conv.id),
        lambda: other.conversations.items.create(conv.id, items=[user("mine now")]),
        lambda: other.conversations.items.retrieve(item.id, conversation_id=conv.id),
        lambda: other.conversations.items.delete(item.id, conversation_id=conv.id),
        lambda: other.responses.create(model="alpha/m", input="what was the secret?", conversation=conv.id),
    ]
    asked = fakes["alpha"].counts["total"]
    for attempt in attempts:
        with pytest.raises(openai.NotFoundError) as refused:
            await attempt()
        assert f"Conversation with id '{conv.id}' not found." in str(refused.value)
    assert fakes["alpha"].counts["total"] == asked  # no model was asked
    # Untouched for its owner.
    assert (await team.conversations.retrieve(conv.id)).metadata == {"owner": "team"}
    assert [i.id async for i in team.conversations.items.list(conv.id)] == [item.id]


async def test_unknown_conversations_and_items_are_404s_and_bad_ids_400s(app: FastAPI) -> None:
    client = sdk(app)
    with pytest.raises(openai.NotFoundError):
        await client.conversations.retrieve("conv_" + "0" * 32)
    conv = await client.conversations.create()
    with pytest.raises(openai.NotFoundError, match="Item with id 'msg_nope' not found."):
        await client.conversations.items.retrieve("msg_nope", conversation_id=conv.id)
    with pytest.raises(openai.NotFoundError, match="Item with id 'msg_nope' not found."):
        await client.conversations.items.delete("msg_nope", conversation_id=conv.id)
    with pytest.raises(openai.BadRequestError) as bad:
        await client.conversations.retrieve("thread_1")
    assert bad.value.body == {  # type: ignore[comparison-overlap]
        "message": "Invalid 'conversation_id': 'thread_1'. Expected an ID that begins with 'conv'.",
        "type": "invalid_request_error",
        "param": "conversation_id",
        "code": "invalid_value",
    }
    with pytest.raises(openai.BadRequestError, match="Expected an ID that begins with 'conv'"):
        await client.responses.create(model="alpha/m", input="hi", conversation="thread_1")


async def test_what_a_client_sends_is_bounded_with_400s(app: FastAPI) -> None:
    client = sdk(app)
    conv = await client.conversations.create()
    twice = [user("a") | {"id": "m1"}, user("b") | {"id": "m1"}]
    reference = [{"type": "item_reference", "id": "msg_1"}]
    refusals: list[tuple[Any, str]] = [
        (lambda: client.conversations.create(items=[user(str(i)) for i in range(21)]), "items"),
        (lambda: client.conversations.items.create(conv.id, items=[user(str(i)) for i in range(21)]), "items"),
        (lambda: client.conversations.create(metadata={f"k{i}": "v" for i in range(17)}), "metadata"),
        (lambda: client.conversations.update(conv.id, metadata={"k" * 65: "v"}), "metadata"),
        (lambda: client.conversations.update(conv.id, metadata={"k": "v" * 513}), "metadata"),
        (lambda: client.conversations.items.create(conv.id, items=reference), "items[0].type"),  # type: ignore[arg-type]
        (lambda: client.conversations.items.create(conv.id, items=twice), "items"),  # type: ignore[arg-type]
        (lambda: client.conversations.items.list(conv.id, limit=0), "limit"),
        (lambda: client.conversations.items.list(conv.id, limit=101), "limit"),
        (lambda: client.conversations.items.list(conv.id, include=["everything"]), "include[0]"),  # type: ignore[list-item]
        (lambda: client.conversations.items.list(conv.id, after="msg_nope"), "after"),
    ]
    for request, param in refusals:
        with pytest.raises(openai.BadRequestError) as refused:
            await request()
        assert refused.value.status_code == 400 and refused.value.param == param, (param, refused.value)
    async with raw(app) as http:
        for bad in (b"[]", b"{", b'{"metadata": 5}', b'{"items": "hi"}'):
            r = await http.post("/v1/conversations", content=bad, headers={"content-type": "application/json"})
            assert r.status_code == 400, r.text
            validate("ErrorResponse", r.json())
        big = {"items": [user("x" * (9 << 20))]}
        assert (await http.post(f"/v1/conversations/{conv.id}/items", json=big)).status_code == 413
        r = await http.get(f"/v1/conversations/{conv.id}/items", params={"order": "sideways"})
        assert r.status_code == 400 and r.json()["error"]["param"] == "order"
    assert [i async for i in client.conversations.items.list(conv.id)] == []  # nothing refused was added


async def test_a_full_conversation_is_a_400_before_any_model_is_asked(
    fakes: dict[str, FakeProvider], tmp_path: Path
) -> None:
    heal(fakes)
    async with gateway(fakes, tmp_path, conversation_room=Limits(max_items=3, max_bytes=4096)) as app:
        client = sdk(app)
        conv = await client.conversations.create(items=[user("one")])
        first = await client.responses.create(model="alpha/m", input="two", conversation=conv.id)  # 3 items now
        assert first.output_text == SAID
        asked = fakes["alpha"].counts["total"]
        for refused in (
            lambda: client.responses.create(model="alpha/m", input="three", conversation=conv.id),
            lambda: client.conversations.items.create(conv.id, items=[user("three")]),
        ):
            with pytest.raises(openai.BadRequestError, match="at most 3 items") as full:
                await refused()
            assert full.value.code == "conversation_too_large"
        assert fakes["alpha"].counts["total"] == asked
        with pytest.raises(openai.BadRequestError, match="at most 0.00390625 MB"):
            await client.conversations.create(items=[user("y" * 5000)])


async def test_a_turn_past_the_conversations_size_is_a_400_before_any_model_is_asked(
    fakes: dict[str, FakeProvider], tmp_path: Path
) -> None:
    """`max_mb` holds for a response's turn as for added items (a turn's input went in whatever its size: a
    conversation grew past its limit by turns, as far as the body limit and `max_items` let it)."""
    heal(fakes)
    async with gateway(fakes, tmp_path, conversation_room=Limits(max_items=100, max_bytes=4096)) as app:
        client = sdk(app)
        conv = await client.conversations.create(items=[user("one")])
        with pytest.raises(openai.BadRequestError, match="at most 0.00390625 MB") as full:
            await client.responses.create(model="alpha/m", input="y" * 5000, conversation=conv.id)
        assert full.value.code == "conversation_too_large" and full.value.param == "items"
        assert fakes["alpha"].counts["total"] == 0
        assert len([i async for i in client.conversations.items.list(conv.id)]) == 1
        small = await client.responses.create(model="alpha/m", input="two", conversation=conv.id)
        assert small.output_text == SAID


async def test_turns_at_once_never_grow_a_conversation_past_its_limits(
    fakes: dict[str, FakeProvider], tmp_path: Path
) -> None:
    """Two turns asked at once each find room for themselves; the one that completes second finds it
    taken and its items stay out (both were answered): a conversation never holds more than
    `max_items` (each turn's items went in unchecked, so N turns at once passed the limit N-fold)."""
    heal(fakes)
    async with gateway(fakes, tmp_path, conversation_room=Limits(max_items=3, max_bytes=1 << 20)) as app:
        client = sdk(app)
        conv = await client.conversations.create(items=[user("one")])
        answers = await asyncio.gather(
            *(client.responses.create(model="alpha/m", input=f"turn {i}", conversation=conv.id) for i in range(2))
        )
        assert [a.output_text for a in answers] == [SAID, SAID]
        items = [i async for i in client.conversations.items.list(conv.id, order="asc")]
        assert len(items) == 3


async def test_items_come_in_pages(app: FastAPI) -> None:
    client = sdk(app)
    conv = await client.conversations.create(items=[user(f"m{i}") for i in range(20)])
    await client.conversations.items.create(conv.id, items=[user(f"m{i}") for i in range(20, 25)])
    everything = [i async for i in client.conversations.items.list(conv.id, order="asc", limit=10)]  # 3 pages
    assert [i.content[0].text for i in everything] == [f"m{i}" for i in range(25)]  # type: ignore[union-attr]
    async with raw(app) as http:
        page = (await http.get(f"/v1/conversations/{conv.id}/items", params={"limit": 10})).json()
        validate("ConversationItemList", page)
        assert [i["content"][0]["text"] for i in page["data"]] == [f"m{i}" for i in range(24, 14, -1)]
        assert page["has_more"] is True and page["last_id"] == page["data"][-1]["id"]
        after = {"limit": 10, "after": page["last_id"]}
        rest = (await http.get(f"/v1/conversations/{conv.id}/items", params=after)).json()
        assert rest["data"][0]["content"][0]["text"] == "m14"


# ------------------------------------------------------------------------------ responses in a conversation


@pytest.mark.parametrize("model", ["alpha/m", "claude/haiku"])
async def test_the_second_turn_is_asked_with_the_first(
    app: FastAPI, fakes: dict[str, FakeProvider], model: str
) -> None:
    client = sdk(app)
    conv = await client.conversations.create(items=[{"role": "developer", "content": "Be brief."}])
    first = await client.responses.with_raw_response.create(model=model, input="My name is Ada.", conversation=conv.id)
    validate("Response", json.loads(first.content))
    one = first.parse()
    assert one.conversation is not None and one.conversation.id == conv.id and one.output_text == SAID
    two = await client.responses.create(model=model, input="What is my name?", conversation={"id": conv.id})
    assert two.conversation is not None and two.conversation.id == conv.id
    fake = fakes[model.split("/")[0]]
    sent = fake.requests[-1].body
    system = sent.get("system")  # Anthropic's, for "claude"
    said = texts(sent["messages"]) + ([system] if isinstance(system, str) else texts([{"content": system}]))
    for earlier in ("Be brief.", "My name is Ada.", SAID, "What is my name?"):
        assert earlier in said, (earlier, sent)
    items = [i async for i in client.conversations.items.list(conv.id, order="asc")]
    assert [i.type for i in items] == ["message"] * 5
    assert [i.role for i in items] == ["developer", "user", "assistant", "user", "assistant"]  # type: ignore[union-attr]
    assert items[2].id == one.output[0].id and items[4].id == two.output[0].id  # the output items as they were


async def test_a_local_route_answers_in_a_conversation(app: FastAPI) -> None:
    client = sdk(app)
    conv = await client.conversations.create()
    one = await client.responses.create(model="local-chat", input="first turn", conversation=conv.id)
    two = await client.responses.create(model="local-chat", input="second turn", conversation=conv.id)
    assert one.output_text == "first turn" and two.output_text == "second turn"  # the fake parrots the last turn
    assert two.usage is not None and one.usage is not None and two.usage.input_tokens > one.usage.input_tokens
    assert len([i async for i in client.conversations.items.list(conv.id)]) == 4


async def test_without_store_the_response_is_not_kept_but_the_conversation_grows(app: FastAPI) -> None:
    client = sdk(app)
    conv = await client.conversations.create()
    reply = await client.responses.create(model="alpha/m", input="hi", conversation=conv.id, store=False)
    assert reply.conversation is not None and reply.store is False
    with pytest.raises(openai.NotFoundError):
        await client.responses.retrieve(reply.id)
    assert [i.id async for i in client.conversations.items.list(conv.id, order="asc")][1] == reply.output[0].id


async def test_conversation_with_previous_response_id_is_a_400(app: FastAPI) -> None:
    client = sdk(app)
    conv = await client.conversations.create()
    earlier = await client.responses.create(model="alpha/m", input="hi")
    with pytest.raises(openai.BadRequestError) as refused:
        await client.responses.create(
            model="alpha/m", input="again", conversation=conv.id, previous_response_id=earlier.id
        )
    assert refused.value.body == {  # type: ignore[comparison-overlap]
        "message": "Mutually exclusive parameters. Ensure you are only providing one of: 'previous_response_id' or "
        "'conversation'.",
        "type": "invalid_request_error",
        "param": None,
        "code": "mutually_exclusive_parameters",
    }


async def test_an_input_item_already_in_the_conversation_is_a_400(app: FastAPI) -> None:
    client = sdk(app)
    conv = await client.conversations.create(items=[user("once") | {"id": "msg_once"}])
    with pytest.raises(openai.BadRequestError, match="Duplicate item found with id msg_once"):
        await client.responses.create(model="alpha/m", input=[user("once") | {"id": "msg_once"}], conversation=conv.id)


@pytest.mark.parametrize("model", ["alpha/m", "local-chat"])
async def test_a_streamed_response_joins_its_conversation(
    app: FastAPI, fakes: dict[str, FakeProvider], model: str
) -> None:
    client = sdk(app)
    conv = await client.conversations.create()
    async with client.responses.stream(model=model, input="stream one", conversation=conv.id) as stream:
        events = [e async for e in stream]
        final = await stream.get_final_response()
    assert events[0].type == "response.created" and events[0].response.conversation is not None
    validate("Response", final.model_dump(mode="json", exclude_unset=True))
    assert final.conversation is not None and final.conversation.id == conv.id
    items = [i async for i in client.conversations.items.list(conv.id, order="asc")]
    assert [i.id for i in items] == [items[0].id, final.output[0].id]  # listed at once: kept before completed
    if model == "alpha/m":
        await client.responses.create(model=model, input="and then", conversation=conv.id, stream=False)
        assert "stream one" in texts(fakes["alpha"].requests[-1].body["messages"])


# ------------------------------------------------------------------------------ the Agents SDK


async def test_the_agents_sdk_keeps_its_session_in_a_conversation(app: FastAPI, fakes: dict[str, FakeProvider]) -> None:
    from agents import Agent, OpenAIConversationsSession, OpenAIResponsesModel, Runner, set_tracing_disabled

    set_tracing_disabled(True)  # nothing leaves the machine
    client = sdk(app)
    agent = Agent(name="weather", instructions="Answer briefly.", model=OpenAIResponsesModel("alpha/m", client))
    session = OpenAIConversationsSession(openai_client=client)
    first = await Runner.run(agent, "My name is Ada.", session=session)
    assert first.final_output == SAID
    second = await Runner.run(agent, "What is my name?", session=session)
    assert second.final_output == SAID
    assert {"My name is Ada.", SAID, "What is my name?"} <= set(texts(fakes["alpha"].requests[-1].body["messages"]))
    history = await session.get_items()
    assert [item.get("role") for item in history] == ["user", "assistant", "user", "assistant"]
    assert (await session.pop_item()) is not None and len(await session.get_items()) == 3
    conversation_id = session.session_id
    await session.clear_session()
    with pytest.raises(openai.NotFoundError):
        await client.conversations.retrieve(conversation_id)


async def test_the_agents_sdk_runs_with_a_conversation_id(app: FastAPI, fakes: dict[str, FakeProvider]) -> None:
    from agents import Agent, OpenAIResponsesModel, Runner, set_tracing_disabled

    set_tracing_disabled(True)
    client = sdk(app)
    agent = Agent(name="weather", instructions="Answer briefly.", model=OpenAIResponsesModel("alpha/m", client))
    conv = await client.conversations.create()
    await Runner.run(agent, "My name is Ada.", conversation_id=conv.id)
    await Runner.run(agent, "What is my name?", conversation_id=conv.id)
    sent = fakes["alpha"].requests[-1].body
    assert texts(sent["messages"]) == ["Answer briefly.", "My name is Ada.", SAID, "What is my name?"]
    assert len([i async for i in client.conversations.items.list(conv.id)]) == 4


async def test_one_key_filling_the_store_never_pushes_out_another_keys_conversation(
    fakes: dict[str, FakeProvider], tmp_path: Path
) -> None:
    """Items cost no tokens to add: one key adding them as fast as it can fills the store's disk. What goes
    then is that key's own oldest, never the conversation of a key that holds less (the store's eviction,
    least recently written of anyone's, took every other key's conversation first)."""
    heal(fakes)
    store = InProcessConversations(DiskConversations(tmp_path / "conversations", size_limit_bytes=300_000))
    async with gateway(fakes, tmp_path, conversations=store) as app:
        other, team = sdk(app, OTHER_KEY), sdk(app)
        kept = await other.conversations.create(items=[user("Remember the milk.")])
        filled = []
        for _ in range(12):  # 12 x 40 kB into 300 kB
            conv = await team.conversations.create()
            await team.conversations.items.create(conv.id, items=[user("y" * 4_000) for _ in range(10)])
            filled.append(conv.id)
        items = [i async for i in other.conversations.items.list(kept.id)]
        assert [i.content[0].text for i in items] == ["Remember the milk."]  # type: ignore[union-attr]
        with pytest.raises(openai.NotFoundError):
            await team.conversations.retrieve(filled[0])  # the filling key's own oldest went
        assert (await team.conversations.retrieve(filled[-1])).id == filled[-1]


# ------------------------------------------------------------------------------ tool and compaction items

SEARCH: dict[str, Any] = {"type": "tool_search", "execution": "client"}
WEATHER: dict[str, Any] = {
    "type": "function",
    "name": "get_weather",
    "parameters": {"type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]},
}
LOADED: dict[str, Any] = {"type": "namespace", "name": "mcp__weather", "description": "Weather.", "tools": [WEATHER]}
APPLY_PATCH: dict[str, Any] = {"type": "custom", "name": "apply_patch", "description": "Edit files."}
PATCH = "*** Begin Patch\n*** Add File: a.txt\n+a\n*** End Patch\n"


async def test_tool_and_compaction_items_are_added_listed_and_read_by_the_next_turn(
    app: FastAPI, fakes: dict[str, FakeProvider]
) -> None:
    """What `/v1/responses` writes into a conversation (a tool search's call and output, a custom tool's call
    and output, a compaction) a client may add too, as it would send them as input: they were a 400. Listed
    in the spec's shapes; the next turn reads them as it reads them as input (the loaded tool offered)."""
    from orchestrator.frontdoors.responses.compaction import seal

    searched = [
        user("Weather in Paris, then add a.txt."),
        {"type": "tool_search_call", "call_id": "call_s", "execution": "client", "arguments": {"query": "weather"}},
        {"type": "tool_search_output", "call_id": "call_s", "execution": "client", "tools": [LOADED]},
    ]
    patched = [
        {"type": "custom_tool_call", "call_id": "call_p", "name": "apply_patch", "input": PATCH},
        {"type": "custom_tool_call_output", "call_id": "call_p", "output": "Done."},
        {"type": "compaction_summary", "encrypted_content": seal("The user wants a.txt added.")},  # Codex's older name
    ]
    async with raw(app) as http:
        created = await http.post("/v1/conversations", json={"items": searched})
        assert created.status_code == 200, created.text
        cid = created.json()["id"]
        added = await http.post(f"/v1/conversations/{cid}/items", json={"items": patched})
        assert added.status_code == 200, added.text
        validate("ConversationItemList", added.json())
        listed = await http.get(f"/v1/conversations/{cid}/items", params={"order": "asc"})
    validate("ConversationItemList", listed.json())
    items = listed.json()["data"]
    assert [i["type"] for i in items] == [
        "message",
        "tool_search_call",
        "tool_search_output",
        "custom_tool_call",
        "custom_tool_call_output",
        "compaction",
    ]
    assert [i["id"][:4] for i in items[1:]] == ["tsc_", "tso_", "ctc_", "ctco", "cmp_"]
    assert items[2]["tools"][0]["tools"][0]["strict"] is None  # as a response echoes a function tool
    assert added.json()["data"] == items[3:]

    client = sdk(app)
    turn = await client.responses.with_raw_response.create(
        model="alpha/m",
        input="Go on.",
        conversation=cid,
        tools=[SEARCH, APPLY_PATCH],  # type: ignore[list-item]
    )
    validate("Response", json.loads(turn.content))
    sent = fakes["alpha"].requests[-1].body
    assert [t["function"]["name"] for t in sent["tools"]] == ["tool_search", "apply_patch", "mcp__weather__get_weather"]
    # Past the compaction a route reads the user's messages before it, the summary, then what came after.
    assert [m["role"] for m in sent["messages"]] == ["user", "user", "user"]
    assert "The user wants a.txt added." in texts(sent["messages"])[1]

    # Before the compaction was added, the tool calls and their results reached the route as a turn's would.
    conv = await client.conversations.create(items=[*searched, *patched[:2]])  # type: ignore[list-item]
    await client.responses.create(model="alpha/m", input="Go on.", conversation=conv.id, tools=[SEARCH, APPLY_PATCH])  # type: ignore[list-item]
    sent = fakes["alpha"].requests[-1].body
    calls = [c["function"] for m in sent["messages"] for c in m.get("tool_calls") or []]
    assert calls == [
        {"name": "tool_search", "arguments": json.dumps({"query": "weather"})},
        {"name": "apply_patch", "arguments": json.dumps({"input": PATCH})},
    ]
    results = [(m["tool_call_id"], m["content"]) for m in sent["messages"] if m["role"] == "tool"]
    assert results[1] == ("call_p", "Done.") and "mcp__weather__get_weather" in results[0][1]


@pytest.mark.parametrize(
    ("items", "param"),
    [
        (
            [{"type": "tool_search_output", "tools": [{"type": "file_search", "vector_store_ids": ["v"]}]}],
            "items[0].tools[0].type",
        ),
        (
            [{"type": "tool_search_output", "tools": [{"type": "namespace", "name": "n", "tools": [WEATHER]}]}],
            "items[0].tools[0].description",
        ),
        ([{"type": "tool_search_output", "tools": [{**WEATHER, "name": "n" * 129}]}], "items[0].tools[0].name"),
        ([{"type": "tool_search_output", "tools": "all of them"}], "items[0].tools"),
        ([{"type": "tool_search_call", "call_id": "c", "arguments": "weather"}], "items[0].arguments"),
        ([{"type": "custom_tool_call", "call_id": "c", "name": "apply_patch"}], "items[0].input"),
        ([{"type": "custom_tool_call", "call_id": "", "name": "apply_patch", "input": "x"}], "items[0].call_id"),
        ([{"type": "custom_tool_call_output", "call_id": "c", "output": 5}], "items[0].output"),
        ([{"type": "compaction", "encrypted_content": "gAAAAABpM0Yj-another-services="}], "items[0].encrypted_content"),
        ([{"type": "compaction", "encrypted_content": "orch-cmp-v1.%%%"}], "items[0].encrypted_content"),
        ([{"type": "compaction"}], "items[0].encrypted_content"),
        ([{"type": "compaction_trigger"}], "items[0].type"),  # a request control, not an item
        (
            [
                user("hi"),
                {"type": "custom_tool_call_output", "call_id": "c", "output": "x", "id": "x" * 5 + "ñ" * 3},
                {"type": "compaction", "encrypted_content": "orch-cmp-v1.e30=", "id": "xxxxxñññ"},
            ],
            "items[2].encrypted_content",
        ),
    ],
)
async def test_a_tool_or_compaction_item_of_the_wrong_shape_is_a_400_naming_it(
    app: FastAPI, items: list[Any], param: str
) -> None:
    async with raw(app) as http:
        conv = (await http.post("/v1/conversations", json={})).json()["id"]
        for path in ("/v1/conversations", f"/v1/conversations/{conv}/items"):
            sent = json.dumps({"items": items})  # a lone surrogate as its escape, as a JSON library sends it
            r = await http.post(path, content=sent, headers={"content-type": "application/json"})
            assert r.status_code == 400, r.text
            validate("ErrorResponse", r.json())
            assert r.json()["error"]["param"] == param, r.json()
        listed = await http.get(f"/v1/conversations/{conv}/items")
    assert listed.json()["data"] == []


async def test_tool_items_of_one_id_are_a_400(app: FastAPI) -> None:
    call = {"type": "custom_tool_call", "call_id": "c", "name": "apply_patch", "input": "x", "id": "ctc_1"}
    async with raw(app) as http:
        r = await http.post("/v1/conversations", json={"items": [call, {**call, "type": "tool_search_call"}]})
        assert r.status_code == 400 and r.json()["error"]["param"] == "items", r.text
        conv = (await http.post("/v1/conversations", json={"items": [call]})).json()["id"]
        again = {"type": "custom_tool_call_output", "call_id": "c", "output": "x", "id": "ctc_1"}
        r = await http.post(f"/v1/conversations/{conv}/items", json={"items": [again]})
        assert r.status_code == 400 and r.json()["error"]["code"] == "invalid_value", r.text
