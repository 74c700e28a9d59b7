"""A whole gateway for Anthropic clients, served on a real loopback socket.

The real app (`build_pipeline` + `build_accounts` + `build_app`) over a fake
local chat engine that counts with the tiny-random model's tokenizer, and two
fake providers on real sockets: "alpha" speaks OpenAI's wire format, "claude"
Anthropic's. Keys are required (`KEYS`), the cache is on (in a temporary
directory), the ledger is in this process. `auto` is the local model first,
then claude (it spills). Tests talk to it with the official anthropic SDK,
as a user would (`client`).
Its fixtures are in `anthropic_fixtures`.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator, Mapping
from contextlib import AsyncExitStack, asynccontextmanager, contextmanager
from dataclasses import dataclass, field
from pathlib import Path

import anthropic
import httpx
from fastapi import FastAPI
from loopback import serving

from local_models.catalog import prepare
from local_models.interface import ModelInfo
from orchestrator.accounting.book import Book, InProcessOwner
from orchestrator.accounting.keys import hash_key
from orchestrator.accounting.setup import build_accounts
from orchestrator.api import build_app
from orchestrator.app import build_pipeline
from orchestrator.settings import Settings, load_settings
from orchestrator.testing.engine import FakeEngine
from orchestrator.testing.provider import FakeProvider

UPSTREAM = {"ALPHA_KEY": "sk-alpha-SECRET-1111", "CLAUDE_KEY": "sk-ant-SECRET-3333"}
MASTER = "sk-orch-master-MMMMMMMMMMMMMMMMMMMMMMMMMMMMMMMMMMMMMMMMMMMM9"
TEAM = "sk-orch-team-AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA1"
LOCAL_ONLY = "sk-orch-local-BBBBBBBBBBBBBBBBBBBBBBBBBBBBBBBBBBBBBBBBBBBBB2"
BROKE = "sk-orch-broke-CCCCCCCCCCCCCCCCCCCCCCCCCCCCCCCCCCCCCCCCCCCCC3"
ONE_RPM = "sk-orch-onerpm-DDDDDDDDDDDDDDDDDDDDDDDDDDDDDDDDDDDDDDDDDDDD4"
KEYS = {
    "team": {"sha256": hash_key(TEAM)},
    "local-only": {"sha256": hash_key(LOCAL_ONLY), "models": ["fake-chat"]},
    "broke": {"sha256": hash_key(BROKE), "budget_usd": 1e-9},
    "one-rpm": {"sha256": hash_key(ONE_RPM), "rpm": 1},
}
PRICE = {"input_per_mtok": 1.0, "output_per_mtok": 5.0}


@contextmanager
def fake_providers(reply: str) -> Iterator[dict[str, FakeProvider]]:
    """ "alpha" and "claude", each answering `reply` (a module's fixture, started once)."""
    with (
        FakeProvider(api_key=UPSTREAM["ALPHA_KEY"], reply=reply) as alpha,
        FakeProvider(api_key=UPSTREAM["CLAUDE_KEY"], reply=reply) as claude,
    ):
        yield {"alpha": alpha, "claude": claude}


def freshen(fakes: Mapping[str, FakeProvider]) -> None:
    """No fault, count or prompt cache left from an earlier test."""
    for fake in fakes.values():
        fake.clear_fault()
        fake.reset_stats()
        fake.prompt_cache = (0, 0)


def tiny_tokenizer(directory: Path) -> Path:
    """The tiny-random model's directory (its tokenizer is the fake engine's counter), prepared there."""
    return prepare("tiny-random", directory, progress=False).path


@dataclass
class Gateway:
    url: str
    app: FastAPI
    engine: FakeEngine
    clients: list[anthropic.AsyncAnthropic] = field(default_factory=list)

    def client(self, key: str = TEAM) -> anthropic.AsyncAnthropic:
        """The official SDK pointed at the gateway (its key in x-api-key, as the SDK sends it);
        closed with the gateway."""
        client = anthropic.AsyncAnthropic(api_key=key, base_url=self.url, max_retries=0, timeout=20)
        self.clients.append(client)
        return client

    async def close_clients(self) -> None:
        for client in self.clients:
            await client.close()


def settings_for(fakes: Mapping[str, FakeProvider], tmp: Path) -> Settings:
    return load_settings(
        data_dir=str(tmp),
        local={"model": "fake-chat"},  # the FakeEngine's name, which a key names
        providers={
            "alpha": {
                "base_url": fakes["alpha"].base_url + "/v1",
                "api_key_env": "ALPHA_KEY",
                "models": {"m": {"id": "alpha-model", **PRICE}},
            },
            "claude": {
                "kind": "anthropic",
                "base_url": fakes["claude"].base_url,
                "api_key_env": "CLAUDE_KEY",
                "models": {"haiku": {"id": "claude-test", **PRICE}},
            },
        },
        models={"auto": {"routes": ["fake-chat", "claude/haiku"]}},
        resilience={"first_token_timeout_s": 2.0, "idle_timeout_s": 1.0, "deadline_s": 8.0, "backoff_base_s": 0.05},
        cache={"directory": str(tmp / "cache")},
        ledger={"path": str(tmp / "ledger.sqlite"), "owner": "process"},
        keys=KEYS,
    )


@asynccontextmanager
async def gateway(
    fakes: Mapping[str, FakeProvider], tmp: Path, tokenizer: Path, max_model_len: int = 4096
) -> AsyncIterator[Gateway]:
    settings = settings_for(fakes, tmp)
    env = {**UPSTREAM, "ORCHESTRATOR_MASTER_KEY": MASTER}
    engine = FakeEngine("fake-chat", max_model_len=max_model_len)
    info: ModelInfo = {**engine.info(), "tokenizer_path": str(tokenizer)}
    async with AsyncExitStack() as stack:
        upstream = await stack.enter_async_context(httpx.AsyncClient())
        pipeline = await build_pipeline({"local": (engine, info)}, settings, env=env, client=upstream)
        book = Book(tmp / "ledger.sqlite")
        stack.callback(book.close)
        accounts = await build_accounts(settings, pipeline, owner=InProcessOwner(book), env=env)
        stack.push_async_callback(accounts.background.stop)  # type: ignore[attr-defined]
        stack.push_async_callback(accounts.drain)
        app = build_app(pipeline, accounts)
        url = await stack.enter_async_context(serving(app))
        gw = Gateway(url, app, engine)
        stack.push_async_callback(gw.close_clients)
        yield gw
