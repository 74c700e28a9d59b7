"""The response cache: keys, policy, storage on a real disk, and replay as streams.

Storage tests use real temporary directories and mock nothing, the way
diskcache's own tests do. Note on locking: the cache evicts
least-recently-used entries, so diskcache records every lookup's access time,
which makes every `get` (hit or miss) a write transaction (`BEGIN IMMEDIATE`);
SQLite's WAL mode does not let such a read through another connection's write
transaction, so a held lock blocks reads as well as writes.
"""

from __future__ import annotations

import json
import logging
import multiprocessing
import threading
import time
from collections.abc import AsyncIterator, Iterable, Iterator
from pathlib import Path
from typing import Any, TypeVar

import cache_writer
import diskcache
import pytest
from openai_schema import validate
from starlette.datastructures import Headers

from orchestrator.caching.cache import (
    MAX_TTL_S,
    Decision,
    Entry,
    ResponseCache,
    cache_key,
    decide,
    fresh_chat,
    fresh_completion,
    pieces,
    replay_chat,
    replay_completion,
)
from orchestrator.errors import InvalidRequest
from orchestrator.protocol import (
    ANTHROPIC_MESSAGES,
    AssistantMessage,
    ChatChoice,
    ChatCompletion,
    ChatCompletionChunk,
    ChatCompletionRequest,
    ChoiceLogprobs,
    CompletionChoice,
    CompletionChunk,
    CompletionRequest,
    FunctionCall,
    Native,
    TokenLogprob,
    ToolCall,
    Usage,
)
from orchestrator.streams import assemble_chat, assemble_completion

T = TypeVar("T")

TEXT = (
    "The quick brown fox jumps over the lazy dog while twenty small words "
    "stream back out of the cache, one by one, as if new."
)
USAGE = Usage(prompt_tokens=3, completion_tokens=24, total_tokens=27)
WEATHER = {
    "type": "function",
    "function": {
        "name": "get_weather",
        "parameters": {"type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]},
    },
}


def chat(**fields: Any) -> ChatCompletionRequest:
    return ChatCompletionRequest.model_validate(
        {"model": "m", "messages": [{"role": "user", "content": "hi"}], **fields}
    )


def completion(**fields: Any) -> CompletionRequest:
    return CompletionRequest.model_validate({"model": "m", "prompt": "hi", **fields})


def entry(body: dict[str, Any] | None = None) -> Entry:
    return Entry(kind="chat", body=body or stored_chat().model_dump(), provider="local", model="fake-chat")


async def aiter_of(items: Iterable[T]) -> AsyncIterator[T]:
    for item in items:
        yield item


async def collect(stream: AsyncIterator[T]) -> list[T]:
    return [item async for item in stream]


# ------------------------------------------------------------------------------ keys


def test_key_ignores_json_key_order() -> None:
    a = ChatCompletionRequest.model_validate(
        json.loads(
            '{"model": "m", "temperature": 0, "messages": [{"role": "user", "content": "hi"}],'
            ' "tools": [{"type": "function", "function": {"name": "f", "parameters":'
            ' {"type": "object", "properties": {"x": {"type": "string"}, "y": {"type": "integer"}}}}}]}'
        )
    )
    b = ChatCompletionRequest.model_validate(
        json.loads(
            '{"tools": [{"function": {"parameters": {"properties": {"y": {"type": "integer"},'
            ' "x": {"type": "string"}}, "type": "object"}, "name": "f"}, "type": "function"}],'
            ' "messages": [{"content": "hi", "role": "user"}], "temperature": 0, "model": "m"}'
        )
    )
    assert cache_key(a, "t") == cache_key(b, "t")


@pytest.mark.parametrize(
    ("a", "b"),
    [
        ({"stream": False}, {"stream": True}),
        ({"stream": True}, {"stream": True, "stream_options": {"include_usage": True}}),
        ({}, {"user": "alice"}),
        ({"user": "alice"}, {"user": "bob"}),
        ({}, {"metadata": {"team": "a"}}),
        ({}, {"cache": {"no_store": True, "ttl": 5}}),
        ({"temperature": 0}, {"temperature": 0.0}),
    ],
    ids=["stream", "stream_options", "user", "user-differs", "metadata", "cache-directives", "0-vs-0.0"],
)
def test_key_ignores_what_does_not_change_the_answer(a: dict[str, Any], b: dict[str, Any]) -> None:
    assert cache_key(chat(**a), "t") == cache_key(chat(**b), "t")


@pytest.mark.parametrize(
    "change",
    [
        {"temperature": 0.5},
        {"seed": 7},
        {"messages": [{"role": "user", "content": "hi!"}]},
        {"messages": [{"role": "system", "content": "be brief"}, {"role": "user", "content": "hi"}]},
        {"tools": [WEATHER]},
        {"response_format": {"type": "json_object"}},
        {"n": 2},
        {"stop": ["\n"]},
        {"max_tokens": 5},
        {"top_p": 0.5},
        {"model": "other-model"},
        {"logprobs": True},
    ],
    ids=lambda c: next(iter(c)),
)
def test_key_changes_with_everything_that_changes_the_answer(change: dict[str, Any]) -> None:
    base = {"temperature": 0}
    assert cache_key(chat(**base), "t") != cache_key(chat(**{**base, **change}), "t")


def test_key_tells_seeds_and_tools_apart() -> None:
    other_tool = {**WEATHER, "function": {**WEATHER["function"], "name": "get_time"}}
    assert cache_key(chat(seed=1), "t") != cache_key(chat(seed=2), "t")
    assert cache_key(chat(tools=[WEATHER]), "t") != cache_key(chat(tools=[other_tool]), "t")


def test_key_tells_apart_requests_whose_native_bodies_differ() -> None:
    # A Messages request carries its own body (for Anthropic routes): fields only it has count.
    def messages(**fields: Any) -> ChatCompletionRequest:
        body = {"model": "m", "max_tokens": 5, "messages": [{"role": "user", "content": "hi"}], **fields}
        return chat(temperature=0).carrying(Native(ANTHROPIC_MESSAGES, body))

    assert cache_key(messages(top_k=5), "t") == cache_key(messages(top_k=5), "t")
    assert cache_key(messages(top_k=5), "t") != cache_key(messages(top_k=6), "t")
    assert cache_key(messages(), "t") != cache_key(chat(temperature=0), "t")
    # Delivery and billing fields don't, as on the chat body.
    assert cache_key(messages(stream=True, metadata={"user_id": "u"}), "t") == cache_key(messages(), "t")
    # The native body is private to the request: in no dump, and copies keep it.
    assert "_native" not in messages().model_dump() and messages().model_copy().native() is not None


def test_key_tells_chat_and_text_completions_apart() -> None:
    assert cache_key(chat(temperature=0), "t") != cache_key(completion(temperature=0), "t")
    assert cache_key(completion(prompt="a"), "t") != cache_key(completion(prompt="b"), "t")
    assert cache_key(completion(echo=False), "t") != cache_key(completion(echo=True), "t")


def test_namespaces_never_collide() -> None:
    namespaces = ["", "a", "b", "a:b", "tenant-1", "tenant-10", "ünïcode"]
    requests = [chat(), chat(temperature=0), completion(), completion(prompt="other")]
    keys = {cache_key(r, ns) for r in requests for ns in namespaces}
    assert len(keys) == len(requests) * len(namespaces)
    assert cache_key(chat(), "a") == cache_key(chat(), "a")


# ---------------------------------------------------------------------------- policy


def policy(
    fields: dict[str, Any] | None = None,
    headers: dict[str, str] | None = None,
    *,
    mode: str = "auto",
    ttl: float = 3600.0,
) -> Decision:
    return decide(chat(**(fields or {})), headers or {}, mode=mode, default_ttl_s=ttl)  # type: ignore[arg-type]


def rwt(d: Decision) -> tuple[bool, bool, float, bool]:
    return d.read, d.write, d.ttl_s, d.cacheable


@pytest.mark.parametrize(
    ("fields", "mode", "expected"),
    [
        ({"temperature": 0}, "auto", (True, True, 3600.0, True)),
        ({"temperature": 0.0, "top_p": 0.3}, "auto", (True, True, 3600.0, True)),
        ({"seed": 42}, "auto", (True, True, 3600.0, True)),
        ({"temperature": 1, "seed": 42}, "auto", (True, True, 3600.0, True)),
        ({"temperature": 1}, "auto", (False, False, 3600.0, False)),
        ({"temperature": 0.2}, "auto", (False, False, 3600.0, False)),
        ({}, "auto", (False, False, 3600.0, False)),  # unset: OpenAI's default of 1
        ({"temperature": 1}, "always", (True, True, 3600.0, True)),
        ({}, "always", (True, True, 3600.0, True)),
        ({"temperature": 0}, "never", (False, False, 3600.0, False)),
        ({"seed": 42}, "never", (False, False, 3600.0, False)),
    ],
)
def test_what_is_cached_by_mode(fields: dict[str, Any], mode: str, expected: tuple[bool, bool, float, bool]) -> None:
    assert rwt(policy(fields, mode=mode)) == expected


def test_outcome_when_not_found() -> None:
    assert policy({"temperature": 0}).outcome_if_missed == "MISS"
    assert policy({"temperature": 1}).outcome_if_missed == "BYPASS"
    assert policy({"temperature": 0}, {"cache-control": "no-cache"}).outcome_if_missed == "BYPASS"


@pytest.mark.parametrize(
    ("cache_control", "expected"),
    [
        ("no-cache", (False, True, 3600.0, True)),
        ("no-store", (True, False, 3600.0, True)),
        ("no-cache, no-store", (False, False, 3600.0, True)),
        ("max-age=60", (True, True, 60.0, True)),
        ("max-age=0", (True, False, 0.0, True)),
        ("max-age=-5", (True, False, 0.0, True)),
        ("Max-Age=7, No-Store", (True, False, 7.0, True)),
        ("max-age=soon", (True, True, 3600.0, True)),
        ("private, must-revalidate", (True, True, 3600.0, True)),
        ("", (True, True, 3600.0, True)),
    ],
)
def test_cache_control_header(cache_control: str, expected: tuple[bool, bool, float, bool]) -> None:
    assert rwt(policy({"temperature": 0}, {"cache-control": cache_control})) == expected


def test_cache_control_does_not_make_sampling_cacheable() -> None:
    assert rwt(policy({"temperature": 1}, {"cache-control": "max-age=60"})) == (False, False, 60.0, False)


def test_cache_control_from_real_http_headers_any_case() -> None:
    headers = Headers({"Cache-Control": "no-store"})
    d = decide(chat(temperature=0), headers, mode="auto", default_ttl_s=10)
    assert (d.read, d.write) == (True, False)


@pytest.mark.parametrize(
    ("cache", "expected"),
    [
        ({"no_cache": True}, (False, True, 3600.0, True)),
        ({"no_store": True}, (True, False, 3600.0, True)),
        ({"ttl": 5}, (True, True, 5.0, True)),
        ({"ttl": 2.5, "no_cache": True}, (False, True, 2.5, True)),
        ({"ttl": 0}, (True, False, 0.0, True)),
        ({"no_store": "yes"}, (True, True, 3600.0, True)),  # only a real true counts
        ({}, (True, True, 3600.0, True)),
    ],
)
def test_cache_directives_in_the_body(cache: dict[str, Any], expected: tuple[bool, bool, float, bool]) -> None:
    request = ChatCompletionRequest.model_validate(
        {"model": "m", "messages": [{"role": "user", "content": "hi"}], "temperature": 0, "cache": cache}
    )
    d = decide(request, {}, mode="auto", default_ttl_s=3600)
    assert rwt(d) == expected


@pytest.mark.parametrize("ttl", [True, "5", -1, 1e400, float("nan"), 1e12, [5]])
def test_a_ttl_that_is_not_a_sane_number_of_seconds_is_the_clients_mistake(ttl: object) -> None:
    request = ChatCompletionRequest.model_validate(
        {"model": "m", "messages": [{"role": "user", "content": "hi"}], "temperature": 0, "cache": {"ttl": ttl}}
    )
    with pytest.raises(InvalidRequest) as info:
        decide(request, {}, mode="auto", default_ttl_s=3600)
    assert info.value.param == "cache.ttl"


@pytest.mark.parametrize("age", ["1e400", "inf", "nan", "-5", "x"])
def test_an_unreadable_or_huge_max_age_never_breaks_the_request(age: str) -> None:
    d = decide(chat(temperature=0), {"cache-control": f"max-age={age}"}, mode="auto", default_ttl_s=3600)
    assert 0 <= d.ttl_s <= MAX_TTL_S


def test_body_and_header_directives_combine() -> None:
    request = chat(temperature=0, cache={"ttl": 5})
    d = decide(request, {"cache-control": "no-cache"}, mode="auto", default_ttl_s=3600)
    assert rwt(d) == (False, True, 5.0, True)


def test_text_completions_follow_the_same_policy() -> None:
    d = decide(completion(temperature=0), {"cache-control": "max-age=9"}, mode="auto", default_ttl_s=1)
    assert rwt(d) == (True, True, 9.0, True)
    assert not decide(completion(), {}, mode="auto", default_ttl_s=1).cacheable


# --------------------------------------------------------------------------- storage


@pytest.fixture
def cache(tmp_path: Path) -> Iterator[ResponseCache]:
    c = ResponseCache(tmp_path, size_limit_bytes=1 << 30)
    yield c
    c.close()


def test_round_trip(cache: ResponseCache) -> None:
    e = entry()
    assert cache.get("k") is None
    assert cache.set("k", e, 60) is True
    assert cache.get("k") == e
    assert cache.get("other") is None


def test_an_entry_survives_reopening_the_directory(tmp_path: Path) -> None:
    first = ResponseCache(tmp_path, size_limit_bytes=1 << 30)
    assert first.set("k", entry(), 60)
    first.close()
    second = ResponseCache(tmp_path, size_limit_bytes=1 << 30)
    assert second.get("k") == entry()
    second.close()


def test_entries_are_stored_as_json(tmp_path: Path, cache: ResponseCache) -> None:
    cache.set("k", entry(), 60)
    with diskcache.Cache(str(tmp_path)) as raw:
        stored = raw.get("k")
    assert isinstance(stored, bytes)
    assert json.loads(stored)["body"]["choices"][0]["message"]["content"] == TEXT


def test_entries_expire(cache: ResponseCache) -> None:
    cache.set("short", entry(), 0.2)
    cache.set("long", entry(), 60)
    assert cache.get("short") is not None
    time.sleep(0.3)
    assert cache.get("short") is None
    assert cache.get("long") is not None


@pytest.mark.parametrize(
    "garbage",
    [b"\xff\xfe\x00 not json at all", b"[1, 2, 3]", b'{"kind": "chat"}', b"null", "some text", 12345],
    ids=["binary", "json-list", "missing-fields", "json-null", "text", "int"],
)
def test_a_corrupt_entry_is_a_miss_and_is_dropped(
    tmp_path: Path, cache: ResponseCache, caplog: pytest.LogCaptureFixture, garbage: object
) -> None:
    with diskcache.Cache(str(tmp_path)) as raw:
        raw.set("k", garbage)
    with caplog.at_level(logging.WARNING, logger="orchestrator.caching.cache"):
        assert cache.get("k") is None
    assert any("corrupt" in r.getMessage() and r.levelno == logging.WARNING for r in caplog.records)
    with diskcache.Cache(str(tmp_path)) as raw:
        assert "k" not in raw
    assert cache.set("k", entry(), 60)  # and the key is usable again
    assert cache.get("k") == entry()


_UNPICKLED: list[str] = []


def _run_on_unpickle(tag: str) -> bytes:
    _UNPICKLED.append(tag)
    return b"not json"


class _Payload:
    def __reduce__(self) -> tuple[Any, tuple[str]]:
        return (_run_on_unpickle, ("ran",))


def test_a_pickled_entry_is_never_unpickled(tmp_path: Path, cache: ResponseCache) -> None:
    _UNPICKLED.clear()
    with diskcache.Cache(str(tmp_path)) as raw:
        raw.set("k", _Payload())
    assert cache.get("k") is None
    assert _UNPICKLED == []


def _hold_lock(directory: Path, held: threading.Event, release: threading.Event) -> None:
    other = diskcache.Cache(str(directory))
    with other.transact():
        held.set()
        release.wait(10)
    other.close()


def test_a_locked_database_never_stalls_a_read_and_fails_a_write_cleanly(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    cache = ResponseCache(tmp_path, size_limit_bytes=1 << 30, lock_timeout_s=0.05, write_timeout_s=0.2)
    assert cache.set("k", entry(), 60)
    held, release = threading.Event(), threading.Event()
    holder = threading.Thread(target=_hold_lock, args=(tmp_path, held, release))
    holder.start()
    try:
        assert held.wait(5)
        with caplog.at_level(logging.WARNING, logger="orchestrator.caching.cache"):
            start = time.perf_counter()
            # Reads take no write lock (least-recently-stored eviction): another
            # process's write transaction doesn't make the event loop wait.
            assert cache.get("k") == entry()
            read_s = time.perf_counter() - start
            start = time.perf_counter()
            assert cache.set("k2", entry(), 60) is False
            write_s = time.perf_counter() - start
    finally:
        release.set()
        holder.join()
    assert read_s < 0.05 and write_s < 1.0, (read_s, write_s)
    messages = [r.getMessage() for r in caplog.records]
    assert any(m.startswith("cache write failed (Timeout)") for m in messages), messages
    # The lock released, everything works again.
    assert cache.set("k2", entry(), 60) and cache.get("k2") == entry()
    cache.close()


def test_processes_writing_at_once_leave_every_entry_intact(tmp_path: Path) -> None:
    workers, count = 4, 100
    ctx = multiprocessing.get_context("spawn")
    barrier = ctx.Barrier(workers)
    results = ctx.Queue()
    procs = [
        ctx.Process(target=cache_writer.write_entries, args=(str(tmp_path), w, count, barrier, results))
        for w in range(workers)
    ]
    for p in procs:
        p.start()
    try:
        dropped = dict(results.get(timeout=60) for _ in procs)
    finally:
        for p in procs:
            p.join(10)
        results.close()
        results.join_thread()
    assert [p.exitcode for p in procs] == [0] * workers
    assert sorted(dropped) == list(range(workers))
    cache = ResponseCache(tmp_path, size_limit_bytes=1 << 30)
    try:
        for w in range(workers):
            for i in range(count):
                got = cache.get(f"w{w}:{i}")
                assert got is not None, (w, i, dropped)
                assert got.body == cache_writer.entry_body(w, i)
    finally:
        cache.close()


def test_size_limit_evicts_the_least_recently_stored(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    # 40 kB entries are stored as files, so the limit counts them exactly: about 20 fit in 1 MB.
    cache = ResponseCache(tmp_path, size_limit_bytes=1_000_000)
    big = {**stored_chat().model_dump(), "padding": "x" * 40_000}
    with caplog.at_level(logging.WARNING, logger="orchestrator.caching.cache"):
        for i in range(60):
            assert cache.set(f"k{i}", entry(big), 600)
        present = [i for i in range(60) if cache.get(f"k{i}") is not None]
    cache.close()
    assert caplog.records == []
    # Reads don't refresh an entry (they take no write lock): the oldest stored go first.
    assert all(i in present for i in range(55, 60)), present
    assert not any(i in present for i in range(0, 20)), present
    assert len(present) < 30


# ---------------------------------------------------------------------------- replay


def stored_chat(
    content: str | None = TEXT,
    *,
    tool_calls: list[ToolCall] | None = None,
    finish: str = "stop",
    logprobs: ChoiceLogprobs | None = None,
) -> ChatCompletion:
    return ChatCompletion(
        id="chatcmpl-stored",
        created=1,
        model="fake-chat",
        choices=[
            ChatChoice(
                index=0,
                message=AssistantMessage(content=content, tool_calls=tool_calls),
                finish_reason=finish,  # type: ignore[arg-type]
                logprobs=logprobs,
            )
        ],
        usage=USAGE,
    )


def check_chat_stream(chunks: list[ChatCompletionChunk]) -> None:
    for c in chunks:
        validate("CreateChatCompletionStreamResponse", json.loads(c.model_dump_json()))
    assert len({c.id for c in chunks}) == 1 and len({c.created for c in chunks}) == 1
    assert chunks[0].id != "chatcmpl-stored" and chunks[0].id.startswith("chatcmpl-")
    assert chunks[0].created >= time.time() - 60
    assert chunks[0].choices[0].delta.role == "assistant"


async def test_replay_chat_is_a_real_stream() -> None:
    stored = stored_chat()
    e = entry(stored.model_dump())
    chunks = await collect(replay_chat(Entry.from_bytes(e.to_bytes())))
    check_chat_stream(chunks)
    assert len(chunks) > 10
    assert all(len(c.choices[0].delta.content or "") < 12 for c in chunks if c.choices)
    whole = await assemble_chat(aiter_of(chunks))
    assert whole.choices[0].message.content == TEXT
    assert whole.choices[0].finish_reason == "stop"
    assert whole.usage == USAGE
    assert whole.model == "fake-chat"
    second = await collect(replay_chat(e))
    assert second[0].id != chunks[0].id  # every replay is a new answer


async def test_replay_chat_tool_calls() -> None:
    calls = [
        ToolCall(id="call_a", function=FunctionCall(name="get_weather", arguments='{"city": "Paris", "days": [1, 2]}')),
        ToolCall(id="call_b", function=FunctionCall(name="get_time", arguments='{"zone": "Europe/Paris"}')),
    ]
    stored = stored_chat(None, tool_calls=calls, finish="tool_calls")
    chunks = await collect(replay_chat(entry(stored.model_dump())))
    check_chat_stream(chunks)
    deltas = [tc for c in chunks for ch in c.choices for tc in ch.delta.tool_calls or []]
    assert len(deltas) > 4
    whole = await assemble_chat(aiter_of(chunks))
    message = whole.choices[0].message
    assert message.content is None
    assert message.tool_calls == calls
    assert [json.loads(c.function.arguments) for c in message.tool_calls] == [
        {"city": "Paris", "days": [1, 2]},
        {"zone": "Europe/Paris"},
    ]
    assert whole.choices[0].finish_reason == "tool_calls"


async def test_replay_chat_keeps_logprobs_and_every_choice() -> None:
    lp = ChoiceLogprobs(content=[TokenLogprob(token="The", logprob=-0.1, bytes=[84, 104, 101])])
    stored = stored_chat(logprobs=lp)
    stored.choices.append(
        ChatChoice(index=1, message=AssistantMessage(content="second answer here"), finish_reason="length")
    )
    chunks = await collect(replay_chat(entry(stored.model_dump())))
    check_chat_stream(chunks)
    assert {ch.index for ch in chunks[0].choices} == {0, 1}
    whole = await assemble_chat(aiter_of(chunks))
    assert [(c.message.content, c.finish_reason) for c in whole.choices] == [
        (TEXT, "stop"),
        ("second answer here", "length"),
    ]
    assert whole.choices[0].logprobs == lp


async def test_replay_an_empty_answer() -> None:
    chunks = await collect(replay_chat(entry(stored_chat("").model_dump())))
    check_chat_stream(chunks)
    whole = await assemble_chat(aiter_of(chunks))
    assert whole.choices[0].message.content == "" and whole.choices[0].finish_reason == "stop"


def test_pieces_give_back_the_text_exactly() -> None:
    for text in [TEXT, "  leading and trailing  ", "a\n\nb\tc", "", "one"]:
        assert "".join(pieces(text)) == text
    assert len(pieces(TEXT)) == len(TEXT.split())


async def test_replay_completion_is_a_real_stream() -> None:
    stored = CompletionChunk(
        id="cmpl-stored",
        created=1,
        model="fake-base",
        choices=[CompletionChoice(index=0, text=TEXT, finish_reason="length")],
        usage=USAGE,
    )
    e = Entry(kind="completion", body=stored.model_dump(), provider="local-base", model="fake-base")
    chunks = await collect(replay_completion(Entry.from_bytes(e.to_bytes())))
    assert len(chunks) > 10
    for c in chunks:
        validate("CreateCompletionResponse", json.loads(c.model_dump_json()), completion_stream=True)
    assert len({c.id for c in chunks}) == 1
    assert chunks[0].id != "cmpl-stored" and chunks[0].id.startswith("cmpl-")
    assert chunks[0].created >= time.time() - 60
    whole = await assemble_completion(aiter_of(chunks))
    assert whole.choices[0].text == TEXT
    assert whole.choices[0].finish_reason == "length"
    assert whole.usage == USAGE


def test_fresh_answers_get_new_ids() -> None:
    stored = stored_chat()
    fresh = fresh_chat(entry(stored.model_dump()))
    assert fresh.id != stored.id and fresh.id.startswith("chatcmpl-")
    assert fresh.created >= time.time() - 60
    assert fresh.choices == stored.choices and fresh.usage == stored.usage
    assert fresh_chat(entry(stored.model_dump())).id != fresh.id
    validate("CreateChatCompletionResponse", json.loads(fresh.model_dump_json()))

    text = CompletionChunk(
        id="cmpl-stored", created=1, model="m", choices=[CompletionChoice(index=0, text="hi", finish_reason="stop")]
    )
    fresh_text = fresh_completion(Entry(kind="completion", body=text.model_dump(), provider="p", model="m"))
    assert fresh_text.id != "cmpl-stored" and fresh_text.choices == text.choices
    validate("CreateCompletionResponse", json.loads(fresh_text.model_dump_json()))
