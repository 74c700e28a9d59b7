"""The OpenAI wire models: what requests accept, and how responses serialize."""

from __future__ import annotations

from typing import Any

import pytest
from pydantic import ValidationError

from orchestrator.protocol import (
    AssistantMessage,
    ChatChoice,
    ChatCompletion,
    ChatCompletionChunk,
    ChatCompletionRequest,
    ChatMessage,
    ChoiceLogprobs,
    ChunkChoice,
    ChunkDelta,
    CompletionChoice,
    CompletionChunk,
    CompletionRequest,
    EmbeddingRequest,
    TokenLogprob,
    Usage,
)

USER = [{"role": "user", "content": "hi"}]


def chat(**fields: Any) -> ChatCompletionRequest:
    return ChatCompletionRequest.model_validate({"model": "m", "messages": USER, **fields})


def completion(**fields: Any) -> CompletionRequest:
    return CompletionRequest.model_validate({"model": "m", "prompt": "hi", **fields})


# ------------------------------------------------------------------- request ranges


@pytest.mark.parametrize(
    ("field", "ok", "bad"),
    [
        ("temperature", [0, 2, 0.7], [-0.01, 2.01]),
        ("top_p", [0, 1], [-0.1, 1.1]),
        ("n", [1, 128], [0, 129]),
        ("max_tokens", [1, 100_000], [0, -1]),
        ("presence_penalty", [-2, 2], [-2.1, 2.1]),
        ("frequency_penalty", [-2, 2], [-2.1, 2.1]),
        ("max_completion_tokens", [1], [0]),
    ],
)
def test_chat_numeric_ranges(field: str, ok: list[float], bad: list[float]) -> None:
    for value in ok:
        assert getattr(chat(**{field: value}), field) == value
    for value in bad:
        with pytest.raises(ValidationError) as info:
            chat(**{field: value})
        assert info.value.errors()[0]["loc"] == (field,)


def test_logit_bias_values_are_bounded() -> None:
    assert chat(logit_bias={"1": 100, "2": -100}).logit_bias == {"1": 100, "2": -100}
    with pytest.raises(ValidationError):
        chat(logit_bias={"1": 100.5})


def test_top_logprobs_range_and_needs_logprobs() -> None:
    assert chat(logprobs=True, top_logprobs=20).top_logprobs == 20
    with pytest.raises(ValidationError):
        chat(logprobs=True, top_logprobs=21)
    with pytest.raises(ValidationError, match="'top_logprobs' requires 'logprobs' to be true"):
        chat(top_logprobs=2)


def test_stop_is_a_string_or_up_to_four_strings() -> None:
    assert chat(stop="x").stop_list() == ["x"]
    assert chat(stop=["a", "b", "c", "d"]).stop_list() == ["a", "b", "c", "d"]
    assert chat().stop_list() == []
    with pytest.raises(ValidationError):
        chat(stop=["a", "b", "c", "d", "e"])


def test_stream_options_need_stream() -> None:
    assert chat(stream=True, stream_options={"include_usage": True}).include_usage()
    assert not chat(stream=True).include_usage()
    with pytest.raises(ValidationError, match="'stream_options' is only allowed when 'stream' is true"):
        chat(stream_options={"include_usage": True})


def test_messages_must_not_be_empty() -> None:
    with pytest.raises(ValidationError):
        chat(messages=[])


@pytest.mark.parametrize(
    ("message", "error"),
    [
        ({"role": "user"}, "a 'user' message needs 'content'"),
        ({"role": "system", "content": None}, "a 'system' message needs 'content'"),
        ({"role": "tool", "content": "42"}, "a 'tool' message needs 'tool_call_id'"),
        ({"role": "robot", "content": "x"}, "Input should be 'system'"),
    ],
)
def test_bad_messages(message: dict[str, Any], error: str) -> None:
    with pytest.raises(ValidationError, match=error):
        chat(messages=[message])


def test_assistant_message_may_omit_content() -> None:
    m = ChatMessage.model_validate(
        {"role": "assistant", "tool_calls": [{"id": "c1", "function": {"name": "f", "arguments": "{}"}}]}
    )
    assert m.content is None and m.text() == ""
    assert m.tool_calls is not None and m.tool_calls[0].type == "function"


def test_message_text_and_media() -> None:
    m = ChatMessage.model_validate(
        {
            "role": "user",
            "content": [
                {"type": "text", "text": "look "},
                {"type": "image_url", "image_url": {"url": "data:image/png;base64,AA=="}},
                {"type": "text", "text": "here"},
            ],
        }
    )
    assert m.text() == "look here"
    assert m.has_media()
    assert not ChatMessage(role="user", content=[{"type": "text", "text": "x"}]).has_media()  # type: ignore[list-item]
    assert not ChatMessage(role="user", content="plain").has_media()


def test_unknown_content_part_type_is_rejected() -> None:
    with pytest.raises(ValidationError):
        chat(messages=[{"role": "user", "content": [{"type": "video", "video": {}}]}])


def test_response_format_json_schema_needs_its_schema() -> None:
    req = chat(response_format={"type": "json_schema", "json_schema": {"name": "x", "schema": {"type": "object"}}})
    assert req.response_format is not None and req.response_format.json_schema is not None
    assert req.response_format.json_schema.schema_ == {"type": "object"}
    assert req.response_format.model_dump(by_alias=True)["json_schema"]["schema"] == {"type": "object"}
    with pytest.raises(ValidationError, match="needs 'json_schema'"):
        chat(response_format={"type": "json_schema"})
    with pytest.raises(ValidationError):
        chat(response_format={"type": "yaml"})


def test_unknown_fields_pass_through() -> None:
    req = chat(verbosity="low", prediction={"type": "content", "content": "x"})
    assert req.model_extra == {"verbosity": "low", "prediction": {"type": "content", "content": "x"}}


def test_output_limit_prefers_max_completion_tokens() -> None:
    assert chat().output_limit() is None
    assert chat(max_tokens=5).output_limit() == 5
    assert chat(max_tokens=5, max_completion_tokens=7).output_limit() == 7


# ------------------------------------------------------------------ completions


@pytest.mark.parametrize(
    ("prompt", "prompts"),
    [
        ("hello", ["hello"]),
        (["a", "b"], ["a", "b"]),
        ([1, 2, 3], [[1, 2, 3]]),
        ([[1, 2], [3]], [[1, 2], [3]]),
    ],
)
def test_completion_prompts_normalise(prompt: Any, prompts: list[Any]) -> None:
    assert completion(prompt=prompt).prompts() == prompts


def test_completion_prompt_must_not_be_an_empty_list() -> None:
    with pytest.raises(ValidationError, match="'prompt' must not be empty"):
        completion(prompt=[])


def test_completion_ranges() -> None:
    assert completion(logprobs=5).logprobs == 5
    with pytest.raises(ValidationError):
        completion(logprobs=6)
    assert completion(best_of=2, n=2).best_of == 2
    with pytest.raises(ValidationError, match="'best_of' different from 'n' is not supported"):
        completion(best_of=3)
    assert completion().echo is False


# ------------------------------------------------------------------- embeddings


@pytest.mark.parametrize(
    ("value", "inputs"),
    [
        ("hello", ["hello"]),
        (["a", "b"], ["a", "b"]),
        ([5, 6], [[5, 6]]),
        ([[5], [6, 7]], [[5], [6, 7]]),
    ],
)
def test_embedding_inputs_normalise(value: Any, inputs: list[Any]) -> None:
    assert EmbeddingRequest(model="e", input=value).inputs() == inputs


@pytest.mark.parametrize("value", ["", [], None])
def test_embedding_input_must_not_be_empty(value: Any) -> None:
    with pytest.raises(ValidationError):
        EmbeddingRequest.model_validate({"model": "e", "input": value})


def test_embedding_fields() -> None:
    req = EmbeddingRequest(model="e", input="x")
    assert req.encoding_format == "float" and req.dimensions is None
    with pytest.raises(ValidationError):
        EmbeddingRequest.model_validate({"model": "e", "input": "x", "encoding_format": "int8"})
    with pytest.raises(ValidationError):
        EmbeddingRequest.model_validate({"model": "e", "input": "x", "dimensions": 0})


# ---------------------------------------------------------------- serialization


def test_chat_completion_always_sends_content_refusal_logprobs_finish_reason() -> None:
    body = ChatCompletion(
        id="c", created=1, model="m", choices=[ChatChoice(index=0, message=AssistantMessage())]
    ).model_dump(mode="json")
    assert body == {
        "id": "c",
        "object": "chat.completion",
        "created": 1,
        "model": "m",
        "choices": [
            {
                "index": 0,
                "message": {"role": "assistant", "content": None, "refusal": None},
                "finish_reason": None,
                "logprobs": None,
            }
        ],
    }


def test_chunk_choice_sends_finish_reason_null_and_omits_empty_delta_fields() -> None:
    chunk = ChatCompletionChunk(
        id="c", created=1, model="m", choices=[ChunkChoice(index=0, delta=ChunkDelta(content="hi"))]
    )
    assert chunk.model_dump(mode="json") == {
        "id": "c",
        "object": "chat.completion.chunk",
        "created": 1,
        "model": "m",
        "choices": [{"index": 0, "delta": {"content": "hi"}, "finish_reason": None}],
    }


def test_usage_chunk_has_empty_choices() -> None:
    chunk = ChatCompletionChunk(id="c", created=1, model="m", choices=[], usage=Usage(prompt_tokens=1, total_tokens=1))
    body = chunk.model_dump(mode="json")
    assert body["choices"] == []
    assert body["usage"] == {"prompt_tokens": 1, "completion_tokens": 0, "total_tokens": 1}


def test_logprob_bytes_is_required_nullable() -> None:
    lp = ChoiceLogprobs(content=[TokenLogprob(token="a", logprob=-1.0)])
    assert lp.model_dump(mode="json") == {
        "content": [{"token": "a", "logprob": -1.0, "bytes": None, "top_logprobs": []}],
        "refusal": None,
    }


def test_completion_choice_sends_logprobs_and_finish_reason_null() -> None:
    body = CompletionChunk(id="x", created=1, model="m", choices=[CompletionChoice(index=0, text="t")]).model_dump(
        mode="json"
    )
    assert body["choices"] == [{"index": 0, "text": "t", "finish_reason": None, "logprobs": None}]
    assert "usage" not in body and "system_fingerprint" not in body


def test_extra_fields_are_serialized() -> None:
    body = AssistantMessage(content="x", reasoning_content="why").model_dump(mode="json")  # type: ignore[call-arg]
    assert body["reasoning_content"] == "why"


def test_usage_adds_up() -> None:
    total = Usage(prompt_tokens=1, completion_tokens=2, total_tokens=3) + Usage(
        prompt_tokens=10, completion_tokens=20, total_tokens=30
    )
    assert (total.prompt_tokens, total.completion_tokens, total.total_tokens) == (11, 22, 33)
