"""TTLMap: bounded in size (least recently used out first) and in age."""

from __future__ import annotations

import pytest

from orchestrator.accounting.bounded import TTLMap


class Clock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def test_entries_expire_after_their_ttl() -> None:
    clock = Clock()
    m: TTLMap[str, int] = TTLMap(10, 1.0, clock=clock)
    m.put("a", 1)
    m.put("b", 2, ttl_s=5.0)
    clock.now += 0.99
    assert (m.get("a"), m.get("b")) == (1, 2)
    clock.now += 0.02
    assert (m.get("a"), m.get("b"), len(m)) == (None, 2, 1)  # seen expired: dropped
    clock.now += 5.0
    assert m.get("b") is None and len(m) == 0


def test_past_max_size_the_least_recently_used_go_first() -> None:
    m: TTLMap[str, int] = TTLMap(3, 60.0)
    for i, k in enumerate("abc"):
        m.put(k, i)
    assert m.get("a") == 0  # used: now the newest
    m.put("d", 3)
    assert len(m) == 3 and m.get("b") is None
    assert [m.get(k) for k in "acd"] == [0, 2, 3]


def test_a_map_written_to_but_never_read_still_sheds_expired_entries() -> None:
    clock = Clock()
    m: TTLMap[int, bool] = TTLMap(1_000_000, 1.0, clock=clock)
    for i in range(5_000):
        m.put(i, True)
    clock.now += 2.0
    for i in range(5_000, 6_000):
        m.put(i, True)
    assert len(m) == 1_000  # every put swept expired ones from the old end


def test_pop_and_clear() -> None:
    m: TTLMap[str, int] = TTLMap(3, 60.0)
    m.put("a", 1)
    m.put("b", 2)
    assert m.pop("a") == 1 and m.pop("a") is None and len(m) == 1
    m.clear()
    assert len(m) == 0 and m.get("b") is None


def test_max_size_must_hold_something() -> None:
    with pytest.raises(ValueError):
        TTLMap(0, 1.0)
