"""OpenAI sampling fields -> vLLM `SamplingParams`.

The one place that knows both vocabularies. OpenAI's defaults apply where a
field is absent (temperature 1, top_p 1), `logit_bias` keys are token ids as
strings, and `response_format` becomes vLLM structured output. OpenAI's and
Anthropic's `top_p` run from 0, vLLM's from just above it: a nucleus of no
mass is the most likely token alone, vLLM's `top_k=1`.
"""

from __future__ import annotations

import json
from typing import Any

from vllm.exceptions import VLLMValidationError
from vllm.sampling_params import RequestOutputKind, SamplingParams, StructuredOutputsParams

from .errors import BadRequest
from .interface import Sampling


def structured_outputs(response_format: dict[str, Any] | None) -> StructuredOutputsParams | None:
    if not response_format:
        return None
    kind = response_format.get("type")
    if kind == "json_object":
        return StructuredOutputsParams(json_object=True, disable_any_whitespace=True)
    if kind == "json_schema":
        spec = response_format.get("json_schema") or {}
        schema = spec.get("schema")
        if schema is None:
            # OpenAI accepts a json_schema without a schema: any JSON object then.
            return StructuredOutputsParams(json_object=True, disable_any_whitespace=True)
        return StructuredOutputsParams(json=json.dumps(schema), disable_any_whitespace=True)
    return None


def logit_bias(bias: dict[str, float] | None, vocab_size: int) -> dict[int, float] | None:
    if not bias:
        return None
    out: dict[int, float] = {}
    for key, value in bias.items():
        try:
            token = int(key)
        except ValueError:
            raise BadRequest(f"Invalid key in 'logit_bias': {key!r} is not a token id.", param="logit_bias") from None
        if not 0 <= token < vocab_size:
            raise BadRequest(
                f"Invalid key in 'logit_bias': token id {token} is out of range [0, {vocab_size}).",
                param="logit_bias",
            )
        out[token] = value
    return out


def to_sampling_params(
    sampling: Sampling,
    *,
    max_tokens: int,
    vocab_size: int,
    stream: bool,
    structured: StructuredOutputsParams | None = None,
    skip_special_tokens: bool = True,
) -> SamplingParams:
    """Build vLLM's params; `max_tokens` is already resolved against the context.

    `structured` (a forced tool call's constraint, `local_models.tools`) replaces `response_format`'s:
    a forced call's output is the call, not an answer in the format."""
    logprobs = sampling.get("logprobs")
    temperature = sampling.get("temperature")
    top_p = sampling.get("top_p")
    if structured is None:
        structured = structured_outputs(sampling.get("response_format"))
    try:
        return _build(
            sampling, temperature, top_p, logprobs, max_tokens, vocab_size, stream, structured, skip_special_tokens
        )
    except (ValueError, VLLMValidationError) as e:
        raise BadRequest(e.args[0] if e.args else str(e), param=getattr(e, "parameter", None)) from None


def _build(
    sampling: Sampling,
    temperature: float | None,
    top_p: float | None,
    logprobs: int | None,
    max_tokens: int,
    vocab_size: int,
    stream: bool,
    structured: StructuredOutputsParams | None,
    skip_special_tokens: bool,
) -> SamplingParams:
    return SamplingParams(
        n=sampling.get("n", 1),
        temperature=1.0 if temperature is None else temperature,
        top_p=1.0 if top_p is None or top_p == 0 else top_p,
        top_k=1 if top_p == 0 else 0,
        presence_penalty=sampling.get("presence_penalty") or 0.0,
        frequency_penalty=sampling.get("frequency_penalty") or 0.0,
        seed=sampling.get("seed"),
        stop=sampling.get("stop") or None,
        max_tokens=max_tokens,
        logprobs=logprobs,
        logit_bias=logit_bias(sampling.get("logit_bias"), vocab_size),
        structured_outputs=structured,
        skip_special_tokens=skip_special_tokens,
        output_kind=RequestOutputKind.DELTA if stream else RequestOutputKind.FINAL_ONLY,
    )
