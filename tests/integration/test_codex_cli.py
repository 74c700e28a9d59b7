"""OpenAI's Codex CLI (the `@openai/codex` npm package's binary) against the gateway, as its users run it.

`codex exec` with the gateway as its OpenAI base URL: Codex's built-in `openai` provider (so its
OpenAI-only paths are on: the Responses WebSocket first, Codex's own headers and items) and a custom
provider with `wire_api = "responses"` (HTTP and SSE). The gateway serves on a loopback port with
uvicorn's WebSocket implementation, over the fake OpenAI-compatible provider of `two_fakes` ("alpha"):
the fake calls the first tool a request offers and then says what the tool returned, so one Codex task
is a whole agent loop: a Responses request with Codex's tools, a function call that Codex runs in its
sandbox, the call's output sent back, and the answer. A `resume` sends the thread's history back as
Codex's own items. The binary comes from `make test` (`.venv/codex`, pinned); `$CODEX` points at another.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import signal
from asyncio.subprocess import Process
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from loopback import serving
from two_fakes import TEAM_KEY, gateway, heal
from two_fakes import fakes_fixture as fakes_fixture

from orchestrator.frontdoors.responses.compaction import PROMPT, SUMMARY_HEADER
from orchestrator.testing.openai_wire import chat_ask
from orchestrator.testing.provider import FakeProvider
from orchestrator.testing.replies import count_words

ROOT = Path(__file__).resolve().parents[2]
WS = "websockets-sansio"  # uvicorn's implementation over the installed `websockets`, as Serve's uvicorn picks
MODEL = "alpha/m"
TIMEOUT_S = 60
CONNECTED = "successfully connected to Responses WebSocket"


def codex_binary() -> str:
    found = os.environ.get("CODEX") or str(ROOT / ".venv/codex/node_modules/.bin/codex")
    if not Path(found).exists():
        pytest.skip("no Codex CLI here: `make test` installs it with npm into .venv/codex (or set $CODEX)")
    return found


@dataclass
class Run:
    code: int
    events: list[dict[str, Any]]
    log: str

    def items(self, kind: str) -> list[dict[str, Any]]:
        return [e["item"] for e in self.events if e["type"] == "item.completed" and e["item"]["type"] == kind]


def command(base: str, *args: str, http: bool = False, model: str = MODEL) -> list[str]:
    """`codex exec --json` against the gateway at `base`: its built-in OpenAI provider pointed there, or
    (`http`) a provider of the user's own with `wire_api = "responses"` (HTTP and SSE, no WebSocket)."""
    if http:
        provider = (
            f'model_providers.gw={{name="gw",base_url="{base}/v1",wire_api="responses",env_key="OPENAI_API_KEY"}}'
        )
        chosen = ["-c", provider, "-c", "model_provider=gw"]
    else:
        chosen = ["-c", f'openai_base_url="{base}/v1"']
    argv = [codex_binary(), "exec", "--json", "--skip-git-repo-check", "-m", model, *chosen]
    return [*argv, "-c", "check_for_update_on_startup=false", *args]


def environment(home: Path, key: str = TEAM_KEY) -> dict[str, str]:
    return {
        "PATH": os.environ.get("PATH", "/usr/bin:/bin"),
        "HOME": str(home),
        "CODEX_HOME": str(home),
        "OPENAI_API_KEY": key,  # what a provider of the user's own sends (`env_key`)
        "RUST_LOG": "codex_api=info",  # its transport, in the log
    }


async def login(home: Path, work: Path) -> None:
    """The built-in provider's key, given as its users give it: `codex login --with-api-key`."""
    if not (home / "auth.json").exists():
        code, _, err = await _run(
            [codex_binary(), "login", "--with-api-key"], work, environment(home), TEAM_KEY.encode()
        )
        assert code == 0, err


async def codex(
    base: str, home: Path, work: Path, *args: str, http: bool = False, key: str = TEAM_KEY, model: str = MODEL
) -> Run:
    """One `codex exec` to its end: its JSONL events and its log."""
    if not http:
        await login(home, work)
    code, out, err = await _run(command(base, *args, http=http, model=model), work, environment(home, key))
    events = [json.loads(line) for line in out.splitlines() if line.startswith("{")]
    return Run(code, events, err)


async def _spawn(argv: list[str], cwd: Path, env: dict[str, str], *, piped: bool, stdin: bool = False) -> Process:
    pipe = asyncio.subprocess.PIPE if piped else asyncio.subprocess.DEVNULL
    return await asyncio.create_subprocess_exec(
        *argv,
        cwd=cwd,
        env=env,
        stdin=asyncio.subprocess.PIPE if stdin else asyncio.subprocess.DEVNULL,
        stdout=pipe,
        stderr=pipe,
        start_new_session=True,  # its sandboxed commands with it, when it has to be stopped
    )


def _stop(proc: Process) -> None:
    with contextlib.suppress(ProcessLookupError):
        os.killpg(proc.pid, signal.SIGKILL)


async def _run(argv: list[str], cwd: Path, env: dict[str, str], stdin: bytes | None = None) -> tuple[int, str, str]:
    proc = await _spawn(argv, cwd, env, piped=True, stdin=stdin is not None)
    try:
        out, err = await asyncio.wait_for(proc.communicate(stdin), TIMEOUT_S)
    except TimeoutError:
        _stop(proc)
        out, err = await proc.communicate()
        pytest.fail(f"codex {argv[1]} did not finish in {TIMEOUT_S} s:\n{err.decode()[-3000:]}")
    return proc.returncode or 0, out.decode(), err.decode()


@contextlib.asynccontextmanager
async def running(base: str, home: Path, work: Path, *args: str) -> AsyncIterator[None]:
    """`codex exec` at work while the block runs, then stopped, its commands with it."""
    await login(home, work)
    proc = await _spawn(command(base, *args), work, environment(home), piped=False)
    try:
        yield
    finally:
        _stop(proc)
        await proc.wait()


@pytest.fixture
def alpha(fakes: dict[str, FakeProvider]) -> FakeProvider:
    heal(fakes)
    return fakes["alpha"]


@pytest.fixture
def dirs(tmp_path: Path) -> tuple[Path, Path]:
    home, work = tmp_path / "codex-home", tmp_path / "work"
    home.mkdir()
    work.mkdir()
    (work / "notes.txt").write_text("hello\n")
    return home, work


def text(message: dict[str, Any]) -> str:
    content = message["content"]
    return content if isinstance(content, str) else "".join(part.get("text", "") for part in content)


def tool_round(alpha: FakeProvider, run: Run) -> tuple[dict[str, Any], dict[str, Any]]:
    """The task done as one tool round: Codex ran the fake's call and the fake answered about its output."""
    assert run.code == 0, run.log[-3000:]
    first, second = _last_two(alpha)
    names = [t["function"]["name"] for t in first["tools"]]
    assert "exec_command" in names  # Codex's shell tool reached the route as a function
    (command,) = run.items("command_execution")
    assert command["status"] in ("completed", "failed") and command["exit_code"] is not None
    *_, call = [m for m in second["messages"] if m["role"] == "assistant" and m.get("tool_calls")]
    *_, result = [m for m in second["messages"] if m["role"] == "tool"]
    assert result["tool_call_id"] == call["tool_calls"][0]["id"]  # Codex's output matched to its call
    (message,) = run.items("agent_message")
    assert message["text"].startswith("The tool returned:")  # the fake's answer about the output, relayed
    assert "Process exited with code" in message["text"]  # Codex's own output text reached the route
    (done,) = [e for e in run.events if e["type"] == "turn.completed"]
    assert done["usage"]["input_tokens"] > 0 and done["usage"]["output_tokens"] > 0
    return first, second


def _last_two(alpha: FakeProvider) -> tuple[dict[str, Any], dict[str, Any]]:
    chats = [r.body for r in alpha.requests if r.path == "/v1/chat/completions"]
    assert len(chats) == 2, [c["messages"][-1] for c in chats]
    return chats[0], chats[1]


async def test_codex_runs_a_tool_round_over_the_websocket(
    fakes: dict[str, FakeProvider], alpha: FakeProvider, dirs: tuple[Path, Path], tmp_path: Path
) -> None:
    home, work = dirs
    async with gateway(fakes, tmp_path) as app, serving(app, ws=WS) as base:
        run = await codex(base, home, work, "list the files here")
    tool_round(alpha, run)
    assert CONNECTED in run.log  # Codex's first choice, the Responses WebSocket, was served
    assert "Falling back from WebSockets" not in run.log


async def test_codex_with_a_gpt5_model_name_gets_its_own_tools(
    fakes: dict[str, FakeProvider], alpha: FakeProvider, dirs: tuple[Path, Path], tmp_path: Path
) -> None:
    """A gateway alias named as Codex's own models are (`gpt-5.5` here, over the fake): Codex sends what it
    sends OpenAI for them, its `apply_patch` a custom tool, a client-run `tool_search` for its MCP tools,
    web search, reasoning and verbosity; each reaches the route as what a chat route can take."""
    home, work = dirs
    async with (
        gateway(fakes, tmp_path, models={"gpt-5.5": {"routes": ["alpha/m"]}}) as app,
        serving(app, ws=WS) as base,
    ):
        run = await codex(base, home, work, "list the files here", model="gpt-5.5")
    first, _ = tool_round(alpha, run)
    tools = {t["function"]["name"]: t["function"] for t in first["tools"]}
    assert {"exec_command", "apply_patch", "tool_search"} <= set(tools)
    assert list(tools["apply_patch"]["parameters"]["properties"]) == ["input"]  # the custom tool's one string
    assert tools["tool_search"]["parameters"]["required"] == ["query"]
    assert "web_search" not in tools  # offered by Codex, left out: no route here searches the web
    assert first["reasoning_effort"] == "medium"


async def test_codex_runs_a_tool_round_over_http(
    fakes: dict[str, FakeProvider], alpha: FakeProvider, dirs: tuple[Path, Path], tmp_path: Path
) -> None:
    home, work = dirs
    async with gateway(fakes, tmp_path) as app, serving(app, ws=WS) as base:
        run = await codex(base, home, work, "list the files here", http=True)
    tool_round(alpha, run)
    assert CONNECTED not in run.log


async def test_codex_resumes_a_thread_with_its_history(
    fakes: dict[str, FakeProvider], alpha: FakeProvider, dirs: tuple[Path, Path], tmp_path: Path
) -> None:
    """A second turn in a new process: Codex sends the first turn's items back (its message, the function
    call and its output, the answer); the route reads them as the conversation they were."""
    home, work = dirs
    async with gateway(fakes, tmp_path) as app, serving(app, ws=WS) as base:
        first = await codex(base, home, work, "list the files here")
        assert first.code == 0, first.log[-3000:]
        turn_one = [r.body for r in alpha.requests][-1]["messages"]
        alpha.reset_stats()
        again = await codex(base, home, work, "resume", "--last", "and now read notes.txt")
    _, second = tool_round(alpha, again)
    asked = [r.body for r in alpha.requests][0]["messages"]
    said = [m for m in asked if m["role"] in ("user", "assistant", "tool")]
    before = [m for m in turn_one if m["role"] in ("user", "assistant", "tool")]
    assert said[: len(before)] == before  # turn one as the route saw it, in order
    (answer,) = first.items("agent_message")
    assert said[len(before)] == {"role": "assistant", "content": answer["text"]}
    assert said[-1]["role"] == "user" and "and now read notes.txt" in json.dumps(said[-1]["content"])


async def test_codex_compacts_its_thread_through_the_gateway(
    fakes: dict[str, FakeProvider], alpha: FakeProvider, dirs: tuple[Path, Path], tmp_path: Path
) -> None:
    """Past its `model_auto_compact_token_limit` Codex compacts (remotely, as it does with OpenAI): the
    route is asked for a summary of the whole thread, and Codex's next request carries the summary in
    place of what it replaced, the user's messages kept. (The fake then calls a tool again, as it does
    whenever no tool result ends a request, so each tool round crosses the limit anew: Codex is stopped
    after the first compaction.)"""
    home, work = dirs
    async with gateway(fakes, tmp_path) as app, serving(app, ws=WS) as base:
        first = await codex(base, home, work, "list the files here")
        assert first.code == 0, first.log[-3000:]
        last = alpha.requests[-1].body
        turn_one = last["messages"]
        (answer,) = first.items("agent_message")
        total = count_words(chat_ask(last).texts) + count_words([answer["text"]])
        alpha.reset_stats()
        limit = f"model_auto_compact_token_limit={total}"  # turn one's size: crossed before turn two
        async with running(base, home, work, "-c", limit, "resume", "--last", "and now read notes.txt"):
            for _ in range(TIMEOUT_S * 10):
                if len(alpha.requests) >= 2:
                    break
                await asyncio.sleep(0.1)
    asked, after = (r.body for r in alpha.requests[:2])
    said = [m for m in turn_one if m["role"] in ("user", "assistant", "tool")]
    assert asked["tool_choice"] == "none"  # a summary, not a tool call
    assert asked["messages"][-1] == {"role": "user", "content": PROMPT}
    assert [m for m in asked["messages"] if m["role"] in ("user", "assistant", "tool")][: len(said)] == said
    summary = SUMMARY_HEADER + "It is sunny."  # the fake's summary, sealed, sent back by Codex, read in its place
    assert [m for m in after["messages"] if m["role"] == "user" and summary in text(m)]
    assert not any(m["role"] in ("assistant", "tool") for m in after["messages"])  # turn one's round replaced
    users = [text(m) for m in after["messages"] if m["role"] == "user"]
    assert any("list the files here" in u for u in users) and "and now read notes.txt" in users[-1]


async def test_codex_with_a_wrong_key_is_told_so(
    fakes: dict[str, FakeProvider], alpha: FakeProvider, dirs: tuple[Path, Path], tmp_path: Path
) -> None:
    """The gateway's 401 is what Codex shows (it retries a 401 five times, as it does OpenAI's own), the
    key nowhere in it, and no route is asked."""
    home, work = dirs
    wrong = "sk-orch-nobody-CCCCCCCCCCCCCCCCCCCCCCCC"
    async with gateway(fakes, tmp_path) as app, serving(app, ws=WS) as base:
        run = await codex(base, home, work, "list the files here", http=True, key=wrong)
    assert run.code != 0
    (failed,) = [e for e in run.events if e["type"] == "turn.failed"]
    assert "401 Unauthorized: Incorrect API key provided." in failed["error"]["message"]
    assert wrong not in json.dumps(run.events) and wrong[-12:] not in run.log
    assert alpha.requests == []
