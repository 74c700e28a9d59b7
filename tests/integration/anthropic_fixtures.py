"""The Anthropic test gateway's fixtures (`anthropic_gateway`), for a test module to take as a plugin:
`pytest_plugins = ["anthropic_fixtures"]`. The module's `REPLY` (what the fake providers answer, "Hi."
unless it says) and `CONTEXT` (the local model's, 4,096 unless it says) shape them.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import pytest
from anthropic_gateway import Gateway, fake_providers, freshen, gateway, tiny_tokenizer

from orchestrator.testing.provider import FakeProvider


@pytest.fixture(scope="module")
def fakes(request: pytest.FixtureRequest) -> Iterator[dict[str, FakeProvider]]:
    """The two fake providers, started once per module, answering its `REPLY`."""
    with fake_providers(getattr(request.module, "REPLY", "Hi.")) as started:
        yield started


@pytest.fixture(scope="module")
def tokenizer(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tiny_tokenizer(tmp_path_factory.mktemp("models"))


@pytest.fixture
async def gw(
    request: pytest.FixtureRequest, fakes: dict[str, FakeProvider], tmp_path: Path, tokenizer: Path
) -> AsyncIterator[Gateway]:
    """A gateway per test, over the module's fakes freshened (its local model's context the module's `CONTEXT`)."""
    freshen(fakes)
    async with gateway(fakes, tmp_path, tokenizer, max_model_len=getattr(request.module, "CONTEXT", 4096)) as g:
        yield g
