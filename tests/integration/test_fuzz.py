"""Fuzzing every route of the gateway in-process: never a 5xx for a client's request (issue 11).

The app is the real one (`build_pipeline` + `build_accounts` + `build_app`) over
fake local engines (chat with the tiny-random model's tokenizer for the
gateway's counts, a base model, an embedder) and a fake paid provider on a
real loopback socket that speaks both OpenAI's and Anthropic's wire formats,
with the response cache on, the default resilience settings (three failures
open a circuit for 30 s) and a ledger in this process. Two gateways:

    open    no keys: the default config's endpoint
    keyed   virtual keys and a master key: authentication, budgets, /admin/*

Generated traffic (`fuzz_bodies`): mutated bodies for every POST route (Anthropic's Messages and
count_tokens, and OpenAI's Responses, too), the stored responses' routes with fuzzed ids and list
queries, the Conversations API's routes with fuzzed ids, queries and bodies, raw non-JSON bodies,
GET routes, admin paths, unknown paths and wrong methods, each with fuzzed routing headers. The
property (`fuzz_bodies.violation`): no status >= 500, every 4xx in OpenAI's error shape (Anthropic's
on its routes), every 200 strict JSON or an SSE stream ending in `[DONE]` or an error event
(`message_stop` or an `error` event on Anthropic's routes). After each test's
fuzzing, valid requests to the local and remote routes still succeed: bad
requests open no circuit that others depend on.

Hypothesis runs examples synchronously, so each gateway runs on an event
loop of its own, driven with `run_until_complete` (never set as the thread's
current loop: pytest-asyncio's session loop stays the current one).
`derandomize=True` and no example database keep CI runs identical.
"""

from __future__ import annotations

import asyncio
import logging
import traceback
from collections.abc import AsyncIterator, Coroutine, Iterator
from contextlib import AsyncExitStack, asynccontextmanager
from pathlib import Path
from typing import Any, TypeVar

import httpx
import pytest
from fuzz_bodies import (
    Answer,
    FuzzRequest,
    Models,
    Target,
    admin_requests,
    any_request,
    body_requests,
    conversation_requests,
    encode,
    fake_providers,
    known_requests,
    other_requests,
    raw_requests,
    stored_response_requests,
    valid_chat,
    valid_messages,
    valid_responses,
    violation,
)
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from local_models.catalog import prepare
from local_models.interface import ModelInfo
from orchestrator.accounting.book import Book, InProcessOwner
from orchestrator.accounting.keys import hash_key
from orchestrator.accounting.local_prices import LocalStatsPoller
from orchestrator.accounting.setup import build_accounts
from orchestrator.api import build_app
from orchestrator.app import build_pipeline
from orchestrator.providers.factory import http_client
from orchestrator.providers.local import LocalModelClient
from orchestrator.settings import Settings, load_settings
from orchestrator.testing.engine import FakeEngine
from orchestrator.testing.provider import FakeProvider

T = TypeVar("T")

# Hypothesis warns when it prints a failing example over 30 kB (bodies can be 100 kB); under
# warnings-as-errors that would replace the failure it was about to report.
pytestmark = pytest.mark.filterwarnings("ignore:Generating overly large repr:hypothesis.errors.HypothesisWarning")

UPSTREAM_KEY = "sk-fuzz-upstream"
CLIENT_KEY = "sk-orch-fuzz-client-AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA1"
TIGHT_KEY = "sk-orch-fuzz-tight-BBBBBBBBBBBBBBBBBBBBBBBBBBBBBBBBBBBBBBBBB2"
CANARY_KEY = "sk-orch-fuzz-canary-CCCCCCCCCCCCCCCCCCCCCCCCCCCCCCCCCCCCCCCC3"
MASTER_KEY = "sk-orch-fuzz-master-MMMMMMMMMMMMMMMMMMMMMMMMMMMMMMMMMMMMMMMM9"
ENV = {"FUZZ_PAID_KEY": UPSTREAM_KEY}

MODELS = Models(
    chat=["fake-chat", "auto", "paid/big", "claude/haiku"],
    completion=["fake-base", "fake-chat", "auto", "paid/big"],
    embedding=["fake-embed", "paid/embed", "embed-any"],
)
OPEN = Target(MODELS)
KEYED = Target(
    MODELS,
    keys=[CLIENT_KEY, TIGHT_KEY, MASTER_KEY],
    master_key=MASTER_KEY,
    protected_key_ids=["client", "tight", "canary"],
)

# A few hundred requests in all: the file runs in well under a minute on two cores.
FUZZ = settings(
    max_examples=120,
    deadline=None,
    derandomize=True,
    database=None,
    print_blob=False,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large, HealthCheck.filter_too_much],
)


# ------------------------------------------------------------------------------ the gateways


class Gateway:
    """One app on its own event loop, called synchronously; it collects the gateway's error logs."""

    def __init__(self, loop: asyncio.AbstractEventLoop, client: httpx.AsyncClient, canary_key: str | None):
        self.loop = loop
        self.client = client
        self.canary_key = canary_key  # a key no fuzzed request sends (keyed gateway)
        self.sent = 0
        self._errors: list[str] = []
        self._handler = _Collect(self._errors)

    def run(self, coro: Coroutine[Any, Any, T]) -> T:
        return self.loop.run_until_complete(coro)

    def send(self, request: FuzzRequest, copies: int = 1) -> tuple[list[Answer], list[str]]:
        """The answers to `copies` identical requests sent at once (reproducible ones may share one
        upstream call: single-flight), and what the gateway logged at ERROR meanwhile."""

        async def one() -> httpx.Response:
            headers = [(k.encode(), v) for k, v in request.headers]
            return await self.client.request(request.method, request.path, content=request.body, headers=headers)

        async def all_of() -> list[httpx.Response]:
            return list(await asyncio.gather(*(one() for _ in range(copies))))

        self._errors.clear()
        logger = logging.getLogger("orchestrator")
        logger.addHandler(self._handler)
        try:
            responses = self.run(all_of())
        finally:
            logger.removeHandler(self._handler)
        self.sent += copies
        answers = [
            Answer(r.status_code, r.headers.get("content-type", ""), r.content, r.headers.get("x-served-by", ""))
            for r in responses
        ]
        return answers, list(self._errors)

    def check(self, request: FuzzRequest, copies: int = 1) -> None:
        """Send `request` (`copies` at once); fail with a reproduction and the gateway's traceback
        unless every answer keeps the property."""
        answers, logged = self.send(request, copies)
        for answer in answers:
            problem = violation(request, answer)
            assert problem is None, "\n".join([problem or "", "--- request", request.describe(), "--- log", *logged])

    def assert_still_serving(self) -> None:
        """Valid requests to every kind of route succeed, from a client the fuzzing didn't use:
        no circuit was left open by bad requests."""
        auth = [("authorization", f"Bearer {self.canary_key}".encode())] if self.canary_key else []
        checks = [
            ("/v1/chat/completions", valid_chat("fake-chat"), "local/"),
            ("/v1/chat/completions", valid_chat("paid/big"), "paid/"),
            ("/v1/chat/completions", valid_chat("claude/haiku"), "claude/"),
            ("/v1/completions", {"model": "fake-base", "prompt": "Once upon", "max_tokens": 4}, "local-base/"),
            ("/v1/embeddings", {"model": "fake-embed", "input": "hello"}, "local-embed/"),
            ("/v1/messages", valid_messages("fake-chat"), "local/"),
            ("/v1/messages", valid_messages("claude/haiku"), "claude/"),
            ("/v1/messages/count_tokens", valid_messages("claude/haiku"), ""),
            ("/v1/responses", valid_responses("fake-chat"), "local/"),
            ("/v1/responses", valid_responses("claude/haiku"), "claude/"),
            ("/v1/responses/compact", {"model": "claude/haiku", "input": "Plan a trip."}, "claude/"),
            ("/v1/responses/input_tokens", valid_responses("claude/haiku"), ""),
        ]
        for path, body, served_by in checks:
            request = FuzzRequest("POST", path, (*auth, ("content-type", b"application/json")), encode(body))
            [answer], logged = self.send(request)
            assert answer.status == 200, (
                f"after {self.sent} fuzzed requests, {request.describe()}\n-> {answer.body[:500]!r}\n"
                + "\n".join(logged)
            )
            assert answer.served_by.startswith(served_by), answer.served_by
        health = self.run(self.client.get("/health"))
        assert health.status_code == 200, health.text


class _Collect(logging.Handler):
    def __init__(self, into: list[str]):
        super().__init__(logging.ERROR)
        self.into = into

    def emit(self, record: logging.LogRecord) -> None:
        text = f"{record.name}: {record.getMessage()}"
        if record.exc_info and record.exc_info[1] is not None:
            text += "\n" + "".join(traceback.format_exception(record.exc_info[1]))
        self.into.append(text)


def settings_for(fake: FakeProvider, tmp: Path, keyed: bool) -> Settings:
    return load_settings(
        data_dir=str(tmp),
        local={"model": "fake-chat"},  # the FakeEngine's name, which a key names
        providers=fake_providers(fake.base_url),
        models={
            "auto": {"routes": ["fake-chat", "paid/big"], "ttft_slo_ms": 1000},
            "embed-any": ["fake-embed", "paid/embed"],
        },
        cache={"directory": str(tmp / "cache")},
        ledger={"path": str(tmp / "ledger.sqlite"), "owner": "process", "reference_model": "paid/big"},
        keys=(
            {
                "client": {"sha256": hash_key(CLIENT_KEY)},
                "canary": {"sha256": hash_key(CANARY_KEY)},
                "tight": {"sha256": hash_key(TIGHT_KEY), "budget_usd": 0.0001, "rpm": 5, "models": ["fake-chat"]},
            }
            if keyed
            else {}
        ),
    )


@asynccontextmanager
async def gateway_app(settings: Settings, tokenizer: Path, env: dict[str, str]) -> AsyncIterator[httpx.AsyncClient]:
    chat = FakeEngine("fake-chat", max_model_len=256)
    base = FakeEngine("fake-base", max_model_len=64, has_chat_template=False)
    embed = FakeEngine("fake-embed", task="embed", max_model_len=32, dimensions=8, has_chat_template=False)
    chat_info: ModelInfo = {**chat.info(), "tokenizer_path": str(tokenizer)}

    async def stats() -> Any:
        return chat.stats()

    async with AsyncExitStack() as stack:
        upstream = await stack.enter_async_context(http_client(settings.resilience))
        clients: dict[str, tuple[LocalModelClient, ModelInfo]] = {
            "local": (chat, chat_info),
            "local-base": (base, base.info()),
            "local-embed": (embed, embed.info()),
        }
        pipeline = await build_pipeline(clients, settings, env=env, client=upstream)
        assert settings.ledger.path is not None
        book = Book(settings.ledger.path)
        stack.callback(book.close)
        accounts = await build_accounts(
            settings, pipeline, local={"local": (stats, chat_info)}, owner=InProcessOwner(book), env=env
        )
        if isinstance(accounts.background, LocalStatsPoller):
            stack.push_async_callback(accounts.background.stop)
        stack.push_async_callback(accounts.drain)
        # An exception the app doesn't handle is its 500 answer here, as a server would send it.
        transport = httpx.ASGITransport(app=build_app(pipeline, accounts), raise_app_exceptions=False)
        yield await stack.enter_async_context(httpx.AsyncClient(transport=transport, base_url="http://fuzz"))


@pytest.fixture(scope="module")
def fake() -> Iterator[FakeProvider]:
    with FakeProvider(api_key=UPSTREAM_KEY, reply="Paris is the capital of France.") as p:
        yield p


@pytest.fixture(scope="module")
def tokenizer(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return prepare("tiny-random", tmp_path_factory.mktemp("models"), progress=False).path


def _gateway(fake: FakeProvider, tmp: Path, tokenizer: Path, keyed: bool) -> Iterator[Gateway]:
    loop = asyncio.new_event_loop()
    env = {**ENV, "ORCHESTRATOR_MASTER_KEY": MASTER_KEY} if keyed else ENV
    context = gateway_app(settings_for(fake, tmp, keyed), tokenizer, env)
    try:
        client = loop.run_until_complete(context.__aenter__())
        yield Gateway(loop, client, CANARY_KEY if keyed else None)
        loop.run_until_complete(context.__aexit__(None, None, None))
    finally:
        loop.run_until_complete(loop.shutdown_asyncgens())
        loop.close()


@pytest.fixture(scope="module")
def open_gw(fake: FakeProvider, tmp_path_factory: pytest.TempPathFactory, tokenizer: Path) -> Iterator[Gateway]:
    yield from _gateway(fake, tmp_path_factory.mktemp("open"), tokenizer, keyed=False)


@pytest.fixture(scope="module")
def keyed_gw(fake: FakeProvider, tmp_path_factory: pytest.TempPathFactory, tokenizer: Path) -> Iterator[Gateway]:
    yield from _gateway(fake, tmp_path_factory.mktemp("keyed"), tokenizer, keyed=True)


def fuzz(gw: Gateway, requests: st.SearchStrategy[FuzzRequest], max_examples: int, copies: int = 1) -> None:
    """Every generated request keeps the property; then valid requests still succeed."""

    @settings(FUZZ, max_examples=max_examples)
    @given(requests)
    def run(request: FuzzRequest) -> None:
        gw.check(request, copies)

    run()
    gw.assert_still_serving()


# ------------------------------------------------------------------------------ the tests


def test_the_gateways_serve_valid_requests(open_gw: Gateway, keyed_gw: Gateway) -> None:
    open_gw.assert_still_serving()
    keyed_gw.assert_still_serving()


@pytest.mark.parametrize("keyed", [False, True], ids=["open", "keyed"])
def test_known_cases(keyed: bool, open_gw: Gateway, keyed_gw: Gateway) -> None:
    # Each class of input that once got a 5xx (issue 11), sent as is: generated traffic may miss one.
    gw, target = (keyed_gw, KEYED) if keyed else (open_gw, OPEN)
    failures = []
    for request in known_requests(target, "fake-chat", "paid/big", "fake-embed", "paid/embed", "claude/haiku"):
        [answer], logged = gw.send(request)
        if (problem := violation(request, answer)) is not None:
            where = logged[-1].strip().splitlines()[-3:] if logged else []  # the traceback's end
            failures.append("\n".join([problem, request.describe(300), *where]))
    assert not failures, f"{len(failures)} known cases fail:\n\n" + "\n\n".join(failures)
    gw.assert_still_serving()


def test_chat_completions_bodies(open_gw: Gateway) -> None:
    fuzz(open_gw, body_requests(OPEN, "/v1/chat/completions"), 150)


def test_completions_bodies(open_gw: Gateway) -> None:
    fuzz(open_gw, body_requests(OPEN, "/v1/completions"), 100)


def test_embeddings_bodies(open_gw: Gateway) -> None:
    fuzz(open_gw, body_requests(OPEN, "/v1/embeddings"), 80)


def test_messages_bodies(open_gw: Gateway) -> None:
    fuzz(open_gw, body_requests(OPEN, "/v1/messages"), 120)


def test_count_tokens_bodies(open_gw: Gateway) -> None:
    fuzz(open_gw, body_requests(OPEN, "/v1/messages/count_tokens"), 60)


def test_responses_bodies(open_gw: Gateway) -> None:
    fuzz(open_gw, body_requests(OPEN, "/v1/responses"), 120)


def test_compact_and_input_tokens_bodies(open_gw: Gateway) -> None:
    routes = [body_requests(OPEN, "/v1/responses/compact"), body_requests(OPEN, "/v1/responses/input_tokens")]
    fuzz(open_gw, st.one_of(*routes), 80)


def test_stored_responses_routes(keyed_gw: Gateway) -> None:
    fuzz(keyed_gw, stored_response_requests(KEYED), 60)


def test_conversations_routes(keyed_gw: Gateway) -> None:
    fuzz(keyed_gw, conversation_requests(KEYED), 80)


def test_raw_bodies_and_other_routes(open_gw: Gateway) -> None:
    fuzz(open_gw, st.one_of(raw_requests(OPEN), other_requests(OPEN)), 80)


def test_every_route_with_keys(keyed_gw: Gateway) -> None:
    fuzz(keyed_gw, any_request(KEYED, admin=True), 150)


def test_admin_routes(keyed_gw: Gateway) -> None:
    fuzz(keyed_gw, st.one_of(admin_requests(KEYED), body_requests(KEYED, "/admin/keys")), 80)


def test_identical_requests_at_once(open_gw: Gateway) -> None:
    # Three copies of each body at the same time: reproducible ones share one upstream call
    # (single-flight), and each joiner is validated and answered like any other request.
    chat = body_requests(OPEN, "/v1/chat/completions")
    messages = body_requests(OPEN, "/v1/messages")
    responses = body_requests(OPEN, "/v1/responses")
    fuzz(open_gw, st.one_of(chat, body_requests(OPEN, "/v1/completions"), messages, responses), 60, copies=3)
