"""A gateway over two fake providers on real sockets, for the front doors' remote-route tests.

"alpha" speaks OpenAI's wire format (`alpha/m`), "claude" Anthropic's (`claude/haiku`); both reply "It is
sunny." and support tools. Keys are required (`TEAM_KEY`, and `OTHER_KEY` for a second tenant), the cache
is on in a temporary directory, the ledger is in this process, timeouts are short.

Its fixtures: `fakes` (both providers, started once per module), `healthy` (autouse: each test that uses
them finds them healed, `heal`) and `remote` (the gateway over them, per test). A test module takes the
ones it wants by importing them (`from two_fakes import fakes_fixture as fakes_fixture`: a name of their
own, so that a test's `fakes` parameter does not shadow an import, and an explicit re-export, so that the
import is not unused), which makes them its own, `fakes` started once per module. They
are not a plugin (`pytest_plugins`): a plugin's fixtures are the whole session's, and `anthropic_fixtures`
has a `fakes` of its own.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager, contextmanager
from pathlib import Path
from typing import Any

import httpx
import pytest
from fastapi import FastAPI

from orchestrator.accounting.book import Book, InProcessOwner
from orchestrator.accounting.keys import hash_key
from orchestrator.accounting.setup import build_accounts
from orchestrator.api import build_app
from orchestrator.app import build_pipeline
from orchestrator.settings import load_settings
from orchestrator.testing.engine import FakeEngine
from orchestrator.testing.provider import FakeProvider

KEYS = {"ALPHA_KEY": "sk-alpha-SECRET-1111", "CLAUDE_KEY": "sk-ant-SECRET-3333"}
TEAM_KEY = "sk-orch-team-AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA1"
OTHER_KEY = "sk-orch-other-BBBBBBBBBBBBBBBBBBBBBBBBBBBBBBBBBBBBBBBBBBBBBBB2"


@contextmanager
def two_fakes() -> Iterator[dict[str, FakeProvider]]:
    with (
        FakeProvider(api_key=KEYS["ALPHA_KEY"], reply="It is sunny.") as alpha,
        FakeProvider(api_key=KEYS["CLAUDE_KEY"], reply="It is sunny.") as claude,
    ):
        yield {"alpha": alpha, "claude": claude}


@pytest.fixture(scope="module", name="fakes")
def fakes_fixture() -> Iterator[dict[str, FakeProvider]]:
    with two_fakes() as both:
        yield both


@pytest.fixture(autouse=True, name="healthy")
def healthy_fixture(request: pytest.FixtureRequest) -> None:
    if "fakes" in request.fixturenames:
        heal(request.getfixturevalue("fakes"))


@pytest.fixture(name="remote")
async def remote_fixture(fakes: dict[str, FakeProvider], tmp_path: Path) -> AsyncIterator[FastAPI]:
    async with gateway(fakes, tmp_path) as app:
        yield app


def heal(fakes: dict[str, FakeProvider]) -> None:
    """No fault left from an earlier test, and fresh counts."""
    for fake in fakes.values():
        fake.clear_fault()
        fake.reset_stats()


@asynccontextmanager
async def gateway(
    fakes: dict[str, FakeProvider],
    tmp: Path,
    models: dict[str, Any] | None = None,
    replica: dict[str, Any] | None = None,
    limits: dict[str, dict[str, Any]] | None = None,
    env: dict[str, str] | None = None,
    **app_options: Any,
) -> AsyncIterator[FastAPI]:
    """The whole app over both fakes and a fake local engine; `models`: aliases over them; `replica`: the
    `gateway:` settings; `limits`: each key's (by id, "team" and "other"); `env`: more of the environment
    (a master key); `app_options`: `build_app`'s."""
    limits = limits or {}
    env = {**KEYS, **(env or {})}
    settings = load_settings(
        providers={
            "alpha": {
                "base_url": fakes["alpha"].base_url + "/v1",
                "api_key_env": "ALPHA_KEY",
                "models": {"m": {"id": "alpha-model"}},
            },
            "claude": {
                "kind": "anthropic",
                "base_url": fakes["claude"].base_url,
                "api_key_env": "CLAUDE_KEY",
                "models": {"haiku": {"id": "claude-test"}},
            },
        },
        models=models or {},
        cache={"directory": str(tmp / "cache")},  # never the user's own cache
        resilience={"first_token_timeout_s": 1.0, "idle_timeout_s": 0.5, "deadline_s": 8.0, "backoff_base_s": 0.05},
        ledger={"path": str(tmp / "ledger.sqlite"), "owner": "process"},
        keys={
            "team": {"sha256": hash_key(TEAM_KEY), **limits.get("team", {})},
            "other": {"sha256": hash_key(OTHER_KEY), **limits.get("other", {})},
        },
        gateway=replica or {},
    )
    engine = FakeEngine("local-chat")
    async with httpx.AsyncClient() as upstream:
        pipeline = await build_pipeline({"local": (engine, engine.info())}, settings, env=env, client=upstream)
        book = Book(tmp / "ledger.sqlite")
        accounts = await build_accounts(settings, pipeline, owner=InProcessOwner(book), env=env)
        try:
            yield build_app(pipeline, accounts, **app_options)
        finally:
            await accounts.drain()
            await accounts.background.stop()
            book.close()
