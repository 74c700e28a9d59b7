"""`POST /v1/chat/completions` through the ASGI app, whole and streamed."""

from __future__ import annotations

import json

import httpx
import pytest
from http_checks import CHAT_MODEL, Api, user

from orchestrator.testing.engine import FakeEngine

PATH = "/v1/chat/completions"


def body(text: str = "hello there world", **fields: object) -> dict[str, object]:
    return {"model": CHAT_MODEL, "messages": user(text), **fields}


# ------------------------------------------------------------------------ whole


async def test_chat(api: Api, chat_engine: FakeEngine) -> None:
    data = await api.ok(PATH, body())
    assert api.last is not None and api.last.headers["x-served-by"] == f"local/{CHAT_MODEL}"
    assert data["object"] == "chat.completion"
    assert data["id"].startswith("chatcmpl-")
    assert data["model"] == CHAT_MODEL
    [choice] = data["choices"]
    assert choice == {
        "index": 0,
        "message": {"role": "assistant", "content": "hello there world", "refusal": None},
        "finish_reason": "stop",
        "logprobs": None,
    }
    assert data["usage"] == {
        "prompt_tokens": 3,
        "completion_tokens": 3,
        "total_tokens": 6,
        "prompt_tokens_details": {"cached_tokens": 0},
    }
    [gen] = chat_engine.generations
    assert gen.outcome == "finished"
    assert gen.request["stream"] is False and gen.request["kind"] == "chat"
    assert gen.request["messages"] == [{"role": "user", "content": "hello there world"}]


async def test_chat_passes_sampling_through(api: Api, chat_engine: FakeEngine) -> None:
    await api.ok(
        PATH,
        body(temperature=0.2, top_p=0.5, seed=3, max_completion_tokens=9, max_tokens=4, stop="x", logit_bias={"1": 2}),
    )
    sampling = chat_engine.generations[0].request["sampling"]
    assert sampling["temperature"] == 0.2 and sampling["top_p"] == 0.5 and sampling["seed"] == 3
    assert sampling["max_tokens"] == 9  # max_completion_tokens wins
    assert sampling["stop"] == ["x"] and sampling["logit_bias"] == {"1": 2}
    assert sampling["logprobs"] is None


async def test_chat_n2(api: Api, chat_engine: FakeEngine) -> None:
    chat_engine.enqueue(["first answer", "second"])
    data = await api.ok(PATH, body(n=2))
    assert [(c["index"], c["message"]["content"]) for c in data["choices"]] == [(0, "first answer"), (1, "second")]
    assert data["usage"]["completion_tokens"] == 3


async def test_chat_max_tokens_cuts_with_length(api: Api, chat_engine: FakeEngine) -> None:
    chat_engine.enqueue(["one two three four five"])
    data = await api.ok(PATH, body(max_tokens=2))
    assert data["choices"][0]["message"]["content"] == "one two"
    assert data["choices"][0]["finish_reason"] == "length"
    assert data["usage"]["completion_tokens"] == 2


async def test_chat_stop(api: Api, chat_engine: FakeEngine) -> None:
    chat_engine.enqueue(["alpha beta. gamma", "no stop here"])
    data = await api.ok(PATH, body(stop=[".", "zzz"], n=2))
    assert [(c["message"]["content"], c["finish_reason"]) for c in data["choices"]] == [
        ("alpha beta", "stop"),
        ("no stop here", "stop"),
    ]


async def test_chat_logprobs(api: Api) -> None:
    data = await api.ok(PATH, body("a b", logprobs=True, top_logprobs=2))
    content = data["choices"][0]["logprobs"]["content"]
    assert [t["token"] for t in content] == ["a", " b"]
    for t in content:
        assert t["logprob"] <= 0
        assert bytes(t["bytes"]).decode() == t["token"]
        assert len(t["top_logprobs"]) == 2
        assert t["top_logprobs"][0]["token"] == t["token"]
    assert data["choices"][0]["logprobs"]["refusal"] is None


async def test_chat_logprobs_without_top(api: Api, chat_engine: FakeEngine) -> None:
    data = await api.ok(PATH, body("a", logprobs=True))
    assert chat_engine.generations[0].request["sampling"]["logprobs"] == 0
    assert data["choices"][0]["logprobs"]["content"][0]["top_logprobs"] == []


async def test_chat_json_response_format_is_accepted(api: Api, chat_engine: FakeEngine) -> None:
    chat_engine.enqueue(['{"answer": 42}'])
    schema = {"type": "object", "properties": {"answer": {"type": "integer"}}}
    data = await api.ok(
        PATH, body(response_format={"type": "json_schema", "json_schema": {"name": "a", "schema": schema}})
    )
    assert json.loads(data["choices"][0]["message"]["content"]) == {"answer": 42}
    sent = chat_engine.generations[0].request["sampling"]["response_format"]
    assert sent is not None and sent["json_schema"]["schema"] == schema  # by alias, not `schema_`
    await api.ok(PATH, body(response_format={"type": "json_object"}))


@pytest.mark.parametrize(
    "schema",
    [
        {"$ref": "#"},
        {"$defs": {"a": {"$ref": "#/$defs/a"}}, "$ref": "#/$defs/a"},
        {"type": "object", "properties": {"a": {"allOf": [{"$ref": "#/properties/a"}]}}, "required": ["a"]},
    ],
)
async def test_a_schema_no_value_matches_is_a_400_naming_it(
    live_server: str, chat_engine: FakeEngine, schema: dict[str, object]
) -> None:
    # The local engine's grammar for it allows only the empty answer: it was a 200 with empty content.
    fmt = {"type": "json_schema", "json_schema": {"name": "a", "schema": schema}}
    async with httpx.AsyncClient(base_url=live_server, timeout=10) as http:
        r = await http.post(PATH, json=body(response_format=fmt))
    assert r.status_code == 400, r.text
    error = r.json()["error"]
    assert error["type"] == "invalid_request_error" and error["param"] == "response_format.json_schema.schema"
    assert "circle" in error["message"]
    assert chat_engine.generations == []


async def test_a_recursive_schema_that_descends_is_served(api: Api, chat_engine: FakeEngine) -> None:
    chat_engine.enqueue(['{"kids": []}'])
    tree = {"type": "object", "properties": {"kids": {"type": "array", "items": {"$ref": "#"}}}}
    await api.ok(PATH, body(response_format={"type": "json_schema", "json_schema": {"name": "t", "schema": tree}}))


async def test_chat_with_text_parts(api: Api) -> None:
    messages = [
        {"role": "system", "content": "be brief"},
        {"role": "user", "content": [{"type": "text", "text": "part one"}, {"type": "text", "text": " two"}]},
    ]
    data = await api.ok(PATH, {"model": CHAT_MODEL, "messages": messages})
    assert data["choices"][0]["message"]["content"] == "part one\n two"  # joined as vLLM joins text parts


async def test_unknown_request_fields_are_ignored(api: Api) -> None:
    await api.ok(PATH, body(user="u-1", metadata={"k": "v"}, store=False, reasoning_effort="low"))


# ----------------------------------------------------------------------- stream


async def test_chat_stream(api: Api, chat_engine: FakeEngine) -> None:
    chunks = await api.stream(PATH, body())
    assert api.last is not None and api.last.headers["x-served-by"] == f"local/{CHAT_MODEL}"
    assert len({c["id"] for c in chunks}) == 1
    assert {c["object"] for c in chunks} == {"chat.completion.chunk"}
    assert chunks[0]["choices"] == [{"index": 0, "delta": {"role": "assistant", "content": ""}, "finish_reason": None}]
    deltas = [c["choices"][0] for c in chunks[1:]]
    assert "".join(d["delta"].get("content", "") for d in deltas) == "hello there world"
    assert [d["finish_reason"] for d in deltas] == [None, None, "stop"]
    assert all("usage" not in c for c in chunks)
    assert chat_engine.generations[0].request["stream"] is True


async def test_chat_stream_include_usage(api: Api) -> None:
    chunks = await api.stream(PATH, body(stream_options={"include_usage": True}))
    *content, last = chunks
    assert last["choices"] == []
    assert last["usage"] == {
        "prompt_tokens": 3,
        "completion_tokens": 3,
        "total_tokens": 6,
        "prompt_tokens_details": {"cached_tokens": 0},
    }
    assert all("usage" not in c for c in content)


async def test_chat_stream_include_usage_false(api: Api) -> None:
    chunks = await api.stream(PATH, body(stream_options={"include_usage": False}))
    assert all("usage" not in c and c["choices"] for c in chunks)


async def test_chat_stream_n2(api: Api, chat_engine: FakeEngine) -> None:
    chat_engine.enqueue(["x y z", "p"])
    chunks = await api.stream(PATH, body(n=2))
    assert chunks[0]["choices"] == [
        {"index": i, "delta": {"role": "assistant", "content": ""}, "finish_reason": None} for i in (0, 1)
    ]
    texts: dict[int, str] = {0: "", 1: ""}
    finish: dict[int, str] = {}
    for c in chunks[1:]:
        for choice in c["choices"]:
            texts[choice["index"]] += choice["delta"].get("content", "")
            if choice["finish_reason"]:
                finish[choice["index"]] = choice["finish_reason"]
    assert texts == {0: "x y z", 1: "p"}
    assert finish == {0: "stop", 1: "stop"}


async def test_chat_stream_logprobs(api: Api) -> None:
    chunks = await api.stream(PATH, body("a b c", logprobs=True, top_logprobs=1))
    tokens = [t["token"] for c in chunks[1:] for t in c["choices"][0]["logprobs"]["content"]]
    assert tokens == ["a", " b", " c"]


async def test_chat_stream_stop_and_length(api: Api, chat_engine: FakeEngine) -> None:
    chat_engine.enqueue(["one two three", "four five six"])
    chunks = await api.stream(PATH, body(stop="three", max_tokens=2, n=2))
    finish = {ch["index"]: ch["finish_reason"] for c in chunks for ch in c["choices"] if ch["finish_reason"]}
    assert finish == {0: "length", 1: "length"}
    chat_engine.enqueue(["one two three"])
    chunks = await api.stream(PATH, body(stop="three"))
    text = "".join(ch["delta"].get("content", "") for c in chunks for ch in c["choices"])
    assert text == "one two"
    assert chunks[-1]["choices"][0]["finish_reason"] == "stop"


async def test_chat_stream_empty_reply(api: Api, chat_engine: FakeEngine) -> None:
    chat_engine.enqueue([""])
    chunks = await api.stream(PATH, body())
    assert chunks[-1]["choices"] == [{"index": 0, "delta": {}, "finish_reason": "stop"}]
