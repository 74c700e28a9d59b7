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
from orchestrator.settings import load_settings


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


# The default config, but without torch.compile: engines start in ~10 s instead of
# ~30-120 s on two cores, and single-request speed is about the same.
EAGER = {section: {"engine_args": {"enforce_eager": True}} for section in ("local", "embedding")}


@pytest.fixture(scope="session")
def base_url(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    os.environ["RAY_TMPDIR"] = str(tmp_path_factory.mktemp("ray"))
    runtime.prepare_models(load_settings(), progress=False)
    for attempt in range(3):
        # A port free a moment ago can be taken by one of Ray's own workers: try another.
        port = _free_port()
        try:
            runtime.start(load_settings(server={"port": port}, **EAGER), timeout_s=900)
            break
        except Exception:
            runtime.stop()
            if attempt == 2:
                raise
    try:
        yield f"http://127.0.0.1:{port}/v1"
    finally:
        runtime.stop()


@pytest.fixture(scope="session")
def client(base_url: str) -> Iterator[openai.OpenAI]:
    with openai.OpenAI(base_url=base_url, api_key="not-needed", max_retries=0, timeout=120) as c:
        yield c
