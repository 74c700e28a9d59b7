"""`local_models.tools` with a reasoning parser, without an engine: vLLM's own reasoning parsers
(deepseek_r1, qwen3) split recorded model text into reasoning and content, whole, by token and by
character; composed with the hermes tool-call parser (the thinking first, then calls read in the
rest); the reasoning tokens counted; an unknown name or a tokenizer without the markers refused.

The tokenizer is tiny-random's with `<think>` and `</think>` added as single tokens, as Qwen3's
and the R1-distills' vocabularies have them (vLLM's parsers find the markers by token id).
"""

from __future__ import annotations

from typing import Any

import pytest

from local_models.catalog import prepare
from local_models.errors import EngineFailure
from local_models.interface import GenerateRequest, Sampling, ToolCallPiece
from local_models.tools import ToolCalling, ToolReader, parser_class
from orchestrator.settings import load_settings

THOUGHT = "The user asks for the capital of France. That is Paris; say it plainly."
ANSWER = "The capital of France is Paris."
THINKING = f"<think>{THOUGHT}</think>{ANSWER}"  # what Qwen3 / an R1-distill writes
WEATHER = {
    "type": "function",
    "function": {
        "name": "get_weather",
        "parameters": {"type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]},
    },
}


@pytest.fixture(scope="module")
def plain() -> Any:
    from transformers import AutoTokenizer

    return AutoTokenizer.from_pretrained(str(prepare("tiny-random", load_settings().data_dir, progress=False).path))


@pytest.fixture(scope="module")
def tokenizer() -> Any:
    from transformers import AutoTokenizer

    tok = AutoTokenizer.from_pretrained(str(prepare("tiny-random", load_settings().data_dir, progress=False).path))
    tok.add_tokens(["<think>", "</think>"])
    return tok


def ask(**fields: Any) -> GenerateRequest:
    request = GenerateRequest(
        request_id="t",
        kind="chat",
        messages=[{"role": "user", "content": "Capital of France?"}],
        sampling=Sampling(),
        stream=True,
    )
    return request | fields  # type: ignore[return-value]


def reader(
    tokenizer: Any, reasoning: str, tool_parser: str | None = None, prompt: str = "", **fields: Any
) -> ToolReader:
    session = ToolCalling(tokenizer, tool_parser, lambda params: None, reasoning).session(ask(**fields))
    assert session is not None
    r = session.reader(tokenizer.encode(f"<|user|>Capital of France?<|assistant|>{prompt}", add_special_tokens=False))
    assert r is not None
    return r


def chunks(tokenizer: Any, text: str, split: str) -> list[tuple[str, list[int]]]:
    """The text as the engine hands it over: whole, a token at a time, or a character at a time (a
    marker, one token, still arrives whole with its id: vLLM's parsers find it by that id)."""
    ids = tokenizer.encode(text, add_special_tokens=False)
    if split == "whole":
        return [(text, ids)]
    markers = set(tokenizer.convert_tokens_to_ids(["<think>", "</think>"]))
    out: list[tuple[str, list[int]]] = []
    done = ""
    for k in range(1, len(ids) + 1):
        now = tokenizer.decode(ids[:k])
        piece, done = now[len(done) :], now
        if split == "tokens" or ids[k - 1] in markers or len(piece) < 2:
            out.append((piece, [ids[k - 1]]))
        else:  # the token's id comes with its first character
            out += [(piece[0], [ids[k - 1]])] + [(c, []) for c in piece[1:]]
    return out


def read(r: ToolReader, pieces: list[tuple[str, list[int]]]) -> tuple[str, str, list[ToolCallPiece], list[str]]:
    """Everything read: reasoning, content, tool-call pieces, and the order the kinds came in."""
    reasoning, content, calls, order = "", "", [], []
    for i, (text, ids) in enumerate(pieces):
        thought, said, got = r.read(text, ids, finished=i == len(pieces) - 1)
        reasoning += thought
        content += said
        calls += got
        order += [kind for kind, part in (("reasoning", thought), ("content", said), ("calls", got)) if part]
    return reasoning, content, calls, [k for i, k in enumerate(order) if i == 0 or order[i - 1] != k]


@pytest.mark.parametrize("name", ["deepseek_r1", "qwen3"])
@pytest.mark.parametrize("split", ["whole", "tokens", "characters"])
def test_vllms_reasoning_parser_splits_the_thinking_off(tokenizer: Any, name: str, split: str) -> None:
    r = reader(tokenizer, name)
    reasoning, content, calls, order = read(r, chunks(tokenizer, THINKING, split))
    assert reasoning.strip() == THOUGHT and content.strip() == ANSWER and not calls
    assert order == ["reasoning", "content"]  # all the thinking before any of the answer
    assert r.reasoning_tokens == len(tokenizer.encode(THOUGHT, add_special_tokens=False))
    assert r.finish_reason("stop") == "stop"


@pytest.mark.parametrize("split", ["whole", "tokens"])
def test_an_r1_distill_whose_template_opened_the_thinking(tokenizer: Any, split: str) -> None:
    """R1-distills' templates end the prompt with "<think>\\n": the output starts inside the thinking."""
    r = reader(tokenizer, "deepseek_r1", prompt="<think>\n")
    reasoning, content, _, order = read(r, chunks(tokenizer, f"{THOUGHT}</think>{ANSWER}", split))
    assert (reasoning.strip(), content.strip(), order) == (THOUGHT, ANSWER, ["reasoning", "content"])
    assert r.reasoning_tokens == len(tokenizer.encode(THOUGHT, add_special_tokens=False))


def test_a_template_that_closed_the_thinking_leaves_it_all_content(tokenizer: Any) -> None:
    """Qwen3 with thinking off: its template writes an empty "<think>\\n\\n</think>" into the prompt."""
    r = reader(tokenizer, "qwen3", prompt="<think>\n\n</think>\n\n")
    reasoning, content, _, _ = read(r, chunks(tokenizer, ANSWER, "tokens"))
    assert (reasoning, content, r.reasoning_tokens) == ("", ANSWER, 0)


def test_an_answer_that_never_stops_thinking_is_all_reasoning(tokenizer: Any) -> None:
    r = reader(tokenizer, "deepseek_r1")
    reasoning, content, _, _ = read(r, chunks(tokenizer, f"<think>{THOUGHT}", "tokens"))
    assert (reasoning.strip(), content) == (THOUGHT, "")  # cut off by max_tokens mid-thought


@pytest.mark.parametrize("split", ["whole", "tokens"])
def test_reasoning_then_tool_calls_as_vllms_server_composes_them(tokenizer: Any, split: str) -> None:
    text = (
        "<think>I need the weather tool.</think>"
        '<tool_call>\n{"name": "get_weather", "arguments": {"city": "Paris"}}\n</tool_call>'
    )
    r = reader(tokenizer, "qwen3", "hermes", tools=[WEATHER])
    reasoning, content, calls, order = read(r, chunks(tokenizer, text, split))
    assert reasoning.strip() == "I need the weather tool." and not content.strip()
    assert calls[0]["name"] == "get_weather" and "".join(p["arguments"] for p in calls).replace(" ", "") == (
        '{"city":"Paris"}'
    )
    assert order[0] == "reasoning" and r.finish_reason("stop") == "tool_calls"


def test_tool_choice_none_still_splits_the_thinking(tokenizer: Any) -> None:
    r = reader(tokenizer, "deepseek_r1", "hermes", tools=[WEATHER], tool_choice="none")
    reasoning, content, calls, _ = read(r, chunks(tokenizer, THINKING, "tokens"))
    assert (reasoning.strip(), content.strip(), calls) == (THOUGHT, ANSWER, [])


def test_without_a_reasoning_parser_a_plain_request_is_not_read(tokenizer: Any) -> None:
    assert ToolCalling(tokenizer, None, lambda params: None).session(ask()) is None


def test_an_unknown_reasoning_parser_fails_naming_those_vllm_knows() -> None:
    with pytest.raises(EngineFailure, match=r"Unknown reasoning parser 'deepthink'; vLLM knows: .*deepseek_r1.*qwen3"):
        parser_class(None, "deepthink")
    with pytest.raises(EngineFailure, match="Unknown reasoning parser"):
        parser_class("hermes", "deepthink")


def test_a_tokenizer_without_the_markers_fails_at_start(plain: Any) -> None:
    with pytest.raises(
        EngineFailure, match=r"reasoning parser 'deepseek_r1' can't be used with this model's tokenizer"
    ):
        ToolCalling(plain, None, lambda params: None, "deepseek_r1")
