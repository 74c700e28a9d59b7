"""Tool calls the model chooses itself (tool_choice "auto") on a GPU: Qwen2.5-Instruct with vLLM's
hermes parser, whole and streamed, through the gateway and the openai SDK.

Needs a CUDA GPU and the model's weights on disk: `QWEN_TOOLS_MODEL` names a local Hugging Face
directory, else the Hugging Face cache is searched for a Qwen2.5 Instruct snapshot. Without
either it is skipped (no machine here can download weights).
"""

from __future__ import annotations

import json
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

WEATHER: Any = {
    "type": "function",
    "function": {
        "name": "get_weather",
        "description": "The current weather in a city.",
        "parameters": {"type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]},
    },
}
ASK: Any = [{"role": "user", "content": "What is the weather in Paris right now? Use the tool."}]


def qwen_dir() -> Path | None:
    """A local Qwen2.5 Instruct model directory, smallest first; None if there is none."""
    named = os.environ.get("QWEN_TOOLS_MODEL")
    if named:
        return Path(named) if (Path(named) / "config.json").is_file() else None
    hub = Path(os.environ.get("HF_HUB_CACHE") or Path.home() / ".cache" / "huggingface" / "hub")
    for size in ("0.5B", "1.5B", "3B", "7B"):
        for snapshot in sorted(hub.glob(f"models--Qwen--Qwen2.5-{size}-Instruct/snapshots/*")):
            if (snapshot / "config.json").is_file() and any(snapshot.glob("*.safetensors")):
                return snapshot
    return None


@pytest.fixture(scope="module")
async def sdk() -> AsyncIterator[Any]:
    path = qwen_dir()
    if path is None:
        pytest.skip("no Qwen2.5 Instruct weights on this machine (set QWEN_TOOLS_MODEL to a model directory)")
    import openai

    engine = await VllmEngine.start(
        EngineConfig(
            model_path=str(path),
            served_name="qwen-tools",
            max_model_len=4096,
            kv_cache_bytes=4 << 30,
            dtype="bfloat16",
            tool_parser="hermes",
        )
    )
    try:
        assert engine.info()["tool_modes"] == ["required", "named", "auto"]
        app = build_app(await build_pipeline({"local": (engine, engine.info())}))
        async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://t") as http:
            async with openai.AsyncOpenAI(base_url="http://t/v1", api_key="x", http_client=http) as client:
                yield client
    finally:
        engine.shutdown()


async def test_auto_tool_call_whole(sdk: Any) -> None:
    r = await sdk.chat.completions.create(model="qwen-tools", messages=ASK, tools=[WEATHER], temperature=0)
    choice = r.choices[0]
    assert choice.finish_reason == "tool_calls"
    (call,) = choice.message.tool_calls
    assert call.function.name == "get_weather" and "paris" in json.loads(call.function.arguments)["city"].lower()


async def test_auto_tool_call_streamed_then_the_answer(sdk: Any) -> None:
    async with sdk.chat.completions.stream(model="qwen-tools", messages=ASK, tools=[WEATHER], temperature=0) as s:
        async for _ in s:
            pass
        first = (await s.get_final_completion()).choices[0].message
    (call,) = first.tool_calls
    assert call.function.name == "get_weather"
    history = [*ASK, first.model_dump(exclude_none=True), {"role": "tool", "tool_call_id": call.id, "content": "sunny"}]
    answer = await sdk.chat.completions.create(model="qwen-tools", messages=history, tools=[WEATHER], temperature=0)
    assert answer.choices[0].finish_reason == "stop" and "sunny" in (answer.choices[0].message.content or "").lower()
