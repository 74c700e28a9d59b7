"""What a chat request needs, what a model offers, and name resolution."""

from __future__ import annotations

from typing import Any

import pytest

from local_models.interface import ModelInfo
from orchestrator.errors import InvalidRequest, ModelNotFound, UnsupportedCapability
from orchestrator.protocol import ChatCompletionRequest
from orchestrator.scheduling.capabilities import (
    Backend,
    ModelEntry,
    Registry,
    build_registry,
    chat_needs,
    local_backend,
)

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
        (request(tools=[TOOL]), {"tools", "auto_tools"}),
        (request(tools=[TOOL], tool_choice="auto"), {"tools", "auto_tools"}),
        (request(tools=[TOOL], tool_choice="required"), {"tools"}),
        (request(tools=[TOOL], tool_choice={"type": "function", "function": {"name": "f"}}), {"tools"}),
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
        (request(stop=["a", "b", "c", "d"]), set()),
        (request(stop=["a", "b", "c", "d"]).model_copy(update={"stop": list("abcde")}), {"many_stops"}),
    ],
)
def test_chat_needs(req: ChatCompletionRequest, needs: set[str]) -> None:
    assert chat_needs(req) == needs


LOCAL_CHAT = Backend(
    provider="local",
    model="chatty-v1",
    tasks=frozenset({"chat", "completions"}),
    features=frozenset({"json_schema"}),
    context_length=2048,
)
REMOTE_TOOLS = Backend(
    provider="remote",
    model="big-v2",
    tasks=frozenset({"chat", "completions"}),
    features=frozenset({"tools", "auto_tools", "vision", "json_schema"}),
    owned_by="remote",
)
CHAT = ModelEntry(name="chatty", backends=(LOCAL_CHAT,))
CHAIN = ModelEntry(name="auto", backends=(LOCAL_CHAT, REMOTE_TOOLS))
EMBED = ModelEntry(name="embedder", backends=(Backend("local-embed", "embedder", frozenset({"embeddings"})),))


def test_resolve_by_name() -> None:
    registry = Registry([CHAT, EMBED])
    assert registry.resolve("chatty") is CHAT
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
    other = ModelEntry(name="chatty", backends=(REMOTE_TOOLS,))
    assert Registry([CHAT, other]).resolve("chatty") is CHAT


def test_candidates_keep_the_chain_order_and_drop_what_cannot_serve() -> None:
    assert CHAIN.candidates("chat") == [LOCAL_CHAT, REMOTE_TOOLS]
    assert CHAIN.candidates("chat", {"json_schema"}) == [LOCAL_CHAT, REMOTE_TOOLS]
    # The local model has no tools: a tool request goes only to the backend that has them.
    assert CHAIN.candidates("chat", {"tools"}) == [REMOTE_TOOLS]
    assert CHAIN.candidates("chat", {"tools", "auto_tools"}) == [REMOTE_TOOLS]
    assert EMBED.candidates("embeddings") == list(EMBED.backends)


def test_candidates_refuse_an_unsupported_task_with_param_model() -> None:
    with pytest.raises(InvalidRequest) as info:
        EMBED.candidates("chat")
    e = info.value
    assert not isinstance(e, UnsupportedCapability)
    assert (e.status_code, e.param, e.code) == (400, "model", "unsupported_task")
    assert "/v1/chat/completions" in e.message


@pytest.mark.parametrize(
    ("feature", "param"),
    [
        ("tools", "tools"),
        ("auto_tools", "tool_choice"),
        ("vision", "messages"),
        ("audio", "messages"),
        ("json_schema", "response_format"),
        ("many_stops", "stop_sequences"),  # only Anthropic's door takes more stops than OpenAI's 4
    ],
)
def test_candidates_raise_unsupported_capability(feature: Any, param: str) -> None:
    entry = ModelEntry(name="bare", backends=(Backend("p", "bare", frozenset({"chat"})),))
    with pytest.raises(UnsupportedCapability) as info:
        entry.candidates("chat", {feature})
    e = info.value
    assert (e.status_code, e.error_type, e.param, e.code) == (
        400,
        "invalid_request_error",
        param,
        f"unsupported_{feature}",
    )
    assert "'bare'" in e.message


def test_features_no_single_route_has_together_are_a_400_not_an_empty_chain() -> None:
    """Tools on one route, more than 4 stops on another: no route serves the request (it was a 500)."""
    tools = Backend("remote", "r", frozenset({"chat"}), frozenset({"tools", "auto_tools"}))
    stops = Backend("local", "l", frozenset({"chat"}), frozenset({"many_stops"}))
    entry = ModelEntry(name="auto", backends=(stops, tools))
    with pytest.raises(UnsupportedCapability) as info:
        entry.candidates("chat", {"tools", "auto_tools", "many_stops"})
    e = info.value
    assert (e.status_code, e.param, e.code) == (400, "stop_sequences", "unsupported_many_stops")
    assert e.message.startswith("No route of the model 'auto' supports tool calls together with")
    assert entry.candidates("chat", {"many_stops"}) == [stops]


def test_local_backend_for_a_chat_model() -> None:
    b = local_backend(ModelInfo(name="m", task="generate", max_model_len=2048, has_chat_template=True), "local")
    assert b.tasks == {"chat", "completions"}
    assert b.features == {"json_schema", "many_stops"}  # vLLM takes any number of stop strings
    assert (b.provider, b.model, b.context_length) == ("local", "m", 2048)


def info(**fields: Any) -> ModelInfo:
    return ModelInfo(name="m", task="generate", max_model_len=2048, has_chat_template=True, **fields)


@pytest.mark.parametrize(
    ("modes", "features"),
    [
        ([], set()),
        (["required", "named"], {"tools"}),  # structured output: any chat model
        (["required", "named", "auto"], {"tools", "auto_tools"}),  # and a tool-call parser
    ],
)
def test_local_backend_tool_features_follow_the_engines_tool_modes(modes: Any, features: set[str]) -> None:
    assert local_backend(info(tool_modes=modes), "local").features == {"json_schema", "many_stops", *features}


def test_a_local_model_without_a_parser_serves_forced_calls_and_says_what_auto_needs() -> None:
    local = local_backend(info(tool_modes=["required", "named"]), "local")
    entry = ModelEntry(name="smol", backends=(local,))
    assert entry.candidates("chat", {"tools"}) == [local]  # "required" or a named function
    with pytest.raises(UnsupportedCapability) as e:
        entry.candidates("chat", {"tools", "auto_tools"})
    assert (e.value.param, e.value.code) == ("tool_choice", "unsupported_auto_tools")
    assert "local.tool_parser" in e.value.message and "'required'" in e.value.message
    # With a route that chooses its calls behind it, "auto" goes there and forced calls stay local.
    chain = ModelEntry(name="auto", backends=(local, REMOTE_TOOLS))
    assert chain.candidates("chat", {"tools", "auto_tools"}) == [REMOTE_TOOLS]
    assert chain.candidates("chat", {"tools"}) == [local, REMOTE_TOOLS]


def test_a_model_without_any_tools_is_refused_for_tools_before_auto_tools() -> None:
    with pytest.raises(UnsupportedCapability) as e:
        CHAT.candidates("chat", {"tools", "auto_tools"})
    assert (e.value.param, e.value.code) == ("tools", "unsupported_tools")


def test_local_backend_without_chat_template_only_completes() -> None:
    b = local_backend(ModelInfo(name="base", task="generate", max_model_len=512, has_chat_template=False), "local")
    assert b.tasks == {"completions"}


def test_local_backend_for_an_embedder() -> None:
    b = local_backend(ModelInfo(name="e", task="embed", max_model_len=512, has_chat_template=False), "local-embed")
    assert b.tasks == {"embeddings"}
    assert b.features == frozenset()
    assert b.provider == "local-embed"


def test_build_registry_serves_models_chains_and_drops_unavailable_routes() -> None:
    registry = build_registry(
        local={"chatty": LOCAL_CHAT},
        remote={"remote/big": REMOTE_TOOLS},
        chains={"auto": ["chatty", "missing/x", "remote/big"], "ghost": ["missing/y"]},
    )
    assert [e.name for e in registry.entries()] == ["auto", "chatty", "remote/big"]
    assert registry.resolve("auto").backends == (LOCAL_CHAT, REMOTE_TOOLS)
    with pytest.raises(ModelNotFound):
        registry.resolve("ghost")


def test_an_alias_named_like_a_route_takes_its_name_and_is_listed_once() -> None:
    """LiteLLM configs name a group like its route (`openai/gpt-4o`): `/v1/models` listed the name twice."""
    registry = build_registry(
        local={"chatty": LOCAL_CHAT},
        remote={"remote/big": REMOTE_TOOLS},
        chains={"remote/big": ["remote/big", "chatty"], "chatty": ["missing/x"]},
    )
    assert [e.name for e in registry.entries()] == ["remote/big", "chatty"]
    assert registry.resolve("remote/big").backends == (REMOTE_TOOLS, LOCAL_CHAT)
    assert registry.resolve("chatty").backends == (LOCAL_CHAT,)  # an alias not served leaves the route its name
