"""A fake pay-per-token provider on a real socket: OpenAI-compatible and Anthropic Messages wire formats.

No provider can be reached from a test, so the gateway's remote routes are tested and benchmarked against
this server. It speaks the providers' exact wire formats over HTTP on 127.0.0.1 — JSON and SSE, error bodies,
status codes, `Retry-After` — and fails the way they fail. Its parts, one module each: what both formats share
(`replies`: the `Ask`, the `Reply`, tokens, tool arguments, embeddings), the formats (`openai_wire`,
`anthropic_wire`), the fault table (`faults`), pacing an answer (`delivery`) and what it saw (`recorder`).

Endpoints (OpenAI flavour: `Authorization: Bearer <key>`; Anthropic: `x-api-key` — or a Bearer token, which is
what its Python SDK 2.x sends — and `anthropic-version`):

    POST /v1/chat/completions   chat.completion / chat.completion.chunk SSE (`stream_options.include_usage`)
    POST /v1/completions        text_completion, JSON and SSE
    POST /v1/embeddings         deterministic unit vectors (`embedding_dim`, or the request's `dimensions`),
                                `encoding_format` "float" or "base64" (little-endian float32)
    GET  /v1/models[/{id}]      OpenAI list, or Anthropic's shape when `anthropic-version` is sent
    POST /v1/messages           Anthropic message / `event: <type>` SSE with ping; `max_tokens` required
    GET  /health                200, no auth (readiness checks)
    GET  /_fake/stats           counts, for a fake running in another process (the CLI)
    POST /_fake/fault           {"mode": ..., options} sets the instance fault; {"mode": null} clears it
    POST /_fake/pace            {"ttft_ms": ..., "tokens_per_s": ...} sets the timing below (0: no delay)
    POST /_fake/reset           clears the fault, the records and the counts

Replies (`replies.compose`): a tool call when the request has tools, text about a trailing tool result, the
configured `reply` / `reply_tokens`, or the last user message parroted back; usage counts words; stop sequences
and `max_tokens` cut the text; `n` is ignored (one choice); `reasoning_tokens` makes it a reasoning model (that
many words of reasoning first: `reasoning_content` deltas, or a signed `thinking` block); `short_tool_ids`
speaks Mistral's tool-call ids (9 letters or digits, and a 400 for any other id in the history),
`max_tokens_ceiling` DeepSeek's limit (a 400 above it), `refuse` a safety refusal (the text as OpenAI's
`refusal`, or with Anthropic's stop reason `refusal`), `prompt_cache` (written, read) Anthropic's prompt-cache
counts (`cache_creation_input_tokens`, `cache_read_input_tokens`, besides `input_tokens`); JSON mode without
"json" in the prompt is a 400.
Timing (`delivery`): `ttft_ms` to the first output event, then one every 1/`tokens_per_s` (0 = no delay). Faults
(`faults.FAULT_MODES`): for the instance (`set_fault`, or `/_fake/fault`) or one request (header
`x-fake-fault: stall; stall_after=3`).

Observability: `requests` (`recorder.RecordedRequest`: method, path, headers, parsed body, and as it goes:
status, fault, events sent, outcome), `counts` (per path), `faults_applied` (per mode), `disconnects` /
`client_disconnected` (a client went away before its answer was complete: proof that a gateway cancels upstream
work), `in_flight`, and `wait_for(pred)` / `await wait_for_async(pred)` to poll for what happens after a
response (a disconnect is noticed asynchronously).

Use: `with FakeProvider(api_key="sk-test") as p:` runs it in a background thread with its own loop (for sync
tests, or other processes such as Ray Serve replicas calling it); `async with` runs it on the current loop.
CLI: `python -m orchestrator.testing.provider --port 9100 --ttft-ms 0 --tokens-per-s 0`.
"""

from __future__ import annotations

import argparse
import asyncio
import dataclasses
import hashlib
import json
import signal
import time
from collections import Counter
from collections.abc import Awaitable, Callable, Iterable
from typing import Any

from aiohttp import web

from orchestrator.testing import anthropic_wire, openai_wire
from orchestrator.testing.control import Control
from orchestrator.testing.delivery import NOTHING_SENT, Delivery, Pace, reset_connection
from orchestrator.testing.faults import (
    FAULT_MODES,
    STATUS_FAULTS,
    Fault,
    FaultSwitch,
    error_response,
    fault_response,
    problem_response,
)
from orchestrator.testing.loop_thread import LoopThread
from orchestrator.testing.recorder import RecordedRequest, Recorder
from orchestrator.testing.replies import Api, Ask, Event, Kind, Reply, ReplySource, Script, compose

__all__ = ["Api", "FakeProvider", "Fault", "RecordedRequest", "error_response", "main"]

Encoders = tuple[
    Callable[[dict[str, Any]], Ask],
    Callable[[Reply, dict[str, Any]], dict[str, Any]],
    Callable[[Reply, dict[str, Any], bool], list[Event]],
]
# Per generating endpoint: read the request, encode a whole answer, encode a stream (with usage or not).
_ENCODERS: dict[str, Encoders] = {
    "chat": (openai_wire.chat_ask, openai_wire.chat_body, openai_wire.chat_events),
    "completion": (openai_wire.completion_ask, openai_wire.completion_body, openai_wire.completion_events),
    "messages": (anthropic_wire.ask, anthropic_wire.body, lambda reply, meta, _: anthropic_wire.events(reply, meta)),
}
_ID_PREFIX = {"chat": "chatcmpl-", "completion": "cmpl-", "messages": "msg_"}


def _parse(raw: bytes) -> Any:
    """A request body's JSON, or None when it has none or it isn't JSON."""
    try:
        return json.loads(raw) if raw else None
    except ValueError:
        return None


async def generate(delivery: Delivery, kind: Kind, body: dict[str, Any], script: Script) -> web.StreamResponse:
    """A chat, completion or message answer, whole or streamed, in the endpoint's wire format."""
    read, encode_body, encode_events = _ENCODERS[kind]
    rec, api = delivery.rec, delivery.api
    try:
        reply = compose(read(body), api, rec.seq, body, script)
    except (TypeError, ValueError, KeyError, AttributeError, IndexError) as exc:
        # A body a real provider would refuse (a tool schema with odd `required`, a wrong type): a 400.
        return error_response(api, 400, "invalid_request_error", f"Invalid request: {type(exc).__name__}.")
    meta = {
        "id": _ID_PREFIX[kind] + hashlib.sha256(f"id{rec.seq}".encode()).hexdigest()[:24],
        "created": int(rec.time),
        "model": str(body["model"]),
    }
    include_usage = bool((body.get("stream_options") or {}).get("include_usage"))
    if body.get("stream"):
        return await delivery.stream(encode_events(reply, meta, include_usage))
    return await delivery.json(encode_body(reply, meta), reply.completion_tokens)


class FakeProvider:
    """A fake OpenAI-compatible + Anthropic provider on 127.0.0.1 (see the module docstring).

    Its settings (`reply`, `ttft_ms`, `tokens_per_s`, ...) are plain attributes, read per request, so a test
    may change them while it runs.
    """

    def __init__(
        self,
        *,
        host: str = "127.0.0.1",
        port: int = 0,
        api_key: str | None = None,
        models: Iterable[str] = ("fake-model",),
        reply: ReplySource = None,
        reply_tokens: int | None = None,
        tool_preamble: str = "",
        reasoning_tokens: int = 0,
        short_tool_ids: bool = False,
        refuse: bool = False,
        prompt_cache: tuple[int, int] = (0, 0),
        max_tokens_ceiling: int | None = None,
        ttft_ms: float = 0.0,
        tokens_per_s: float = 0.0,
        embedding_dim: int = 8,
        fault: Fault | None = None,
        record: bool = True,
    ) -> None:
        self.host, self.port = host, port
        self.api_key = api_key  # None: any non-empty key is accepted; a missing key is still a 401
        self.models = list(models)
        self.reply, self.reply_tokens, self.tool_preamble = reply, reply_tokens, tool_preamble
        self.reasoning_tokens = reasoning_tokens  # a reasoning model: words of reasoning before each answer
        self.short_tool_ids = short_tool_ids  # Mistral's: tool-call ids are 9 letters or digits, both ways
        self.refuse = refuse  # a safety refusal: the text as OpenAI's `refusal`, Anthropic's stop_reason "refusal"
        # Anthropic's prompt cache: (written, read) tokens every answer reports besides its `input_tokens`.
        self.prompt_cache = prompt_cache
        self.max_tokens_ceiling = max_tokens_ceiling  # DeepSeek's: a larger max_tokens is a 400
        self.ttft_ms, self.tokens_per_s, self.embedding_dim = ttft_ms, tokens_per_s, embedding_dim
        self._faults = FaultSwitch(fault)
        self._recorder = Recorder(record)
        self._runner: web.AppRunner | None = None
        self._handlers: set[asyncio.Task[Any]] = set()
        self._stopping = False
        self._thread: LoopThread | None = None

    # -- lifecycle --------------------------------------------------------------------------------------------

    @property
    def base_url(self) -> str:
        return f"http://{self.host}:{self.port}"

    async def start_async(self) -> None:
        """Serve on the running event loop."""
        self._stopping = False
        runner = web.AppRunner(self._app(), handler_cancellation=True, access_log=None, shutdown_timeout=0.5)
        await runner.setup()
        site = web.TCPSite(runner, self.host, self.port)
        await site.start()
        self._runner = runner
        server = site._server
        assert isinstance(server, asyncio.Server)
        self.port = server.sockets[0].getsockname()[1]

    async def stop_async(self) -> None:
        """Cancel whatever is still being answered (stalls), then close the server and its connections."""
        self._stopping = True
        handlers = list(self._handlers)
        for task in handlers:
            task.cancel()
        await asyncio.gather(*handlers, return_exceptions=True)
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None

    def start(self, timeout: float = 10.0) -> FakeProvider:
        """Serve from a background thread with its own event loop; returns once the port is bound."""
        if self._thread is not None:
            raise RuntimeError("already started")
        self._thread = LoopThread(self.start_async, self.stop_async, name="fake-provider")
        try:
            self._thread.start(timeout)
        except BaseException:
            self._thread = None
            raise
        return self

    def stop(self, timeout: float = 10.0) -> None:
        if self._thread is not None:
            self._thread.stop(timeout)
            self._thread = None

    def __enter__(self) -> FakeProvider:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    async def __aenter__(self) -> FakeProvider:
        await self.start_async()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.stop_async()

    # -- control and observation (thread-safe) ----------------------------------------------------------------

    def set_fault(self, mode: str | Fault | None, **options: Any) -> None:
        """Misbehave from the next request on: `set_fault("rate_limit", fail_times=2, retry_after=0)`; None heals."""
        self._faults.set(mode if isinstance(mode, Fault) or mode is None else Fault(mode, **options))

    def clear_fault(self) -> None:
        self.set_fault(None)

    @property
    def fault(self) -> Fault | None:
        """The instance fault still in force (None once `fail_times` is used up)."""
        return self._faults.current

    @property
    def record(self) -> bool:
        """Keep every request (`requests`); off: counts only."""
        return self._recorder.record

    @record.setter
    def record(self, value: bool) -> None:
        self._recorder.record = value

    @property
    def requests(self) -> list[RecordedRequest]:
        return self._recorder.requests

    @property
    def counts(self) -> Counter[str]:
        return self._recorder.counts

    @property
    def faults_applied(self) -> Counter[str]:
        return self._recorder.faults_applied

    @property
    def disconnects(self) -> int:
        return self._recorder.disconnects

    @property
    def client_disconnected(self) -> bool:
        return self._recorder.disconnects > 0

    @property
    def in_flight(self) -> int:
        return self._recorder.in_flight

    def reset_stats(self) -> None:
        self._recorder.reset()

    def wait_for(self, predicate: Callable[[FakeProvider], bool], timeout: float = 5.0) -> bool:
        """Poll `predicate(self)` until true or `timeout` (e.g. `lambda p: p.disconnects == 1`); blocks the thread."""
        deadline = time.monotonic() + timeout
        while not predicate(self):
            if time.monotonic() > deadline:
                return False
            time.sleep(0.01)
        return True

    async def wait_for_async(self, predicate: Callable[[FakeProvider], bool], timeout: float = 5.0) -> bool:
        """`wait_for` for async tests: the waiting test's loop keeps running (it may be the one that must close
        the upstream connection for the predicate to become true)."""
        deadline = time.monotonic() + timeout
        while not predicate(self):
            if time.monotonic() > deadline:
                return False
            await asyncio.sleep(0.01)
        return True

    def stats(self) -> dict[str, Any]:
        fault = self.fault
        return {
            "requests": sum(self.counts.values()),
            "counts": dict(self.counts),
            "faults_applied": dict(self.faults_applied),
            "disconnects": self.disconnects,
            "in_flight": self.in_flight,
            "fault": dataclasses.asdict(fault) if fault else None,
        }

    # -- answering an API call ----------------------------------------------------------------------------------

    def _app(self) -> web.Application:
        app = web.Application()
        control = Control(self)
        routes = [
            web.post("/v1/chat/completions", self._route("openai", "chat")),
            web.post("/v1/completions", self._route("openai", "completion")),
            web.post("/v1/embeddings", self._route("openai", "embedding")),
            web.post("/v1/messages", self._route("anthropic", "messages")),
        ]
        app.add_routes([*control.routes(), *routes, web.route("*", "/{tail:.*}", control.not_found)])
        return app

    def _route(self, api: Api, kind: Kind) -> Callable[[web.Request], Awaitable[web.StreamResponse]]:
        async def handle(request: web.Request) -> web.StreamResponse:
            return await self._handle(request, api, kind)

        return handle

    async def _handle(self, request: web.Request, api: Api, kind: Kind) -> web.StreamResponse:
        """Record the request, answer it, and note how the answer ended."""
        task = asyncio.current_task()
        assert task is not None
        self._handlers.add(task)
        self._recorder.in_flight += 1
        try:
            raw = await request.read()
            rec = self._recorder.receive(request, _parse(raw))
            try:
                response = await self._answer(request, rec, api, kind)
            except asyncio.CancelledError:
                self._recorder.went_away(rec, "shutdown" if self._stopping else "disconnected")
                raise
            finally:
                rec.ended = time.time()
            if rec.status is None and response.status != NOTHING_SENT:
                rec.status = response.status
            if rec.outcome == "in_flight":
                rec.outcome = "completed"
            return response
        finally:
            self._recorder.in_flight -= 1
            self._handlers.discard(task)

    async def _answer(self, request: web.Request, rec: RecordedRequest, api: Api, kind: Kind) -> web.StreamResponse:
        """One API call: the key, the fault, the body's validity, then the answer (the seam subclasses wrap)."""
        check = openai_wire.auth_problem if api == "openai" else anthropic_wire.auth_problem
        if (denied := check(request.headers, self.api_key)) is not None:
            return problem_response(api, denied)
        try:
            fault = self._faults.take(request.headers.get("x-fake-fault"))
        except ValueError as exc:
            return error_response(api, 400, "invalid_request_error", f"x-fake-fault: {exc}")
        if fault is not None:
            self._recorder.fault_applied(rec, fault.mode)
            if fault.mode in STATUS_FAULTS:
                return fault_response(api, fault)
            if fault.mode == "reset":
                return reset_connection(request, rec)
        body = rec.body
        problem = openai_wire.invalid(kind, body) if api == "openai" else anthropic_wire.invalid(body)
        if problem is None and api == "openai" and self.short_tool_ids:
            problem = openai_wire.long_tool_call_id(body)
        if problem is None and api == "openai" and kind == "chat":
            problem = openai_wire.json_mode_without_json(body)
        if problem is None and api == "openai" and self.max_tokens_ceiling is not None:
            problem = openai_wire.over_ceiling(body, self.max_tokens_ceiling)
        if problem is not None:
            return problem_response(api, problem)
        delivery = Delivery(request, rec, api, self._recorder, Pace.of(self.ttft_ms, self.tokens_per_s, fault), fault)
        if kind == "embedding":
            try:
                payload = openai_wire.embeddings_body(body, self.embedding_dim)
            except ValueError as exc:
                return error_response(api, 400, "invalid_request_error", str(exc), param="input")
            return await delivery.json(payload, 1)
        script = Script(
            self.reply,
            self.reply_tokens,
            self.tool_preamble,
            self.reasoning_tokens,
            self.short_tool_ids,
            self.refuse,
            self.prompt_cache,
        )
        return await generate(delivery, kind, body, script)


# ---------------------------------------------------------------------------------------------------------------
# CLI


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    summary = (__doc__ or "").split("\n")[0]
    parser = argparse.ArgumentParser(prog="python -m orchestrator.testing.provider", description=summary)
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=9100, help="0 picks a free port")
    parser.add_argument("--api-key", default=None, help="the only key accepted (default: any non-empty key)")
    parser.add_argument("--model", action="append", dest="models", help="a model /v1/models lists (repeatable)")
    parser.add_argument("--ttft-ms", type=float, default=0.0, help="delay before the first output event")
    parser.add_argument("--tokens-per-s", type=float, default=0.0, help="output pace; 0 = as fast as possible")
    parser.add_argument("--reply", default=None, help="fixed reply text (default: parrot the last user message)")
    parser.add_argument("--reply-tokens", type=int, default=None, help="reply with this many filler words")
    parser.add_argument("--tool-preamble", default="")
    parser.add_argument("--fault", choices=FAULT_MODES, default=None)
    parser.add_argument("--fail-times", type=int, default=None)
    parser.add_argument("--retry-after", type=float, default=1.0)
    parser.add_argument("--stall-after", type=int, default=2)
    parser.add_argument("--stall-cap-s", type=float, default=60.0)
    parser.add_argument("--slow-ttft-s", type=float, default=5.0)
    parser.add_argument("--record", action="store_true", help="keep every request in memory (off: counts only)")
    return parser.parse_args(argv)


def provider_from_args(args: argparse.Namespace) -> FakeProvider:
    fault = None
    if args.fault:
        options = ("fail_times", "retry_after", "stall_after", "stall_cap_s", "slow_ttft_s")
        fault = Fault(args.fault, **{name: getattr(args, name) for name in options})
    return FakeProvider(
        host=args.host,
        port=args.port,
        api_key=args.api_key,
        models=args.models or ["fake-model"],
        reply=args.reply,
        reply_tokens=args.reply_tokens,
        tool_preamble=args.tool_preamble,
        ttft_ms=args.ttft_ms,
        tokens_per_s=args.tokens_per_s,
        fault=fault,
        record=args.record,
    )


async def serve_forever(provider: FakeProvider) -> None:
    """Serve until SIGINT or SIGTERM."""
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    async with provider:
        print(f"fake provider listening on {provider.base_url}", flush=True)
        await stop.wait()


def main(argv: list[str] | None = None) -> None:
    asyncio.run(serve_forever(provider_from_args(parse_args(argv))))


if __name__ == "__main__":
    main()
