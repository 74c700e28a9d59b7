"""One real deployment for the whole session: Ray Serve + vLLM, the default config.

Started once (Ray's start and the engines' start take most of a minute on two
cores) and reached only through the official `openai` client.
"""

from __future__ import annotations

import os
import socket
from collections.abc import Iterator

import openai
import pytest

from orchestrator import runtime
from orchestrator.accounting.keys import hash_key
from orchestrator.settings import load_settings
from orchestrator.testing.otlp import OtlpReceiver
from orchestrator.testing.provider import FakeProvider


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


# The default config, but without torch.compile: engines start in ~10 s instead of
# ~30-120 s on two cores, and single-request speed is about the same.
EAGER = {section: {"engine_args": {"enforce_eager": True}} for section in ("local", "embedding")}


# Remote providers: fakes on loopback that speak each provider's wire format. Keys go
# into the environment before Ray starts, the way a user gives them (workers inherit it).
KEYS = {
    "TOGETHER_API_KEY": "sk-e2e-together",
    "OPENROUTER_API_KEY": "sk-e2e-openrouter",
    "ANTHROPIC_API_KEY": "sk-e2e-anthropic",
    "ORCHESTRATOR_MASTER_KEY": "sk-e2e-master",  # the gateway's admin API
}

# Virtual keys (stored as hashes): the keys the tests' clients send, and two for test_ledger.py.
CLIENT_KEYS = {"client": "not-needed", "overflow": "x"}
LEDGER_KEYS = {"small": "sk-orch-e2e-small-budget", "big": "sk-orch-e2e-big-budget"}


@pytest.fixture(scope="session")
def remote_fakes() -> Iterator[dict[str, FakeProvider]]:
    fakes = {
        "together": FakeProvider(api_key=KEYS["TOGETHER_API_KEY"], reply="Paris is the capital of France."),
        "openrouter": FakeProvider(api_key=KEYS["OPENROUTER_API_KEY"], reply="Paris is the capital of France."),
        "anthropic": FakeProvider(api_key=KEYS["ANTHROPIC_API_KEY"], reply="Paris is the capital of France."),
    }
    for fake in fakes.values():
        fake.start()
    yield fakes
    for fake in fakes.values():
        fake.stop()


@pytest.fixture(autouse=True)
def healthy_fakes(remote_fakes: dict[str, FakeProvider]) -> None:
    """Every test starts with healthy remote providers: a fault a test set is its own."""
    for fake in remote_fakes.values():
        fake.clear_fault()


@pytest.fixture(scope="session")
def otlp() -> Iterator[OtlpReceiver]:
    """A real OTLP/HTTP receiver on loopback: the deployment's traces and metrics go there."""
    receiver = OtlpReceiver().start()
    yield receiver
    receiver.stop()


@pytest.fixture(scope="session")
def base_url(
    tmp_path_factory: pytest.TempPathFactory, remote_fakes: dict[str, FakeProvider], otlp: OtlpReceiver
) -> Iterator[str]:
    os.environ["RAY_TMPDIR"] = str(tmp_path_factory.mktemp("ray"))
    os.environ.update(KEYS)
    remote = {
        "providers": {
            "together": {"base_url": remote_fakes["together"].base_url + "/v1"},
            "openrouter": {"base_url": remote_fakes["openrouter"].base_url + "/v1"},
            "anthropic": {"base_url": remote_fakes["anthropic"].base_url},
        },
        # A stream idle 3 s has stalled: a CPU engine saturated by 12 long generations on two cores pauses
        # for over a second at times (and a 504 for the saturating requests is not what test_spill tests).
        "resilience": {"first_token_timeout_s": 6.0, "idle_timeout_s": 3.0, "breaker_threshold": 1000},
        # A fresh response cache per session: answers cached by an earlier run must not leak in; the stored
        # Responses in the session's own directory too (not the user's data_dir).
        "cache": {"directory": str(tmp_path_factory.mktemp("response-cache"))},
        "responses": {"directory": str(tmp_path_factory.mktemp("responses"))},
        # The ledger's own file, and keys: every request needs one (the clients' keys have no limits).
        "ledger": {
            "path": str(tmp_path_factory.mktemp("ledger") / "ledger.sqlite"),
            "reference_model": "openrouter/gpt-4o-mini",
        },
        # Traced, as an operator with a collector would run it (tests/e2e/test_traces.py reads them).
        "telemetry": {"otlp_endpoint": otlp.url, "metric_interval_s": 1.0},
        "keys": {
            **{name: {"sha256": hash_key(key)} for name, key in CLIENT_KEYS.items()},
            "small": {"sha256": hash_key(LEDGER_KEYS["small"]), "budget_tokens": 60},
            "big": {"sha256": hash_key(LEDGER_KEYS["big"]), "budget_usd": 10},
        },
    }
    runtime.prepare_models(load_settings(), progress=False)
    for attempt in range(3):
        # A port free a moment ago can be taken by one of Ray's own workers: try another.
        port = _free_port()
        try:
            runtime.start(load_settings(server={"port": port, "request_log": True}, **EAGER, **remote), timeout_s=900)
            break
        except Exception:
            runtime.stop()
            if attempt == 2:
                raise
    try:
        yield f"http://127.0.0.1:{port}/v1"
    finally:
        runtime.stop()
        for key in KEYS:
            os.environ.pop(key, None)


@pytest.fixture(scope="session")
def client(base_url: str) -> Iterator[openai.OpenAI]:
    with openai.OpenAI(base_url=base_url, api_key="not-needed", max_retries=0, timeout=120) as c:
        yield c


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """test_board_serve.py starts a Ray of its own and skips where one runs already: its tests go before
    every other e2e test, whose session deployment starts one (its file name no longer sorts first:
    test_anthropic_client.py came before it, and the board's tests were skipped in every full run)."""
    board = [i for i in items if i.path.name == "test_board_serve.py"]
    if not board:
        return
    rest = [i for i in items if i.path.name != "test_board_serve.py"]
    at = next((k for k, i in enumerate(rest) if "e2e" in i.path.parts), len(rest))
    items[:] = [*rest[:at], *board, *rest[at:]]
