"""A local reasoning model on a GPU: an R1-distill (deepseek_r1) or Qwen3 (qwen3) with vLLM's
reasoning parser, whole and streamed, through the gateway and the openai SDK: its thinking is
`reasoning_content`, before its answer, and counted in `reasoning_tokens`.

Needs a CUDA GPU and the model's weights on disk: `REASONING_MODEL` names a local Hugging Face
directory (`REASONING_PARSER` its parser, deepseek_r1 unless the directory looks like Qwen3's),
else the Hugging Face cache is searched for a Qwen3 or DeepSeek-R1-Distill-Qwen snapshot,
smallest first. Without either it is skipped (no machine here can download weights).
"""

from __future__ import annotations

import os
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from local_models.engine import EngineConfig, VllmEngine
from orchestrator.api import build_app
from orchestrator.app import build_pipeline

pytestmark = pytest.mark.gpu

ASK: Any = [{"role": "user", "content": "What is 17 + 25? Answer with the number."}]
SNAPSHOTS = [
    ("models--Qwen--Qwen3-0.6B", "qwen3"),
    ("models--Qwen--Qwen3-1.7B", "qwen3"),
    ("models--deepseek-ai--DeepSeek-R1-Distill-Qwen-1.5B", "deepseek_r1"),
    ("models--Qwen--Qwen3-4B", "qwen3"),
    ("models--deepseek-ai--DeepSeek-R1-Distill-Qwen-7B", "deepseek_r1"),
]


def reasoning_model() -> tuple[Path, str] | None:
    """A local reasoning model directory and its parser; None if there is none."""
    named = os.environ.get("REASONING_MODEL")
    if named:
        parser = os.environ.get("REASONING_PARSER") or ("qwen3" if "qwen3" in named.lower() else "deepseek_r1")
        return (Path(named), parser) if (Path(named) / "config.json").is_file() else None
    hub = Path(os.environ.get("HF_HUB_CACHE") or Path.home() / ".cache" / "huggingface" / "hub")
    for repo, parser in SNAPSHOTS:
        for snapshot in sorted(hub.glob(f"{repo}/snapshots/*")):
            if (snapshot / "config.json").is_file() and any(snapshot.glob("*.safetensors")):
                return snapshot, parser
    return None


@pytest.fixture(scope="module")
async def sdk() -> AsyncIterator[Any]:
    found = reasoning_model()
    if found is None:
        pytest.skip("no Qwen3 or R1-distill weights on this machine (set REASONING_MODEL to a model directory)")
    path, parser = found
    import openai

    engine = await VllmEngine.start(
        EngineConfig(
            model_path=str(path),
            served_name="thinker",
            max_model_len=4096,
            kv_cache_bytes=4 << 30,
            dtype="bfloat16",
            reasoning_parser=parser,
        )
    )
    try:
        assert engine.info()["reasoning_parser"] == parser
        app = build_app(await build_pipeline({"local": (engine, engine.info())}))
        async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://t") as http:
            async with openai.AsyncOpenAI(base_url="http://t/v1", api_key="x", http_client=http) as client:
                yield client
    finally:
        engine.shutdown()


async def test_reasoning_whole(sdk: Any) -> None:
    r = await sdk.chat.completions.create(model="thinker", messages=ASK, temperature=0, max_tokens=1500)
    message = r.choices[0].message
    assert getattr(message, "reasoning_content", None), "the thinking is reasoning_content"
    assert "<think>" not in (message.content or "") and "</think>" not in (message.content or "")
    assert "42" in (message.content or "")
    assert r.usage.completion_tokens_details.reasoning_tokens > 0


async def test_reasoning_streamed_before_the_answer(sdk: Any) -> None:
    stream = await sdk.chat.completions.create(
        model="thinker",
        messages=ASK,
        temperature=0,
        max_tokens=1500,
        stream=True,
        stream_options={"include_usage": True},
    )
    kinds: list[str] = []
    content, usage = "", None
    async for chunk in stream:
        usage = chunk.usage or usage
        if not chunk.choices:
            continue
        delta = chunk.choices[0].delta
        if getattr(delta, "reasoning_content", None):
            kinds.append("reasoning")
        if delta.content:
            kinds.append("content")
            content += delta.content
    assert kinds and kinds[0] == "reasoning" and "content" in kinds
    assert "reasoning" not in kinds[kinds.index("content") :] and "42" in content
    assert usage is not None and usage.completion_tokens_details.reasoning_tokens > 0
