"""vLLM's outputs -> the plain-data `Batch`es that cross the handle.

`OutputReader` turns one vLLM completion output into a `Delta` (text, finish
reason, logprobs with their top alternatives) and an echoed prompt into
deltas. `Folding` is one `generate` call's state: it folds whatever outputs
were ready at once into one batch (deltas of a choice merged), counts usage,
and puts the usage on the last batch. With tools, each choice's text goes
through its `tools.ToolReader` on the way: content and tool-call pieces (and, with a reasoning
parser, every chat choice's text does: its reasoning split off, counted in usage). `translate` turns vLLM's exceptions
into this package's (`local_models.errors`).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from .errors import BadRequest, EngineFailure, LocalModelError
from .interface import Batch, Delta, GenerateRequest, ToolCallPiece
from .interface import TokenLogprob as WireLogprob
from .tools import ToolReader


class OutputReader:
    """Reads vLLM outputs with the model's tokenizer (for tokens vLLM didn't decode)."""

    def __init__(self, tokenizer: Any):
        self._tokenizer = tokenizer

    def echo(self, k: int, n: int, out: Any) -> list[Delta]:
        prompt = out.prompt or self._tokenizer.decode(out.prompt_token_ids)
        return [Delta(index=k * n + i, text=prompt, finish_reason=None) for i in range(n)]

    def delta(self, index: int, c: Any, sampling: Any) -> Delta:
        d = Delta(index=index, text=c.text, finish_reason=_finish(c.finish_reason))
        if isinstance(getattr(c, "stop_reason", None), str):  # vLLM: the stop string that matched (an int: a token)
            d["stop_reason"] = c.stop_reason
        k = sampling.get("logprobs")
        if k is not None and c.logprobs:
            d["logprobs"] = [
                self.token_logprob(tid, alts, k) for tid, alts in zip(c.token_ids, c.logprobs, strict=False)
            ]
        return d

    def token_logprob(self, token_id: int, alternatives: dict[int, Any], k: int) -> WireLogprob:
        """One sampled token with its `k` most likely alternatives (vLLM ranks from 1)."""

        def text(tid: int) -> str:
            lp = alternatives.get(tid)
            if lp is not None and lp.decoded_token is not None:
                return str(lp.decoded_token)
            return str(self._tokenizer.decode([tid]))

        def logprob(tid: int) -> float:
            # OpenAI never sends -inf; clamp like it does.
            return max(float(alternatives[tid].logprob), -9999.0)

        chosen = text(token_id)
        top = sorted(
            (t for t, lp in alternatives.items() if lp.rank is not None and lp.rank <= k),
            key=lambda t: alternatives[t].rank,
        )
        return WireLogprob(
            token=chosen,
            logprob=logprob(token_id) if token_id in alternatives else -9999.0,
            bytes=list(chosen.encode()),
            top=[{"token": text(t), "logprob": logprob(t), "bytes": list(text(t).encode())} for t in top],
        )


class Folding:
    """One generation's outputs folded into batches, and its usage."""

    def __init__(
        self,
        reader: OutputReader,
        request: GenerateRequest,
        prompts: list[list[int]],
        tool_readers: Mapping[int, ToolReader] | None = None,
    ):
        self._reader = reader
        self._sampling = request["sampling"]
        self._n = self._sampling.get("n", 1)
        self._echo = request["kind"] == "completion" and bool(self._sampling.get("echo"))
        self._first = [True] * len(prompts)
        self._tools = tool_readers  # by choice index; None: no tools to read
        self.usage = {"prompt_tokens": sum(map(len, prompts)), "completion_tokens": 0, "cached_tokens": 0}
        self.open = len(prompts)  # prompts still generating
        self._told = False  # the prompt's count sent (on the first batch)

    def fold(self, items: list[tuple[int, Any]]) -> Batch | None:
        """The outputs ready at once as one batch (None: nothing to send yet); the last carries usage."""
        deltas: dict[int, Delta] = {}
        for k, out in items:
            if out is None:
                self.open -= 1
            elif isinstance(out, BaseException):
                raise translate(out)
            else:
                self._add(deltas, k, out)
        merged = list(deltas.values())
        if self._tools is not None:  # what a tool reader held back (a call's name not complete yet) says nothing
            merged = [
                d
                for d in merged
                if d["text"] or d.get("reasoning") or d.get("tool_calls") or d["finish_reason"] or d.get("logprobs")
            ]
        if self.open == 0:
            if self._tools is not None:
                reasoning = sum(r.reasoning_tokens for r in self._tools.values())
                if reasoning:
                    self.usage["reasoning_tokens"] = reasoning
            return self._first_told(Batch(deltas=merged, usage=self.usage))  # type: ignore[typeddict-item]
        return self._first_told(Batch(deltas=merged)) if merged else None

    def _first_told(self, batch: Batch) -> Batch:
        """The first batch says the prompt's count (Anthropic's clients read it before any output)."""
        if not self._told:
            self._told = True
            batch["prompt"] = {**self.usage, "completion_tokens": 0}  # type: ignore[typeddict-item]
        return batch

    def _add(self, deltas: dict[int, Delta], k: int, out: Any) -> None:
        if self._first[k]:
            self._first[k] = False
            self.usage["cached_tokens"] += out.num_cached_tokens or 0
            if self._echo:
                for d in self._reader.echo(k, self._n, out):
                    _merge(deltas, d)
        for c in out.outputs:
            self.usage["completion_tokens"] += len(c.token_ids)
            d = self._reader.delta(k * self._n + c.index, c, self._sampling)
            if self._tools is not None and (tool_reader := self._tools.get(d["index"])) is not None:
                _read_tools(tool_reader, d, c)
            _merge(deltas, d)


def _read_tools(reader: ToolReader, d: Delta, c: Any) -> None:
    """The choice's text as reasoning, content and tool-call pieces."""
    reasoning, d["text"], pieces = reader.read(c.text, c.token_ids, finished=c.finish_reason is not None)
    if reasoning:
        d["reasoning"] = reasoning
    if pieces:
        d["tool_calls"] = pieces
    d["finish_reason"] = reader.finish_reason(d["finish_reason"])


def _merge(deltas: dict[int, Delta], d: Delta) -> None:
    """Coalesce deltas of one choice that were ready at the same time."""
    prev = deltas.get(d["index"])
    if prev is None:
        deltas[d["index"]] = d
        return
    prev["text"] += d["text"]
    if "reasoning" in d:
        prev["reasoning"] = prev.get("reasoning", "") + d["reasoning"]
    prev["finish_reason"] = d["finish_reason"] or prev["finish_reason"]
    if "stop_reason" in d:
        prev["stop_reason"] = d["stop_reason"]
    if "logprobs" in d:
        prev.setdefault("logprobs", []).extend(d["logprobs"])
    for piece in d.get("tool_calls", []):
        _merge_piece(prev.setdefault("tool_calls", []), piece)


def _merge_piece(pieces: list[ToolCallPiece], piece: ToolCallPiece) -> None:
    """More arguments of the call the last piece is about join it; anything else is a new piece."""
    last = pieces[-1] if pieces else None
    if last is not None and last["index"] == piece["index"] and "id" not in piece:
        last["arguments"] += piece["arguments"]
    else:
        pieces.append(piece)


def _finish(reason: str | None) -> str | None:
    if reason is None:
        return None
    return reason if reason in ("stop", "length") else "stop"


def translate(e: BaseException) -> Exception:
    """vLLM's exceptions -> this package's (`local_models.errors`)."""
    if isinstance(e, LocalModelError):
        return e
    name = type(e).__name__
    if isinstance(e, ValueError) or name in ("VLLMClientError", "VLLMValidationError"):
        return BadRequest(str(e))
    return EngineFailure(f"The local engine failed: {name}: {e}")
