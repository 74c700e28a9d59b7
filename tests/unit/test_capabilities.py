"""What a chat request needs, what a model offers, and name resolution."""

from __future__ import annotations

from typing import Any

import pytest

from local_models.interface import ModelInfo
from orchestrator.capabilities import ModelEntry, Registry, chat_needs, local_entry
from orchestrator.errors import InvalidRequest, ModelNotFound, UnsupportedCapability
from orchestrator.protocol import ChatCompletionRequest

TOOL = {"type": "function", "function": {"name": "f", "parameters": {"type": "object"}}}
IMAGE = {"type": "image_url", "image_url": {"url": "https://example.com/cat.png"}}
AUDIO = {"type": "input_audio", "input_audio": {"data": "AA==", "format": "wav"}}
FILE = {"type": "file", "file": {"file_id": "f1"}}


def request(messages: list[dict[str, Any]] | None = None, **fields: Any) -> ChatCompletionRequest:
    return ChatCompletionRequest.model_validate(
        {"model": "m", "messages": messages or [{"role": "user", "content": "hi"}], **fields}
    )


@pytest.mark.parametrize(
    ("req", "needs"),
    [
        (request(), set()),
        (request(tools=[TOOL]), {"tools"}),
        (request(tools=[TOOL], tool_choice="auto"), {"tools"}),
        (request(tools=[TOOL], tool_choice="none"), set()),
        (
            request(
                [
                    {"role": "user", "content": "hi"},
                    {"role": "assistant", "tool_calls": [{"id": "c", "function": {"name": "f", "arguments": "{}"}}]},
                    {"role": "tool", "tool_call_id": "c", "content": "42"},
                ]
            ),
            {"tools"},
        ),
        (request([{"role": "user", "content": [{"type": "text", "text": "see"}, IMAGE]}]), {"vision"}),
        (request([{"role": "user", "content": [AUDIO]}]), {"audio"}),
        (request([{"role": "user", "content": [FILE]}]), {"audio"}),
        (request([{"role": "user", "content": [IMAGE, AUDIO]}]), {"vision", "audio"}),
        (request(response_format={"type": "text"}), set()),
        (request(response_format={"type": "json_object"}), {"json_schema"}),
        (
            request(response_format={"type": "json_schema", "json_schema": {"name": "x", "schema": {}}}),
            {"json_schema"},
        ),
    ],
)
def test_chat_needs(req: ChatCompletionRequest, needs: set[str]) -> None:
    assert chat_needs(req) == needs


CHAT = ModelEntry(
    name="chatty",
    provider="local",
    provider_model="chatty-v1",
    tasks=frozenset({"chat", "completions"}),
    features=frozenset({"json_schema"}),
    aliases=("chat-alias",),
)
EMBED = ModelEntry(name="embedder", provider="local-embed", provider_model="embedder", tasks=frozenset({"embeddings"}))


def test_resolve_by_name_and_alias() -> None:
    registry = Registry([CHAT, EMBED])
    assert registry.resolve("chatty") is CHAT
    assert registry.resolve("chat-alias") is CHAT
    assert registry.resolve("embedder") is EMBED
    assert registry.entries() == [CHAT, EMBED]


def test_resolve_unknown_lists_the_models() -> None:
    with pytest.raises(ModelNotFound) as info:
        Registry([EMBED, CHAT]).resolve("gpt-9")
    e = info.value
    assert (e.status_code, e.param, e.code) == (404, "model", "model_not_found")
    assert "'gpt-9' does not exist" in e.message
    assert e.message.endswith("Available models: chatty, embedder.")


def test_first_entry_wins_a_name_clash() -> None:
    other = ModelEntry(name="chat-alias", provider="x", provider_model="x", tasks=frozenset({"chat"}))
    assert Registry([CHAT, other]).resolve("chat-alias") is CHAT


def test_check_passes_what_the_model_offers() -> None:
    CHAT.check("chat", {"json_schema"})
    CHAT.check("completions")
    EMBED.check("embeddings")


def test_check_task_refuses_with_param_model() -> None:
    with pytest.raises(InvalidRequest) as info:
        EMBED.check("chat")
    e = info.value
    assert not isinstance(e, UnsupportedCapability)
    assert (e.status_code, e.param, e.code) == (400, "model", "unsupported_task")
    assert "/v1/chat/completions" in e.message


@pytest.mark.parametrize(
    ("feature", "param"),
    [("tools", "tools"), ("vision", "messages"), ("audio", "messages"), ("json_schema", "response_format")],
)
def test_check_feature_raises_unsupported_capability(feature: Any, param: str) -> None:
    entry = ModelEntry(name="bare", provider="p", provider_model="bare", tasks=frozenset({"chat"}))
    with pytest.raises(UnsupportedCapability) as info:
        entry.check("chat", {feature})
    e = info.value
    assert (e.status_code, e.error_type, e.param, e.code) == (
        400,
        "invalid_request_error",
        param,
        f"unsupported_{feature}",
    )
    assert "'bare'" in e.message


def test_local_entry_for_a_chat_model() -> None:
    entry = local_entry(ModelInfo(name="m", task="generate", max_model_len=2048, has_chat_template=True), "local")
    assert entry.tasks == {"chat", "completions"}
    assert entry.features == {"json_schema"}
    assert (entry.name, entry.provider, entry.provider_model, entry.context_length) == ("m", "local", "m", 2048)


def test_local_entry_without_chat_template_only_completes() -> None:
    entry = local_entry(ModelInfo(name="base", task="generate", max_model_len=512, has_chat_template=False), "local")
    assert entry.tasks == {"completions"}


def test_local_entry_for_an_embedder() -> None:
    entry = local_entry(ModelInfo(name="e", task="embed", max_model_len=512, has_chat_template=False), "local-embed")
    assert entry.tasks == {"embeddings"}
    assert entry.features == frozenset()
    assert entry.provider == "local-embed"
