"""A fake local engine: deterministic, in-process, no vLLM and no torch.

`FakeEngine` implements `local_models.interface.Engine` (and so
`orchestrator.providers.local.LocalModelClient`) the way simonw/llm's
`MockModel` implements a model: replies are scripted with `enqueue`, or,
unscripted, the model parrots its prompt. It keeps the real engine's
contract (`local_models.engine.VllmEngine`):

- a "token" is a whitespace-separated word together with the whitespace
  before it (`" world"`), so joining tokens gives back the text exactly, and
  token counts (usage, `max_tokens`, `max_model_len`) count words; a prompt of
  token ids counts its ids, and reads as the ids joined by spaces;
- a chat prompt is its messages' texts joined by newlines; an unscripted chat
  reply is the last user message's text, an unscripted completion the prompt;
- choice `index` is `prompt_index * n + sample_index`;
- `max_tokens` of None means "fill the context" (bounded by the reply);
  prompt + `max_tokens` past `max_model_len` raises `PromptTooLong`;
- a stop string cuts the reply just before it (`finish_reason` "stop"),
  `max_tokens` cuts it to that many tokens ("length");
- `stream=True` yields one `Batch` per token position (every choice's next
  token), `stream=False` one `Batch` with whole texts; the last batch carries
  the usage; `echo` prefixes each completion choice's first delta with its
  prompt, merged into one delta as the real engine merges what is ready;
- logprobs are fake but well formed: each token gets a negative logprob and
  `k` alternatives ranked best first, the chosen token among them.

`enqueue(["first", "second"])` queues reply texts; each choice of each
generation takes the next one (so `n=2` takes two), and an empty queue falls
back to the parrot. Failure and timing are scripted with attributes:
`fail_after` raises `error` (default `EngineFailure`) after that many batches
(0: before the first; `embed` fails too; a generation with fewer batches
finishes normally), `token_delay` sleeps that long per token; `dead = True` is an engine whose process
died: `stats` raises `EngineFailure`, as the real engine's do then. An embedder is
`FakeEngine(task="embed")`: unit vectors of `dimensions` floats derived from
a hash of each input. Every generation is recorded as a `Generation`, which
says how it ended, so a test can prove that a client disconnect stopped
upstream work.
"""

from __future__ import annotations

import asyncio
import hashlib
import math
import struct
import time
from collections import deque
from collections.abc import AsyncGenerator, AsyncIterator, Iterable
from dataclasses import dataclass, field
from typing import Literal

from local_models.errors import BadRequest, EngineFailure, PromptTooLong
from local_models.interface import (
    Batch,
    Delta,
    EmbedResult,
    Engine,
    GenerateRequest,
    LoadStats,
    ModelInfo,
    TokenLogprob,
    TopToken,
    output_budget,
)
from orchestrator.providers.local import LocalModelClient
from orchestrator.testing.replies import tokenize

__all__ = ["FakeEngine", "Generation", "count_tokens", "prompt_text", "tokenize"]

Outcome = Literal["running", "finished", "failed", "cancelled", "closed"]


def count_tokens(prompt: str | list[int]) -> int:
    return len(prompt) if isinstance(prompt, list) else len(tokenize(prompt))


def prompt_text(prompt: str | list[int]) -> str:
    return " ".join(map(str, prompt)) if isinstance(prompt, list) else prompt


@dataclass
class Generation:
    """One call to `FakeEngine.generate`, and how it ended."""

    request: GenerateRequest
    batches: int = 0  # batches handed to the consumer
    outcome: Outcome = "running"
    done: asyncio.Event = field(default_factory=asyncio.Event)

    @property
    def stopped_early(self) -> bool:
        """The consumer went away (cancelled or closed us) before the last batch."""
        return self.outcome in ("cancelled", "closed")


@dataclass
class _Choice:
    index: int
    prefix: str  # echoed prompt, sent with the first delta
    tokens: list[str]
    finish_reason: str
    stop: str | None = None  # the stop string that cut it (vLLM's `stop_reason`)


class FakeEngine:
    """A deterministic in-process `Engine`; see the module docstring."""

    def __init__(
        self,
        name: str = "fake-chat",
        *,
        task: Literal["generate", "embed"] = "generate",
        max_model_len: int = 256,
        has_chat_template: bool = True,
        dimensions: int = 8,
        token_delay: float = 0.0,
        fail_after: int | None = None,
        error: BaseException | None = None,
        max_num_seqs: int = 32,
    ):
        self.name = name
        self.max_num_seqs = max_num_seqs
        self.task = task
        self.max_model_len = max_model_len
        self.has_chat_template = has_chat_template
        self.dimensions = dimensions
        self.token_delay = token_delay
        self.fail_after = fail_after
        self.error = error
        self.replies: deque[str] = deque()
        self.generations: list[Generation] = []
        self.embed_calls: list[list[str] | list[list[int]]] = []
        self.shut_down = False
        self.dead = False

    # ------------------------------------------------------------ scripting

    def enqueue(self, replies: Iterable[str]) -> None:
        """Queue reply texts; each choice of each generation takes the next one."""
        self.replies.extend(replies)

    def _raise(self) -> None:
        raise self.error if self.error is not None else EngineFailure("The fake engine failed.")

    # ---------------------------------------------------------- info, stats

    def info(self) -> ModelInfo:
        return ModelInfo(
            name=self.name,
            task=self.task,
            max_model_len=self.max_model_len,
            has_chat_template=self.has_chat_template,
            max_num_seqs=self.max_num_seqs,
        )

    def stats(self) -> LoadStats:
        if self.dead:
            raise EngineFailure(f"The local engine for '{self.name}' has died.")
        active = sum(g.outcome == "running" for g in self.generations)
        running = min(active, self.max_num_seqs)
        return LoadStats(
            waiting=active - running,
            running=running,
            unfinished=active,
            queued_prompt_tokens=0,
            kv_cache_usage=0.0,
            prefill_tokens_per_s=0.0,
            decode_tokens_per_s=0.0,
            ttft_p50_ms=None,
            ttft_p90_ms=None,
            prefill_capacity_tokens_per_s=None,
            finished_per_s=0.0,
            step_ms=self.token_delay * 1000 if active else None,
            max_num_seqs=self.max_num_seqs,
            updated_at=time.time(),
        )

    def shutdown(self) -> None:
        self.shut_down = True

    # ------------------------------------------------------------- generate

    async def generate(self, request: GenerateRequest) -> AsyncGenerator[Batch, None]:
        gen = Generation(request)
        self.generations.append(gen)
        try:
            async for batch in self._batches(request, gen):
                gen.batches += 1
                yield batch
            gen.outcome = "finished"
        except asyncio.CancelledError:
            gen.outcome = "cancelled"
            raise
        except GeneratorExit:
            gen.outcome = "closed"
            raise
        except BaseException:
            gen.outcome = "failed"
            raise
        finally:
            gen.done.set()

    async def _batches(self, request: GenerateRequest, gen: Generation) -> AsyncIterator[Batch]:
        prompts, choices = self._plan(request)
        if self.fail_after == 0:
            self._raise()
        usage = {
            "prompt_tokens": sum(map(count_tokens, prompts)),
            "completion_tokens": sum(len(c.tokens) for c in choices),
            "cached_tokens": 0,
        }
        k = request["sampling"].get("logprobs")
        if request["stream"]:
            steps = max([1, *(len(c.tokens) for c in choices)])
            batches = [self._step(choices, j, k) for j in range(steps)]
        else:
            await asyncio.sleep(self.token_delay * max([0, *(len(c.tokens) for c in choices)]))
            batches = [[self._whole(c, k) for c in choices]]
        for j, deltas in enumerate(batches):
            if self.fail_after is not None and gen.batches >= self.fail_after:
                self._raise()
            if request["stream"]:
                await asyncio.sleep(self.token_delay)
            batch = Batch(deltas=deltas, usage=usage) if j == len(batches) - 1 else Batch(deltas=deltas)  # type: ignore[typeddict-item]
            if j == 0:  # as the real engine's first batch, the prompt's count
                batch["prompt"] = {**usage, "completion_tokens": 0}  # type: ignore[typeddict-item]
            yield batch
        if self.fail_after is not None and gen.batches >= self.fail_after:
            self._raise()

    def _plan(self, request: GenerateRequest) -> tuple[list[str | list[int]], list[_Choice]]:
        """The prompts, and every choice's whole output, checked against the context."""
        sampling = request["sampling"]
        n = sampling.get("n", 1)
        if request["kind"] == "chat":
            if not self.has_chat_template:
                raise BadRequest(f"The model '{self.name}' has no chat template; use /v1/completions.", param="model")
            messages = request.get("messages", [])
            prompts: list[str | list[int]] = ["\n".join(_text(m.get("content")) for m in messages)]
            defaults = [next((_text(m.get("content")) for m in reversed(messages) if m["role"] == "user"), "")]
            param = "messages"
        else:
            prompts = list(request.get("prompts", []))
            defaults = [prompt_text(p) for p in prompts]
            param = "prompt"
        echo = request["kind"] == "completion" and bool(sampling.get("echo"))
        choices = []
        for p, (prompt, default) in enumerate(zip(prompts, defaults, strict=True)):
            limit = output_budget(self.max_model_len, count_tokens(prompt), sampling.get("max_tokens"), param)
            for i in range(n):
                reply = self.replies.popleft() if self.replies else default
                tokens, finish, stop = _cut(reply, limit, sampling.get("stop") or [])
                choices.append(_Choice(p * n + i, prompt_text(prompt) if echo else "", tokens, finish, stop))
        return prompts, choices

    def _step(self, choices: list[_Choice], j: int, k: int | None) -> list[Delta]:
        """The deltas of token position `j`: each unfinished choice's next token."""
        deltas = []
        for c in choices:
            if j >= max(1, len(c.tokens)):
                continue
            token = c.tokens[j] if c.tokens else ""
            last = j >= len(c.tokens) - 1
            d = Delta(
                index=c.index,
                text=(c.prefix if j == 0 else "") + token,
                finish_reason=c.finish_reason if last else None,
            )
            if k is not None:
                d["logprobs"] = [_logprob(token, j, k)] if token else []
            if last and c.stop is not None:
                d["stop_reason"] = c.stop
            deltas.append(d)
        return deltas

    def _whole(self, c: _Choice, k: int | None) -> Delta:
        d = Delta(index=c.index, text=c.prefix + "".join(c.tokens), finish_reason=c.finish_reason)
        if c.stop is not None:
            d["stop_reason"] = c.stop
        if k is not None:
            d["logprobs"] = [_logprob(t, j, k) for j, t in enumerate(c.tokens)]
        return d

    # ---------------------------------------------------------------- embed

    async def embed(self, inputs: list[str] | list[list[int]]) -> EmbedResult:
        self.embed_calls.append(inputs)
        if self.task != "embed":
            raise BadRequest(f"The model '{self.name}' does not create embeddings.", param="model")
        for item in inputs:
            if count_tokens(item) > self.max_model_len:
                raise PromptTooLong(
                    f"This model's maximum context length is {self.max_model_len} tokens, "
                    f"however you requested {count_tokens(item)} tokens in the input.",
                    param="input",
                )
        if self.fail_after == 0:
            self._raise()
        return EmbedResult(
            embeddings=[self.vector(item) for item in inputs],
            prompt_tokens=sum(map(count_tokens, inputs)),
        )

    def vector(self, item: str | list[int]) -> list[float]:
        """The fake's embedding of one input: a unit vector derived from its hash."""
        digest = hashlib.sha256(repr(item).encode()).digest()
        raw = [b / 127.5 - 1.0 for b in digest[: self.dimensions]]
        norm = math.sqrt(sum(x * x for x in raw)) or 1.0
        # Round-trip through float32, the precision base64 embeddings carry.
        return [struct.unpack("<f", struct.pack("<f", x / norm))[0] for x in raw]


def _text(content: object) -> str:
    if isinstance(content, str):
        return content
    if isinstance(content, list):
        return "".join(p.get("text", "") for p in content if isinstance(p, dict))
    return ""


def _cut(reply: str, limit: int, stop: list[str]) -> tuple[list[str], str, str | None]:
    """The tokens the model emits for `reply`, why it stops, and the stop string that cut it."""
    tokens = tokenize(reply)
    text = "".join(tokens[:limit])
    cuts = [(text.find(s), s) for s in stop if s and s in text]
    if cuts:
        at, first = min(cuts)
        return tokenize(text[:at]), "stop", first
    return tokens[:limit], "length" if len(tokens) > limit else "stop", None


def _logprob(token: str, position: int, k: int) -> TokenLogprob:
    chosen = -0.25 * (position % 4 + 1)
    alternatives = [
        TopToken(token=f" alt{m}", logprob=chosen - m, bytes=list(f" alt{m}".encode())) for m in range(1, k)
    ]
    top = [TopToken(token=token, logprob=chosen, bytes=list(token.encode())), *alternatives][:k]
    return TokenLogprob(token=token, logprob=chosen, bytes=list(token.encode()), top=top)


# Static checks (mypy) that the fake fills the seams it stands in for.
_engine: type[Engine] = FakeEngine
_client: type[LocalModelClient] = FakeEngine
