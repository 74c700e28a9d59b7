"""The test fakes keep the contracts they stand in for."""

from __future__ import annotations

import asyncio
import inspect
import math
from collections.abc import AsyncIterator
from typing import Any

import pytest

from local_models.errors import BadRequest, EngineFailure, PromptTooLong
from local_models.interface import Batch, Engine, GenerateRequest, Sampling
from orchestrator.providers.local import LocalModelClient
from orchestrator.testing.clock import FakeClock
from orchestrator.testing.engine import FakeEngine, tokenize


@pytest.mark.parametrize("protocol", [Engine, LocalModelClient])
def test_fake_engine_has_every_protocol_method(protocol: type) -> None:
    methods = {n: m for n, m in vars(protocol).items() if not n.startswith("_") and inspect.isfunction(m)}
    assert methods
    for name, member in methods.items():
        fake = getattr(FakeEngine, name)
        assert inspect.signature(fake).parameters.keys() == inspect.signature(member).parameters.keys(), name
        assert inspect.iscoroutinefunction(fake) == inspect.iscoroutinefunction(member), name
    # `generate` returns an async iterator: the fake is an async generator.
    assert inspect.isasyncgenfunction(FakeEngine.generate)


def request(kind: str = "completion", stream: bool = False, **sampling: Any) -> GenerateRequest:
    req: dict[str, Any] = {"request_id": "r", "kind": kind, "sampling": Sampling(**sampling), "stream": stream}
    if kind == "chat":
        req["messages"] = [{"role": "system", "content": "sys"}, {"role": "user", "content": "hi you"}]
    else:
        req["prompts"] = ["p q"]
    return req  # type: ignore[return-value]


async def collect(batches: AsyncIterator[Batch]) -> list[Batch]:
    return [b async for b in batches]


def test_tokens_are_words_with_leading_space() -> None:
    assert tokenize("hello  big world") == ["hello", "  big", " world"]
    assert "".join(tokenize(" a b")) == " a b"


async def test_whole_generation_is_one_batch_with_usage() -> None:
    engine = FakeEngine()
    [batch] = await collect(engine.generate(request("chat")))
    assert batch["deltas"] == [{"index": 0, "text": "hi you", "finish_reason": "stop"}]
    assert batch["usage"] == {"prompt_tokens": 3, "completion_tokens": 2, "cached_tokens": 0}
    assert engine.generations[0].outcome == "finished" and engine.generations[0].batches == 1


async def test_stream_is_one_batch_per_token_and_usage_last() -> None:
    engine = FakeEngine()
    engine.enqueue(["a b c", "d"])
    batches = await collect(engine.generate(request(stream=True, n=2)))
    assert [[(d["index"], d["text"], d["finish_reason"]) for d in b["deltas"]] for b in batches] == [
        [(0, "a", None), (1, "d", "stop")],
        [(0, " b", None)],
        [(0, " c", "stop")],
    ]
    assert ["usage" in b for b in batches] == [False, False, True]


async def test_choice_index_is_prompt_times_n_plus_sample() -> None:
    req = request(n=2)
    req["prompts"] = ["one", "two", "three"]
    [batch] = await collect(FakeEngine().generate(req))
    assert [(d["index"], d["text"]) for d in batch["deltas"]] == [
        (0, "one"),
        (1, "one"),
        (2, "two"),
        (3, "two"),
        (4, "three"),
        (5, "three"),
    ]


async def test_echo_prefixes_the_first_delta() -> None:
    engine = FakeEngine()
    engine.enqueue([" r s"])
    batches = await collect(engine.generate(request(stream=True, echo=True)))
    assert [b["deltas"][0]["text"] for b in batches] == ["p q r", " s"]


async def test_logprobs_are_well_formed() -> None:
    [batch] = await collect(FakeEngine().generate(request(logprobs=3)))
    lps = batch["deltas"][0]["logprobs"]
    assert [t["token"] for t in lps] == ["p", " q"]
    for t in lps:
        assert t["logprob"] < 0 and bytes(t["bytes"]).decode() == t["token"]
        assert len(t["top"]) == 3 and t["top"][0]["token"] == t["token"]
        assert [a["logprob"] for a in t["top"]] == sorted((a["logprob"] for a in t["top"]), reverse=True)


async def test_context_length() -> None:
    engine = FakeEngine(max_model_len=4)
    with pytest.raises(PromptTooLong) as info:
        await collect(engine.generate(request(max_tokens=3)))
    assert info.value.param == "prompt"
    [batch] = await collect(engine.generate(request()))  # max_tokens None: fill what is left
    assert batch["deltas"][0]["text"] == "p q"


async def test_fail_before_first_and_after_n() -> None:
    engine = FakeEngine(fail_after=0)
    with pytest.raises(EngineFailure):
        await collect(engine.generate(request(stream=True)))
    assert engine.generations[0].outcome == "failed" and engine.generations[0].batches == 0
    engine.fail_after, engine.error = 1, RuntimeError("x")
    got: list[Batch] = []
    with pytest.raises(RuntimeError):
        async for b in engine.generate(request(stream=True)):
            got.append(b)
    assert len(got) == 1


async def test_records_a_consumer_that_stops_early() -> None:
    engine = FakeEngine()
    engine.enqueue(["a b c"])
    gen = engine.generate(request(stream=True))
    await anext(gen)
    await gen.aclose()
    assert engine.generations[0].outcome == "closed" and engine.generations[0].stopped_early

    engine.enqueue(["a b c"])
    engine.token_delay = 10

    async def consume() -> None:
        async for _ in engine.generate(request(stream=True)):
            pass

    task = asyncio.create_task(consume())
    await asyncio.sleep(0.01)
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    assert engine.generations[1].outcome == "cancelled" and engine.generations[1].done.is_set()


async def test_chat_needs_a_chat_template() -> None:
    with pytest.raises(BadRequest):
        await collect(FakeEngine(has_chat_template=False).generate(request("chat")))


async def test_embed() -> None:
    engine = FakeEngine("e", task="embed", dimensions=8)
    result = await engine.embed(["a b", "c"])
    assert result["prompt_tokens"] == 3
    a, c = result["embeddings"]
    assert len(a) == 8 and a != c
    assert math.isclose(sum(x * x for x in a), 1.0, rel_tol=1e-6)
    assert (await engine.embed(["a b"]))["embeddings"][0] == a
    with pytest.raises(BadRequest):
        await FakeEngine().embed(["x"])


def test_info_and_stats() -> None:
    engine = FakeEngine("m", max_model_len=10, has_chat_template=False)
    assert engine.info() == {
        "name": "m",
        "task": "generate",
        "max_model_len": 10,
        "has_chat_template": False,
        "max_num_seqs": 32,
    }
    assert engine.stats()["running"] == 0
    engine.shutdown()
    assert engine.shut_down


def test_fake_clock() -> None:
    clock = FakeClock(5.0)
    clock.advance(1.5)
    assert clock() == 6.5
