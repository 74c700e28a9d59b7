"""Requests as agent CLIs send them, replayed with plain HTTP (CI can't run the CLIs).

Each body and header set is what the CLI sent to the gateway, trimmed to what
the test needs (recorded with Claude Code 2.1.197 in `claude -p`). Served by
the in-process gateway of `anthropic_gateway` on a real socket: a fake
Anthropic provider ("claude", which gets the client's own body), an
OpenAI-compatible one ("alpha", which gets the translation) and the fake local
engine ("fake-chat").
"""

from __future__ import annotations

import json
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from anthropic_gateway import TEAM, UPSTREAM, Gateway, gateway

from local_models.catalog import prepare
from orchestrator.testing.provider import FakeProvider

EPHEMERAL = {"type": "ephemeral"}
# Claude Code's headers to a base URL of its own (ANTHROPIC_BASE_URL, ANTHROPIC_API_KEY).
CLAUDE_CODE_HEADERS = {
    "anthropic-version": "2023-06-01",
    "anthropic-beta": "claude-code-20250219,interleaved-thinking-2025-05-14,context-management-2025-06-27,"
    "prompt-caching-scope-2026-01-05,mid-conversation-system-2026-04-07,effort-2025-11-24",
    "anthropic-dangerous-direct-browser-access": "true",
    "x-app": "cli",
    "user-agent": "claude-cli/2.1.197 (external, sdk-cli)",
    "x-api-key": TEAM,
}
READ = {
    "name": "Read",
    "description": "Reads a file from the local filesystem.",
    "input_schema": {
        "$schema": "https://json-schema.org/draft/2020-12/schema",
        "type": "object",
        "properties": {"file_path": {"type": "string", "description": "The absolute path to the file to read"}},
        "required": ["file_path"],
        "additionalProperties": False,
    },
}


def claude_code_body(model: str) -> dict[str, Any]:
    """Claude Code's first request for a model it doesn't know as an older Claude (any gateway alias): the
    agent listing as a mid-conversation system message (beta mid-conversation-system-2026-04-07)."""
    return {
        "model": model,
        "messages": [
            {
                "role": "user",
                "content": [
                    {"type": "text", "text": "<system-reminder>\nToday's date is 2026-12-01.\n</system-reminder>\n"},
                    {"type": "text", "text": "Say hi in one word.", "cache_control": EPHEMERAL},
                ],
            },
            {"role": "system", "content": "Available agent types for the Agent tool:\n- Explore: ..."},
        ],
        "system": [
            {"type": "text", "text": "x-anthropic-billing-header: cc_version=2.1.197.ce1; cc_entrypoint=sdk-cli;"},
            {"type": "text", "text": "You are a Claude agent.", "cache_control": EPHEMERAL},
        ],
        "tools": [READ],
        "metadata": {"user_id": json.dumps({"device_id": "d" * 64, "account_uuid": "", "session_id": "s"})},
        "max_tokens": 1000,
        "thinking": {"type": "adaptive"},
        "context_management": {"edits": [{"type": "clear_thinking_20251015", "keep": "all"}]},
        "output_config": {"effort": "high"},
        "stream": True,
    }


@pytest.fixture(scope="module")
def fakes() -> Iterator[dict[str, FakeProvider]]:
    with (
        FakeProvider(api_key=UPSTREAM["ALPHA_KEY"], reply="Hi.") as alpha,
        FakeProvider(api_key=UPSTREAM["CLAUDE_KEY"], reply="Hi.") as claude,
    ):
        yield {"alpha": alpha, "claude": claude}


@pytest.fixture(autouse=True)
def fresh(fakes: dict[str, FakeProvider]) -> None:
    for fake in fakes.values():
        fake.clear_fault()
        fake.reset_stats()


@pytest.fixture(scope="module")
def tokenizer(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return prepare("tiny-random", tmp_path_factory.mktemp("models"), progress=False).path


@pytest.fixture
async def gw(fakes: dict[str, FakeProvider], tmp_path: Path, tokenizer: Path) -> AsyncIterator[Gateway]:
    async with gateway(fakes, tmp_path, tokenizer) as g:
        yield g


def posted(fake: FakeProvider) -> dict[str, Any]:
    [request] = [r for r in fake.requests if r.method == "POST"]
    assert isinstance(request.body, dict)
    return request.body


def events(text: str) -> list[str]:
    return [line.removeprefix("event: ") for line in text.splitlines() if line.startswith("event: ")]


async def post(gw: Gateway, path: str, body: dict[str, Any]) -> httpx.Response:
    async with httpx.AsyncClient(base_url=gw.url, timeout=20) as http:
        return await http.post(path + "?beta=true", json=body, headers=CLAUDE_CODE_HEADERS)


@pytest.mark.parametrize("model", ["claude/haiku", "alpha/m", "fake-chat"], ids=["anthropic", "openai", "local"])
async def test_claude_codes_mid_conversation_system_message_is_served(
    gw: Gateway, fakes: dict[str, FakeProvider], model: str
) -> None:
    body = claude_code_body(model)
    if model != "claude/haiku":
        body["tools"] = []  # the fake engine has no tools; the OpenAI route's tool calls are tested elsewhere
    r = await post(gw, "/v1/messages", body)
    assert r.status_code == 200, r.text
    assert events(r.text)[0] == "message_start" and events(r.text)[-1] == "message_stop"
    if model == "claude/haiku":  # the client's own body, the system message where it was
        assert posted(fakes["claude"])["messages"] == body["messages"]
    elif model == "alpha/m":  # a system message where it stood
        sent = posted(fakes["alpha"])["messages"]
        assert [m["role"] for m in sent] == ["system", "user", "system"]
        assert sent[2]["content"] == body["messages"][1]["content"]


async def test_a_mid_conversation_system_message_of_text_blocks_is_their_text(
    gw: Gateway, fakes: dict[str, FakeProvider]
) -> None:
    body = claude_code_body("alpha/m") | {"tools": []}
    body["messages"][1]["content"] = [{"type": "text", "text": "One."}, {"type": "text", "text": "Two."}]
    r = await post(gw, "/v1/messages", body)
    assert r.status_code == 200, r.text
    assert posted(fakes["alpha"])["messages"][2] == {"role": "system", "content": "One.\n\nTwo."}


async def test_claude_codes_mid_conversation_system_message_is_counted(gw: Gateway) -> None:
    body = {k: v for k, v in claude_code_body("claude/haiku").items() if k not in ("max_tokens", "stream")}
    r = await post(gw, "/v1/messages/count_tokens", body)
    assert r.status_code == 200, r.text
    without = {**body, "messages": body["messages"][:1]}
    fewer = await post(gw, "/v1/messages/count_tokens", without)
    assert r.json()["input_tokens"] > fewer.json()["input_tokens"] > 0


async def test_a_conversation_of_system_messages_alone_is_a_400(gw: Gateway) -> None:
    body = claude_code_body("claude/haiku") | {"messages": [{"role": "system", "content": "Be terse."}]}
    r = await post(gw, "/v1/messages", body)
    assert r.status_code == 400 and r.json()["error"]["type"] == "invalid_request_error", r.text
    assert "user or assistant turn" in r.json()["error"]["message"]


def received_headers(fake: FakeProvider) -> dict[str, str]:
    [request] = [r for r in fake.requests if r.method == "POST"]
    return {k.lower(): v for k, v in request.headers.items()}


@pytest.mark.parametrize("stream", [True, False], ids=["sse", "json"])
async def test_an_anthropic_route_gets_the_betas_the_clients_body_needs(
    gw: Gateway, fakes: dict[str, FakeProvider], stream: bool
) -> None:
    # context_management, output_config and the system message are betas' fields: Anthropic refuses them
    # without the betas (its 400 names the field), so the client's own body goes with the client's betas.
    r = await post(gw, "/v1/messages", claude_code_body("claude/haiku") | {"stream": stream})
    assert r.status_code == 200, r.text
    assert received_headers(fakes["claude"])["anthropic-beta"] == CLAUDE_CODE_HEADERS["anthropic-beta"]
    assert received_headers(fakes["claude"])["x-api-key"] == UPSTREAM["CLAUDE_KEY"]


async def test_oauth_betas_stay_with_the_client_and_a_translation_gets_none(
    gw: Gateway, fakes: dict[str, FakeProvider]
) -> None:
    headers = CLAUDE_CODE_HEADERS | {"anthropic-beta": "oauth-2025-04-20, effort-2025-11-24,effort-2025-11-24"}
    async with httpx.AsyncClient(base_url=gw.url, timeout=20) as http:
        r = await http.post("/v1/messages", json=claude_code_body("claude/haiku"), headers=headers)
        assert r.status_code == 200, r.text
        assert received_headers(fakes["claude"])["anthropic-beta"] == "effort-2025-11-24"
        r = await http.post("/v1/messages", json=claude_code_body("alpha/m"), headers=headers)
        assert r.status_code == 200, r.text
        assert "anthropic-beta" not in received_headers(fakes["alpha"])


async def test_the_cache_tells_apart_bodies_sent_with_other_betas(gw: Gateway, fakes: dict[str, FakeProvider]) -> None:
    body = claude_code_body("claude/haiku") | {"stream": False, "temperature": 0}
    seen = []
    async with httpx.AsyncClient(base_url=gw.url, timeout=20) as http:
        for beta in ("effort-2025-11-24", "effort-2025-11-24", "context-management-2025-06-27"):
            r = await http.post("/v1/messages", json=body, headers=CLAUDE_CODE_HEADERS | {"anthropic-beta": beta})
            assert r.status_code == 200, r.text
            seen.append(r.headers["x-cache"])
    assert seen == ["MISS", "HIT", "MISS"]
