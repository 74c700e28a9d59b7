"""The default deployment (SmolLM2 + MiniLM on CPU vLLM, behind Ray Serve), as a user sees it.

Every response body and every stream chunk is checked against the official
OpenAI schema.
"""

from __future__ import annotations

import json
from typing import Any

import openai
import pytest
from openai_schema import validate

pytestmark = pytest.mark.e2e

CHAT_MODEL = "smollm2-135m"
EMBED_MODEL = "all-minilm-l6-v2"
FRANCE = [{"role": "user", "content": "What is the capital of France?"}]


def _sse_chunks(lines: Any) -> tuple[list[dict[str, Any]], bool]:
    chunks, done = [], False
    for line in lines:
        if not line:
            continue
        assert line.startswith("data: "), line
        data = line.removeprefix("data: ")
        if data == "[DONE]":
            done = True
            continue
        assert not done, "data after [DONE]"
        chunks.append(json.loads(data))
    return chunks, done


def test_models_lists_local_models_chains_and_available_remote_models(client: openai.OpenAI) -> None:
    raw = client.models.with_raw_response.list()
    validate("ListModelsResponse", raw.http_response.json())
    owners = {m.id: m.owned_by for m in raw.parse()}
    assert owners[CHAT_MODEL] == owners[EMBED_MODEL] == "local"
    # Chains whose providers have keys here (together, openrouter, anthropic are fakes) ...
    assert {"llama-3.1-8b-instruct", "qwen2.5-7b-instruct", "claude-haiku"} <= set(owners)
    assert owners["together/llama-3.1-8b-instruct"] == "together"
    # ... and nothing from providers without a key.
    assert not any(name.startswith(("groq/", "mistral/", "deepseek/")) for name in owners)


def test_smollm2_answers_paris(client: openai.OpenAI) -> None:
    raw = client.chat.completions.with_raw_response.create(
        model=CHAT_MODEL, messages=FRANCE, temperature=0, max_tokens=24
    )
    validate("CreateChatCompletionResponse", raw.http_response.json())
    assert raw.headers["x-served-by"] == f"local/{CHAT_MODEL}"
    completion = raw.parse()
    assert "Paris" in (completion.choices[0].message.content or "")
    assert completion.usage is not None and completion.usage.completion_tokens > 0


def test_stream_is_valid_sse_with_usage(client: openai.OpenAI) -> None:
    with client.chat.completions.with_streaming_response.create(
        model=CHAT_MODEL,
        messages=FRANCE,
        temperature=0,
        max_tokens=24,
        stream=True,
        stream_options={"include_usage": True},
    ) as response:
        assert response.headers["content-type"].startswith("text/event-stream")
        chunks, done = _sse_chunks(response.iter_lines())
    assert done
    for chunk in chunks:
        validate("CreateChatCompletionStreamResponse", chunk)
    assert chunks[0]["choices"][0]["delta"]["role"] == "assistant"
    text = "".join(c["choices"][0]["delta"].get("content") or "" for c in chunks if c["choices"])
    assert "Paris" in text
    assert chunks[-1]["choices"] == [] and chunks[-1]["usage"]["completion_tokens"] > 1
    assert len({c["id"] for c in chunks}) == 1


def test_stream_through_the_sdk_iterator(client: openai.OpenAI) -> None:
    stream = client.chat.completions.create(model=CHAT_MODEL, messages=FRANCE, temperature=0, max_tokens=8, stream=True)
    pieces = [c.choices[0].delta.content or "" for c in stream if c.choices]
    assert len(pieces) > 2 and "".join(pieces).strip()


def test_completions(client: openai.OpenAI) -> None:
    raw = client.completions.with_raw_response.create(
        model=CHAT_MODEL, prompt="The capital of France is", temperature=0, max_tokens=6
    )
    validate("CreateCompletionResponse", raw.http_response.json())
    assert "Paris" in raw.parse().choices[0].text


def test_completions_stream(client: openai.OpenAI) -> None:
    with client.completions.with_streaming_response.create(
        model=CHAT_MODEL, prompt="One, two, three,", temperature=0, max_tokens=6, stream=True
    ) as response:
        chunks, done = _sse_chunks(response.iter_lines())
    assert done and len(chunks) > 1
    for chunk in chunks:
        validate("CreateCompletionResponse", chunk, completion_stream=True)
    assert chunks[-1]["choices"][-1]["finish_reason"] in ("stop", "length")


def test_structured_json_output(client: openai.OpenAI) -> None:
    schema = {
        "type": "object",
        "properties": {"city": {"type": "string", "enum": ["Paris", "London", "Rome"]}},
        "required": ["city"],
        "additionalProperties": False,
    }
    raw = client.chat.completions.with_raw_response.create(
        model=CHAT_MODEL,
        messages=FRANCE,
        temperature=0,
        max_tokens=32,
        response_format={"type": "json_schema", "json_schema": {"name": "answer", "schema": schema}},
    )
    validate("CreateChatCompletionResponse", raw.http_response.json())
    answer = json.loads(raw.parse().choices[0].message.content or "")
    assert answer["city"] in ("Paris", "London", "Rome")


def test_embeddings(client: openai.OpenAI) -> None:
    raw = client.embeddings.with_raw_response.create(
        model=EMBED_MODEL,
        input=["The cat sits on the mat.", "A cat is sitting on a mat.", "Stock prices fell."],
        encoding_format="float",
    )
    validate("CreateEmbeddingResponse", raw.http_response.json())
    vectors = [d.embedding for d in raw.parse().data]
    assert all(len(v) == 384 for v in vectors)

    def cos(a: list[float], b: list[float]) -> float:
        return sum(x * y for x, y in zip(a, b, strict=True)) / (
            sum(x * x for x in a) ** 0.5 * sum(y * y for y in b) ** 0.5
        )

    assert cos(vectors[0], vectors[1]) > cos(vectors[0], vectors[2]) + 0.2


def test_embeddings_default_sdk_encoding(client: openai.OpenAI) -> None:
    # The SDK asks for base64 by default and decodes it itself.
    result = client.embeddings.create(model=EMBED_MODEL, input="hello")
    assert len(result.data[0].embedding) == 384


def test_unknown_model_is_404(client: openai.OpenAI) -> None:
    with pytest.raises(openai.NotFoundError) as info:
        client.chat.completions.create(model="gpt-nope", messages=FRANCE)
    validate("ErrorResponse", info.value.response.json())
    assert info.value.code == "model_not_found" and info.value.param == "model"


def test_context_too_long_is_400_even_when_streaming(client: openai.OpenAI) -> None:
    long = [{"role": "user", "content": "word " * 5000}]
    with pytest.raises(openai.BadRequestError) as info:
        client.chat.completions.create(model=CHAT_MODEL, messages=long, stream=True)
    validate("ErrorResponse", info.value.response.json())
    assert info.value.code == "context_length_exceeded"
    assert "maximum context length is 2048 tokens" in info.value.message


def _replica_failures(deployment: str) -> int:
    """Serve's "Request failed" lines (ERROR, with a traceback) for `deployment` in the Ray session's logs (the
    replicas' stderr, where the throughput bundle's `RAY_SERVE_LOG_TO_STDERR` sends them)."""
    import glob
    import os

    count = 0
    for path in glob.glob(os.environ.get("RAY_TMPDIR", "/tmp/ray") + "/**/logs/**/*", recursive=True):
        try:
            with open(path, errors="replace") as f:
                count += sum("Request failed" in line and deployment in line for line in f)
        except (IsADirectoryError, PermissionError):
            continue
    return count


def test_a_requests_own_fault_is_its_400_and_no_failure_of_the_engine_in_the_logs(client: openai.OpenAI) -> None:
    """Choices vLLM refuses (n > 1 when greedy) and an output past the context: the engine's answer, a 400 in
    OpenAI's shape as before; each was also logged by Serve as the LocalModel replica's failure, ERROR with a
    traceback."""
    import time

    before = _replica_failures("LocalModel")
    with pytest.raises(openai.BadRequestError) as info:
        client.chat.completions.create(model=CHAT_MODEL, messages=FRANCE, n=2, temperature=0, max_tokens=4)
    validate("ErrorResponse", info.value.response.json())
    assert info.value.type == "invalid_request_error" and "greedy" in info.value.message
    with pytest.raises(openai.BadRequestError) as info:
        client.chat.completions.create(model=CHAT_MODEL, messages=FRANCE, max_tokens=2040, stream=True)
    validate("ErrorResponse", info.value.response.json())
    assert info.value.code == "context_length_exceeded" and info.value.param == "messages"
    time.sleep(2)  # what the replica logged reaches its files
    assert _replica_failures("LocalModel") == before


def test_the_ready_line_lists_every_served_model_though_keys_are_required(client: openai.OpenAI, base_url: str) -> None:
    """This deployment requires keys and has a master key: `orchestrator serve`'s ready line asked `/v1/models`
    with the master key, which asks no model, and listed none. The Gateway says, and `/health` answers."""
    from orchestrator import runtime
    from orchestrator.cli import health_problem

    models = runtime.served_models()
    assert models is not None and sorted(models) == sorted(m.id for m in client.models.list())  # an unlimited key's
    assert {CHAT_MODEL, EMBED_MODEL} <= set(models)
    assert health_problem(base_url) is None


def _local_model_stats() -> dict[str, Any]:
    from ray import serve

    handle = serve.get_deployment_handle("LocalModel", app_name="orchestrator")
    stats: dict[str, Any] = handle.stats.remote().result(timeout_s=10)
    return stats


def test_local_model_reports_load_through_its_handle(client: openai.OpenAI) -> None:
    client.chat.completions.create(model=CHAT_MODEL, messages=FRANCE, max_tokens=4)
    stats = _local_model_stats()
    assert set(stats) >= {
        "waiting",
        "running",
        "unfinished",
        "kv_cache_usage",
        "prefill_tokens_per_s",
        "decode_tokens_per_s",
        "queued_prompt_tokens",
    }
    assert stats["unfinished"] == 0


def test_client_disconnect_aborts_the_engine_request(client: openai.OpenAI) -> None:
    import time

    with client.chat.completions.with_streaming_response.create(
        model=CHAT_MODEL,
        messages=[{"role": "user", "content": "Write a very long story."}],
        max_tokens=1500,
        temperature=1.0,
        stream=True,
    ) as response:
        lines = response.iter_lines()
        for _ in range(6):
            next(lines)
        assert _local_model_stats()["unfinished"] == 1
    deadline = time.monotonic() + 10
    while _local_model_stats()["unfinished"] and time.monotonic() < deadline:
        time.sleep(0.1)
    assert _local_model_stats()["unfinished"] == 0


def test_a_repeated_question_is_answered_from_the_cache_streamed_and_not(client: openai.OpenAI) -> None:
    question = [{"role": "user", "content": "Name one colour of the rainbow."}]
    first = client.chat.completions.with_raw_response.create(
        model=CHAT_MODEL, messages=question, temperature=0, max_tokens=12
    )
    assert first.headers["x-cache"] == "MISS"
    again = client.chat.completions.with_raw_response.create(
        model=CHAT_MODEL, messages=question, temperature=0, max_tokens=12
    )
    validate("CreateChatCompletionResponse", again.http_response.json())
    assert again.headers["x-cache"] == "HIT" and again.headers["x-served-by"].startswith("cache/local/")
    assert again.parse().choices[0].message.content == first.parse().choices[0].message.content
    assert again.parse().id != first.parse().id
    # The same entry replays as a real stream of many chunks.
    with client.chat.completions.with_streaming_response.create(
        model=CHAT_MODEL, messages=question, temperature=0, max_tokens=12, stream=True
    ) as response:
        assert response.headers["x-cache"] == "HIT"
        chunks, done = _sse_chunks(response.iter_lines())
    assert done and len(chunks) > 3
    for chunk in chunks:
        validate("CreateChatCompletionStreamResponse", chunk)
    text = "".join(c["choices"][0]["delta"].get("content") or "" for c in chunks if c["choices"])
    assert text == first.parse().choices[0].message.content


def test_a_streamed_answer_is_cached_for_a_later_whole_request(client: openai.OpenAI) -> None:
    question = [{"role": "user", "content": "Say hello politely."}]
    stream = client.chat.completions.create(model=CHAT_MODEL, messages=question, seed=11, max_tokens=10, stream=True)
    text = "".join(c.choices[0].delta.content or "" for c in stream if c.choices)
    again = client.chat.completions.with_raw_response.create(
        model=CHAT_MODEL, messages=question, seed=11, max_tokens=10
    )
    assert again.headers["x-cache"] == "HIT" and again.parse().choices[0].message.content == text
    bypass = client.chat.completions.with_raw_response.create(
        model=CHAT_MODEL, messages=question, seed=11, max_tokens=10, extra_headers={"Cache-Control": "no-cache"}
    )
    assert bypass.headers["x-cache"] == "BYPASS"
