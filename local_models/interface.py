"""The plain-data contract between the gateway and a local model.

Only these shapes cross a Ray `DeploymentHandle`: dicts, lists, strings and
numbers, never a Starlette request or a vLLM object. `Engine` is the seam:
the real one wraps vLLM's `AsyncLLM` (`local_models.engine`), tests use a
fake that implements the same Protocol.

A generation streams `Batch`es. Each batch holds the deltas that were ready
at once (one token each when the consumer keeps up, several when it lags,
which keeps per-item overhead bounded under load) and, on the last batch,
the usage.
"""

from __future__ import annotations

from collections.abc import AsyncGenerator
from dataclasses import dataclass, field
from typing import Any, Literal, NotRequired, Protocol, TypedDict

from .errors import BadRequest, PromptTooLong


@dataclass(frozen=True)
class EngineConfig:
    """Everything needed to start one engine; plain data, pickles across Ray."""

    model_path: str
    served_name: str
    task: str = "generate"  # "generate" | "embed"
    max_model_len: int = 2048
    kv_cache_bytes: int = 1 << 30
    max_num_seqs: int = 32
    dtype: str = "auto"
    startup_timeout_s: float = 300.0
    cache_dir: str | None = None  # VLLM_CACHE_ROOT (compiled kernels and the like)
    stream_interval_s: float = 0.02  # after the first token, coalesce deltas for this long
    # vLLM's tool-call parser for the model's own format (hermes, llama3_json, mistral, ...): what lets
    # it decide by itself whether to call a tool (tool_choice "auto"). Forced calls need none.
    tool_parser: str | None = None
    # vLLM's reasoning parser (deepseek_r1, qwen3, ...): the model's thinking split off as reasoning.
    reasoning_parser: str | None = None
    extra_engine_args: dict[str, Any] = field(default_factory=dict)


class Sampling(TypedDict, total=False):
    """OpenAI sampling fields, already validated, in OpenAI's names."""

    temperature: float | None
    top_p: float | None
    n: int
    max_tokens: int | None
    stop: list[str]
    seed: int | None
    presence_penalty: float | None
    frequency_penalty: float | None
    logit_bias: dict[str, float] | None
    logprobs: int | None  # number of top alternatives; None = no logprobs
    response_format: dict[str, Any] | None
    echo: bool


ToolChoice = Literal["none", "auto", "required"] | dict[str, Any]  # or {"type": "function", "function": {"name"}}


class GenerateRequest(TypedDict):
    request_id: str
    kind: Literal["chat", "completion"]
    messages: NotRequired[list[dict[str, Any]]]  # chat: OpenAI messages as dicts
    tools: NotRequired[list[dict[str, Any]]]  # chat: OpenAI function tools as dicts
    tool_choice: NotRequired[ToolChoice]  # absent with tools: "auto", as OpenAI
    parallel_tool_calls: NotRequired[bool]  # False: at most one call (absent: several where the model makes them)
    continue_final: NotRequired[bool]  # chat: the answer continues the last (assistant) message (a prefill)
    prompts: NotRequired[list[str] | list[list[int]]]  # completion: text or token ids
    sampling: Sampling
    stream: bool  # False: the first token, then a batch every 0.5 s (engine.WHOLE_INTERVAL_S), not per token
    traceparent: NotRequired[str]  # W3C: the caller's span, parent of the replica's (local_models/tracing.py)
    tenant: NotRequired[str]  # who asks (a key's id): the engine queues tenants fairly (local_models/fairness.py)


class TopToken(TypedDict):
    token: str
    logprob: float
    bytes: list[int]


class TokenLogprob(TypedDict):
    token: str
    logprob: float
    bytes: list[int]
    top: list[TopToken]


class ToolCallPiece(TypedDict):
    """Part of one tool call, as OpenAI streams it: the first piece of a call has its id and
    name, later ones only more `arguments` text (a JSON object when joined)."""

    index: int  # the call's place among the choice's calls
    id: NotRequired[str]
    name: NotRequired[str]
    arguments: str


class Delta(TypedDict):
    index: int  # choice index: prompt_index * n + sample_index
    text: str
    finish_reason: str | None  # "stop", "length", or "tool_calls" (the model chose to call tools)
    logprobs: NotRequired[list[TokenLogprob]]
    tool_calls: NotRequired[list[ToolCallPiece]]
    reasoning: NotRequired[str]  # the model's thinking, split off by a reasoning parser (before its text)
    stop_reason: NotRequired[str]  # the stop sequence that ended the choice (finish_reason "stop")


class TokenUsage(TypedDict):
    prompt_tokens: int
    completion_tokens: int
    cached_tokens: int
    reasoning_tokens: NotRequired[int]  # of completion_tokens, the thinking a reasoning parser split off


class Batch(TypedDict):
    deltas: list[Delta]
    usage: NotRequired[TokenUsage]  # only on the last batch
    prompt: NotRequired[TokenUsage]  # only on the first: the prompt's count (no completion yet)


class EmbedResult(TypedDict):
    embeddings: list[list[float]]
    prompt_tokens: int


class Refused(TypedDict):
    """The request's own fault (a `BadRequest`), as a `LocalModel` replica answers it across the handle: in
    place of a generation's batches or an embedding. Raised there, Serve would log each client's mistake as
    the replica's failure ("Request failed", ERROR with a traceback) and count it an error; the gateway raises
    it again where it calls the replica (`orchestrator.providers.local`), so the client's 4xx is the same."""

    refused: BadRequest


# The custom autoscaling metric a LocalModel replica gives Serve: requests the gateways spilled from its
# model for load and still have in flight (orchestrator.scheduling.autoscale).
OVERFLOW_METRIC = "overflow_in_flight"


class LoadStats(TypedDict):
    """A cheap snapshot of one engine's load, for the scheduler."""

    waiting: int  # requests queued in the engine's scheduler
    running: int  # requests being decoded
    unfinished: int  # requests this replica holds in any state
    queued_prompt_tokens: int
    kv_cache_usage: float  # 0..1
    prefill_tokens_per_s: float  # recent, over the stats window
    prefill_capacity_tokens_per_s: float | None  # the fastest prefill the engine showed in the window
    decode_tokens_per_s: float
    ttft_p50_ms: float | None
    ttft_p90_ms: float | None  # over the last TTFT_WINDOW_S (local_models.stats): what requests saw just now
    # The requests in flight (running and waiting), on average over the steps of that same window: the load
    # that p90 was measured at.
    ttft_in_flight: NotRequired[float | None]
    finished_per_s: float  # requests completed, over the stats window
    step_ms: float | None  # median engine step interval while busy, over the window
    max_num_seqs: int  # requests the engine runs at once; the rest wait
    updated_at: float  # time.time() of this snapshot
    # Requests not yet started, by tenant (local_models/fairness.py: the engine queues tenants fairly);
    # absent where none wait or the engine is first come, first served.
    waiting_by_tenant: NotRequired[dict[str, int]]


ToolMode = Literal["required", "named", "auto"]


class ModelInfo(TypedDict):
    name: str
    task: Literal["generate", "embed"]
    max_model_len: int
    has_chat_template: bool
    # The tool_choice values it serves: "required" and "named" (a function) by structured output on any
    # chat model, "auto" only with a tool-call parser. Absent or empty: no tool calls.
    tool_modes: NotRequired[list[ToolMode]]
    tool_parser: NotRequired[str | None]
    reasoning_parser: NotRequired[str | None]
    tokenizer_path: NotRequired[str]  # a local directory AutoTokenizer can load, for the gateway's counts
    max_num_seqs: NotRequired[int]  # sequences the engine decodes at once, for everyone together


class Engine(Protocol):
    """What a LocalModel replica serves; one generation method and its siblings."""

    def generate(self, request: GenerateRequest) -> AsyncGenerator[Batch, None]: ...

    async def embed(self, inputs: list[str] | list[list[int]]) -> EmbedResult: ...

    def stats(self) -> LoadStats: ...

    def info(self) -> ModelInfo: ...

    def shutdown(self) -> None: ...


def output_budget(max_model_len: int, prompt_len: int, requested: int | None, param: str) -> int:
    """How many tokens a generation may produce: what was asked, if it fits the context.

    No `max_tokens` means "the rest of the context". What doesn't fit is the
    client's mistake, said in OpenAI's words.
    """
    room = max_model_len - prompt_len
    if requested is None:
        if room >= 1:
            return room
        requested = 1
    if requested > room:
        raise PromptTooLong(
            f"This model's maximum context length is {max_model_len} tokens. However, you "
            f"requested {prompt_len + requested} tokens ({prompt_len} in the "
            f"{param}, {requested} in the completion). Please reduce the length of the "
            f"{param} or completion.",
            param=param,
            prompt_tokens=prompt_len,
            max_tokens=requested,
            context=max_model_len,
        )
    return requested
