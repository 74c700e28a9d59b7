"""The Messages door's encoding of answers whose finish reason says less than their content."""

from __future__ import annotations

import json

from orchestrator.frontdoors.anthropic import MessageEvents, to_message
from orchestrator.protocol import ChatCompletion, ChatCompletionChunk, ChatCompletionRequest

REQUEST = ChatCompletionRequest.model_validate({"model": "m", "messages": [{"role": "user", "content": "hi"}]})
CALL = {"id": "call_1", "type": "function", "function": {"name": "get_weather", "arguments": '{"city": "Paris"}'}}


def completion(finish: str) -> ChatCompletion:
    message = {"role": "assistant", "content": None, "tool_calls": [CALL]}
    choice = {"index": 0, "message": message, "finish_reason": finish}
    return ChatCompletion.model_validate({"id": "chatcmpl-1", "created": 0, "model": "m", "choices": [choice]})


def test_a_named_call_that_ends_with_stop_is_tool_use() -> None:
    # OpenAI (and the local model) end a call to a named function with "stop"; Anthropic says tool_use.
    assert to_message(completion("stop"), REQUEST)["stop_reason"] == "tool_use"
    assert to_message(completion("length"), REQUEST)["stop_reason"] == "max_tokens"


def test_a_streamed_named_call_that_ends_with_stop_is_tool_use() -> None:
    events = MessageEvents(REQUEST)
    for delta, finish in [
        ({"role": "assistant", "content": ""}, None),
        ({"tool_calls": [{"index": 0, **CALL}]}, None),
        ({}, "stop"),
    ]:
        chunk = {
            "id": "c",
            "created": 0,
            "model": "m",
            "choices": [{"index": 0, "delta": delta, "finish_reason": finish}],
        }
        events.feed(ChatCompletionChunk.model_validate(chunk))
    frames = [f for f in events.close().decode().split("\n\n") if f.startswith("event: message_delta")]
    assert json.loads(frames[0].split("\n")[1].removeprefix("data: "))["delta"]["stop_reason"] == "tool_use"
