"""Which providers are available at start, said without ever showing a key."""

from __future__ import annotations

import httpx

from orchestrator.providers.factory import availability, build_remote
from orchestrator.settings import load_settings


async def test_only_providers_with_a_key_are_built_and_the_start_up_lines_say_why() -> None:
    providers = load_settings().providers
    env = {"TOGETHER_API_KEY": "sk-together-SECRET", "ANTHROPIC_API_KEY": "  "}
    lines = availability(providers, env)
    assert "provider together: available (2 models)" in lines
    assert "provider anthropic: unavailable, ANTHROPIC_API_KEY is not set" in lines  # blank counts as unset
    assert "provider groq: unavailable, GROQ_API_KEY is not set" in lines
    assert not any("SECRET" in line for line in lines)
    async with httpx.AsyncClient() as client:
        built, backends = build_remote(providers, client, env)
    assert list(built) == ["together"]
    assert set(backends) == {"together/qwen2.5-7b-instruct", "together/llama-3.1-8b-instruct"}
    assert backends["together/qwen2.5-7b-instruct"].model == "Qwen/Qwen2.5-7B-Instruct-Turbo"
