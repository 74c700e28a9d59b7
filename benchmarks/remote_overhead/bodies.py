"""What every target is asked: the model, the prompt, and the three kinds of request."""

from __future__ import annotations

import json
import secrets
from typing import Any

MODEL = "openrouter/gpt-4o-mini"  # what every client asks for (ours: the openrouter preset's gpt-4o-mini)
UPSTREAM_MODEL = "openai/gpt-4o-mini"  # what reaches the fake from ours and from LiteLLM
PROMPT = "Please repeat these words back to me exactly as they are written here"  # > 8 words: 8 are echoed
MAX_TOKENS = 8
API_KEY = "sk-bench-" + secrets.token_hex(16)  # LiteLLM's master key; every target gets the same header
_MISS = iter(range(10**9))


def nonstream_body(prompt: str = PROMPT, **extra: Any) -> bytes:
    """A short chat request. No `temperature`, as most clients send it: not reproducible, so our response
    cache (mode "auto") passes it by, and every target does the same work: one upstream call."""
    return json.dumps(
        {"model": MODEL, "messages": [{"role": "user", "content": prompt}], "max_tokens": MAX_TOKENS, **extra}
    ).encode()


def stream_body() -> bytes:
    return nonstream_body(stream=True, stream_options={"include_usage": True})


def cacheable_miss_body() -> bytes:
    """Temperature 0 and a prompt never sent before: our cache looks it up, misses, joins a single-flight,
    and stores the answer (the remote route as a cacheable request sees it)."""
    return nonstream_body(f"{PROMPT} {secrets.token_hex(4)}{next(_MISS)}", temperature=0)
