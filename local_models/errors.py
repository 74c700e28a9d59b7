"""What a local model raises, and whose fault it is.

    LocalModelError              any failure of a local model call
    ├── BadRequest               the request's fault (a prompt the template or tokenizer refuses,
    │   │                        sampling parameters the engine rejects): never the engine's
    │   └── PromptTooLong        prompt plus requested output over the context
    └── EngineFailure            the engine itself failed (it didn't start, it died, it returned nothing)

`local_models` depends on nothing in `orchestrator/`: the gateway translates these at the
boundary where it calls a local model (`orchestrator.providers.local`), the way httpx
translates httpcore's exceptions. They pickle with every attribute: they cross Ray handles.
"""

from __future__ import annotations

from typing import Any


class LocalModelError(Exception):
    """Base: a message, and the request field it is about (if any)."""

    def __init__(self, message: str, *, param: str | None = None):
        super().__init__(message)
        self.message = message
        self.param = param

    def __reduce__(self) -> tuple[Any, ...]:
        return (_rebuild, (type(self), self.message, self.param))


def _rebuild(cls: type[LocalModelError], message: str, param: str | None) -> LocalModelError:
    return cls(message, param=param)


class BadRequest(LocalModelError):
    """The request can't be served as asked; retrying it anywhere won't help."""


class PromptTooLong(BadRequest):
    """The prompt plus the requested output doesn't fit the model's context; where known, the counts that
    don't fit (the prompt's tokens, the output asked for, the context), for a front door to say in its
    protocol's own words."""

    def __init__(
        self,
        message: str,
        *,
        param: str | None = None,
        prompt_tokens: int | None = None,
        max_tokens: int | None = None,
        context: int | None = None,
    ):
        super().__init__(message, param=param)
        self.prompt_tokens, self.max_tokens, self.context = prompt_tokens, max_tokens, context

    def __reduce__(self) -> tuple[Any, ...]:
        counts = {"prompt_tokens": self.prompt_tokens, "max_tokens": self.max_tokens, "context": self.context}
        return (_rebuild_too_long, (self.message, self.param, counts))


def _rebuild_too_long(message: str, param: str | None, counts: dict[str, int | None]) -> PromptTooLong:
    return PromptTooLong(message, param=param, **counts)


class EngineFailure(LocalModelError):
    """The engine failed; another attempt, or another route, may succeed."""
