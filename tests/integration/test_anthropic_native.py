"""Anthropic routes get the client's own Messages body; other routes its translation.

Through the official anthropic SDK over a real socket (`anthropic_gateway`): the
fake Anthropic provider ("claude") records the body it received, which must be
what the client sent (`top_k`, `cache_control` blocks, `thinking`, `metadata`,
fields the gateway doesn't know) with only the route's model, `max_tokens` and
`stream` set by the gateway; the OpenAI-compatible fake ("alpha") gets an
OpenAI chat body. The cache and single-flight key on the native body too.
"""

from __future__ import annotations

import copy
from typing import Any, cast

import anthropic
import openai
import pytest
from anthropic.types import Message
from anthropic_gateway import TEAM, Gateway

from orchestrator.testing.provider import FakeProvider

pytest_plugins = ["anthropic_fixtures"]  # fakes, tokenizer, gw

EPHEMERAL = {"type": "ephemeral"}
WEATHER = {
    "name": "get_weather",
    "description": "The weather in a city.",
    "input_schema": {"type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]},
    "cache_control": EPHEMERAL,
}
SYSTEM = [{"type": "text", "text": "You are terse.", "cache_control": EPHEMERAL}]
MESSAGES = [
    {"role": "user", "content": [{"type": "text", "text": "Hello, who are you?", "cache_control": EPHEMERAL}]},
    {
        "role": "assistant",
        "content": [
            {"type": "thinking", "thinking": "They ask who I am.", "signature": "sig-abc"},
            {"type": "text", "text": "A helpful assistant."},
        ],
    },
    {"role": "user", "content": "What is the weather in Paris?"},
]
# What this SDK version no longer names goes in extra_body, as a user of it would send it.
EXTRA = {"top_k": 7, "temperature": 0.5, "future_field": {"kept": True}}

REPLY = "It is sunny."  # what the fake providers answer


def received(fake: FakeProvider) -> dict[str, Any]:
    [request] = [r for r in fake.requests if r.method == "POST"]
    return cast(dict[str, Any], request.body)


def asked(**fields: Any) -> dict[str, Any]:
    """The fields of the client's request, as the SDK sends them."""
    return {"system": SYSTEM, "messages": MESSAGES, "metadata": {"user_id": "u-42"}, **fields}


@pytest.mark.parametrize("stream", [False, True], ids=["json", "sse"])
async def test_the_stop_sequence_an_anthropic_route_matched_is_named(gw: Gateway, stream: bool) -> None:
    client = gw.client()
    ask = asked(model="claude/haiku", max_tokens=100, stop_sequences=["sunny"])
    if stream:
        async with client.messages.stream(**ask) as s:
            answer = await s.get_final_message()
    else:
        answer = await client.messages.create(**ask)
    assert answer.content[0].type == "text" and answer.content[0].text.strip() == "It is"
    assert (answer.stop_reason, answer.stop_sequence) == ("stop_sequence", "sunny")


async def test_more_stop_sequences_than_openai_takes_go_where_they_are_taken(
    gw: Gateway, fakes: dict[str, FakeProvider]
) -> None:
    """Anthropic's API takes more than OpenAI's 4 (every one was a 400 before): the local engine and an Anthropic
    route get them all; an OpenAI-compatible route, which takes 4, is never sent them: a 400 naming the field."""
    client = gw.client()
    stops = ["s1", "s2", "s3", "s4", "s5", "sunny"]
    local = await client.messages.create(**asked(model="auto", max_tokens=20, stop_sequences=stops))
    assert local.stop_reason == "end_turn"
    [generation] = gw.engine.generations
    assert generation.request["sampling"]["stop"] == stops
    answer = await client.messages.create(**asked(model="claude/haiku", max_tokens=100, stop_sequences=stops))
    assert (answer.stop_reason, answer.stop_sequence) == ("stop_sequence", "sunny")
    assert received(fakes["claude"])["stop_sequences"] == stops
    with pytest.raises(anthropic.BadRequestError) as caught:
        await client.messages.create(**asked(model="alpha/m", max_tokens=20, stop_sequences=stops))
    error = cast(dict[str, Any], caught.value.body)["error"]
    assert error["type"] == "invalid_request_error"
    assert error["message"].startswith("The model 'alpha/m' does not support more than 4 stop sequences")
    assert fakes["alpha"].counts.total() == 0
    await client.messages.create(**asked(model="alpha/m", max_tokens=20, stop_sequences=stops[-4:]))
    assert received(fakes["alpha"])["stop"] == stops[-4:]  # up to 4, as before
    # Checked at every token of every answer by the local engine: 100,000 of them would slow it for everyone.
    with pytest.raises(anthropic.BadRequestError) as caught:
        await client.messages.create(**asked(model="auto", max_tokens=20, stop_sequences=[f"s{i}" for i in range(257)]))
    assert "stop_sequences" in cast(dict[str, Any], caught.value.body)["error"]["message"]
    assert len(gw.engine.generations) == 1


@pytest.mark.parametrize("stream", [False, True], ids=["json", "sse"])
async def test_an_anthropic_route_gets_the_clients_own_body(
    gw: Gateway, fakes: dict[str, FakeProvider], stream: bool
) -> None:
    client = gw.client()
    thinking = {"type": "enabled", "budget_tokens": 1024}
    ask = asked(model="claude/haiku", max_tokens=2048, thinking=thinking, stop_sequences=["STOP"])
    if stream:
        async with client.messages.stream(**ask, extra_body=EXTRA) as s:
            answer = await s.get_final_message()
    else:
        answer = await client.messages.create(**ask, extra_body=EXTRA)
    assert answer.content[0].type == "text" and answer.content[0].text == "It is sunny."
    sent = received(fakes["claude"])
    # The gateway sets the route's model, the flow's max_tokens, and always streams upstream.
    assert (sent.pop("model"), sent.pop("max_tokens"), sent.pop("stream")) == ("claude-test", 2048, True)
    expected = {k: v for k, v in ask.items() if k not in ("model", "max_tokens")}
    assert sent == {**expected, **EXTRA}  # every field and block as sent: no double translation


async def test_an_alias_spills_to_anthropic_with_the_native_body(gw: Gateway, fakes: dict[str, FakeProvider]) -> None:
    # `auto` is the local model first; it has no tools, so a request with tools goes to claude.
    raw = await gw.client().messages.with_raw_response.create(
        **asked(model="auto", max_tokens=50, tools=[WEATHER], tool_choice={"type": "any"}), extra_body=EXTRA
    )
    assert raw.headers["x-served-by"] == "claude/claude-test"
    message = await raw.parse()
    assert message.stop_reason == "tool_use"
    sent = received(fakes["claude"])
    assert sent["tools"] == [WEATHER] and sent["tool_choice"] == {"type": "any"}  # cache_control kept
    assert sent["top_k"] == 7 and sent["system"] == SYSTEM and sent["messages"] == MESSAGES
    assert gw.engine.generations == []


async def test_a_route_that_is_not_anthropics_gets_the_translation(gw: Gateway, fakes: dict[str, FakeProvider]) -> None:
    answer = await gw.client().messages.create(**asked(model="alpha/m", max_tokens=50), extra_body=EXTRA)
    assert isinstance(answer, Message) and answer.stop_reason == "end_turn"
    sent = received(fakes["alpha"])
    assert sent["model"] == "alpha-model" and sent["user"] == "u-42" and sent["temperature"] == 0.5
    assert [m["role"] for m in sent["messages"]] == ["system", "user", "assistant", "user"]
    assert sent["messages"][0]["content"] == "You are terse."
    assert {"top_k", "thinking", "metadata", "system", "future_field"}.isdisjoint(sent)


async def test_the_gateways_cache_field_is_read_and_not_sent_on(gw: Gateway, fakes: dict[str, FakeProvider]) -> None:
    ask = asked(model="claude/haiku", max_tokens=50)
    client = gw.client()
    for _ in range(2):
        raw = await client.messages.with_raw_response.create(
            **ask, extra_body={"temperature": 0, "cache": {"no_store": True}}
        )
        assert raw.headers["x-cache"] == "MISS"
    assert all("cache" not in r.body for r in fakes["claude"].requests)


async def test_the_cache_tells_apart_requests_that_differ_only_in_native_fields(
    gw: Gateway, fakes: dict[str, FakeProvider]
) -> None:
    client = gw.client()

    async def ask(top_k: int) -> str:
        body = copy.deepcopy(asked(model="claude/haiku", max_tokens=50))
        raw = await client.messages.with_raw_response.create(**body, extra_body={"temperature": 0, "top_k": top_k})
        return str(raw.headers["x-cache"])

    assert [await ask(5), await ask(5), await ask(6), await ask(6)] == ["MISS", "HIT", "MISS", "HIT"]
    assert [r.body["top_k"] for r in fakes["claude"].requests] == [5, 6]


async def test_a_sensitive_request_never_goes_to_anthropic(gw: Gateway, fakes: dict[str, FakeProvider]) -> None:
    client = gw.client()
    sensitive = {"x-data-class": "sensitive"}
    with pytest.raises(anthropic.BadRequestError) as caught:
        await client.messages.create(**asked(model="claude/haiku", max_tokens=20), extra_headers=sensitive)
    assert cast(dict[str, Any], caught.value.body)["error"]["type"] == "invalid_request_error"
    raw = await client.messages.with_raw_response.create(**asked(model="auto", max_tokens=20), extra_headers=sensitive)
    assert raw.headers["x-served-by"] == "local/fake-chat"
    assert fakes["claude"].counts.total() == 0


# Content with no OpenAI translation, as the Messages API takes it (the anthropic SDK's own param types).
PDF = {"type": "document", "source": {"type": "base64", "media_type": "application/pdf", "data": "JVBERi0xLjQK"}}
URL_PDF = {"type": "document", "source": {"type": "url", "url": "https://example.com/a.pdf"}}
FILE_IMAGE = {"type": "image", "source": {"type": "file", "file_id": "file_011CNha8iCJcU1wXNR6q4V8w"}}
CITED = {
    "type": "document",
    "source": {"type": "text", "media_type": "text/plain", "data": "The grass is green."},
    "citations": {"enabled": True},
}
WEB_SEARCH = {"type": "web_search_20250305", "name": "web_search", "max_uses": 3}
# Content that has one: a plain-text document and a search result are text the model reads.
NOTE = {
    "type": "document",
    "source": {"type": "text", "media_type": "text/plain", "data": "The grass is green."},
    "title": "Field notes",
    "context": "Written in spring.",
}
FOUND = {
    "type": "search_result",
    "source": "https://example.com/sky",
    "title": "The sky",
    "content": [{"type": "text", "text": "The sky is blue."}],
}


def question(*blocks: dict[str, Any]) -> list[Any]:
    return [{"role": "user", "content": [*blocks, {"type": "text", "text": "What colour?"}]}]


async def test_an_anthropic_route_gets_documents_search_results_files_and_server_tools(
    gw: Gateway, fakes: dict[str, FakeProvider]
) -> None:
    """They were a 400 (the door's unions were closed), although the route takes the client's own body."""
    use = {"type": "tool_use", "id": "toolu_1", "name": "get_weather", "input": {"city": "Paris"}}
    result = {"type": "tool_result", "tool_use_id": "toolu_1", "content": [PDF, FOUND]}
    messages = [
        *question(NOTE, PDF, URL_PDF, FOUND, FILE_IMAGE, CITED),
        {"role": "assistant", "content": [use]},
        {"role": "user", "content": [result]},
    ]
    tools = [WEATHER, WEB_SEARCH]
    answer = await gw.client().messages.create(model="claude/haiku", max_tokens=50, tools=tools, messages=messages)
    assert isinstance(answer, Message)
    sent = received(fakes["claude"])
    assert sent["messages"] == messages and sent["tools"] == tools  # every block and tool as the client sent it


@pytest.mark.parametrize(
    ("content", "tools", "field"),
    [
        (question(PDF), None, "'messages[0].content[0]' (a document from a PDF)"),
        (question(URL_PDF), None, "'messages[0].content[0]' (a document from a PDF)"),
        (question(FILE_IMAGE), None, "'messages[0].content[0]' (an image from a 'file' source)"),
        (question(NOTE, CITED), None, "'messages[0].content[1]' (a document with citations enabled)"),
        (question(), [WEB_SEARCH], "'tools[0]' (Anthropic's server tool 'web_search_20250305')"),
    ],
    ids=["pdf", "pdf-url", "file-image", "citations", "server-tool"],
)
async def test_what_only_anthropic_takes_goes_to_an_anthropic_route_or_is_a_400_naming_it(
    gw: Gateway, fakes: dict[str, FakeProvider], content: list[Any], tools: list[Any] | None, field: str
) -> None:
    client = gw.client()
    ask: dict[str, Any] = {"max_tokens": 20, "messages": content, **({"tools": tools} if tools else {})}
    # `auto` is the local model first, then claude: only claude can read it.
    raw = await client.messages.with_raw_response.create(model="auto", **ask)
    assert raw.headers["x-served-by"] == "claude/claude-test"
    assert received(fakes["claude"])["messages"] == content
    # An OpenAI-compatible route can't: a 400 that names the field, never the content silently dropped.
    with pytest.raises(anthropic.BadRequestError) as caught:
        await client.messages.create(model="alpha/m", **ask)
    error = cast(dict[str, Any], caught.value.body)["error"]
    assert error["type"] == "invalid_request_error"
    assert error["message"].startswith(f"{field} is not supported by this model's routes")
    assert fakes["alpha"].counts.total() == 0 and gw.engine.generations == []


async def test_a_plain_text_document_and_a_search_result_are_text_to_other_routes(
    gw: Gateway, fakes: dict[str, FakeProvider]
) -> None:
    use = {"type": "tool_use", "id": "toolu_1", "name": "get_weather", "input": {"city": "Paris"}}
    result = {"type": "tool_result", "tool_use_id": "toolu_1", "content": [NOTE]}
    messages = [
        *question(NOTE, FOUND),
        {"role": "assistant", "content": [use]},
        {"role": "user", "content": [result]},
    ]
    await gw.client().messages.create(model="alpha/m", max_tokens=20, tools=[WEATHER], messages=messages)
    sent = received(fakes["alpha"])["messages"]
    note = "Field notes\n\nWritten in spring.\n\nThe grass is green."
    found = "The sky\nhttps://example.com/sky\n\nThe sky is blue."
    assert sent[0]["content"] == f"{note}\n{found}\nWhat colour?"  # text parts are joined for a text-only route
    assert sent[-1] == {"role": "tool", "tool_call_id": "toolu_1", "content": note}


@pytest.mark.parametrize("stream", [False, True], ids=["json", "sse"])
async def test_prompt_cache_reads_and_writes_come_back_as_the_route_counted_them(
    gw: Gateway, fakes: dict[str, FakeProvider], stream: bool
) -> None:
    """The writes were folded into input_tokens, and cache_creation_input_tokens lost."""
    ask = asked(model="claude/haiku", max_tokens=50)
    words = (await gw.client().messages.create(**ask)).usage.input_tokens  # the fake counts the prompt's words
    fakes["claude"].prompt_cache = (100, 1000)
    if stream:
        async with gw.client().messages.stream(**ask, extra_body={"cache": {"no_store": True}}) as s:
            answer = await s.get_final_message()
    else:
        answer = await gw.client().messages.create(**ask, extra_body={"cache": {"no_store": True}})
    usage = answer.usage
    counted = (usage.input_tokens, usage.cache_creation_input_tokens, usage.cache_read_input_tokens)
    assert counted == (words, 100, 1000)  # input_tokens without either, as Anthropic counts


async def test_prompt_cache_writes_are_named_on_openais_doors_too(gw: Gateway, fakes: dict[str, FakeProvider]) -> None:
    fakes["claude"].prompt_cache = (100, 1000)
    client = openai.AsyncOpenAI(base_url=gw.url + "/v1", api_key=TEAM, max_retries=0)
    async with client:
        chat = await client.chat.completions.create(model="claude/haiku", messages=[{"role": "user", "content": "hi"}])
        response = await client.responses.create(model="claude/haiku", input="hi", store=False)
    assert chat.usage is not None and chat.usage.prompt_tokens_details is not None
    assert chat.usage.prompt_tokens == 1 + 100 + 1000  # OpenAI's total, as before
    details = chat.usage.prompt_tokens_details
    assert (details.cached_tokens, details.cache_write_tokens) == (1000, 100)
    assert response.usage is not None and response.usage.input_tokens == 1101
    written = response.usage.input_tokens_details
    assert (written.cached_tokens, written.cache_write_tokens) == (1000, 100)  # was always 0
