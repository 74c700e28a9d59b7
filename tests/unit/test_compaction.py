"""A compaction item's sealed summary (and a server-side compaction's user messages, and the tools a search
had loaded): what `seal` makes, `unseal` reads back, and nothing else; and what a route reads past an item
(`compacted`)."""

from __future__ import annotations

import base64
import json
from typing import Any

import pytest

from orchestrator.frontdoors.responses.compaction import (
    SEALED,
    SUMMARY_HEADER,
    Sealed,
    compacted,
    compaction_messages,
    seal,
    unseal,
)


@pytest.mark.parametrize("summary", ["", "Plan: Paris in May.", "😀 ünï \x00 " * 50, "x" * 1_000_000])
def test_a_sealed_summary_reads_back_as_it_was(summary: str) -> None:
    content = seal(summary)
    assert content.startswith(SEALED) and content.isascii()
    assert unseal(content).summary == summary


def test_a_models_lone_surrogate_reads_back_as_a_replacement_character() -> None:
    """No route can be sent a lone surrogate (it is no UTF-8): sealed, it is U+FFFD, and the item reads back."""
    assert unseal(seal("a \ud800 b \udfff")).summary == "a \ufffd b \ufffd"


def test_another_services_item_is_refused_as_such() -> None:
    with pytest.raises(ValueError, match="not made by this gateway"):
        unseal("gAAAAABpM0Yj-Zm9v=")


@pytest.mark.parametrize(
    "payload",
    [
        b"not json",
        b"null",
        b"[]",
        b'{"summary": 5}',
        b'{"other": "x"}',
        b"\xff\xfe",
        b'{"summary": "x"',
        b"[" * 100_000,  # Python's json raised a RecursionError (a 500): a client may seal anything
        b'{"summary": ' + b"[" * 5_000 + b"]" * 5_000 + b"}",
        b'{"summary": "\\ud800 a lone surrogate"}',  # no route could be sent it
    ],
)
def test_a_damaged_item_is_refused_as_such(payload: bytes) -> None:
    with pytest.raises(ValueError, match="damaged"):
        unseal(SEALED + base64.urlsafe_b64encode(payload).decode())


@pytest.mark.parametrize("tail", ["%%%", "abc", "é", ""])
def test_a_body_that_isnt_base64_is_damaged(tail: str) -> None:
    with pytest.raises(ValueError, match="damaged"):
        unseal(SEALED + tail)


def test_sent_back_it_stands_as_a_user_message_with_its_summary() -> None:
    assert compaction_messages(seal("Done: A. Next: B.")) == [
        {"role": "user", "content": [{"type": "text", "text": SUMMARY_HEADER + "Done: A. Next: B."}]}
    ]


USER = {"role": "user", "content": [{"type": "text", "text": "Plan a trip."}]}
PICTURE = {
    "role": "user",
    "content": [{"type": "image_url", "image_url": {"url": "data:image/png;base64,AA", "detail": "low"}}],
}


def test_a_server_side_compactions_item_carries_the_users_messages_and_stands_for_them() -> None:
    content = seal("Rome, day one.", messages=[USER, PICTURE])
    assert unseal(content) == Sealed("Rome, day one.", [USER, PICTURE])
    summary = {"role": "user", "content": [{"type": "text", "text": SUMMARY_HEADER + "Rome, day one."}]}
    assert compaction_messages(content) == [USER, PICTURE, summary]
    lone = [{"role": "user", "content": [{"type": "text", "text": "a \ud800"}]}]
    assert unseal(seal("x", messages=lone)).messages == [
        {"role": "user", "content": [{"type": "text", "text": "a \ufffd"}]}
    ]


@pytest.mark.parametrize(
    "messages",
    [
        "Plan a trip.",
        [{"role": "assistant", "content": [{"type": "text", "text": "Sure."}]}],  # only the user's are carried
        [{"role": "user", "content": "Plan a trip."}],
        [{"role": "user", "content": [{"type": "tool_result", "text": "x"}]}],
        [{"role": "user", "content": [{"type": "image_url", "image_url": "data:,"}]}],
        [{"role": "user", "content": [{"type": "text", "text": 5}]}],
        [None],
    ],
)
def test_an_item_carrying_anything_but_the_users_messages_is_damaged(messages: Any) -> None:
    """A client may seal anything: what a route is sent from an item is only ever the user's text and images."""
    payload = json.dumps({"summary": "s", "messages": messages}).encode()
    with pytest.raises(ValueError, match="damaged"):
        unseal(SEALED + base64.urlsafe_b64encode(payload).decode())


def test_what_else_a_carried_message_says_is_left_out() -> None:
    crafted = [{"role": "user", "content": [{"type": "text", "text": "hi", "cache_control": {}}], "name": "x"}]
    assert unseal(seal("s", messages=crafted)).messages == [
        {"role": "user", "content": [{"type": "text", "text": "hi"}]}
    ]


def _message(role: str, text: str) -> dict[str, Any]:
    return {"type": "message", "role": role, "content": [{"type": "input_text", "text": text}]}


def test_past_an_item_that_carries_the_users_messages_only_the_instructions_before_it_are_read() -> None:
    before = [_message("user", "Plan a trip."), _message("developer", "Be brief."), _message("assistant", "Sure.")]
    carrying = {"type": "compaction", "encrypted_content": seal("s", messages=[USER])}
    after = [_message("user", "Go on.")]
    assert compacted([*before, carrying, *after]) == [before[1], carrying, *after]
    plain = {"type": "compaction", "encrypted_content": seal("s")}  # /v1/responses/compact's: users' kept before it
    assert compacted([*before, plain, *after]) == [before[0], before[1], plain, *after]


NAMESPACE = {"type": "namespace", "name": "mcp__w", "description": "W.", "tools": [{"type": "function", "name": "f"}]}


def test_the_tools_a_search_loaded_are_sealed_with_the_summary_and_read_back() -> None:
    content = seal("Earlier: weather.", tools=[NAMESPACE])
    assert unseal(content) == Sealed("Earlier: weather.", None, [NAMESPACE])
    assert unseal(seal("None loaded.")).tools == []
    # An item sealed before it carried tools (or messages) reads as carrying none.
    older = SEALED + base64.urlsafe_b64encode(b'{"summary": "Old."}').decode()
    assert unseal(older) == Sealed("Old.")


def test_a_server_side_compactions_item_carries_the_users_messages_and_the_loaded_tools_at_once() -> None:
    content = seal("Weather, then Rome.", messages=[USER], tools=[NAMESPACE])
    assert unseal(content) == Sealed("Weather, then Rome.", [USER], [NAMESPACE])
    assert compaction_messages(content)[:-1] == [USER]  # the tools are offered, not read as messages


@pytest.mark.parametrize("tools", [b'"all"', b"5", b"null", b"{}"])
def test_sealed_tools_that_are_no_list_are_damaged(tools: bytes) -> None:
    content = SEALED + base64.urlsafe_b64encode(b'{"summary": "x", "tools": ' + tools + b"}").decode()
    with pytest.raises(ValueError, match="damaged"):
        unseal(content)
