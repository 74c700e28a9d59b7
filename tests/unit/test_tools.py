"""`local_models.tools`: the constraint a forced tool call gets, the requests it refuses, and how
model text is read back as tool calls with vLLM's own readers (its hermes parser on recorded text,
whole and streamed), without an engine.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

import pytest

from local_models.catalog import prepare
from local_models.errors import BadRequest, EngineFailure
from local_models.interface import GenerateRequest, Sampling, ToolCallPiece
from local_models.tools import ToolCalling, ToolSession, parser_class, template_messages
from orchestrator.settings import load_settings

WEATHER = {
    "type": "function",
    "function": {
        "name": "get_weather",
        "description": "The weather in a city.",
        "parameters": {"type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]},
    },
}
TIME = {
    "type": "function",
    "function": {
        "name": "get_time",
        "parameters": {"type": "object", "properties": {"zone": {"type": "string", "enum": ["UTC", "CET"]}}},
    },
}


@pytest.fixture(scope="module")
def tokenizer() -> Any:
    from transformers import AutoTokenizer

    return AutoTokenizer.from_pretrained(str(prepare("tiny-random", load_settings().data_dir, progress=False).path))


def xgrammar_check(params: Any) -> None:
    """What the engine's structured-output backend (xgrammar) checks of a new request."""
    from vllm.v1.structured_output.backend_xgrammar import validate_xgrammar_grammar

    validate_xgrammar_grammar(params)


def calling(tokenizer: Any, parser: str | None = None) -> ToolCalling:
    return ToolCalling(tokenizer, parser, xgrammar_check)


def ask(tools: list[dict[str, Any]] | None = None, **fields: Any) -> GenerateRequest:
    request = GenerateRequest(
        request_id="t", kind="chat", messages=[{"role": "user", "content": "Weather in Paris?"}], sampling=Sampling()
    ) | {"stream": True}
    if tools is not None:
        request["tools"] = tools
    return request | fields  # type: ignore[return-value]


def session(tokenizer: Any, parser: str | None = None, **fields: Any) -> ToolSession:
    s = calling(tokenizer, parser).session(ask(**{"tools": [WEATHER, TIME], **fields}))
    assert s is not None
    return s


# --------------------------------------------------------------------------- the constraint


def test_a_named_function_is_constrained_to_its_parameters_schema(tokenizer: Any) -> None:
    s = session(tokenizer, tool_choice={"type": "function", "function": {"name": "get_time"}})
    assert s.mode == "named" and s.structured.json == TIME["function"]["parameters"]


def test_required_is_an_array_of_calls_over_the_tools_each_closed(tokenizer: Any) -> None:
    schema = session(tokenizer, tool_choice="required").structured.json
    assert schema["type"] == "array" and schema["minItems"] == 1 and "maxItems" not in schema
    calls = schema["items"]["anyOf"]
    assert [c["properties"]["name"]["enum"] for c in calls] == [["get_weather"], ["get_time"]]
    assert calls[0]["properties"]["parameters"] == WEATHER["function"]["parameters"]
    assert all(c["additionalProperties"] is False and c["required"] == ["name", "parameters"] for c in calls)
    one = session(tokenizer, tool_choice="required", parallel_tool_calls=False).structured.json
    assert one["maxItems"] == 1


def test_a_function_without_parameters_takes_an_object(tokenizer: Any) -> None:
    bare = {"type": "function", "function": {"name": "ping"}}
    s = calling(tokenizer).session(ask([bare], tool_choice={"type": "function", "function": {"name": "ping"}}))
    assert s is not None and s.structured.json == {"type": "object", "properties": {}}


def test_auto_and_none_are_not_constrained(tokenizer: Any) -> None:
    assert session(tokenizer, "hermes").structured is None  # auto, the default with tools
    none = session(tokenizer, tool_choice="none")
    assert none.structured is None and none.reader([1]) is None


def test_modes_follow_the_parser(tokenizer: Any) -> None:
    assert calling(tokenizer).modes == ["required", "named"]
    assert calling(tokenizer, "hermes").modes == ["required", "named", "auto"]


def test_no_tools_no_session(tokenizer: Any) -> None:
    assert calling(tokenizer).session(ask()) is None
    assert calling(tokenizer).session(ask(tool_choice="none")) is None


# ------------------------------------------------------------------------ what is refused


@pytest.mark.parametrize(
    ("fields", "param", "words"),
    [
        ({"tool_choice": "auto"}, "tool_choice", "local.tool_parser"),
        ({}, "tool_choice", "local.tool_parser"),  # tools without tool_choice: "auto"
        ({"tools": None, "tool_choice": "required"}, "tool_choice", "only allowed when 'tools'"),
        ({"tool_choice": {"type": "function", "function": {"name": "nope"}}}, "tool_choice", "does not match"),
        ({"tool_choice": {"type": "function"}}, "tool_choice.function", "function"),
        ({"tool_choice": {"type": "function", "function": {"name": ""}}}, "tool_choice.function.name", "name"),
        ({"tool_choice": "sometimes"}, "tool_choice", "sometimes"),
        ({"tools": []}, None, None),  # no tools: nothing to refuse
    ],
)
def test_bad_tool_fields_are_the_requests_fault_naming_the_field(
    tokenizer: Any, fields: dict[str, Any], param: str | None, words: str | None
) -> None:
    request = ask([WEATHER]) | fields
    if request.get("tools") is None:
        request.pop("tools")  # type: ignore[misc]
    if param is None:
        assert calling(tokenizer).session(request) is None  # type: ignore[arg-type]
        return
    with pytest.raises(BadRequest) as e:
        calling(tokenizer).session(request)  # type: ignore[arg-type]
    assert e.value.param == param and words in e.value.message


def test_a_schema_the_backend_refuses_names_its_tool(tokenizer: Any) -> None:
    broken = {
        "type": "function",
        "function": {"name": "bad", "parameters": {"type": "object", "properties": {"x": {"type": "strin"}}}},
    }
    for choice in ("required", {"type": "function", "function": {"name": "bad"}}):
        with pytest.raises(BadRequest) as e:
            calling(tokenizer).session(ask([WEATHER, broken], tool_choice=choice))
        assert e.value.param == "tools[1].function.parameters" and "'bad'" in e.value.message
    # "auto" makes no constraint of it: the parser reads what the model writes.
    assert calling(tokenizer, "hermes").session(ask([WEATHER, broken])) is not None


def test_a_parser_for_another_models_format_fails_at_start(tokenizer: Any) -> None:
    with pytest.raises(EngineFailure) as e:
        calling(tokenizer, "mistral")  # its [TOOL_CALLS] token is not in this vocabulary
    assert "'mistral'" in e.value.message and "tokenizer" in e.value.message


def test_an_unknown_parser_is_named_with_the_ones_vllm_knows() -> None:
    with pytest.raises(EngineFailure) as e:
        parser_class("hermess")
    assert "'hermess'" in e.value.message and "hermes" in e.value.message and "llama3_json" in e.value.message


# ----------------------------------------------------------------------------- reading back


def pieces_of(s: ToolSession, chunks: list[str]) -> tuple[str, list[ToolCallPiece], str | None]:
    """The chunks through one choice's reader: its content, its pieces, its finish reason."""
    reader = s.reader([1, 2, 3])
    assert reader is not None
    content, pieces = "", []
    for i, chunk in enumerate(chunks):
        text, got = reader.feed(chunk, [], finished=i == len(chunks) - 1)
        content += text
        pieces += got
    return content, pieces, reader.finish_reason("stop")


def calls(pieces: list[ToolCallPiece]) -> list[tuple[str, str, Any]]:
    """(id, name, arguments as JSON) per call, from its pieces as a client folds them."""
    folded: dict[int, dict[str, str]] = {}
    for p in pieces:
        call = folded.setdefault(p["index"], {"id": "", "name": "", "arguments": ""})
        call["id"] += p.get("id", "")
        call["name"] += p.get("name", "")
        call["arguments"] += p["arguments"]
    return [(c["id"], c["name"], json.loads(c["arguments"])) for _, c in sorted(folded.items())]


def tokens(tokenizer: Any, text: str) -> Iterator[str]:
    """The text as the model would stream it, token by token."""
    ids = tokenizer.encode(text, add_special_tokens=False)
    done = ""
    for k in range(1, len(ids) + 1):
        now = tokenizer.decode(ids[:k])
        yield now[len(done) :]
        done = now


# What a Hermes-format model (Qwen2.5, Hermes 2 Pro) writes when it calls two tools after a word.
HERMES = (
    "Let me check.\n"
    '<tool_call>\n{"name": "get_weather", "arguments": {"city": "Paris"}}\n</tool_call>\n'
    '<tool_call>\n{"name": "get_time", "arguments": {"zone": "CET"}}\n</tool_call>'
)


@pytest.mark.parametrize("split", ["whole", "tokens", "characters"])
def test_hermes_calls_are_read_by_vllms_parser_whole_and_streamed(tokenizer: Any, split: str) -> None:
    s = session(tokenizer, "hermes")
    chunks = {"whole": [HERMES], "tokens": list(tokens(tokenizer, HERMES)), "characters": list(HERMES)}[split]
    content, pieces, finish = pieces_of(s, chunks)
    got = calls(pieces)
    assert [(name, args) for _, name, args in got] == [
        ("get_weather", {"city": "Paris"}),
        ("get_time", {"zone": "CET"}),
    ]
    assert all(i.startswith("call_") and len(i) == 29 for i, _, _ in got) and len({i for i, _, _ in got}) == 2
    assert content.strip() == "Let me check." and finish == "tool_calls"
    assert all(("id" in p) == ("name" in p) for p in pieces)  # a call's id and name come once, together


def test_hermes_keeps_one_call_when_parallel_calls_are_off(tokenizer: Any) -> None:
    _, pieces, _ = pieces_of(session(tokenizer, "hermes", parallel_tool_calls=False), list(tokens(tokenizer, HERMES)))
    assert [name for _, name, _ in calls(pieces)] == ["get_weather"]


def test_hermes_text_without_a_call_is_the_answer(tokenizer: Any) -> None:
    content, pieces, finish = pieces_of(session(tokenizer, "hermes"), list(tokens(tokenizer, "It is sunny in Paris.")))
    assert (content, pieces, finish) == ("It is sunny in Paris.", [], "stop")


@pytest.mark.parametrize("split", ["whole", "characters"])
def test_required_calls_are_read_from_the_json_array(tokenizer: Any, split: str) -> None:
    text = '[{"name":"get_weather","parameters":{"city":"Paris"}},{"name":"get_time","parameters":{"zone":"UTC"}}]'
    _, pieces, finish = pieces_of(
        session(tokenizer, tool_choice="required"), [text] if split == "whole" else list(text)
    )
    assert [(n, a) for _, n, a in calls(pieces)] == [("get_weather", {"city": "Paris"}), ("get_time", {"zone": "UTC"})]
    assert finish == "tool_calls"


def test_a_named_call_streams_its_arguments_and_stops_as_openais_do(tokenizer: Any) -> None:
    s = session(tokenizer, tool_choice={"type": "function", "function": {"name": "get_weather"}})
    _, pieces, finish = pieces_of(s, list('{"city":"Paris"}'))
    assert pieces[0]["name"] == "get_weather" and len(pieces) == len('{"city":"Paris"}')  # as generated
    assert [(n, a) for _, n, a in calls(pieces)] == [("get_weather", {"city": "Paris"})]
    assert finish == "stop"  # OpenAI's (and vLLM's) finish_reason for a named function


def test_a_call_cut_by_max_tokens_keeps_length(tokenizer: Any) -> None:
    reader = session(tokenizer, tool_choice="required").reader([1])
    assert reader is not None
    reader.feed('[{"name":"get_weather","parameters":{"ci', [], finished=True)
    assert reader.finish_reason("length") == "length"


# ------------------------------------------------------------------------- the prompt's tools


HISTORY = [
    {"role": "system", "content": "Be brief."},
    {"role": "user", "content": "Weather in Paris?"},
    {
        "role": "assistant",
        "content": "",
        "tool_calls": [
            {"id": "call_1", "type": "function", "function": {"name": "get_weather", "arguments": '{"city": "Paris"}'}}
        ],
    },
    {"role": "tool", "tool_call_id": "call_1", "content": "sunny"},
]


def test_a_template_that_takes_tools_gets_them_and_calls_arguments_as_objects() -> None:
    messages, tools = template_messages(HISTORY, [WEATHER], takes_tools=True)
    assert tools == [WEATHER] and messages[0] == HISTORY[0]
    assert messages[2]["tool_calls"][0]["function"]["arguments"] == {"city": "Paris"}
    assert HISTORY[2]["tool_calls"][0]["function"]["arguments"] == '{"city": "Paris"}'  # the request is untouched


def test_a_template_without_tools_sees_them_as_text() -> None:
    messages, tools = template_messages(HISTORY, [WEATHER], takes_tools=False)
    assert tools == []
    assert messages[0]["role"] == "system" and messages[0]["content"].startswith("Be brief.\n\nYou can call")
    assert json.dumps(WEATHER["function"]) in messages[0]["content"]
    assert "tool_calls" not in messages[2]
    assert json.loads(messages[2]["content"]) == {"name": "get_weather", "arguments": {"city": "Paris"}}
    # No system message of its own: the note is one.
    first, _ = template_messages(HISTORY[1:], [WEATHER], takes_tools=False)
    assert first[0]["role"] == "system" and first[1] == HISTORY[1]
