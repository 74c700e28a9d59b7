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


def chunk(delta: dict[str, object], finish: str | None = None) -> ChatCompletionChunk:
    choice = {"index": 0, "delta": delta, "finish_reason": finish}
    return ChatCompletionChunk.model_validate({"id": "c", "created": 0, "model": "m", "choices": [choice]})


def call(index: int, arguments: str, id_: str | None = None, name: str | None = None) -> dict[str, object]:
    function = {"arguments": arguments, **({"name": name} if name else {})}
    return {"tool_calls": [{"index": index, **({"id": id_, "type": "function"} if id_ else {}), "function": function}]}


def test_interleaved_parallel_tool_calls_stream_one_block_at_a_time() -> None:
    """An OpenAI-compatible route may interleave two calls' arguments (0, 1, 0, 1): a delta went to the
    first call's block after its stop, which the anthropic SDK rejects or misplaces."""
    events = MessageEvents(REQUEST)
    out = events.feed(chunk({"role": "assistant", "content": ""}))
    for delta in [
        call(0, "", "call_a", "get_weather"),
        call(1, "", "call_b", "get_time"),
        call(0, '{"city": '),
        call(1, '{"zone": '),
        call(0, '"Paris"}'),
        call(1, '"CET"}'),
    ]:
        out += events.feed(chunk(delta))
    out += events.feed(chunk({}, "tool_calls")) + events.close()
    frames = [json.loads(f.split("\n")[1].removeprefix("data: ")) for f in out.decode().split("\n\n") if f.strip()]
    open_block, inputs, names = None, {}, {}
    for frame in frames:
        if frame["type"] == "content_block_start":
            assert open_block is None, "a block started before the last one stopped"
            open_block = frame["index"]
            names[open_block], inputs[open_block] = frame["content_block"]["name"], ""
        elif frame["type"] == "content_block_delta":
            assert frame["index"] == open_block, "a delta for a block that isn't open"
            inputs[open_block] += frame["delta"]["partial_json"]
        elif frame["type"] == "content_block_stop":
            assert frame["index"] == open_block
            open_block = None
    assert {names[i]: json.loads(inputs[i]) for i in inputs} == {
        "get_weather": {"city": "Paris"},
        "get_time": {"zone": "CET"},
    }
    assert frames[-2]["delta"]["stop_reason"] == "tool_use"
