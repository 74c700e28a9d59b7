"""A child process for `test_cache.py`: writes entries into a shared cache directory.

Imported by name in processes started with multiprocessing's 'spawn' context,
so it holds nothing but the function those processes run.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any


def entry_body(worker: int, i: int) -> dict[str, Any]:
    """The answer worker `worker` stores as its `i`-th entry: enough to tell entries apart and spot a torn one."""
    return {
        "id": f"chatcmpl-w{worker}-{i}",
        "object": "chat.completion",
        "created": 1,
        "model": "m",
        "choices": [
            {
                "index": 0,
                "message": {"role": "assistant", "content": f"w{worker}-e{i} " * 50, "refusal": None},
                "finish_reason": "stop",
                "logprobs": None,
            }
        ],
    }


def write_entries(directory: str, worker: int, count: int, barrier: Any, results: Any) -> None:
    """Store `count` entries through `ResponseCache`, all workers starting together.

    A write that meets the lock returns False (by design); it is retried and
    counted, so the parent can check both that nothing was lost silently and
    that nothing was torn. Puts `(worker, dropped_writes)` on `results`.
    """
    from orchestrator.caching.cache import Entry, ResponseCache

    cache = ResponseCache(Path(directory), size_limit_bytes=1 << 30)
    barrier.wait()
    dropped = 0
    for i in range(count):
        entry = Entry(kind="chat", body=entry_body(worker, i), provider="local", model="m")
        for _ in range(50):
            if cache.set(f"w{worker}:{i}", entry, 600):
                break
            dropped += 1
    cache.close()
    results.put((worker, dropped))
