"""A compaction item's sealed summary: what `seal` makes, `summary_of` reads back, and nothing else."""

from __future__ import annotations

import base64

import pytest

from orchestrator.frontdoors.responses.compaction import (
    SEALED,
    SUMMARY_HEADER,
    seal,
    sealed_tools,
    summary_message,
    summary_of,
)


@pytest.mark.parametrize("summary", ["", "Plan: Paris in May.", "😀 ünï \x00 " * 50, "x" * 1_000_000])
def test_a_sealed_summary_reads_back_as_it_was(summary: str) -> None:
    content = seal(summary)
    assert content.startswith(SEALED) and content.isascii()
    assert summary_of(content) == summary


def test_a_models_lone_surrogate_reads_back_as_a_replacement_character() -> None:
    """No route can be sent a lone surrogate (it is no UTF-8): sealed, it is U+FFFD, and the item reads back."""
    assert summary_of(seal("a \ud800 b \udfff")) == "a \ufffd b \ufffd"


def test_another_services_item_is_refused_as_such() -> None:
    with pytest.raises(ValueError, match="not made by this gateway"):
        summary_of("gAAAAABpM0Yj-Zm9v=")


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
        summary_of(SEALED + base64.urlsafe_b64encode(payload).decode())


@pytest.mark.parametrize("tail", ["%%%", "abc", "é", ""])
def test_a_body_that_isnt_base64_is_damaged(tail: str) -> None:
    with pytest.raises(ValueError, match="damaged"):
        summary_of(SEALED + tail)


def test_sent_back_it_stands_as_a_user_message_with_its_summary() -> None:
    assert summary_message(seal("Done: A. Next: B.")) == {
        "role": "user",
        "content": [{"type": "text", "text": SUMMARY_HEADER + "Done: A. Next: B."}],
    }


def test_the_tools_a_search_loaded_are_sealed_with_the_summary_and_read_back() -> None:
    tools = [{"type": "namespace", "name": "mcp__w", "description": "W.", "tools": [{"type": "function", "name": "f"}]}]
    content = seal("Earlier: weather.", tools)
    assert summary_of(content) == "Earlier: weather." and sealed_tools(content) == tools
    assert sealed_tools(seal("None loaded.")) == []
    # An item sealed before it carried tools reads as carrying none.
    older = SEALED + base64.urlsafe_b64encode(b'{"summary": "Old."}').decode()
    assert summary_of(older) == "Old." and sealed_tools(older) == []


@pytest.mark.parametrize("tools", [b'"all"', b"5", b"null", b"{}"])
def test_sealed_tools_that_are_no_list_are_damaged(tools: bytes) -> None:
    content = SEALED + base64.urlsafe_b64encode(b'{"summary": "x", "tools": ' + tools + b"}").decode()
    with pytest.raises(ValueError, match="damaged"):
        sealed_tools(content)
