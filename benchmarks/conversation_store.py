"""What one change to a large conversation costs the conversation store every key shares.

    .venv/bin/python -m benchmarks.conversation_store [--items 1000] [--item-kb 16] [--rounds 5]

A conversation of `--items` messages of `--item-kb` kB each (16 MB at the defaults, the default
`conversations.max_mb`) is built in a temporary directory with the store's own synchronous body
(`DiskConversations`, what the store's actor runs), then, `--rounds` times each: one small item added
(`append`), that item deleted (`delete_item`), and the whole conversation read (`get`, what a turn
asks). The store runs one call at a time, and adding or deleting items costs a client no tokens: the
time of one such call is how long every other key's conversation calls wait behind it.

Prints the median milliseconds per call and saves them as `benchmarks/results/conversation_store-<stamp>.json`.
To compare two trees, run it from each (`PYTHONPATH=<tree>`), one after the other.
"""

from __future__ import annotations

import argparse
import tempfile
import time
from collections.abc import Callable
from functools import partial
from pathlib import Path
from typing import Any

from benchmarks.harness import percentile, run_meta, save, stamp
from orchestrator.frontdoors.responses.conversation_store import Conversation, DiskConversations, Limits

OWNER, CID = "key:bench", "conv_bench"


def message(item_id: str, text: str) -> dict[str, Any]:
    return {"id": item_id, "type": "message", "role": "user", "content": [{"type": "input_text", "text": text}]}


def timed(call: Callable[[], object]) -> float:
    started = time.perf_counter()
    call()
    return time.perf_counter() - started


def main(items: int, item_kb: int, rounds: int) -> None:
    meta = run_meta("benchmarks.conversation_store")
    room = Limits(max_items=items + 10, max_bytes=1 << 40)
    times: dict[str, list[float]] = {"append": [], "delete_item": [], "get": []}
    with tempfile.TemporaryDirectory() as tmp:
        store = DiskConversations(Path(tmp), size_limit_bytes=1 << 40)
        store.create(Conversation(OWNER, CID, 0, {}))
        filler = "y" * (item_kb * 1000)
        for start in range(0, items, 20):  # as a client adds them: 20 a request
            store.append(OWNER, CID, [message(f"msg_{i}", filler) for i in range(start, min(items, start + 20))], room)
        for r in range(rounds):
            new = message(f"new_{r}", "hi")
            times["append"].append(timed(partial(store.append, OWNER, CID, [new], room)))
            times["delete_item"].append(timed(partial(store.delete_item, OWNER, CID, new["id"])))
            times["get"].append(timed(partial(store.get, OWNER, CID)))
    out = {call: {"ms_p50": percentile(t, 50) * 1000, "s": t} for call, t in times.items()}
    print(f"a conversation of {items:,} items of {item_kb} kB, median of {rounds} calls:")
    for call, figures in out.items():
        print(f"  {call:<12}{figures['ms_p50']:>10.1f} ms")
    result = {**meta, "items": items, "item_kb": item_kb, "rounds": rounds, "calls": out}
    print(f"saved {save('conversation_store', stamp(), result)}")


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--items", type=int, default=1000)
    parser.add_argument("--item-kb", type=int, default=16)
    parser.add_argument("--rounds", type=int, default=5)
    args = parser.parse_args()
    main(args.items, args.item_kb, args.rounds)
