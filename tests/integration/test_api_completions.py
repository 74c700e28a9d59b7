"""`POST /v1/completions` through the ASGI app, whole and streamed."""

from __future__ import annotations

from http_checks import BASE_MODEL, CHAT_MODEL, Api

from orchestrator.testing.engine import FakeEngine

PATH = "/v1/completions"


async def test_completion(api: Api, chat_engine: FakeEngine) -> None:
    chat_engine.enqueue([" and then some"])
    data = await api.ok(PATH, {"model": CHAT_MODEL, "prompt": "Once upon a time"})
    assert data["object"] == "text_completion"
    assert data["id"].startswith("cmpl-")
    assert data["choices"] == [{"index": 0, "text": " and then some", "finish_reason": "stop", "logprobs": None}]
    assert data["usage"]["prompt_tokens"] == 4
    assert data["usage"]["completion_tokens"] == 3
    [gen] = chat_engine.generations
    assert gen.request["kind"] == "completion" and gen.request["prompts"] == ["Once upon a time"]
    assert gen.request["sampling"]["max_tokens"] == 16  # OpenAI's default for completions


async def test_completion_on_a_model_without_chat_template(api: Api, base_engine: FakeEngine) -> None:
    data = await api.ok(PATH, {"model": BASE_MODEL, "prompt": "plain text"})
    assert api.last is not None and api.last.headers["x-served-by"] == f"local-base/{BASE_MODEL}"
    assert data["choices"][0]["text"] == "plain text"
    assert len(base_engine.generations) == 1


async def test_multiple_prompts_times_n(api: Api, chat_engine: FakeEngine) -> None:
    chat_engine.enqueue(["p0s0", "p0s1", "p1s0", "p1s1"])
    data = await api.ok(PATH, {"model": CHAT_MODEL, "prompt": ["first", "second prompt"], "n": 2})
    assert [(c["index"], c["text"]) for c in data["choices"]] == [(0, "p0s0"), (1, "p0s1"), (2, "p1s0"), (3, "p1s1")]
    assert data["usage"]["prompt_tokens"] == 3


async def test_token_id_prompts(api: Api, chat_engine: FakeEngine) -> None:
    data = await api.ok(PATH, {"model": CHAT_MODEL, "prompt": [11, 12, 13], "max_tokens": 2})
    assert chat_engine.generations[0].request["prompts"] == [[11, 12, 13]]
    assert data["usage"]["prompt_tokens"] == 3
    assert data["choices"][0]["text"] == "11 12"
    assert data["choices"][0]["finish_reason"] == "length"
    data = await api.ok(PATH, {"model": CHAT_MODEL, "prompt": [[1, 2], [3]]})
    assert chat_engine.generations[1].request["prompts"] == [[1, 2], [3]]
    assert [c["text"] for c in data["choices"]] == ["1 2", "3"]


async def test_echo(api: Api, chat_engine: FakeEngine) -> None:
    chat_engine.enqueue([" world"])
    data = await api.ok(PATH, {"model": CHAT_MODEL, "prompt": "hello", "echo": True})
    assert data["choices"][0]["text"] == "hello world"
    assert chat_engine.generations[0].request["sampling"]["echo"] is True


async def test_stop_and_max_tokens(api: Api, chat_engine: FakeEngine) -> None:
    chat_engine.enqueue(["a b c d e", "a b c d e"])
    data = await api.ok(PATH, {"model": CHAT_MODEL, "prompt": "x", "stop": " c", "n": 2, "max_tokens": 10})
    assert [(c["text"], c["finish_reason"]) for c in data["choices"]] == [("a b", "stop"), ("a b", "stop")]
    chat_engine.enqueue(["a b c d e"])
    data = await api.ok(PATH, {"model": CHAT_MODEL, "prompt": "x", "max_tokens": 3})
    assert (data["choices"][0]["text"], data["choices"][0]["finish_reason"]) == ("a b c", "length")


async def test_logprobs(api: Api, chat_engine: FakeEngine) -> None:
    chat_engine.enqueue([" one two"])
    data = await api.ok(PATH, {"model": CHAT_MODEL, "prompt": "count", "logprobs": 2})
    choice = data["choices"][0]
    lp = choice["logprobs"]
    assert lp["tokens"] == [" one", " two"]
    assert all(x <= 0 for x in lp["token_logprobs"])
    assert [len(top) for top in lp["top_logprobs"]] == [2, 2]
    assert lp["text_offset"] == [0, 4]
    for token, offset in zip(lp["tokens"], lp["text_offset"], strict=True):
        assert choice["text"][offset:].startswith(token)
    assert chat_engine.generations[0].request["sampling"]["logprobs"] == 2


async def test_echo_with_logprobs_offsets_point_into_the_text(api: Api, chat_engine: FakeEngine) -> None:
    chat_engine.enqueue([" one two"])
    data = await api.ok(PATH, {"model": CHAT_MODEL, "prompt": "count", "logprobs": 0, "echo": True})
    choice = data["choices"][0]
    assert choice["text"] == "count one two"
    lp = choice["logprobs"]
    for token, offset in zip(lp["tokens"], lp["text_offset"], strict=True):
        assert choice["text"][offset:].startswith(token), (token, offset)


async def test_suffix_is_refused(api: Api, chat_engine: FakeEngine) -> None:
    error = await api.error(PATH, {"model": CHAT_MODEL, "prompt": "def f(", "suffix": "return x"}, status=400)
    assert error["param"] == "suffix"
    assert error["type"] == "invalid_request_error"
    assert chat_engine.generations == []


async def test_stream(api: Api) -> None:
    chunks = await api.stream(PATH, {"model": CHAT_MODEL, "prompt": "a b c"})
    assert {c["object"] for c in chunks} == {"text_completion"}
    assert len({c["id"] for c in chunks}) == 1
    assert "".join(c["choices"][0]["text"] for c in chunks) == "a b c"
    assert [c["choices"][0]["finish_reason"] for c in chunks] == [None, None, "stop"]
    assert all("usage" not in c for c in chunks)


async def test_stream_multiple_prompts_with_usage(api: Api, chat_engine: FakeEngine) -> None:
    chat_engine.enqueue(["x", "y y", "z z z", "w"])
    chunks = await api.stream(
        PATH, {"model": CHAT_MODEL, "prompt": ["p", "q"], "n": 2, "stream_options": {"include_usage": True}}
    )
    *content, last = chunks
    assert last["choices"] == [] and last["usage"]["completion_tokens"] == 7
    texts: dict[int, str] = {}
    for c in content:
        for choice in c["choices"]:
            texts[choice["index"]] = texts.get(choice["index"], "") + choice["text"]
    assert texts == {0: "x", 1: "y y", 2: "z z z", 3: "w"}


async def test_stream_echo_and_logprobs(api: Api, chat_engine: FakeEngine) -> None:
    chat_engine.enqueue([" b c"])
    chunks = await api.stream(PATH, {"model": CHAT_MODEL, "prompt": "a", "echo": True, "logprobs": 1})
    assert "".join(c["choices"][0]["text"] for c in chunks) == "a b c"
    assert [t for c in chunks for t in c["choices"][0]["logprobs"]["tokens"]] == [" b", " c"]
