"""`VllmEngine`: the real `Engine`, around vLLM's `AsyncLLM`.

Responsibilities:
1. start the engine from `EngineConfig`, bounded by a timeout;
2. turn chat messages into token ids with the model's own chat template,
   and reject prompts that don't fit the context with a clear error;
   tools go through `local_models.tools` (structured output, vLLM's tool parsers);
   a reasoning parser (`EngineConfig.reasoning_parser`) splits every chat answer's thinking off there too;
3. run one vLLM request per prompt and merge their outputs into `Batch`es,
   coalescing whatever is ready so a slow consumer gets fewer, larger items;
   queued fairly between tenants (`local_models.fairness`: vLLM's priority
   scheduling, a start tag per request);
4. abort every engine request when the consumer goes away;
5. report load (`stats`) from vLLM's own stat stream, without I/O.
"""

from __future__ import annotations

import asyncio
import logging
import os
import uuid
from collections.abc import AsyncGenerator, Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any, TypeVar

from .errors import BadRequest, EngineFailure, LocalModelError, PromptTooLong
from .fairness import FairQueue
from .interface import Batch, EmbedResult, EngineConfig, GenerateRequest, LoadStats, ModelInfo, output_budget
from .outputs import Folding, OutputReader, translate
from .patterns import check_patterns
from .sampling import to_sampling_params
from .stats import PROBE_LONG, PROBE_MIN_S, PROBE_SHORT, LoadTracker, stat_logger_factory
from .tools import ToolCalling, ToolReader, chat_template_input, parser_class


def _engine_env(config: EngineConfig) -> None:
    # vLLM reads these from the environment when the engine starts.
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    os.environ.setdefault("VLLM_HOST_IP", "127.0.0.1")
    os.environ.setdefault("VLLM_CPU_KVCACHE_SPACE", str(max(1, config.kv_cache_bytes >> 30)))
    if config.cache_dir:
        os.environ["VLLM_CACHE_ROOT"] = config.cache_dir


log = logging.getLogger(__name__)

A = TypeVar("A")
R = TypeVar("R")

WHOLE_INTERVAL_S = 0.5  # batch interval of a non-streamed generation after its first token
PROBE_TIMEOUT_S = 120.0  # the idle prefill probe at start (`measure_prefill`), at most


class VllmEngine:
    """One vLLM `AsyncLLM` serving one model; implements `interface.Engine`."""

    def __init__(self, llm: Any, config: EngineConfig, tracker: LoadTracker):
        self._llm = llm
        self._config = config
        self._tracker = tracker
        self._tokenizer = llm.get_tokenizer()
        self._reader = OutputReader(self._tokenizer)
        self._vocab_size = llm.model_config.get_vocab_size()
        self._max_len = int(llm.model_config.max_model_len)
        self._tools = ToolCalling(self._tokenizer, config.tool_parser, self._verify, config.reasoning_parser)
        # Tenants' requests in fair order, unless the engine was configured first-come-first-served.
        policy = config.extra_engine_args.get("scheduling_policy", "priority")
        self._fair = FairQueue() if policy == "priority" else None
        # One thread for the tokenizer: off the event loop, and never two calls at once
        # (a Hugging Face fast tokenizer is not safe to share between threads).
        self._tokenizing = ThreadPoolExecutor(max_workers=1, thread_name_prefix="tokenizer")

    async def _off_loop(self, fn: Callable[[A], R], arg: A) -> R:
        return await asyncio.get_running_loop().run_in_executor(self._tokenizing, fn, arg)

    @classmethod
    async def start(cls, config: EngineConfig) -> VllmEngine:
        """Start the engine in a worker thread, giving up after the timeout."""
        _engine_env(config)
        parser_class(config.tool_parser, config.reasoning_parser)  # an unknown name fails before the engine starts
        tracker = LoadTracker(max_num_seqs=config.max_num_seqs)
        try:
            llm = await asyncio.wait_for(asyncio.to_thread(_build_async_llm, config, tracker), config.startup_timeout_s)
        except TimeoutError:
            raise EngineFailure(
                f"The local engine for '{config.served_name}' did not start within {config.startup_timeout_s:.0f} s."
            ) from None
        try:
            engine = cls(llm, config, tracker)
            if config.task != "embed":
                try:
                    speed = await asyncio.wait_for(engine.measure_prefill(), PROBE_TIMEOUT_S)
                except Exception as e:  # no figure: the configured one stands in, as before the probe
                    log.warning("%s: prefill probe failed (%s: %s)", config.served_name, type(e).__name__, e)
                    speed = None
                tracker.idle_prefill_tokens_per_s = speed
                log.info(
                    "%s: idle prefill speed %s",
                    config.served_name,
                    f"{speed:,.0f} tokens/s" if speed else "too fast to tell",
                )
                await asyncio.sleep(0.1)  # the probe's last step stats arrive
                tracker.forget()  # its steps and first tokens are no traffic's
            return engine
        except BaseException:
            llm.shutdown()
            raise

    async def measure_prefill(self, short: int = PROBE_SHORT, long: int = PROBE_LONG) -> float | None:
        """The engine's prefill speed when idle, in prompt tokens a second: two prompts of `short` and
        `long` tokens (one token out each) after a warm-up, the difference of their times to first
        token over the difference of their lengths (the step's fixed cost cancels out). None where the
        difference is too small to tell (a GPU with these lengths: the configured figure stays).

        The scheduler plans an engine idle past its stats window at this speed: the configured
        `scheduler.prefill_tokens_per_s` is one figure for every engine, which a CPU's and a GPU's miss
        by far either way, and the speeds a busy engine shows understate an idle one's (decodes share
        those steps)."""
        long = min(long, self._max_len - 2)
        if long <= short:
            return None
        from vllm import SamplingParams

        token = self._tokenizer.encode(" the", add_special_tokens=False)[-1]
        params = SamplingParams(max_tokens=1, temperature=0.0)
        timed: list[float] = []
        for n in (short, short, long):  # the first one warms up
            # A random first token each: no prompt reuses another's prefix cache (a cached prefix
            # isn't computed again, and would be timed as if it were).
            ids = [uuid.uuid4().int % self._vocab_size] + [token] * (n - 1)
            start = asyncio.get_running_loop().time()
            async for _ in self._llm.generate({"prompt_token_ids": ids}, params, f"probe-{uuid.uuid4().hex}"):
                pass
            timed.append(asyncio.get_running_loop().time() - start)
        spent = timed[2] - timed[1]
        if spent < PROBE_MIN_S:
            return None
        return (long - short) / spent

    # ------------------------------------------------------------------ info, stats

    def info(self) -> ModelInfo:
        template = getattr(self._tokenizer, "chat_template", None)
        chat = bool(template) and self._config.task != "embed"
        return ModelInfo(
            name=self._config.served_name,
            task="embed" if self._config.task == "embed" else "generate",
            max_model_len=self._max_len,
            has_chat_template=bool(template),
            tokenizer_path=self._config.model_path,
            tool_modes=self._tools.modes if chat else [],
            tool_parser=self._tools.parser_name,
            reasoning_parser=self._tools.reasoning_parser,
            max_num_seqs=self._config.max_num_seqs,
        )

    def _verify(self, params: Any) -> None:
        """Check sampling parameters as the engine checks a new request (structured output included)."""
        llm = self._llm
        params.verify(
            llm.model_config,
            llm.vllm_config.speculative_config,
            llm.vllm_config.structured_outputs_config,
            self._tokenizer,
        )

    def stats(self) -> LoadStats:
        """The engine's load; `EngineFailure` once its engine-core process has died (vLLM's own
        bookkeeping would go on answering), so the replica's health check fails and Serve replaces it."""
        if self._llm.errored:
            raise EngineFailure(f"The local engine for '{self._config.served_name}' has died.")
        stats = self._tracker.snapshot(
            unfinished=self._llm.get_num_unfinished_requests(),
            queued_prompt_tokens=self._llm.get_num_queued_tokens(),
        )
        if self._fair is not None and (by_tenant := self._fair.waiting()):
            stats["waiting_by_tenant"] = by_tenant
        return stats

    def shutdown(self) -> None:
        self._tokenizing.shutdown(wait=False)
        self._llm.shutdown()

    # -------------------------------------------------------------------- prompts

    def _chat_prompt(self, request: GenerateRequest) -> list[int]:
        template = getattr(self._tokenizer, "chat_template", None)
        if not template:
            raise BadRequest(
                f"The model '{self._config.served_name}' has no chat template; use /v1/completions.",
                param="model",
            )
        messages, tools = chat_template_input(
            request.get("messages", []),
            request.get("tools"),
            request.get("tool_choice"),
            takes_tools=self._tools.template_takes_tools,
        )
        extra = {"tools": tools} if tools else {}
        go_on = bool(request.get("continue_final"))  # a prefill: the last message stays open, no new turn
        text = self._tokenizer.apply_chat_template(
            messages, tokenize=False, add_generation_prompt=not go_on, continue_final_message=go_on, **extra
        )
        ids: list[int] = self._tokenizer.encode(text, add_special_tokens=False)
        return ids

    def _prompt_ids(self, request: GenerateRequest) -> list[list[int]]:
        if request["kind"] == "chat":
            return [self._chat_prompt(request)]
        prompts = request.get("prompts", [])
        return [p if isinstance(p, list) else self._tokenizer.encode(p, add_special_tokens=True) for p in prompts]

    # ------------------------------------------------------------------- generate

    def _prepare(self, request: GenerateRequest) -> tuple[list[list[int]], list[Any], dict[int, ToolReader] | None]:
        """The request's prompts as token ids, their sampling parameters, and its choices' tool readers.

        Everything here depends only on the request (the chat template, the tokenizer, the
        sampling fields, the tools), so whatever fails here is the request's fault: a 400 naming the
        field, never an engine failure that would count against the local route.
        """
        param = "messages" if request["kind"] == "chat" else "prompt"
        sampling = request["sampling"]
        check_patterns(sampling.get("response_format"), "response_format")  # before anything converts them
        for i, tool in enumerate(request.get("tools") or []):
            check_patterns(tool, f"tools[{i}]")
        try:
            tools = self._tools.session(request) if request["kind"] == "chat" else None
        except LocalModelError:
            raise
        except Exception as e:  # the tools' fault: vLLM's readers depend on nothing else
            raise BadRequest(f"This request's tools can't be used: {type(e).__name__}: {e}", param="tools") from None
        try:
            prompts = self._prompt_ids(request)
        except LocalModelError:
            raise
        except Exception as e:
            raise BadRequest(
                f"The model '{self._config.served_name}' can't make a prompt of this request's '{param}': "
                f"{type(e).__name__}: {e}",
                param=param,
            ) from None
        for ids in prompts:
            if any(not 0 <= t < self._vocab_size for t in ids):
                raise BadRequest(f"A token id in '{param}' is outside the vocabulary.", param=param)
        try:
            params = [
                to_sampling_params(
                    sampling,
                    max_tokens=output_budget(self._max_len, len(ids), sampling.get("max_tokens"), param),
                    vocab_size=self._vocab_size,
                    stream=True,  # deltas even for whole answers: see `window` in `generate`
                    structured=tools.structured if tools is not None else None,
                    skip_special_tokens=tools.skip_special_tokens if tools is not None else True,
                )
                for ids in prompts
            ]
        except LocalModelError:
            raise
        except Exception as e:
            raise BadRequest(f"Invalid sampling parameters: {type(e).__name__}: {e}") from None
        readers = tools.readers(prompts, sampling.get("n", 1)) if tools is not None else None
        return prompts, params, readers

    async def generate(self, request: GenerateRequest) -> AsyncGenerator[Batch, None]:
        # Long prompts take the tokenizer a while: off the event loop, which serves every stream.
        prompts, params, tool_readers = await self._off_loop(self._prepare, request)
        folding = Folding(self._reader, request, prompts, tool_readers)
        queue: asyncio.Queue[tuple[int, Any]] = asyncio.Queue()
        tenant = request.get("tenant", "")
        queued = self._fair  # the fair queue counting it as waiting, until it starts (then None)
        tag = queued.enter(tenant) if queued is not None else 0
        tasks = [
            asyncio.create_task(self._pump(k, ids, params[k], f"{request['request_id']}-{k}", queue, tag))
            for k, ids in enumerate(prompts)
        ]
        window = 0.0  # the first batch goes out at once: time to first token is sacred
        # A whole answer still crosses in a few batches (the first token, then every WHOLE_INTERVAL_S):
        # the gateway's first-token and idle timeouts then mean what they say for it too, instead of
        # timing the whole generation.
        interval = self._config.stream_interval_s
        if not request["stream"]:
            interval = max(interval, WHOLE_INTERVAL_S)
        try:
            while folding.open:
                batch = folding.fold(await _collect(queue, window))
                if queued is not None:  # the engine took it up: later arrivals queue from here
                    queued.start(tenant, tag)
                    queued = None
                window = interval
                if batch is not None:
                    yield batch
        finally:
            if queued is not None:
                queued.leave(tenant)
            for t in tasks:
                t.cancel()
            # Cancelling a task cancels its vLLM generate(), which aborts the request.
            await asyncio.gather(*tasks, return_exceptions=True)

    async def _pump(
        self,
        k: int,
        ids: list[int],
        params: Any,
        request_id: str,
        queue: asyncio.Queue[tuple[int, Any]],
        priority: int,
    ) -> None:
        try:
            async for out in self._llm.generate({"prompt_token_ids": ids}, params, request_id, priority=priority):
                queue.put_nowait((k, out))
        except asyncio.CancelledError:
            raise
        except BaseException as e:  # handed to the consumer, which raises it
            queue.put_nowait((k, e))
            return
        queue.put_nowait((k, None))

    # ---------------------------------------------------------------------- embed

    def _embed_ids(self, inputs: list[str] | list[list[int]]) -> list[list[int]]:
        try:
            ids = [i if isinstance(i, list) else self._tokenizer.encode(i, add_special_tokens=True) for i in inputs]
        except Exception as e:  # the input's fault: the tokenizer depends on nothing else
            raise BadRequest(f"The input could not be tokenized: {type(e).__name__}: {e}", param="input") from None
        if any(not 0 <= t < self._vocab_size for one in ids for t in one):
            raise BadRequest("A token id in 'input' is outside the vocabulary.", param="input")
        return ids

    async def embed(self, inputs: list[str] | list[list[int]]) -> EmbedResult:
        from vllm.pooling_params import PoolingParams

        if self._config.task != "embed":
            raise BadRequest(
                f"The model '{self._config.served_name}' does not create embeddings.",
                param="model",
            )
        ids = await self._off_loop(self._embed_ids, inputs)
        for n_tokens in map(len, ids):
            if n_tokens > self._max_len:
                raise PromptTooLong(
                    f"This model's maximum context length is {self._max_len} tokens, "
                    f"however you requested {n_tokens} tokens in the input.",
                    param="input",
                )

        async def one(k: int, tokens: list[int]) -> list[float]:
            rid = f"embd-{uuid.uuid4().hex}-{k}"
            final = None
            async for out in self._llm.encode({"prompt_token_ids": tokens}, PoolingParams(task="embed"), rid):
                final = out
            if final is None:
                raise EngineFailure("The embedding engine returned nothing.")
            return [float(x) for x in final.outputs.data.tolist()]

        try:
            vectors = await asyncio.gather(*(one(k, t) for k, t in enumerate(ids)))
        except Exception as e:
            raise translate(e) from e
        return EmbedResult(embeddings=list(vectors), prompt_tokens=sum(map(len, ids)))


async def _collect(queue: asyncio.Queue[tuple[int, Any]], window_s: float) -> list[tuple[int, Any]]:
    """The next item, plus whatever else arrives within `window_s` (cut short when a prompt ends).

    Each item that crosses the DeploymentHandle costs the same CPU whether it
    holds one token or thirty; coalescing for a few milliseconds keeps that
    cost per stream bounded, and the engine's throughput with it.
    """
    items = [await queue.get()]
    if window_s > 0:
        loop = asyncio.get_running_loop()
        deadline = loop.time() + window_s
        while items[-1][1] is not None and (left := deadline - loop.time()) > 0:
            try:
                async with asyncio.timeout(left):
                    items.append(await queue.get())
            except TimeoutError:
                break
    while not queue.empty():
        items.append(queue.get_nowait())
    return items


def _build_async_llm(config: EngineConfig, tracker: LoadTracker) -> Any:
    from vllm.config import StructuredOutputsConfig
    from vllm.engine.arg_utils import AsyncEngineArgs
    from vllm.v1.engine.async_llm import AsyncLLM

    args: dict[str, Any] = {
        "model": config.model_path,
        "served_model_name": config.served_name,
        "max_model_len": config.max_model_len,
        "kv_cache_memory_bytes": config.kv_cache_bytes,
        "max_num_seqs": config.max_num_seqs,
        "dtype": config.dtype,
        "disable_log_stats": False,
        "enable_log_requests": False,
        "scheduling_policy": "priority",  # tenants queued fairly (`VllmEngine._fair`)
    }
    if config.task == "embed":
        args["runner"] = "pooling"
    args.update(config.extra_engine_args)
    # Structured output (response_format, forced tool calls) as compact JSON: vLLM takes that per
    # engine, not per request, and only from a named backend (xgrammar, its default's first choice;
    # a schema it can't take is a 400). A small model free to add whitespace may add nothing else.
    structured = args.get("structured_outputs_config")
    if structured is None or isinstance(structured, dict):
        defaults = {"backend": "xgrammar", "disable_any_whitespace": True}
        args["structured_outputs_config"] = StructuredOutputsConfig(**{**defaults, **(structured or {})})
    if not Path(config.model_path).is_dir():
        raise EngineFailure(f"Model directory not found: {config.model_path}")
    return AsyncLLM.from_engine_args(AsyncEngineArgs(**args), stat_loggers=[stat_logger_factory(tracker)])
