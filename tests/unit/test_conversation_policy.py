"""Conversations' pure parts (their policy, the `conversation` field) and their disk store, on real temporary dirs."""

from __future__ import annotations

import time
from pathlib import Path

import pytest

from orchestrator.errors import InvalidRequest, NotFound
from orchestrator.frontdoors.openai import parse_body
from orchestrator.frontdoors.responses.conversation_store import Conversation, DiskConversations, Limits, Refused
from orchestrator.frontdoors.responses.conversations import (
    CreateConversationBody,
    ItemsBody,
    check_include,
    check_room,
    conversation_items,
    refusal,
)
from orchestrator.frontdoors.responses.response_object import response_object
from orchestrator.frontdoors.responses.translate import Turn
from orchestrator.frontdoors.responses.wire import TAGS, ResponsesRequest
from orchestrator.protocol import ChatCompletionRequest

TEAM, OTHER = "key:team", "key:other"
ROOM = Limits(max_items=4, max_bytes=1 << 20)


def msg(item_id: str, text: str = "hi") -> dict[str, object]:
    return {"id": item_id, "type": "message", "role": "user", "content": [{"type": "input_text", "text": text}]}


@pytest.fixture
def disk(tmp_path: Path) -> DiskConversations:
    disk = DiskConversations(tmp_path)
    disk.create(Conversation(TEAM, "conv_1", 100, {"a": "b"}, [msg("m1")]))
    return disk


# ------------------------------------------------------------------------------ the store


def test_an_item_added_or_removed_is_written_alone_not_the_conversation(
    disk: DiskConversations, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Adding and removing items costs no tokens, and every key's conversations share one store: a change
    writes the item and the list of ids, never the conversation's other items again (a 16 MB conversation
    rewritten whole held the store 0.3 s a call)."""
    import diskcache

    disk.append(TEAM, "conv_1", [msg(f"big{i}", "y" * 10_000) for i in range(50)], None)  # 500 kB
    written: list[int] = []
    real = diskcache.Cache.set

    def counted(cache: diskcache.Cache, key: str, value: str, *args: object, **kwargs: object) -> bool:
        written.append(len(value))
        return bool(real(cache, key, value, *args, **kwargs))  # type: ignore[arg-type]

    monkeypatch.setattr(diskcache.Cache, "set", counted)
    assert not isinstance(disk.append(TEAM, "conv_1", [msg("m2")], ROOM_BIG), Refused)
    assert not isinstance(disk.delete_item(TEAM, "conv_1", "big7"), Refused)
    assert 0 < sum(written) < 5_000  # the new item, and the ids and sizes twice
    found = disk.get(TEAM, "conv_1")
    kept = ["m1", *(f"big{i}" for i in range(50) if i != 7), "m2"]
    assert found is not None and [i["id"] for i in found.items] == kept


ROOM_BIG = Limits(max_items=100, max_bytes=1 << 20)


def test_another_tenants_conversation_is_not_there(disk: DiskConversations) -> None:
    assert disk.get(TEAM, "conv_1") is not None
    assert disk.get(OTHER, "conv_1") is None
    assert disk.update(OTHER, "conv_1", {"x": "y"}) is None
    assert disk.append(OTHER, "conv_1", [msg("m2")], ROOM) == Refused("missing")
    assert disk.delete_item(OTHER, "conv_1", "m1") == Refused("missing")
    assert disk.delete(OTHER, "conv_1") is False
    kept = disk.get(TEAM, "conv_1")
    assert kept is not None and kept.metadata == {"a": "b"} and [i["id"] for i in kept.items] == ["m1"]


def test_changes_return_the_resource_and_keep_the_items(disk: DiskConversations) -> None:
    updated = disk.update(TEAM, "conv_1", {"c": "d"})
    assert updated is not None and updated.resource() == {
        "id": "conv_1",
        "object": "conversation",
        "created_at": 100,
        "metadata": {"c": "d"},
    }
    assert disk.append(TEAM, "conv_1", [msg("m2"), msg("m3")], ROOM) == Conversation(TEAM, "conv_1", 100, {"c": "d"})
    assert disk.delete_item(TEAM, "conv_1", "m2") == Conversation(TEAM, "conv_1", 100, {"c": "d"})
    assert disk.delete_item(TEAM, "conv_1", "m2") == Refused("missing_item")
    found = disk.get(TEAM, "conv_1")
    assert found is not None and [i["id"] for i in found.items] == ["m1", "m3"]
    assert disk.delete(TEAM, "conv_1") is True and disk.get(TEAM, "conv_1") is None
    assert disk.append(TEAM, "conv_1", [msg("m4")], ROOM) == Refused("missing")


def test_an_append_past_the_limits_or_repeating_an_id_adds_nothing(disk: DiskConversations) -> None:
    assert disk.append(TEAM, "conv_1", [msg(f"n{i}") for i in range(4)], ROOM) == Refused("full", "at most 4 items")
    assert disk.append(TEAM, "conv_1", [msg("n1"), msg("m1")], ROOM) == Refused("duplicate", "m1")
    tight = Limits(max_items=100, max_bytes=400)
    too_big = disk.append(TEAM, "conv_1", [msg("n1", "x" * 400)], tight)
    assert isinstance(too_big, Refused) and too_big.reason == "full" and too_big.detail.endswith("MB of items")
    found = disk.get(TEAM, "conv_1")
    assert found is not None and [i["id"] for i in found.items] == ["m1"]
    # A response's output (no limits: its request's were checked) still goes in.
    assert isinstance(disk.append(TEAM, "conv_1", [msg(f"n{i}") for i in range(9)], None), Conversation)


def test_a_conversation_lives_its_ttl_from_its_last_change(tmp_path: Path) -> None:
    disk = DiskConversations(tmp_path, ttl_s=0.3)
    disk.create(Conversation(TEAM, "conv_1", 100, {}))
    time.sleep(0.2)
    disk.append(TEAM, "conv_1", [msg("m1")], ROOM)
    time.sleep(0.2)
    assert disk.get(TEAM, "conv_1") is not None  # 0.4 s after it was made, 0.2 s after its last change
    time.sleep(0.3)
    assert disk.get(TEAM, "conv_1") is None


# ------------------------------------------------------------------------------ the policy


def test_added_items_get_ids_and_the_shape_they_are_listed_in() -> None:
    body = parse_body(
        b'{"items": [{"role": "user", "content": "hi"}, {"type": "message", "role": "assistant", "content": "yo"},'
        b' {"type": "function_call", "call_id": "c1", "name": "f", "arguments": "{}"},'
        b' {"type": "function_call_output", "call_id": "c1", "output": "ok"},'
        b' {"type": "reasoning", "summary": []}]}',
        ItemsBody,
        tags=TAGS,
    )
    items = conversation_items(body.items)
    assert [i["id"].split("_")[0] for i in items] == ["msg", "msg", "fc", "fco", "rs"]
    assert items[0]["content"] == [{"type": "input_text", "text": "hi"}]
    assert items[1]["content"] == [{"type": "output_text", "text": "yo", "annotations": [], "logprobs": []}]
    with pytest.raises(InvalidRequest, match="Duplicate item found with id m1"):
        conversation_items(parse_body(b'{"items": [%s, %s]}' % (_raw("m1"), _raw("m1")), ItemsBody, tags=TAGS).items)


def _raw(item_id: str) -> bytes:
    return b'{"id": "%s", "role": "user", "content": "hi"}' % item_id.encode()


@pytest.mark.parametrize(
    ("body", "param"),
    [
        (b'{"items": [%s]}' % b",".join(_raw(f"m{i}") for i in range(21)), "items"),
        (b'{"items": [{"type": "item_reference", "id": "m1"}]}', "items[0].type"),
        (b'{"items": [{"type": "web_search_call", "id": "ws"}]}', "items[0].type"),
        (b'{"metadata": {%s}}' % b",".join(b'"k%d": "v"' % i for i in range(17)), "metadata"),
        (b'{"metadata": {"k": 5}}', "metadata.k"),
    ],
)
def test_what_a_create_may_not_hold(body: bytes, param: str) -> None:
    with pytest.raises(InvalidRequest) as refused:
        parse_body(body, CreateConversationBody, tags=TAGS)
    assert refused.value.param == param


def test_room_is_checked_before_a_model_is_asked() -> None:
    conversation = Conversation(TEAM, "conv_1", 0, {}, [msg("m1"), msg("m2")])
    check_room(conversation, [msg("m3"), msg("m4")], ROOM)
    with pytest.raises(InvalidRequest, match="at most 4 items") as full:
        check_room(conversation, [msg("m3"), msg("m4"), msg("m5")], ROOM)
    assert full.value.code == "conversation_too_large"
    with pytest.raises(InvalidRequest, match="Duplicate item found with id m2"):
        check_room(conversation, [msg("m2")], ROOM)
    tight = Limits(max_items=100, max_bytes=600)
    check_room(conversation, [msg("m3")], tight)
    with pytest.raises(InvalidRequest, match="at most 0.000572205 MB of items") as big:
        check_room(conversation, [msg("m3", "y" * 400)], tight)  # in bytes, as the store counts them
    assert big.value.code == "conversation_too_large"


def test_refusals_are_openais_errors() -> None:
    assert isinstance(refusal(Refused("missing"), "conv_1"), NotFound)
    assert refusal(Refused("missing"), "conv_1").message == "Conversation with id 'conv_1' not found."
    assert refusal(Refused("missing_item"), "conv_1", "m9").message == "Item with id 'm9' not found."
    assert refusal(Refused("duplicate", "m1"), "conv_1").status_code == 400
    assert refusal(Refused("full", "at most 4 items"), "conv_1").code == "conversation_too_large"
    check_include(["message.output_text.logprobs", "reasoning.encrypted_content"])
    with pytest.raises(InvalidRequest):
        check_include(["everything"])


# ------------------------------------------------------------------------------ `conversation` on a response


def request(**fields: object) -> ResponsesRequest:
    return ResponsesRequest.model_validate({"model": "m", "input": "hi", **fields})


def test_a_response_names_its_conversation_by_id_or_object() -> None:
    assert request(conversation="conv_1").conversation_id() == "conv_1"
    assert request(conversation={"id": "conv_2"}).conversation_id() == "conv_2"
    assert request().conversation_id() is None
    with pytest.raises(InvalidRequest, match="Expected an ID that begins with 'conv'") as bad:
        request(conversation="resp_1").conversation_id()
    assert bad.value.param == "conversation"


def test_conversation_and_previous_response_id_exclude_each_other() -> None:
    with pytest.raises(InvalidRequest) as both:
        request(conversation="conv_1", previous_response_id="resp_1")
    assert both.value.code == "mutually_exclusive_parameters" and both.value.param is None


def test_the_response_echoes_its_conversation() -> None:
    turn = Turn.of(request(conversation="conv_1"), TEAM, [], "conv_1")
    assert response_object(turn, "m", output=[], status="completed")["conversation"] == {"id": "conv_1"}
    alone = Turn.of(request(), TEAM, [])
    assert "conversation" not in response_object(alone, "m", output=[], status="completed")


@pytest.mark.parametrize(
    ("conversation", "param", "code"),
    [
        ({}, "conversation.id", "missing_required_parameter"),
        ({"id": 5}, "conversation.id", "invalid_value"),
        (5, "conversation", "invalid_value"),
        ("resp_1", "conversation", "invalid_value"),
    ],
)
def test_a_bad_conversation_field_names_itself(conversation: object, param: str, code: str) -> None:
    """As the field is named in the request, not as the gateway's model of it (`conversation.ConversationRef.id`)."""
    import json

    body = json.dumps({"model": "m", "input": "hi", "conversation": conversation}).encode()
    with pytest.raises(InvalidRequest) as e:
        parse_body(body, ResponsesRequest, tags=TAGS).conversation_id()
    assert (e.value.param, e.value.code) == (param, code)


def test_a_long_key_or_type_of_the_clients_is_not_echoed_whole() -> None:
    """A field's path names the client's own keys (a `logit_bias` token, an unknown field): a megabyte of one was
    shown twice in the error (message and param); an input item's unknown type once, whole."""
    key = "k" * 1_000_000
    chat = b'{"model": "m", "messages": [{"role": "user", "content": "x"}], "logit_bias": {"%s": "x"}}'
    with pytest.raises(InvalidRequest) as raised:
        parse_body(chat % key.encode(), ChatCompletionRequest)
    assert raised.value.param == "logit_bias." + "k" * 189 and len(str(raised.value)) < 400
    with pytest.raises(InvalidRequest) as raised:
        parse_body(b'{"model": "m", "input": [{"type": "%s"}]}' % key.encode(), ResponsesRequest, tags=TAGS)
    assert raised.value.param == "input[0].type" and len(str(raised.value)) < 300
