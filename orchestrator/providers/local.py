"""The local provider: OpenAI requests -> the LocalModel's plain-data contract.

`LocalModelClient` is the seam. In production it is `HandleClient`, a Ray
Serve `DeploymentHandle` to the `LocalModel` deployment (Ray's exceptions are
translated here, at the boundary, and a request the replica answered `Refused`
is raised again as its `BadRequest`); in-process it can be the engine itself
(`local_models.engine.VllmEngine`) or a test fake.
"""

from __future__ import annotations

from collections.abc import AsyncGenerator, Iterator
from contextlib import aclosing, contextmanager
from typing import Any, Protocol, TypeVar, cast

from local_models.errors import BadRequest, LocalModelError, PromptTooLong
from local_models.interface import (
    Batch,
    Delta,
    EmbedResult,
    GenerateRequest,
    Refused,
    Sampling,
    TokenUsage,
    ToolCallPiece,
)
from orchestrator.calls import ASKING
from orchestrator.errors import (
    ContextLengthExceeded,
    EngineError,
    InvalidRequest,
    OrchestratorError,
    Overloaded,
    ReplicaLost,
)
from orchestrator.protocol import (
    ChatCompletionChunk,
    ChatCompletionRequest,
    ChoiceLogprobs,
    ChunkChoice,
    ChunkDelta,
    CompletionChoice,
    CompletionChunk,
    CompletionLogprobs,
    CompletionRequest,
    CompletionTokensDetails,
    EmbeddingData,
    EmbeddingRequest,
    EmbeddingResponse,
    EmbeddingUsage,
    OpeningChunk,
    PromptTokensDetails,
    TokenLogprob,
    ToolCallDelta,
    ToolCallFunctionDelta,
    TopLogprob,
    Usage,
    new_id,
    now,
)
from orchestrator.providers.base import ChunkStream
from orchestrator.telemetry.traces import outgoing_traceparent


class LocalModelClient(Protocol):
    """What the gateway calls on a local model (replica or in-process engine)."""

    def generate(self, request: GenerateRequest) -> AsyncGenerator[Batch, None]: ...

    async def embed(self, inputs: list[str] | list[list[int]]) -> EmbedResult: ...


_Answer = TypeVar("_Answer", Batch, EmbedResult)


class HandleClient:
    """A `LocalModelClient` over a Ray Serve `DeploymentHandle`."""

    def __init__(self, handle: Any):
        self._stream = handle.options(stream=True)
        self._handle = handle

    async def generate(self, request: GenerateRequest) -> AsyncGenerator[Batch, None]:
        response = self._stream.generate.remote(request)
        try:
            async for batch in response:
                yield _unrefused(batch)
        except BaseException as e:
            response.cancel()  # the replica's generator is cancelled, vLLM aborts
            raise _from_ray(e) from e

    async def embed(self, inputs: list[str] | list[list[int]]) -> EmbedResult:
        try:
            result: EmbedResult | Refused = await self._handle.embed.remote(inputs)
            return _unrefused(result)
        except Exception as e:
            raise _from_ray(e) from e


def _unrefused(answer: _Answer | Refused) -> _Answer:
    """`answer`, or the `BadRequest` the replica answered in its place raised (the caller translates it)."""
    if "refused" in answer:
        raise cast(Refused, answer)["refused"]
    return answer


def _from_ray(e: BaseException) -> BaseException:
    """Ray's wrappers -> the gateway's tree; cancellation passes through untouched."""
    from ray.exceptions import RayActorError, RayTaskError
    from ray.serve.exceptions import BackPressureError

    if isinstance(e, OrchestratorError | LocalModelError) and not isinstance(e, RayTaskError):
        return _from_local(e)
    if isinstance(e, BackPressureError):
        return Overloaded("The local model's queue is full.")
    if isinstance(e, RayActorError) or (isinstance(e, RayTaskError) and isinstance(e.cause, RayActorError)):
        # The replica died or can't be reached (its node went): another replica can serve the request.
        return ReplicaLost(f"The local model's replica went away before answering: {type(e).__name__}.")
    if isinstance(e, RayTaskError):
        cause = e.cause
        if isinstance(cause, OrchestratorError | LocalModelError):
            return _from_local(cause)
        return EngineError(f"The local model failed: {type(cause).__name__}: {cause}")
    if isinstance(e, Exception):
        return EngineError(f"The local model is unreachable: {type(e).__name__}: {e}")
    return e


def _from_local(e: BaseException) -> BaseException:
    """`local_models.errors` -> the gateway's tree: the request's fault is a 400, the engine's a 500."""
    if isinstance(e, PromptTooLong):
        return ContextLengthExceeded(
            e.message, param=e.param, prompt_tokens=e.prompt_tokens, max_tokens=e.max_tokens, context=e.context
        )
    if isinstance(e, BadRequest):
        return InvalidRequest(e.message, param=e.param)
    if isinstance(e, LocalModelError):
        return EngineError(e.message, param=e.param)
    return e


def _scoped(generate: GenerateRequest) -> None:
    """The request carries its tenant (the engine queues tenants fairly) and the current span (the
    gateway's attempt) across the Serve handle."""
    generate["tenant"] = ASKING.get()
    if (traceparent := outgoing_traceparent()) is not None:
        generate["traceparent"] = traceparent


@contextmanager
def _mapped() -> Iterator[None]:
    """Translate what a local model raised (in-process engines raise it directly)."""
    try:
        yield
    except LocalModelError as e:
        raise _from_local(e) from e


def _sampling(request: ChatCompletionRequest | CompletionRequest) -> Sampling:
    return Sampling(
        temperature=request.temperature,
        top_p=request.top_p,
        n=request.n,
        stop=request.stop_list(),
        seed=request.seed,
        presence_penalty=request.presence_penalty,
        frequency_penalty=request.frequency_penalty,
        logit_bias=request.logit_bias,
    )


class LocalProvider:
    """Serves OpenAI requests from one local model."""

    name = "local"

    def __init__(self, client: LocalModelClient):
        self._client = client

    # ------------------------------------------------------------------------ chat

    def chat(self, request: ChatCompletionRequest, model: str) -> ChunkStream[ChatCompletionChunk]:
        return ChunkStream(self._chat(request, model))

    async def _chat(
        self, request: ChatCompletionRequest, model: str
    ) -> AsyncGenerator[list[ChatCompletionChunk], None]:
        """The chunks of each of the engine's batches, together."""
        sampling = _sampling(request)
        sampling["max_tokens"] = request.output_limit()
        sampling["logprobs"] = (request.top_logprobs or 0) if request.logprobs else None
        if request.response_format is not None:
            sampling["response_format"] = request.response_format.model_dump(by_alias=True)
        generate = GenerateRequest(
            request_id=new_id("chatcmpl"),
            kind="chat",
            # Text-only: content parts joined, null content as "" (a chat template indexes it).
            messages=[m.flat() for m in request.messages],
            sampling=sampling,
            stream=request.stream,
        )
        if request.continue_final_message:
            generate["continue_final"] = True
        _with_tools(generate, request)
        _scoped(generate)
        cid, created = generate["request_id"], now()
        started = False
        with _mapped():
            async with aclosing(self._client.generate(generate)) as batches:
                async for batch in batches:
                    chunks: list[ChatCompletionChunk] = []
                    if not started:
                        # OpenAI opens every choice with a role delta; sent only once the
                        # engine has produced output, so earlier failures stay plain errors.
                        started = True
                        opening = OpeningChunk(
                            id=cid,
                            created=created,
                            model=model,
                            choices=[
                                ChunkChoice(index=i, delta=ChunkDelta(role="assistant", content=""))
                                for i in range(request.n)
                            ],
                        )
                        chunks.append(opening.with_prompt_usage(_usage(batch["prompt"]) if "prompt" in batch else None))
                    if choices := [_chat_choice(d) for d in batch["deltas"]]:
                        chunks.append(ChatCompletionChunk(id=cid, created=created, model=model, choices=choices))
                    if "usage" in batch:
                        usage = _usage(batch["usage"])
                        chunks.append(
                            ChatCompletionChunk(id=cid, created=created, model=model, choices=[], usage=usage)
                        )
                    if chunks:
                        yield chunks

    # ------------------------------------------------------------------ completions

    def complete(self, request: CompletionRequest, model: str) -> ChunkStream[CompletionChunk]:
        return ChunkStream(self._complete(request, model))

    async def _complete(self, request: CompletionRequest, model: str) -> AsyncGenerator[list[CompletionChunk], None]:
        """The chunks of each of the engine's batches, together."""
        if request.suffix is not None:
            from orchestrator.errors import UnsupportedCapability

            raise UnsupportedCapability("'suffix' (fill-in-the-middle) is not supported by this model.", param="suffix")
        sampling = _sampling(request)
        sampling["max_tokens"] = request.max_tokens if request.max_tokens is not None else 16
        sampling["logprobs"] = request.logprobs
        sampling["echo"] = request.echo
        generate = GenerateRequest(
            request_id=new_id("cmpl"),
            kind="completion",
            prompts=request.prompts(),
            sampling=sampling,
            stream=request.stream,
        )
        _scoped(generate)
        cid, created = generate["request_id"], now()
        offsets: dict[int, int] = {}
        with _mapped():
            async with aclosing(self._client.generate(generate)) as batches:
                async for batch in batches:
                    chunks: list[CompletionChunk] = []
                    if choices := [_completion_choice(d, offsets) for d in batch["deltas"]]:
                        chunks.append(CompletionChunk(id=cid, created=created, model=model, choices=choices))
                    if "usage" in batch:
                        usage = _usage(batch["usage"])
                        chunks.append(CompletionChunk(id=cid, created=created, model=model, choices=[], usage=usage))
                    if chunks:
                        yield chunks

    # ------------------------------------------------------------------- embeddings

    async def embed(self, request: EmbeddingRequest, model: str) -> EmbeddingResponse:
        with _mapped():
            result = await self._client.embed(request.inputs())
        vectors = result["embeddings"]
        if request.dimensions is not None and vectors and request.dimensions != len(vectors[0]):
            raise InvalidRequest(
                f"The model '{model}' only makes {len(vectors[0])}-dimensional embeddings; "
                "'dimensions' can't change that.",
                param="dimensions",
            )
        data = [EmbeddingData(index=i, embedding=_encode(v, request.encoding_format)) for i, v in enumerate(vectors)]
        tokens = result["prompt_tokens"]
        return EmbeddingResponse(
            data=data, model=model, usage=EmbeddingUsage(prompt_tokens=tokens, total_tokens=tokens)
        )


def _with_tools(generate: GenerateRequest, request: ChatCompletionRequest) -> None:
    """The request's tools, as plain data; the engine constrains and reads its calls (`local_models.tools`)."""
    if request.tools:
        generate["tools"] = [t.model_dump(exclude_none=True) for t in request.tools]
    if request.tool_choice is not None:
        generate["tool_choice"] = request.tool_choice
    if request.parallel_tool_calls is not None:
        generate["parallel_tool_calls"] = request.parallel_tool_calls


def _usage(u: TokenUsage) -> Usage:
    return Usage(
        prompt_tokens=u["prompt_tokens"],
        completion_tokens=u["completion_tokens"],
        total_tokens=u["prompt_tokens"] + u["completion_tokens"],
        prompt_tokens_details=PromptTokensDetails(cached_tokens=u["cached_tokens"]),
        completion_tokens_details=(
            CompletionTokensDetails(reasoning_tokens=u["reasoning_tokens"]) if u.get("reasoning_tokens") else None
        ),
    )


def _chat_choice(d: Delta) -> ChunkChoice:
    logprobs = None
    if "logprobs" in d:
        logprobs = ChoiceLogprobs(
            content=[
                TokenLogprob(
                    token=t["token"],
                    logprob=t["logprob"],
                    bytes=t["bytes"],
                    top_logprobs=[TopLogprob(**a) for a in t["top"]],
                )
                for t in d["logprobs"]
            ]
        )
    delta = ChunkDelta(content=d["text"]) if d["text"] else ChunkDelta()
    if d.get("reasoning"):
        delta.reasoning_content = d["reasoning"]
    if "tool_calls" in d:
        delta.tool_calls = [_tool_call(p) for p in d["tool_calls"]]
    return ChunkChoice(
        index=d["index"],
        delta=delta,
        finish_reason=d["finish_reason"],  # type: ignore[arg-type]
        logprobs=logprobs,
        stop_reason=d.get("stop_reason"),
    )


def _tool_call(piece: ToolCallPiece) -> ToolCallDelta:
    """OpenAI's streamed tool call: id, type and name in a call's first delta, then arguments."""
    if "id" in piece:
        return ToolCallDelta(
            index=piece["index"],
            id=piece["id"],
            type="function",
            function=ToolCallFunctionDelta(name=piece.get("name"), arguments=piece["arguments"]),
        )
    return ToolCallDelta(index=piece["index"], function=ToolCallFunctionDelta(arguments=piece["arguments"]))


def _completion_choice(d: Delta, offsets: dict[int, int]) -> CompletionChoice:
    logprobs = None
    if "logprobs" in d:
        tokens = [t["token"] for t in d["logprobs"]]
        # The generated tokens are the delta's tail (an echoed prompt may lead it).
        start = offsets.get(d["index"], 0) + len(d["text"]) - sum(map(len, tokens))
        positions = []
        for tok in tokens:
            positions.append(start)
            start += len(tok)
        logprobs = CompletionLogprobs(
            tokens=tokens,
            token_logprobs=[t["logprob"] for t in d["logprobs"]],
            top_logprobs=[{a["token"]: a["logprob"] for a in t["top"]} for t in d["logprobs"]],
            text_offset=positions,
        )
    offsets[d["index"]] = offsets.get(d["index"], 0) + len(d["text"])
    return CompletionChoice(
        index=d["index"],
        text=d["text"],
        finish_reason=d["finish_reason"],  # type: ignore[arg-type]
        logprobs=logprobs,
    )


def _encode(v: list[float], encoding_format: str) -> list[float] | str:
    if encoding_format == "float":
        return v
    import base64
    import struct

    return base64.b64encode(struct.pack(f"<{len(v)}f", *v)).decode()
