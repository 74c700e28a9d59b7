"""Requests as agent CLIs send them, replayed with plain HTTP (CI can't run the CLIs).

Each body and header set is what the CLI sent to the gateway, trimmed to what
the test needs (recorded with Claude Code 2.1.197 in `claude -p`, Codex CLI
0.171.0 in `codex exec` with a custom provider, and the Vercel AI SDK 6 with
@ai-sdk/openai 3 in a `generateText` tool loop). Served by
the in-process gateway of `anthropic_gateway` on a real socket: a fake
Anthropic provider ("claude", which gets the client's own body), an
OpenAI-compatible one ("alpha", which gets the translation) and the fake local
engine ("fake-chat").
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from typing import Any

import httpx
import pytest
from anthropic_gateway import LOCAL_ONLY, TEAM, UPSTREAM, Gateway
from openai_schema import validate

from orchestrator.testing.provider import FakeProvider

pytest_plugins = ["anthropic_fixtures"]  # fakes, tokenizer, gw

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


# ------------------------------------------------------------------------------ Codex CLI (Responses API)

CODEX_HEADERS = {
    "authorization": f"Bearer {TEAM}",
    "accept": "text/event-stream",
    "originator": "codex_exec",
    "user-agent": "codex_exec/0.171.0 (Debian 12.0.0; x86_64) xterm (codex_exec; 0.171.0)",
    "x-codex-beta-features": "remote_compaction_v2",
    "session-id": "01a2335d-4c14-72e1-b349-0760b2b32bda",
}
SPAWN = {
    "type": "function",
    "name": "spawn_agent",
    "description": "Spawn a sub-agent.",
    "strict": False,
    "parameters": {
        "type": "object",
        "properties": {"message": {"type": "string"}},
        "required": ["message"],
        "additionalProperties": False,
    },
}
EXEC = {
    "type": "function",
    "name": "exec_command",
    "description": "Runs a command in a PTY.",
    "strict": False,
    "parameters": {"type": "object", "properties": {"cmd": {"type": "string"}}, "required": ["cmd"]},
}
# Codex's sub-agent tools, grouped (the fake provider calls the first tool it is given: this one's first).
AGENTS = {"type": "namespace", "name": "multi_agent_v1", "description": "Tools for sub-agents.", "tools": [SPAWN]}


def codex_body(model: str, input_items: list[dict[str, Any]]) -> dict[str, Any]:
    return {
        "model": model,
        "stream": True,
        "input": input_items,
        "tools": [AGENTS, EXEC],
        "tool_choice": "auto",
        "parallel_tool_calls": True,
        "reasoning": {"summary": "auto"},
        "store": False,
        "include": ["reasoning.encrypted_content"],
        "prompt_cache_key": "01a2335d-4c14-72e1-b349-0760b2b32bda",
        "client_metadata": {"x-codex-window-id": "01a2335d:0", "session_id": "01a2335d"},
    }


CODEX_INPUT = [
    {"type": "message", "role": "developer", "content": [{"type": "input_text", "text": "You are a coding agent."}]},
    {"type": "message", "role": "user", "content": [{"type": "input_text", "text": "Say hi in one word."}]},
]


async def codex_events(gw: Gateway, body: dict[str, Any]) -> list[dict[str, Any]]:
    async with httpx.AsyncClient(base_url=gw.url, timeout=20) as http:
        r = await http.post("/v1/responses", json=body, headers=CODEX_HEADERS)
    assert r.status_code == 200, r.text
    out = []
    for line in r.text.splitlines():
        if line.startswith("data: "):
            event = json.loads(line.removeprefix("data: "))
            validate("ResponseStreamEvent", event)  # the spec's function_call has `namespace`
            out.append(event)
    return out


@pytest.mark.parametrize("model", ["alpha/m", "claude/haiku"], ids=["openai", "anthropic"])
async def test_codexs_namespace_tools_round_trip(gw: Gateway, fakes: dict[str, FakeProvider], model: str) -> None:
    fake = fakes["alpha" if model == "alpha/m" else "claude"]
    events = await codex_events(gw, codex_body(model, CODEX_INPUT))
    done = events[-1]
    assert done["type"] == "response.completed"
    [call] = [item for item in done["response"]["output"] if item["type"] == "function_call"]
    assert (call["namespace"], call["name"]) == ("multi_agent_v1", "spawn_agent")
    added = next(e["item"] for e in events if e["type"] == "response.output_item.added")
    assert (added["namespace"], added["name"]) == ("multi_agent_v1", "spawn_agent")
    assert done["response"]["tools"][0]["type"] == "namespace"
    # The route saw the namespace's function under one chat name.
    sent = fake.requests[-1].body
    assert isinstance(sent, dict)
    names = [t["function"]["name"] for t in sent["tools"]] if model == "alpha/m" else [t["name"] for t in sent["tools"]]
    assert names == ["multi_agent_v1__spawn_agent", "exec_command"]
    # Codex sends the call back with its output: the route gets the call it made.
    output = {"type": "function_call_output", "call_id": call["call_id"], "output": "agent a1 spawned"}
    returned = {k: call[k] for k in ("type", "call_id", "namespace", "name", "arguments")}
    events = await codex_events(gw, codex_body(model, [*CODEX_INPUT, returned, output]))
    assert events[-1]["type"] == "response.completed"
    sent = fake.requests[-1].body
    assert isinstance(sent, dict)
    assert "multi_agent_v1__spawn_agent" in json.dumps(sent["messages"])


# Codex CLI's default `web_search = "cached"` offers OpenAI's hosted search with every request.
WEB_SEARCH = {"type": "web_search", "external_web_access": False}


@pytest.mark.parametrize("model", ["alpha/m", "claude/haiku"], ids=["openai", "anthropic"])
async def test_codexs_default_web_search_is_left_out_and_said_so(
    gw: Gateway, fakes: dict[str, FakeProvider], model: str
) -> None:
    """Codex out of the box failed every request: a 400 on `tools[2].type` (no route here searches the web)."""
    body = codex_body(model, CODEX_INPUT) | {"tools": [AGENTS, EXEC, WEB_SEARCH]}
    async with httpx.AsyncClient(base_url=gw.url, timeout=20) as http:
        r = await http.post("/v1/responses", json=body, headers=CODEX_HEADERS)
    assert r.status_code == 200, r.text
    assert r.headers["x-tools-left-out"] == "web_search"
    done = json.loads([line for line in r.text.splitlines() if line.startswith("data: ")][-1].removeprefix("data: "))
    validate("ResponseStreamEvent", done)
    assert done["type"] == "response.completed"
    assert [t["type"] for t in done["response"]["tools"]] == ["namespace", "function", "web_search"]  # as asked
    sent = fakes["alpha" if model == "alpha/m" else "claude"].requests[-1].body
    assert isinstance(sent, dict)
    names = [t["function"]["name"] for t in sent["tools"]] if model == "alpha/m" else [t["name"] for t in sent["tools"]]
    assert names == ["multi_agent_v1__spawn_agent", "exec_command"]


async def test_web_search_alone_is_left_out_and_the_answer_is_text(gw: Gateway, fakes: dict[str, FakeProvider]) -> None:
    body = {"model": "alpha/m", "input": "What's new?", "tools": [WEB_SEARCH], "tool_choice": "auto"}
    r = await responses(gw, body)
    assert r.status_code == 200, r.text
    validate("Response", r.json())
    assert r.headers["x-tools-left-out"] == "web_search"
    assert [item["type"] for item in r.json()["output"]] == ["message"]
    sent = fakes["alpha"].requests[-1].body
    assert isinstance(sent, dict) and "tools" not in sent and "tool_choice" not in sent


@pytest.mark.parametrize(
    "choice", [{"type": "web_search_preview"}, "required"], ids=["forced", "required-with-only-search"]
)
async def test_web_search_that_must_be_used_is_a_400(gw: Gateway, choice: Any) -> None:
    body = {"model": "alpha/m", "input": "What's new?", "tools": [WEB_SEARCH], "tool_choice": choice}
    r = await responses(gw, body)
    assert r.status_code == 400, r.text
    assert r.json()["error"]["param"] == "tool_choice" and "web" in r.json()["error"]["message"]


async def test_a_namespaced_function_too_long_for_a_chat_route_round_trips(
    gw: Gateway, fakes: dict[str, FakeProvider]
) -> None:
    # An MCP server's namespace and tool: 74 characters joined, past the 64 an OpenAI-compatible route takes
    # (it answered 400 `string_above_max_length`, an error the client didn't cause).
    namespace, name = "mcp__github_enterprise_server.acme_corp", "list_pull_request_review_comments"
    long = {**AGENTS, "name": namespace, "tools": [{**SPAWN, "name": name}]}
    body = codex_body("alpha/m", CODEX_INPUT) | {"tools": [long, EXEC]}
    events = await codex_events(gw, body)
    done = events[-1]
    assert done["type"] == "response.completed", done
    [call] = [item for item in done["response"]["output"] if item["type"] == "function_call"]
    assert (call["namespace"], call["name"]) == (namespace, name)
    sent = fakes["alpha"].requests[-1].body
    assert isinstance(sent, dict)
    [chat_name, _] = [t["function"]["name"] for t in sent["tools"]]
    assert len(chat_name) == 64 and re.fullmatch(r"[a-zA-Z0-9_-]+", chat_name) and chat_name.startswith("mcp__github")
    # Sent back with its output, the call is the route's own call again.
    output = {"type": "function_call_output", "call_id": call["call_id"], "output": "no comments"}
    returned = {k: call[k] for k in ("type", "call_id", "namespace", "name", "arguments")}
    events = await codex_events(gw, body | {"input": [*CODEX_INPUT, returned, output]})
    assert events[-1]["type"] == "response.completed"
    sent = fakes["alpha"].requests[-1].body
    assert isinstance(sent, dict)
    [assistant] = [m for m in sent["messages"] if m.get("tool_calls")]
    assert assistant["tool_calls"][0]["function"]["name"] == chat_name


async def test_a_namespaced_function_whose_chat_name_is_taken_is_a_400(gw: Gateway) -> None:
    clash = {**EXEC, "name": "multi_agent_v1__spawn_agent"}
    body = codex_body("alpha/m", CODEX_INPUT) | {"tools": [AGENTS, clash], "stream": False}
    async with httpx.AsyncClient(base_url=gw.url, timeout=20) as http:
        r = await http.post("/v1/responses", json=body, headers=CODEX_HEADERS)
    assert r.status_code == 400 and r.json()["error"]["param"] == "tools[0].tools[0].name", r.text


async def test_a_custom_tool_in_a_namespace_is_a_400_naming_it(gw: Gateway) -> None:
    custom = {"type": "custom", "name": "apply_patch", "description": "Patch files."}
    body = codex_body("alpha/m", CODEX_INPUT) | {"tools": [{**AGENTS, "tools": [SPAWN, custom]}], "stream": False}
    async with httpx.AsyncClient(base_url=gw.url, timeout=20) as http:
        r = await http.post("/v1/responses", json=body, headers=CODEX_HEADERS)
    assert r.status_code == 400 and r.json()["error"]["param"] == "tools[0].tools[1].type", r.text


async def test_a_whole_response_names_the_namespace_of_a_call(gw: Gateway) -> None:
    body = codex_body("alpha/m", CODEX_INPUT) | {"stream": False}
    async with httpx.AsyncClient(base_url=gw.url, timeout=20) as http:
        r = await http.post("/v1/responses", json=body, headers=CODEX_HEADERS)
    assert r.status_code == 200, r.text
    validate("Response", r.json())
    [call] = [item for item in r.json()["output"] if item["type"] == "function_call"]
    assert (call["namespace"], call["name"]) == ("multi_agent_v1", "spawn_agent")


# ------------------------------------------------------------------------------ Vercel AI SDK (Responses API)

AI_SDK_HEADERS = {
    "authorization": f"Bearer {TEAM}",
    "user-agent": "ai-sdk/openai/3.0.141 ai/6.0.326 runtime/node.js/20",
}
WEATHER_TOOL = {
    "type": "function",
    "name": "weather",
    "description": "Get the weather in a city",
    "parameters": {"type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]},
    "strict": False,
}
ASK = {"role": "user", "content": [{"type": "input_text", "text": "What is the weather in Paris?"}]}


async def responses(gw: Gateway, body: dict[str, Any], key: str = TEAM) -> httpx.Response:
    async with httpx.AsyncClient(base_url=gw.url, timeout=20) as http:
        return await http.post("/v1/responses", json=body, headers=AI_SDK_HEADERS | {"authorization": f"Bearer {key}"})


@pytest.fixture
def reasoning(fakes: dict[str, FakeProvider]) -> Iterator[None]:
    fakes["claude"].reasoning_tokens = 4  # a thinking model: a signed thinking block before the tool call
    yield
    fakes["claude"].reasoning_tokens = 0


@pytest.mark.usefixtures("reasoning")
async def test_the_ai_sdks_item_references_are_the_stored_items(gw: Gateway, fakes: dict[str, FakeProvider]) -> None:
    # Step 1 of generateText's tool loop: the model thinks, then calls the tool (stored: `store` is the default).
    body = {"model": "claude/haiku", "input": [ASK], "tools": [WEATHER_TOOL], "tool_choice": "auto", "stream": True}
    first = await responses(gw, body)
    assert first.status_code == 200, first.text
    done = json.loads([line for line in first.text.splitlines() if line.startswith("data: ")][-1][6:])
    reasoning_item, call = done["response"]["output"]
    assert reasoning_item["type"] == "reasoning" and reasoning_item["encrypted_content"]
    # Step 2, as the SDK sends it with store on: the reasoning by reference, the call whole, the tool's output.
    call_item = {k: call[k] for k in ("type", "call_id", "name", "arguments")}
    output = {"type": "function_call_output", "call_id": call["call_id"], "output": "sunny, 21 C"}
    second = await responses(
        gw, body | {"input": [ASK, {"type": "item_reference", "id": reasoning_item["id"]}, call_item, output]}
    )
    assert second.status_code == 200, second.text
    sent = fakes["claude"].requests[-1].body
    assert isinstance(sent, dict)
    assistant = sent["messages"][1]
    assert assistant["role"] == "assistant" and assistant["content"][0]["type"] == "thinking"
    assert assistant["content"][0]["signature"] == reasoning_item["encrypted_content"]  # the thinking, signed, back
    # An earlier answer's message by reference too (a later turn of a chat).
    message = await responses(gw, {"model": "alpha/m", "input": "Hello", "stream": False})
    [text_item] = message.json()["output"]
    later = [
        {"role": "user", "content": "Hello"},
        {"type": "item_reference", "id": text_item["id"]},
        {"role": "user", "content": "Again?"},
    ]
    again = await responses(gw, {"model": "alpha/m", "input": later, "stream": False})
    assert again.status_code == 200, again.text
    sent = fakes["alpha"].requests[-1].body
    assert isinstance(sent, dict)
    assert [m["role"] for m in sent["messages"]] == ["user", "assistant", "user"]
    assert sent["messages"][1]["content"] == text_item["content"][0]["text"]


async def test_an_item_reference_to_no_item_of_the_keys_own_is_a_404(gw: Gateway) -> None:
    kept = await responses(gw, {"model": "fake-chat", "input": "Hello", "stream": False})
    unkept = await responses(gw, {"model": "fake-chat", "input": "Hello", "stream": False, "store": False})
    [kept_item], [unkept_item] = kept.json()["output"], unkept.json()["output"]
    for key, item_id in ((LOCAL_ONLY, kept_item["id"]), (TEAM, unkept_item["id"]), (TEAM, "msg_nope")):
        body = {
            "model": "fake-chat",
            "input": [{"type": "item_reference", "id": item_id}, {"role": "user", "content": "x"}],
        }
        r = await responses(gw, body, key)
        assert r.status_code == 404 and r.json()["error"]["param"] == "input[0].id", r.text


# ------------------------------------------------------------------------------ context overflows, in Anthropic's words

# Claude Code's reading of Anthropic's 400 (it retries with max_tokens = limit - input - 1000, at least 3000).
OVERFLOW = re.compile(r"input length and `max_tokens` exceed context limit: (\d+) \+ (\d+) > (\d+)")


async def test_claude_code_reads_a_local_overflow_of_max_tokens_and_retries_with_what_fits(gw: Gateway) -> None:
    # Claude Code asks 32,000 output tokens of a model it doesn't know; the local model's context is 4,096.
    body = claude_code_body("fake-chat") | {"tools": [], "max_tokens": 32000}
    r = await post(gw, "/v1/messages", body)
    assert r.status_code == 400 and r.json()["error"]["type"] == "invalid_request_error", r.text
    found = OVERFLOW.search(r.json()["error"]["message"])
    assert found is not None, r.text
    prompt, asked, limit = (int(n) for n in found.groups())
    assert (asked, limit) == (32000, 4096) and 0 < prompt < limit
    again = await post(gw, "/v1/messages", body | {"max_tokens": limit - prompt - 1000})
    assert again.status_code == 200, again.text


async def test_a_prompt_over_every_routes_context_is_too_long_in_anthropics_words(gw: Gateway) -> None:
    body = claude_code_body("fake-chat") | {"tools": [], "max_tokens": 100}
    body["messages"][0]["content"][1]["text"] = "word " * 6000
    r = await post(gw, "/v1/messages", body)
    assert r.status_code == 400, r.text
    assert re.fullmatch(r"prompt is too long: \d+ tokens > 4096 maximum", r.json()["error"]["message"]), r.text
    async with httpx.AsyncClient(base_url=gw.url, timeout=20) as http:  # OpenAI's door: OpenAI's words
        chat = {"model": "fake-chat", "messages": [{"role": "user", "content": "word " * 6000}]}
        r = await http.post("/v1/chat/completions", json=chat, headers={"authorization": f"Bearer {TEAM}"})
    assert r.status_code == 400 and "maximum context length is 4096 tokens" in r.json()["error"]["message"]
