"""The gateway's prompt counts: a tool request's tools and earlier calls count, as the engine writes them."""

from __future__ import annotations

from typing import Any

import pytest

from local_models.catalog import prepare
from local_models.tools import chat_template_input
from orchestrator.protocol import ChatCompletionRequest
from orchestrator.scheduling.tokens import ByteCounter, HfTokenCounter
from orchestrator.settings import load_settings

WEATHER = {
    "type": "function",
    "function": {
        "name": "get_weather",
        "description": "The weather in a city.",
        "parameters": {"type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]},
    },
}
HISTORY: Any = [
    {"role": "user", "content": "Weather in Paris?"},
    {
        "role": "assistant",
        "content": None,
        "tool_calls": [{"id": "call_1", "type": "function", "function": {"name": "get_weather", "arguments": "{}"}}],
    },
    {"role": "tool", "tool_call_id": "call_1", "content": "sunny"},
]


@pytest.fixture(scope="module")
def tokenizer() -> Any:
    from transformers import AutoTokenizer

    return AutoTokenizer.from_pretrained(str(prepare("tiny-random", load_settings().data_dir, progress=False).path))


def chat(**fields: Any) -> ChatCompletionRequest:
    return ChatCompletionRequest.model_validate({"model": "m", "messages": HISTORY, **fields})


def engine_prompt(tokenizer: Any, request: ChatCompletionRequest) -> int:
    """The prompt's length as `VllmEngine` makes it (messages as the local provider sends them)."""
    tools = [t.model_dump(exclude_none=True) for t in request.tools or []] or None
    messages, shown = chat_template_input(
        [m.flat() for m in request.messages], tools, request.tool_choice, takes_tools=False
    )
    text = tokenizer.apply_chat_template(messages, tokenize=False, add_generation_prompt=True)
    return len(tokenizer.encode(text, add_special_tokens=False))


@pytest.mark.parametrize("fields", [{}, {"tools": [WEATHER], "tool_choice": "required"}, {"tools": [WEATHER]}])
def test_the_local_count_is_the_engines_prompt(tokenizer: Any, fields: dict[str, Any]) -> None:
    request = chat(**fields)
    assert HfTokenCounter(tokenizer).count(request) == engine_prompt(tokenizer, request)


def test_tools_count_and_the_byte_bound_still_bounds(tokenizer: Any) -> None:
    exact = HfTokenCounter(tokenizer)
    bare, tooled = chat(), chat(tools=[WEATHER], tool_choice="required")
    assert exact.count(tooled) > exact.count(bare) + 20  # the tools note
    assert exact.count(chat(tools=[WEATHER], tool_choice="none")) == exact.count(bare)  # not shown: not counted
    for request in (bare, tooled):
        assert ByteCounter().count(request) >= exact.count(request)


def test_without_a_tokenizer_usage_is_estimated_at_four_bytes_a_token() -> None:
    from orchestrator.protocol import CompletionRequest

    chat = ChatCompletionRequest.model_validate({"model": "m", "messages": [{"role": "user", "content": "é" * 10}]})
    usage = ByteCounter().estimate(chat, "twelve bytes")
    assert (usage.prompt_tokens, usage.completion_tokens, usage.total_tokens) == (7, 3, 10)  # (20 + 8) / 4, 12 / 4
    prompts = CompletionRequest.model_validate({"model": "m", "prompt": [[1, 2, 3], [4, 5]]})
    assert ByteCounter().estimate(prompts, "").prompt_tokens == 5  # token ids are counted as they are
    assert ByteCounter().estimate(CompletionRequest(model="m", prompt="abcde"), "").prompt_tokens == 2


def test_the_prompt_bound_covers_tools_schemas_and_images() -> None:
    from orchestrator.scheduling.tokens import IMAGE_TOKENS, prompt_upper_bound

    base = {"model": "m", "messages": [{"role": "user", "content": "hi"}]}
    plain = prompt_upper_bound(ChatCompletionRequest.model_validate(base))
    tool = {"type": "function", "function": {"name": "t", "description": "d" * 5000, "parameters": {}}}
    assert prompt_upper_bound(ChatCompletionRequest.model_validate({**base, "tools": [tool]})) > plain + 5000
    schema = {"type": "json_schema", "json_schema": {"name": "s", "schema": {"description": "e" * 3000}}}
    assert prompt_upper_bound(ChatCompletionRequest.model_validate({**base, "response_format": schema})) > plain + 3000
    image = {"type": "image_url", "image_url": {"url": "https://example.com/a.png"}}
    seen = {**base, "messages": [{"role": "user", "content": [{"type": "text", "text": "hi"}, image]}]}
    assert prompt_upper_bound(ChatCompletionRequest.model_validate(seen)) > plain + IMAGE_TOKENS
