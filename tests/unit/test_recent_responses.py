"""A WebSocket connection's latest responses (`store.Recent`): what it keeps, within its count and its bytes."""

from __future__ import annotations

import json
from typing import Any

from orchestrator.frontdoors.responses.store import Recent, Stored


def turn(n: int, text: str, previous: Stored | None = None) -> Stored:
    """A response `resp_<n>` whose input is one message of `text`, continuing `previous`."""
    item = {"id": f"msg_{n}", "type": "message", "role": "user", "content": [{"type": "input_text", "text": text}]}
    response: dict[str, Any] = {"id": f"resp_{n}", "output": [], "previous_response_id": previous and previous.id}
    return Stored("tenant", response, [item], previous.context if previous is not None else [])


def test_the_latest_are_kept_by_count() -> None:
    recent = Recent(size=3)
    for n in range(5):
        recent.remember(turn(n, "hi"))
    assert [n for n in range(5) if recent.get(f"resp_{n}")] == [2, 3, 4]


def test_big_independent_responses_are_kept_within_the_bytes_and_the_oldest_go_first() -> None:
    """32 lanes of 8 MB messages held 256 MB for as long as the socket stayed open."""
    recent = Recent(size=32, max_bytes=4 << 20)
    for n in range(32):
        recent.remember(turn(n, "x" * (1 << 20)))
    kept = [n for n in range(32) if recent.get(f"resp_{n}")]
    assert kept == [29, 30, 31]  # three of a bit over 1 MB each fit in 4 MB
    assert recent.get("resp_31") is not None


def test_a_chain_is_counted_once_per_turn_and_one_alone_over_the_bytes_is_not_kept() -> None:
    """A chain continued on one socket (with `truncation: "auto"`) grew without end in memory."""
    size = len(json.dumps(turn(0, "x" * 1000).input_items[0]))
    recent = Recent(size=32, max_bytes=10 * size)
    previous = None
    for n in range(12):
        previous = turn(n, "x" * 1000, previous)
        recent.remember(previous)
        assert recent.get(f"resp_{n}") is (previous if n < 10 else None), n  # its conversation: n + 1 messages
    assert [n for n in range(12) if recent.get(f"resp_{n}")] == [9]  # 10 messages' worth: room for no other
