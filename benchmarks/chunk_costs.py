"""What one streamed chunk's steps cost the gateway, each alone: where `request_cpu`'s per-chunk figure goes.

    .venv/bin/python -m benchmarks.chunk_costs [--n 200000]

A provider's typical text chunk (one token of content, OpenAI's shape) through the steps the gateway
runs on each: pydantic's validation of its bytes (`_parse`), beside the same JSON parsed without
validation and a plain model of the same fields without our extras, aliases and validators (pydantic's
floor for the shape); the dump for the client, beside it the same dump with `exclude_none` instead of the
models' `exclude_if` callbacks, and the whole SSE event as `frontdoors.openai._event` makes it (from the
serializer's bytes) and as it was made before (from `model_dump_json`'s text, encoded again); one hop
through an async generator, as the chunk takes seven on its way; `asyncio.current_task`, which py-spy
blamed for a third of a stream's samples. Printed and saved (`benchmarks/results/chunk_costs-<stamp>.json`):
µs per call, best of 5.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import timeit
from collections.abc import AsyncIterator, Callable
from typing import Any, Literal

import pydantic_core
from pydantic import BaseModel, ConfigDict

from benchmarks.harness import run_meta, save, stamp
from orchestrator.frontdoors.openai import _event
from orchestrator.protocol import ChatCompletionChunk

CHUNK = (
    b'{"id":"chatcmpl-abc123","object":"chat.completion.chunk","created":1733000000,"model":"gpt-4o-mini",'
    b'"system_fingerprint":"fp_1","choices":[{"index":0,"delta":{"content":" word"},"logprobs":null,'
    b'"finish_reason":null}]}'
)


class _Delta(BaseModel):
    model_config = ConfigDict(extra="allow")
    role: Literal["assistant"] | None = None
    content: str | None = None
    reasoning_content: str | None = None
    refusal: str | None = None


class _Choice(BaseModel):
    model_config = ConfigDict(extra="allow")
    index: int
    delta: _Delta
    finish_reason: Literal["stop", "length", "tool_calls", "content_filter", "function_call"] | None = None
    logprobs: dict[str, Any] | None = None


class _Plain(BaseModel):
    """The chunk's fields with pydantic's defaults only: no aliases, before-validators or `exclude_if`."""

    model_config = ConfigDict(extra="allow")
    id: str
    object: str = "chat.completion.chunk"
    created: int
    model: str
    choices: list[_Choice]
    system_fingerprint: str | None = None


def per_call_us(fn: Callable[[], object], n: int) -> float:
    return min(timeit.repeat(fn, number=n, repeat=5)) / n * 1e6


async def _hop_us(n: int) -> tuple[float, float]:
    """(µs per item through one more async generator, µs per `asyncio.current_task()`)."""

    async def source() -> AsyncIterator[int]:
        for i in range(n):
            yield i

    async def hop(items: AsyncIterator[int]) -> AsyncIterator[int]:
        async for item in items:
            yield item

    loop = asyncio.get_running_loop()

    async def drain(items: AsyncIterator[int]) -> float:
        t0 = loop.time()
        async for _ in items:
            pass
        return loop.time() - t0

    one, two = await drain(source()), await drain(hop(source()))
    t0 = loop.time()
    for _ in range(n):
        asyncio.current_task()
    return (two - one) / n * 1e6, (loop.time() - t0) / n * 1e6


def measure(n: int) -> dict[str, float]:
    chunk = ChatCompletionChunk.model_validate_json(CHUNK)
    hop, current = asyncio.run(_hop_us(n))
    return {
        "validate (ours)": per_call_us(lambda: ChatCompletionChunk.model_validate_json(CHUNK), n),
        "validate (plain model, the floor)": per_call_us(lambda: _Plain.model_validate_json(CHUNK), n),
        "parse without validation (pydantic_core.from_json)": per_call_us(lambda: pydantic_core.from_json(CHUNK), n),
        "parse without validation (json.loads)": per_call_us(lambda: json.loads(CHUNK), n),
        "dump (model_dump_json, exclude_if)": per_call_us(chunk.model_dump_json, n),
        "dump (model_dump_json, exclude_none)": per_call_us(lambda: chunk.model_dump_json(exclude_none=True), n),
        "the event for the client (ours: `_event`, the serializer's bytes)": per_call_us(
            lambda: _event(chunk, True), n
        ),
        "the event from model_dump_json's text, encoded (before 2026-12-03)": per_call_us(
            lambda: b"data: " + chunk.model_dump_json().encode() + b"\n\n", n
        ),
        "one async generator hop": hop,
        "asyncio.current_task()": current,
    }


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--n", type=int, default=200_000, help="calls per timing")
    args = p.parse_args()
    meta = run_meta("benchmarks.chunk_costs")
    figures = measure(args.n)
    text = "\n".join(
        ["# One streamed chunk's steps, each alone (µs a call, best of 5)", "", "| step | µs |", "|---|---|"]
        + [f"| {k} | {v:.2f} |" for k, v in figures.items()]
    )
    print(text)
    print(f"saved {save('chunk_costs', stamp(), {**meta, 'n': args.n, 'us': figures}, text)}")


if __name__ == "__main__":
    main()
