"""Counting tokens the way the local model does: one tokenizer, loaded once per gateway.

- The scheduler needs prompt sizes for its latency prediction, its rules and
  each route's context length (`TokenCounter.count`).
- The meter needs usage for answers whose provider reported none (a few never
  do for streams): the prompt through the chat template and the answer's text
  (`UsageEstimator.estimate`); such records are marked `estimated`. Another
  model's tokenizer counts somewhat differently, but the same way every time,
  and far closer than any characters-per-token rule.
- Admission needs an upper bound before anything is counted
  (`prompt_upper_bound`, `output_allowance`).

`HfTokenCounter` does the first two with the local model's own tokenizer and
chat template, loaded from the directory the engine reports. Where no
tokenizer is at hand (a local model that isn't a Hugging Face directory,
tests with a fake engine), `ByteCounter` gives an upper bound: a byte-level
BPE token is at least one byte, so one token per UTF-8 byte is never fewer
than the real count; its usage estimate is bytes / 4.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Callable
from typing import Any, Protocol

from local_models.tools import chat_template_input
from orchestrator.protocol import (
    ChatCompletionChunk,
    ChatCompletionRequest,
    CompletionChunk,
    CompletionRequest,
    EmbeddingRequest,
    Usage,
)

log = logging.getLogger(__name__)

Countable = ChatCompletionRequest | CompletionRequest

# Role markers and separators a chat template adds per message, when counted without the template.
_PER_MESSAGE = 8


# No tokenizer we know has a token longer than this many UTF-8 bytes: bytes / this is a floor.
LONGEST_TOKEN_BYTES = 256
# The most prompt tokens a provider bills for one image (OpenAI's high detail ~1,100, Anthropic's ~1,600).
IMAGE_TOKENS = 2048
# Without a tokenizer, usage is estimated at this many UTF-8 bytes a token (English text's usual rate).
BYTES_PER_TOKEN = 4


class TokenCounter(Protocol):
    exact: bool  # False: `count` is an upper bound
    longest_token_bytes: int  # a prompt of B bytes has at least B // this many tokens

    def count(self, request: Countable) -> int: ...


class UsageEstimator(Protocol):
    def estimate(self, request: Any, text: str) -> Usage:
        """The usage of `request` answered with `text` (all choices' text, concatenated)."""
        ...


def request_text(request: Countable) -> str:
    """The request's text, for rule patterns and rough counts."""
    if isinstance(request, ChatCompletionRequest):
        return "\n".join(_message_text(m.content) for m in request.messages)
    prompt = request.prompt
    if isinstance(prompt, str):
        return prompt
    return "\n".join(p for p in prompt if isinstance(p, str))


def _message_text(content: Any) -> str:
    if content is None:
        return ""
    if isinstance(content, str):
        return content
    return "\n".join(getattr(part, "text", None) or "" for part in content)


class ByteCounter:
    """An upper bound without a tokenizer: one token per byte, plus per-message overhead; and an
    estimate of usage (`estimate`)."""

    exact = False
    longest_token_bytes = LONGEST_TOKEN_BYTES

    def estimate(self, request: Any, text: str) -> Usage:
        """A `UsageEstimator` without a tokenizer: a token per `BYTES_PER_TOKEN` UTF-8 bytes (of the
        prompt as `count` measures it, and of `text`). An estimate, not a bound: billing a stream
        broken off by 4x its tokens, or at nothing, would both be wrong."""
        if isinstance(request, CompletionRequest):
            prompt = sum(_tokens_of(p) if isinstance(p, str) else len(p) for p in request.prompts())
        else:
            prompt = -(-self.count(request) // BYTES_PER_TOKEN) if isinstance(request, ChatCompletionRequest) else 0
        completion = _tokens_of(text)
        return Usage(prompt_tokens=prompt, completion_tokens=completion, total_tokens=prompt + completion)

    def count(self, request: Countable) -> int:
        if isinstance(request, ChatCompletionRequest):
            messages = sum(len(_message_text(m.content).encode()) + _PER_MESSAGE for m in request.messages)
            return messages + _tool_bytes(request)
        return _longest(request.prompt, lambda text: len(text.encode()))


def _tokens_of(text: str) -> int:
    return -(-len(text.encode()) // BYTES_PER_TOKEN)


def embedding_tokens(request: EmbeddingRequest) -> int:
    """An embedding request's input tokens: token ids as counted, text estimated as `ByteCounter.estimate` does
    (what a provider that read the input may bill, where no usage came: the input of a call cut off)."""
    return sum(len(x) if isinstance(x, list) else _tokens_of(x) for x in request.inputs())


# What a chat template (or the local engine's note, for one that takes none) writes around the tools.
_TOOLS_PREAMBLE = 1024


def _tool_bytes(request: ChatCompletionRequest) -> int:
    """The tools and earlier tool calls, as bytes of JSON: a prompt's share the model reads too."""
    calls = [c.model_dump() for m in request.messages for c in m.tool_calls or []]
    n = len(json.dumps(calls, ensure_ascii=False).encode()) if calls else 0
    if request.tools:
        tools = [t.model_dump(exclude_none=True) for t in request.tools]
        n += len(json.dumps(tools, ensure_ascii=False).encode()) + _TOOLS_PREAMBLE
    return n


class HfTokenCounter:
    """Counts with a Hugging Face tokenizer and its chat template."""

    exact = True

    def __init__(self, tokenizer: Any):
        self._tokenizer = tokenizer
        self.longest_token_bytes = _longest_token(tokenizer)
        self._takes_tools = "tools" in str(getattr(tokenizer, "chat_template", None) or "")

    @classmethod
    def load(cls, path: str) -> TokenCounter:
        """The tokenizer in `path`, or a `ByteCounter` (logged) when it can't be loaded."""
        try:
            from transformers import AutoTokenizer

            return cls(AutoTokenizer.from_pretrained(path, local_files_only=True))
        except Exception as e:
            log.warning("no tokenizer at %s (%s: %s); counting prompt tokens as bytes", path, type(e).__name__, e)
            return ByteCounter()

    def estimate(self, request: Any, text: str) -> Usage:
        """A `UsageEstimator`: the prompt as the model sees it, and `text` as its answer."""
        if isinstance(request, CompletionRequest):  # every prompt is read: usage counts them all
            prompt = sum(_longest([p], self._count_text) for p in request.prompts())
        else:
            prompt = self.count(request) if isinstance(request, ChatCompletionRequest) else 0
        completion = len(self._tokenizer.encode(text, add_special_tokens=False)) if text else 0
        return Usage(prompt_tokens=prompt, completion_tokens=completion, total_tokens=prompt + completion)

    def count(self, request: Countable) -> int:
        if isinstance(request, ChatCompletionRequest):
            if getattr(self._tokenizer, "chat_template", None):
                # The prompt the local engine makes: its tools and earlier calls included.
                tools = [t.model_dump(exclude_none=True) for t in request.tools] if request.tools else None
                messages, shown = chat_template_input(
                    [m.flat() for m in request.messages], tools, request.tool_choice, takes_tools=self._takes_tools
                )
                extra = {"tools": shown} if shown else {}
                go_on = bool(request.continue_final_message)
                ids = self._tokenizer.apply_chat_template(
                    messages, tokenize=True, add_generation_prompt=not go_on, continue_final_message=go_on, **extra
                )
                return len(ids["input_ids"] if isinstance(ids, dict) or hasattr(ids, "keys") else ids)
            messages = [{"role": m.role, "content": _message_text(m.content)} for m in request.messages]
            text = "\n".join(m["content"] for m in messages)
            return len(self._tokenizer.encode(text)) + _PER_MESSAGE * len(messages)
        return _longest(request.prompt, self._count_text)

    def _count_text(self, text: str) -> int:
        return len(self._tokenizer.encode(text))


def _longest_token(tokenizer: Any) -> int:
    """The most UTF-8 bytes of one token's text in the vocabulary (byte-level markers such as
    'Ġ' count two where they stand for one: the floor it gives stays a floor)."""
    try:
        vocab = tokenizer.get_vocab()
        return max(1, min(LONGEST_TOKEN_BYTES, max(len(t.encode("utf-8", "replace")) for t in vocab)))
    except Exception:  # a tokenizer without a readable vocabulary: the generic bound
        return LONGEST_TOKEN_BYTES


def _longest(prompt: Any, count: Callable[[str], int]) -> int:
    """Tokens of the longest prompt: several prompts are several generations, each must fit."""
    if isinstance(prompt, str):
        return count(prompt)
    if prompt and isinstance(prompt[0], int):
        return len(prompt)  # one prompt, already token ids
    return max((len(p) if isinstance(p, list) else count(p) for p in prompt), default=0)


# ------------------------------------------------------------------------------ texts and bounds


def prompt_upper_bound(request: Any) -> int:
    """At least as many tokens as a provider bills as the prompt: the UTF-8 bytes (a byte-level BPE
    token is at least one byte) of the whole chat request (its tools, schemas and every other field
    are billed as prompt too), a few per message for the template, `IMAGE_TOKENS` per image (an image
    URL is a few bytes and a thousand tokens); text prompts and suffix as bytes, token ids as counted."""
    if isinstance(request, ChatCompletionRequest):
        images = sum(
            1 for m in request.messages if isinstance(m.content, list) for p in m.content if p.type == "image_url"
        )
        body = request.model_dump_json(exclude_none=True)
        return len(body.encode()) + _PER_MESSAGE * len(request.messages) + IMAGE_TOKENS * images
    if isinstance(request, CompletionRequest):
        suffix = len(request.suffix.encode()) if request.suffix else 0
        return sum(len(p) if isinstance(p, list) else len(p.encode()) for p in request.prompts()) + suffix
    if isinstance(request, EmbeddingRequest):
        return sum(len(p) if isinstance(p, list) else len(p.encode()) for p in request.inputs())
    return 0


def output_allowance(request: Any) -> tuple[int | None, int]:
    """The request's output limit per choice (None: up to the context) and how many choices."""
    if isinstance(request, ChatCompletionRequest):
        return request.output_limit(), request.n or 1
    if isinstance(request, CompletionRequest):
        prompts = len(request.prompts()) or 1
        return (request.max_tokens if request.max_tokens is not None else 16), (request.n or 1) * prompts
    return 0, 1


def answer_text(whole: Any) -> str:
    """All choices' generated text of a whole chat or text completion."""
    parts: list[str] = []
    for c in getattr(whole, "choices", []):
        message = getattr(c, "message", None)
        if message is not None:
            parts.append(message.content or "")
            for call in message.tool_calls or []:
                parts.append(call.function.name + call.function.arguments)
        else:
            parts.append(getattr(c, "text", "") or "")
    return "".join(parts)


def chunk_text(chunk: ChatCompletionChunk | CompletionChunk) -> str:
    parts: list[str] = []
    for c in chunk.choices:
        delta = getattr(c, "delta", None)
        if delta is not None:
            parts.append(delta.content or "")
            for call in delta.tool_calls or []:
                fn = call.function
                if fn is not None:
                    parts.append((fn.name or "") + (fn.arguments or ""))
        else:
            parts.append(getattr(c, "text", "") or "")
    return "".join(parts)
