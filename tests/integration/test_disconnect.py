"""A client that goes away mid-stream stops the engine's work (over a real socket).

`httpx.ASGITransport` buffers whole responses, so this runs the app under
uvicorn (`live_server`) and reads the stream over TCP.
"""

from __future__ import annotations

import asyncio
import json

import httpx
import pytest
from http_checks import CHAT_MODEL, user
from openai_schema import validate

from orchestrator.testing.engine import FakeEngine

WORDS = 60


async def test_client_disconnect_stops_the_generation(live_server: str, chat_engine: FakeEngine) -> None:
    chat_engine.enqueue([" ".join(["tick"] * WORDS)])
    chat_engine.token_delay = 0.05  # the whole reply would take 3 s
    body = {"model": CHAT_MODEL, "messages": user("go"), "max_tokens": WORDS, "stream": True}
    async with httpx.AsyncClient(base_url=live_server, timeout=10) as client:
        async with client.stream("POST", "/v1/chat/completions", json=body) as r:
            assert r.status_code == 200
            assert r.headers["x-served-by"] == f"local/{CHAT_MODEL}"
            async for line in r.aiter_lines():
                if line.startswith("data: "):
                    validate("CreateChatCompletionStreamResponse", json.loads(line.removeprefix("data: ")))
                    break
        # Leaving the block closes the half-read response, and with it the connection.
    [gen] = chat_engine.generations
    await asyncio.wait_for(gen.done.wait(), 2)
    assert gen.stopped_early, gen.outcome
    assert gen.batches < WORDS


@pytest.mark.parametrize(
    ("path", "body"),
    [
        ("/v1/messages", {"messages": [{"role": "user", "content": "go"}], "max_tokens": WORDS}),
        ("/v1/responses", {"input": "go", "max_output_tokens": WORDS, "store": False}),
    ],
)
async def test_every_door_stops_the_generation_when_its_client_leaves(
    live_server: str, chat_engine: FakeEngine, path: str, body: dict[str, object]
) -> None:
    chat_engine.enqueue([" ".join(["tick"] * WORDS)])
    chat_engine.token_delay = 0.05
    async with httpx.AsyncClient(base_url=live_server, timeout=10) as client:
        async with client.stream("POST", path, json={"model": CHAT_MODEL, "stream": True, **body}) as r:
            assert r.status_code == 200, await r.aread()
            assert r.headers["content-type"].startswith("text/event-stream")
            async for line in r.aiter_lines():
                if line.startswith("data: ") and "delta" in line:  # the first words arrived
                    break
    [gen] = chat_engine.generations
    await asyncio.wait_for(gen.done.wait(), 2)
    assert gen.stopped_early, gen.outcome
    assert gen.batches < WORDS


async def test_a_stream_read_to_the_end_finishes(live_server: str, chat_engine: FakeEngine) -> None:
    chat_engine.enqueue(["a b c"])
    body = {"model": CHAT_MODEL, "messages": user("go"), "stream": True}
    async with httpx.AsyncClient(base_url=live_server, timeout=10) as client:
        r = await client.post("/v1/chat/completions", json=body)
    assert r.text.endswith("data: [DONE]\n\n")
    [gen] = chat_engine.generations
    assert gen.outcome == "finished"


@pytest.mark.parametrize("stream", [False, True], ids=["whole", "stream"])
async def test_a_client_that_told_serve_not_to_watch_it_still_stops_its_work_when_it_leaves(
    live_server: str, chat_engine: FakeEngine, stream: bool
) -> None:
    """Ray Serve cancels a request whose client leaves, unless the request says `x-request-disconnect-disabled:
    ?1`; then a client could leave its answer generating on the shared engine (plain uvicorn, here, never
    watches: what such a request gets under Serve). The edge watches it itself, before the first byte too."""
    chat_engine.enqueue([" ".join(["tick"] * WORDS)])
    # A whole answer comes after 3 s; a stream's first words after 4 s (its response begins with them).
    chat_engine.token_delay = 4.0 if stream else 0.05
    body = {"model": CHAT_MODEL, "messages": user("go"), "max_tokens": WORDS, "stream": stream}
    headers = {"x-request-disconnect-disabled": "?1"}
    async with httpx.AsyncClient(base_url=live_server, timeout=0.5) as client:
        with pytest.raises(httpx.ReadTimeout):  # it leaves before the first byte of the answer
            await client.post("/v1/chat/completions", json=body, headers=headers)
    [gen] = chat_engine.generations
    await asyncio.wait_for(gen.done.wait(), 2)  # not the 3 s the answer would take
    assert gen.stopped_early, gen.outcome
