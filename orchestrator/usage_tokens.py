"""Counting tokens when a provider says nothing: the local model's own tokenizer.

Most providers report usage (streams ask for it with
`stream_options.include_usage`); a few never do for streams. Then the
prompt (through the tokenizer's chat template, as the model would see it)
and the answer's text are counted with the local model's tokenizer, and the
record is marked `estimated`: another model's tokenizer counts somewhat
differently, but the same way every time, and far closer than any
characters-per-token rule.
"""

from __future__ import annotations

import json
import logging
from pathlib import Path
from typing import Any, Protocol

from orchestrator.protocol import (
    ChatCompletionChunk,
    ChatCompletionRequest,
    CompletionChunk,
    CompletionRequest,
    EmbeddingRequest,
    Usage,
)

log = logging.getLogger(__name__)

# Chat templates add a few tokens per message around its text.
PER_MESSAGE_TOKENS = 8


class UsageEstimator(Protocol):
    def estimate(self, request: Any, text: str) -> Usage:
        """The usage of `request` answered with `text` (all choices' text, concatenated)."""
        ...


class TokenizerEstimator:
    """A `UsageEstimator` over a Hugging Face tokenizer (loaded from a local model directory)."""

    def __init__(self, tokenizer: Any):
        self._tok = tokenizer

    @classmethod
    def from_directory(cls, path: Path) -> TokenizerEstimator:
        from transformers import AutoTokenizer

        return cls(AutoTokenizer.from_pretrained(str(path), local_files_only=True))

    def count(self, text: str) -> int:
        return len(self._tok.encode(text, add_special_tokens=False)) if text else 0

    def prompt_tokens(self, request: Any) -> int:
        if isinstance(request, ChatCompletionRequest):
            messages = [m.model_dump(exclude_none=True) for m in request.messages]
            if getattr(self._tok, "chat_template", None):
                try:
                    text = self._tok.apply_chat_template(messages, add_generation_prompt=True, tokenize=False)
                    return self.count(text)
                except Exception as e:  # content the template can't render (images, tools): count the texts
                    log.debug("chat template failed (%s); counting message texts", e)
            return sum(self.count(_text(m.get("content"))) for m in messages)
        if isinstance(request, CompletionRequest):
            return sum(len(p) if isinstance(p, list) else self.count(p) for p in request.prompts())
        return 0

    def estimate(self, request: Any, text: str) -> Usage:
        prompt, completion = self.prompt_tokens(request), self.count(text)
        return Usage(prompt_tokens=prompt, completion_tokens=completion, total_tokens=prompt + completion)


def _text(content: object) -> str:
    if isinstance(content, str):
        return content
    if isinstance(content, list):
        return "".join(str(p.get("text", "")) for p in content if isinstance(p, dict))
    return ""


# ------------------------------------------------------------------------------ texts and bounds


def prompt_upper_bound(request: Any) -> int:
    """At least as many tokens as the prompt has: its UTF-8 bytes (a byte-level BPE token is at
    least one byte), a few per chat message for the template, token-id prompts as counted."""
    if isinstance(request, ChatCompletionRequest):
        body = json.dumps([m.model_dump(exclude_none=True) for m in request.messages], ensure_ascii=False)
        return len(body.encode()) + PER_MESSAGE_TOKENS * len(request.messages)
    if isinstance(request, CompletionRequest):
        return sum(len(p) if isinstance(p, list) else len(p.encode()) for p in request.prompts())
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
