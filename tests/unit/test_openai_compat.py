"""The OpenAI-compatible provider over httpx.MockTransport: wire format, quirks, failures."""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any

import httpx
import pytest

from orchestrator.errors import UpstreamRateLimited, UpstreamRejected, UpstreamTimeout, UpstreamUnavailable
from orchestrator.protocol import ChatCompletionRequest, CompletionRequest, EmbeddingRequest
from orchestrator.providers.openai_compat import OpenAICompatProvider, Quirks, chat_body
from orchestrator.streams import assemble_chat

KEY = "sk-test-SECRET-0123456789"


def chunk(delta: dict[str, Any], finish: str | None = None, **extra: Any) -> dict[str, Any]:
    return {
        "id": "c1",
        "object": "chat.completion.chunk",
        "created": 1,
        "model": "up-model",
        "choices": [{"index": 0, "delta": delta, "finish_reason": finish}],
        **extra,
    }


def sse(*events: dict[str, Any] | str) -> bytes:
    return b"".join(f"data: {e if isinstance(e, str) else json.dumps(e)}\n\n".encode() for e in events)


def provider(handler: Callable[[httpx.Request], httpx.Response], quirks: Quirks | None = None) -> OpenAICompatProvider:
    client = httpx.AsyncClient(transport=httpx.MockTransport(handler))
    return OpenAICompatProvider(
        "acme", client, "https://api.acme.test/v1", KEY, quirks=quirks, headers={"X-Title": "gw"}
    )


def chat(**kw: Any) -> ChatCompletionRequest:
    return ChatCompletionRequest.model_validate(
        {"model": "alias", "messages": [{"role": "user", "content": "hi"}], **kw}
    )


async def test_streams_and_folds_a_chat_with_the_right_request() -> None:
    seen: list[httpx.Request] = []

    def handler(request: httpx.Request) -> httpx.Response:
        seen.append(request)
        body = sse(
            chunk({"role": "assistant", "content": ""}),
            chunk({"content": "Hel"}),
            chunk({"content": "lo"}),
            chunk({}, "stop"),
            {
                "id": "c1",
                "object": "chat.completion.chunk",
                "created": 1,
                "model": "up-model",
                "choices": [],
                "usage": {"prompt_tokens": 3, "completion_tokens": 2, "total_tokens": 5},
            },
            "[DONE]",
        )
        return httpx.Response(200, content=body, headers={"content-type": "text/event-stream"})

    result = await assemble_chat(provider(handler).chat(chat(provider={"order": ["x"]}, max_tokens=9), "up-model"))
    assert result.choices[0].message.content == "Hello" and result.choices[0].finish_reason == "stop"
    assert result.usage is not None and result.usage.total_tokens == 5
    sent = json.loads(seen[0].content)
    assert str(seen[0].url) == "https://api.acme.test/v1/chat/completions"
    assert seen[0].headers["authorization"] == f"Bearer {KEY}" and seen[0].headers["x-title"] == "gw"
    assert sent["model"] == "up-model" and sent["stream"] is True
    assert sent["stream_options"] == {"include_usage": True}
    assert sent["provider"] == {"order": ["x"]}  # unknown fields pass through
    assert sent["max_tokens"] == 9


def test_quirks_normalize_the_request() -> None:
    req = chat(
        max_completion_tokens=50_000,
        parallel_tool_calls=False,
        response_format={"type": "json_schema", "json_schema": {"name": "x", "schema": {"type": "object"}}},
        stream=True,
        stream_options={"include_usage": False},
    )
    body = chat_body(
        req,
        "m",
        Quirks(
            max_tokens_ceiling=8192,
            parallel_tool_calls=False,
            stream_usage=False,
            json_schema=False,
            max_tokens_field="max_completion_tokens",
        ),
    )
    assert body["max_completion_tokens"] == 8192 and "max_tokens" not in body
    assert "parallel_tool_calls" not in body and "stream_options" not in body
    assert body["response_format"] == {"type": "json_object"}


async def test_tool_call_deltas_missing_type_are_repaired() -> None:
    def handler(request: httpx.Request) -> httpx.Response:
        return httpx.Response(
            200,
            content=sse(
                chunk(
                    {
                        "role": "assistant",
                        "tool_calls": [{"index": 0, "id": "call_1", "function": {"name": "f", "arguments": ""}}],
                    }
                ),
                chunk({"tool_calls": [{"index": 0, "function": {"arguments": '{"a": 1}'}}]}),
                chunk({}, "tool_calls"),
                "[DONE]",
            ),
        )

    chunks = [c async for c in provider(handler).chat(chat(), "m")]
    assert chunks[0].choices[0].delta.tool_calls[0].type == "function"  # type: ignore[index]


@pytest.mark.parametrize(
    ("status", "headers", "body", "kind", "retry_after"),
    [
        (
            429,
            {"retry-after": "7"},
            {"error": {"message": "slow", "code": "rate_limit_exceeded"}},
            UpstreamRateLimited,
            7.0,
        ),
        (429, {"retry-after-ms": "1500"}, {"error": {"message": "slow"}}, UpstreamRateLimited, 1.5),
        (
            429,
            {},
            {"error": {"message": "pay up", "type": "insufficient_quota", "code": "insufficient_quota"}},
            UpstreamRejected,
            None,
        ),
        (500, {}, {"error": {"message": "boom"}}, UpstreamUnavailable, None),
        (503, {"retry-after": "2"}, {"error": {"message": "busy"}}, UpstreamUnavailable, 2.0),
        (400, {}, {"error": {"message": "bad temperature", "param": "temperature"}}, UpstreamRejected, None),
    ],
)
async def test_http_failures_map_onto_the_error_tree(
    status: int, headers: dict[str, str], body: dict[str, Any], kind: type[Exception], retry_after: float | None
) -> None:
    def handler(request: httpx.Request) -> httpx.Response:
        return httpx.Response(status, json=body, headers=headers)

    with pytest.raises(kind) as info:
        await anext(aiter(provider(handler).chat(chat(), "m")))
    assert getattr(info.value, "retry_after", None) == retry_after
    assert KEY not in str(info.value) and "acme answered" in str(info.value)


@pytest.mark.parametrize("status", [401, 403])
@pytest.mark.parametrize("call", ["chat", "embed"])
async def test_a_refused_key_says_which_variable_to_check_and_nothing_the_provider_said(status: int, call: str) -> None:
    # OpenAI's own 401 quotes the start and the last four characters of the key it was sent.
    body = {"error": {"message": f"Incorrect API key provided: {KEY[:3]}***{KEY[-4:]}.", "code": "invalid_api_key"}}

    def handler(request: httpx.Request) -> httpx.Response:
        return httpx.Response(status, json=body)

    client = httpx.AsyncClient(transport=httpx.MockTransport(handler))
    acme = OpenAICompatProvider("acme", client, "https://api.acme.test/v1", KEY, key_env="ACME_API_KEY")
    with pytest.raises(UpstreamRejected) as info:
        if call == "chat":
            await anext(aiter(acme.chat(chat(), "m")))
        else:
            await acme.embed(EmbeddingRequest(model="e", input="hi"), "m")
    e = info.value
    assert e.message == f"acme rejected the gateway's credentials ({status}); the operator must check ACME_API_KEY."
    assert (e.status_code, e.upstream_status, e.code, e.retryable) == (502, status, "provider_auth_failed", False)
    assert KEY[-4:] not in json.dumps(e.to_dict()) and "Incorrect" not in e.message


async def test_a_400_from_the_provider_reaches_the_client_as_a_400() -> None:
    def handler(request: httpx.Request) -> httpx.Response:
        return httpx.Response(400, json={"error": {"message": "bad"}})

    with pytest.raises(UpstreamRejected) as info:
        await anext(aiter(provider(handler).chat(chat(), "m")))
    assert info.value.status_code == 400 and info.value.error_type == "invalid_request_error"


@pytest.mark.parametrize(
    ("content", "match"),
    [
        (sse(chunk({"content": "a"})), "ended before"),  # no [DONE]: truncated
        (sse(chunk({"content": "a"}), "{not json"), "malformed"),
        (sse(chunk({"content": "a"}), {"error": {"message": "overloaded"}}), "overloaded"),
    ],
)
async def test_broken_streams_are_errors_never_silent(content: bytes, match: str) -> None:
    def handler(request: httpx.Request) -> httpx.Response:
        return httpx.Response(200, content=content)

    with pytest.raises(UpstreamUnavailable, match=match):
        [c async for c in provider(handler).chat(chat(), "m")]


@pytest.mark.parametrize(
    ("exc", "kind"),
    [
        (httpx.ConnectError("refused"), UpstreamUnavailable),
        (httpx.ReadTimeout("slow"), UpstreamTimeout),
        (httpx.RemoteProtocolError("reset"), UpstreamUnavailable),
    ],
)
async def test_transport_failures(exc: Exception, kind: type[Exception]) -> None:
    def handler(request: httpx.Request) -> httpx.Response:
        raise exc

    with pytest.raises(kind):
        await anext(aiter(provider(handler).chat(chat(), "m")))


async def test_completions_and_embeddings() -> None:
    def handler(request: httpx.Request) -> httpx.Response:
        if request.url.path.endswith("/embeddings"):
            return httpx.Response(
                200,
                json={
                    "object": "list",
                    "model": "e",
                    "usage": {"prompt_tokens": 1, "total_tokens": 1},
                    "data": [{"object": "embedding", "index": 0, "embedding": [0.1, 0.2]}],
                },
            )
        return httpx.Response(
            200,
            content=sse(
                {
                    "id": "x",
                    "object": "text_completion",
                    "created": 1,
                    "model": "m",
                    "choices": [{"index": 0, "text": "hey", "finish_reason": "eos", "logprobs": None}],
                },
                "[DONE]",
            ),
        )

    p = provider(handler)
    [c] = [c async for c in p.complete(CompletionRequest(model="a", prompt="x"), "m")]
    assert c.choices[0].text == "hey" and c.choices[0].finish_reason == "stop"  # provider's "eos" normalized
    emb = await p.embed(EmbeddingRequest(model="a", input="x"), "e")
    assert emb.data[0].embedding == [0.1, 0.2]


async def test_requests_go_through_the_clients_mounts_and_hooks() -> None:
    """A proxy the client mounts (as httpx does from HTTPS_PROXY) carries the provider's requests, and the
    client's request hooks (the gateway's `traceparent`) see each one."""

    def unreachable(request: httpx.Request) -> httpx.Response:
        raise AssertionError("sent around the proxy")

    def proxy(request: httpx.Request) -> httpx.Response:
        assert request.headers["x-hooked"] == "yes"
        return httpx.Response(200, content=sse(chunk({"content": "via proxy"}, "stop"), "[DONE]"))

    async def hook(request: httpx.Request) -> None:
        request.headers["x-hooked"] = "yes"

    client = httpx.AsyncClient(
        transport=httpx.MockTransport(unreachable),
        mounts={"https://api.acme.test": httpx.MockTransport(proxy)},
        event_hooks={"request": [hook]},
    )
    acme = OpenAICompatProvider("acme", client, "https://api.acme.test/v1", KEY)
    whole = await assemble_chat(acme.chat(chat(), "up-model"))
    assert whole.choices[0].message.content == "via proxy"


def test_vllms_continue_final_message_is_for_the_local_engine_only() -> None:
    """OpenAI's API has no such field (an unknown field is a 400 there): a prefill from Anthropic's door
    reaches an OpenAI-compatible route as its messages alone."""
    messages = [{"role": "user", "content": "JSON please"}, {"role": "assistant", "content": '{"a":'}]
    request = ChatCompletionRequest.model_validate({"model": "m", "messages": messages, "continue_final_message": True})
    body = chat_body(request, "upstream", Quirks())
    assert "continue_final_message" not in body and body["messages"][-1]["content"] == '{"a":'


async def test_embeddings_one_short_of_the_inputs_are_the_routes_failure() -> None:
    """`data: []` as a 200 reached the client as an answer with no embedding (and the next route went untried)."""
    body = {"object": "list", "data": [], "model": "e", "usage": {"prompt_tokens": 1, "total_tokens": 1}}
    p = provider(lambda request: httpx.Response(200, json=body))
    with pytest.raises(UpstreamUnavailable, match="0 embeddings for 2 inputs"):
        await p.embed(EmbeddingRequest(model="e", input=["a", "b"]), "e")


@pytest.mark.parametrize("call", ["chat", "embed"])
async def test_an_error_answer_megabytes_long_is_read_no_further_than_its_start(call: str) -> None:
    """A 500 with a 60 MB body was read whole (the gateway's memory up by its size) to keep 1,000 characters."""
    sent = 0

    async def huge() -> Any:
        nonlocal sent
        yield b'{"error": {"message": "' + b"x" * 2000
        for _ in range(1000):  # 64 MB more, never wanted
            sent += 1
            yield b"y" * 65536

    p = provider(lambda request: httpx.Response(500, content=huge()))
    with pytest.raises(UpstreamUnavailable, match="acme answered 500"):
        if call == "chat":
            await assemble_chat(p.chat(chat(), "m"))
        else:
            await p.embed(EmbeddingRequest(model="e", input="a"), "e")
    assert sent <= 2


def reads(*pieces: bytes) -> Callable[[httpx.Request], httpx.Response]:
    """An upstream whose body arrives in these network reads."""

    async def body() -> Any:
        for piece in pieces:
            yield piece

    return lambda request: httpx.Response(200, content=body(), headers={"content-type": "text/event-stream"})


async def test_the_chunks_of_one_read_go_on_together() -> None:
    # The door writes each batch to the client at once: a stream the gateway falls behind on catches up in
    # few writes, not one a token.
    first = sse(chunk({"role": "assistant", "content": ""}), chunk({"content": "Hel"}))
    rest = sse(chunk({"content": "lo"}), chunk({"content": "!"}), chunk({}, "stop"), "[DONE]")
    stream = provider(reads(first, rest)).chat(chat(), "m")
    batches = [[(c.choices[0].delta.content, c.choices[0].finish_reason) for c in b] async for b in stream.batches()]
    assert batches == [[("", None), ("Hel", None)], [("lo", None), ("!", None), (None, "stop")]]


async def test_what_came_before_an_error_in_the_same_read_still_reaches_the_client() -> None:
    body = sse(chunk({"role": "assistant", "content": ""}), chunk({"content": "Hel"}), {"error": {"message": "gone"}})
    got: list[str | None] = []
    with pytest.raises(UpstreamUnavailable, match="gone"):
        async for c in provider(reads(body)).chat(chat(), "m"):
            got.append(c.choices[0].delta.content)
    assert got == ["", "Hel"]
