"""OpenAI sampling fields -> vLLM `SamplingParams` (imports vLLM: a few seconds)."""

from __future__ import annotations

import pytest

from local_models.errors import BadRequest
from local_models.interface import Sampling

sampling = pytest.importorskip("local_models.sampling", reason="needs vLLM")
vllm_params = pytest.importorskip("vllm.sampling_params")


def params(s: Sampling, *, max_tokens: int = 16, vocab_size: int = 1000, stream: bool = False) -> object:
    return sampling.to_sampling_params(s, max_tokens=max_tokens, vocab_size=vocab_size, stream=stream)


def test_openai_defaults() -> None:
    p = params({})
    assert (p.temperature, p.top_p, p.n, p.max_tokens) == (1.0, 1.0, 1, 16)
    assert (p.presence_penalty, p.frequency_penalty) == (0.0, 0.0)
    assert p.logprobs is None and p.logit_bias is None and p.structured_outputs is None
    assert p.output_kind == vllm_params.RequestOutputKind.FINAL_ONLY


def test_fields_map_through() -> None:
    p = params(
        {
            "temperature": 0.5,
            "top_p": 0.9,
            "n": 3,
            "stop": ["\n\n", "END"],
            "seed": 7,
            "presence_penalty": 0.5,
            "frequency_penalty": -0.5,
            "logprobs": 2,
            "logit_bias": {"5": -100, "42": 3.5},
        },
        max_tokens=32,
        stream=True,
    )
    assert (p.temperature, p.top_p, p.n, p.seed, p.max_tokens) == (0.5, 0.9, 3, 7, 32)
    assert p.stop == ["\n\n", "END"]
    assert (p.presence_penalty, p.frequency_penalty) == (0.5, -0.5)
    assert p.logprobs == 2
    assert p.logit_bias == {5: -100, 42: 3.5}
    assert p.output_kind == vllm_params.RequestOutputKind.DELTA


def test_greedy_temperature_zero_is_kept() -> None:
    assert params({"temperature": 0.0}).temperature == 0.0


@pytest.mark.parametrize("temperature", [None, 0.0, 0.7])
def test_top_p_zero_is_the_most_likely_token_not_a_400(temperature: float | None) -> None:
    # OpenAI and Anthropic take top_p 0; vLLM refuses it ("top_p must be in (0, 1]"), as it did here.
    s: Sampling = {"top_p": 0.0} if temperature is None else {"top_p": -0.0, "temperature": temperature}
    p = params(s)
    assert p.top_k == 1 or p.temperature == 0.0
    assert params({"top_p": 0.5}).top_k == 0


def test_json_object_becomes_structured_output() -> None:
    so = params({"response_format": {"type": "json_object"}}).structured_outputs
    assert so is not None and so.json_object is True and so.json is None


def test_json_schema_becomes_structured_output() -> None:
    schema = {"type": "object", "properties": {"a": {"type": "integer"}}, "required": ["a"]}
    so = params({"response_format": {"type": "json_schema", "json_schema": {"name": "x", "schema": schema}}})
    assert so.structured_outputs is not None
    assert (
        so.structured_outputs.json == '{"type": "object", "properties": {"a": {"type": "integer"}}, "required": ["a"]}'
    )


def test_json_schema_without_a_schema_is_any_object() -> None:
    so = params({"response_format": {"type": "json_schema", "json_schema": {"name": "x"}}}).structured_outputs
    assert so is not None and so.json_object is True


def test_text_response_format_is_unconstrained() -> None:
    assert params({"response_format": {"type": "text"}}).structured_outputs is None


@pytest.mark.parametrize(
    ("bias", "message"),
    [({"hello": 1.0}, "'hello' is not a token id"), ({"1000": 1.0}, "out of range"), ({"-1": 1.0}, "out of range")],
)
def test_bad_logit_bias_key(bias: dict[str, float], message: str) -> None:
    with pytest.raises(BadRequest, match=message) as info:
        params({"logit_bias": bias}, vocab_size=1000)
    assert info.value.param == "logit_bias"


def test_greedy_n_above_one_is_an_invalid_request() -> None:
    with pytest.raises(BadRequest, match="greedy") as info:
        params({"n": 2, "temperature": 0.0})
    assert isinstance(info.value, BadRequest)  # the request's fault: a 400 at the gateway


def test_vllm_validation_keeps_its_parameter() -> None:
    with pytest.raises(BadRequest, match="temperature") as info:
        params({"temperature": 3.0})  # the protocol refuses it first; vLLM names the field too
    assert info.value.param == "temperature"
