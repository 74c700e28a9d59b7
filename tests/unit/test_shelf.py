"""The disk the stored responses and conversations share: kept fairly between keys (max-min), pointers
gone with their entry, times to live, and what a restarted store finds."""

from __future__ import annotations

import time
from pathlib import Path

import pytest

from orchestrator.frontdoors.responses.shelf import Shelf

KB = "x" * 1000


def entry(n: int) -> str:
    return KB * n


def test_one_key_filling_the_disk_pushes_out_its_own_oldest_never_a_smaller_keys(tmp_path: Path) -> None:
    shelf = Shelf(tmp_path, ttl_s=3600, size_limit_bytes=20_000)
    shelf.put("key:b", "b1", entry(3))
    shelf.put("key:b", "b2", entry(3))
    for i in range(30):  # 30 kB from one key into 20 kB
        shelf.put("key:a", f"a{i}", entry(1))
    assert shelf.get("b1") == entry(3) and shelf.get("b2") == entry(3)  # the other key's stay
    assert shelf.get("a29") == entry(1) and shelf.get("a0") is None  # its own oldest went
    assert shelf.held("key:a") + shelf.held("key:b") <= 20_000
    kept = [i for i in range(30) if shelf.get(f"a{i}") is not None]
    assert kept == list(range(30 - len(kept), 30)) and len(kept) >= 12


def test_the_key_holding_the_most_gives_way_whoever_writes(tmp_path: Path) -> None:
    shelf = Shelf(tmp_path, ttl_s=3600, size_limit_bytes=10_000)
    shelf.put("key:a", "a0", entry(4))
    shelf.put("key:a", "a1", entry(4))
    shelf.put("key:b", "b0", entry(3))  # over: key:a holds the most, its oldest goes
    assert shelf.get("a0") is None and shelf.get("a1") is not None and shelf.get("b0") is not None
    shelf.put("key:b", "b1", entry(3))  # over: key:b would hold the most with it: its own oldest goes
    assert shelf.get("b0") is None and shelf.get("b1") is not None and shelf.get("a1") is not None


def test_a_new_keys_entry_larger_than_anyones_share_never_pushes_out_a_smaller_key(tmp_path: Path) -> None:
    """The writer counts with its new entry even when it holds nothing yet: an entry larger than what every
    other key holds goes in over the limit (and is the first out after), never wiping the keys that hold
    less (a new key's one large entry took every other key's entries, the largest's first, then the rest)."""
    shelf = Shelf(tmp_path, ttl_s=3600, size_limit_bytes=10_000)
    shelf.put("key:a", "a0", entry(3))
    shelf.put("key:b", "b0", entry(3))
    shelf.put("key:b", "b1", entry(3))
    shelf.put("key:c", "c0", entry(7))  # more than anyone holds: it would hold the most, so no one else gives way
    assert shelf.get("c0") == entry(7)
    assert [shelf.get(k) for k in ("a0", "b0", "b1")] == [entry(3)] * 3
    shelf.put("key:a", "a1", "x" * 500)  # the next write: key:c, holding the most, gives way first
    assert shelf.get("c0") is None and shelf.get("a1") == "x" * 500
    assert [shelf.get(k) for k in ("a0", "b0", "b1")] == [entry(3)] * 3
    assert sum(shelf.held(k) for k in ("key:a", "key:b", "key:c")) <= 10_000
    shelf.put("key:d", "d0", entry(7))
    shelf.put("key:e", "e0", entry(7))  # as large as key:d's: key:d's goes (over the limit by one such, not two)
    assert shelf.get("d0") is None and shelf.get("e0") == entry(7)


def test_an_entry_rewritten_counts_once_and_is_the_newest(tmp_path: Path) -> None:
    shelf = Shelf(tmp_path, ttl_s=3600, size_limit_bytes=8_000)
    shelf.put("key:a", "c1", entry(2))
    shelf.put("key:a", "c2", entry(2))
    shelf.put("key:a", "c1", entry(3))  # a conversation grown: rewritten whole
    assert shelf.held("key:a") == len("c1") + 3000 + len("c2") + 2000
    shelf.put("key:a", "c3", entry(4))  # over: the least recently written (c2) goes
    assert shelf.get("c2") is None and shelf.get("c1") == entry(3)


def test_pointers_lead_to_their_entry_and_go_with_it(tmp_path: Path) -> None:
    shelf = Shelf(tmp_path, ttl_s=3600, size_limit_bytes=1 << 20)
    shelf.put("key:a", "resp_1", "{}", {"item:a:msg_1": "resp_1", "item:a:msg_2": "resp_1"})
    assert shelf.get("item:a:msg_1") == "resp_1"
    shelf.put("key:a", "resp_2", "{}", {"item:a:msg_2": "resp_2"})  # a later entry holds msg_2 too
    assert shelf.delete("resp_1") and not shelf.delete("resp_1")
    assert shelf.get("item:a:msg_1") is None and shelf.get("item:a:msg_2") == "resp_2"
    assert shelf.held("key:a") == len("resp_2") + 2 + len("item:a:msg_2") + len("resp_2")


def test_a_restarted_store_finds_its_entries_and_their_owners(tmp_path: Path) -> None:
    Shelf(tmp_path, ttl_s=3600, size_limit_bytes=10_000).put("key:b", "b0", entry(7))
    shelf = Shelf(tmp_path, ttl_s=3600, size_limit_bytes=10_000)
    assert shelf.get("b0") == entry(7) and shelf.held("key:b") == 7002
    shelf.put("key:a", "a0", entry(2))
    shelf.put("key:a", "a1", entry(2))  # over: key:b, holding the most, gives way
    assert shelf.get("b0") is None and shelf.get("a0") is not None


def test_entries_expire_and_leave_the_count(tmp_path: Path) -> None:
    now = [time.time()]
    shelf = Shelf(tmp_path, ttl_s=0.2, size_limit_bytes=1 << 20, clock=lambda: now[0])
    shelf.put("key:a", "a0", entry(1), {"item:a:m": "a0"})
    time.sleep(0.3)
    assert shelf.get("a0") is None  # its children (no time of their own) lead nowhere until they go with it
    now[0] += 120  # the index lets expired entries go once a minute, at a write: their children with them
    shelf.put("key:a", "a1", entry(1))
    assert shelf.get("item:a:m") is None and shelf.held("key:a") == 1002


def test_an_entry_written_again_is_never_absent_meanwhile(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A conversation is rewritten whole at every change: the old value stays until the new one replaces it,
    so a store that dies between the two (here: the write fails) still has the conversation as it was."""
    import diskcache

    shelf = Shelf(tmp_path, ttl_s=3600, size_limit_bytes=1 << 20)
    shelf.put("key:a", "conv_1", "old", {"item:a:m1": "conv_1"})

    def dies(*args: object, **kwargs: object) -> None:
        raise OSError("the store died")

    monkeypatch.setattr(diskcache.Cache, "set", dies)
    with pytest.raises(OSError):
        shelf.put("key:a", "conv_1", "new", {"item:a:m1": "conv_1"})
    monkeypatch.undo()
    assert Shelf(tmp_path, ttl_s=3600, size_limit_bytes=1 << 20).get("conv_1") == "old"


def test_children_added_and_removed_are_counted_and_go_with_their_entry(tmp_path: Path) -> None:
    """A conversation's items are its entry's children: each written once, counted to its owner, and the
    conversation leaves whole (never an item at a time, which would leave holes in it)."""
    shelf = Shelf(tmp_path, ttl_s=3600, size_limit_bytes=12_000)
    shelf.put("key:b", "conv_b", "{}")
    assert shelf.update("conv_b", "{b}", add={"item:conv_b:1": entry(2)})
    shelf.put("key:a", "conv_a", "{}")
    for i in range(4):
        assert shelf.update("conv_a", "{" + "a" * i + "}", add={f"item:conv_a:{i}": entry(1)})
    assert shelf.update("conv_a", "{a}", remove=["item:conv_a:0"])
    assert shelf.get("item:conv_a:0") is None and shelf.get("item:conv_a:3") == entry(1)
    assert shelf.held("key:a") == len("conv_a{a}") + 3 * (len("item:conv_a:1") + 1000)
    assert not shelf.update("conv_x", "{}")  # not there: nothing written
    shelf.put("key:a", "conv_a2", entry(8))  # over: key:a holds the most; its oldest conversation goes whole
    assert shelf.get("conv_a") is None and all(shelf.get(f"item:conv_a:{i}") is None for i in range(4))
    assert shelf.get("item:conv_b:1") == entry(2)
