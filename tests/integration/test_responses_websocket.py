"""OpenAI's Responses API in WebSocket mode, through the official openai SDK's `responses.connect()`.

The app runs under uvicorn on a loopback port with its WebSocket implementation
(`loopback.serving(ws=...)`: an ASGI transport can't carry a WebSocket). Local
answers come from the fake engines of `conftest.py` (the chat fake parrots the
last user turn); keys, and a failure mid-stream, from the gateway over two fake
providers (`two_fakes`). Every event off the socket is held to the shared
OpenAPI spec: its own event schema, and the socket's `ResponsesServerEvent`.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import json
import logging
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import openai
import pytest
from fastapi import FastAPI
from fuzz_bodies import Models, encode, mutated, raw_bodies, responses_bodies
from http_checks import CHAT_MODEL, EVENT_SCHEMAS
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from loopback import serving
from openai.resources.responses.responses import AsyncResponsesConnection as Connection
from openai_schema import validate
from starlette.routing import WebSocketRoute
from two_fakes import OTHER_KEY, TEAM_KEY, gateway, heal
from two_fakes import fakes_fixture as fakes_fixture
from websockets.asyncio.client import ClientConnection
from websockets.asyncio.client import connect as raw_connect
from websockets.exceptions import ConnectionClosedOK, InvalidStatus

from orchestrator.api import build_app
from orchestrator.app import build_pipeline
from orchestrator.testing.engine import FakeEngine
from orchestrator.testing.provider import FakeProvider

WS = "websockets-sansio"  # uvicorn's implementation over the installed `websockets`, as Serve's uvicorn picks
ENDS = ("response.completed", "response.incomplete", "response.failed")


def sdk(url: str, api_key: str = "x") -> openai.AsyncOpenAI:
    """The official client for the gateway at `url` (close it: `async with`)."""
    return openai.AsyncOpenAI(api_key=api_key, base_url=f"{url}/v1", max_retries=0)


@contextlib.asynccontextmanager
async def connect(url: str, api_key: str = "x") -> AsyncIterator[Connection]:
    """`responses.connect()`: a WebSocket to the gateway's `/v1/responses`."""
    async with sdk(url, api_key) as client, client.responses.connect() as conn:
        yield conn


def check(event: dict[str, Any]) -> dict[str, Any]:
    """`event` held to the spec: the socket's error shape, or the stream event's own schema; and the union."""
    validate("ResponseWsError" if event["type"] == "error" else EVENT_SCHEMAS[event["type"]], event)
    validate("ResponsesServerEvent", event)
    return event


async def next_event(conn: Connection) -> dict[str, Any]:
    return check(json.loads(await asyncio.wait_for(conn.recv_bytes(), 10)))


async def answer(conn: Connection) -> list[dict[str, Any]]:
    """One answer's events: a response's, numbered in order, to its end; or a refusal's one `error` event."""
    events = [await next_event(conn)]
    while events[-1]["type"] not in ENDS and not (events[-1]["type"] == "error" and "status" in events[-1]):
        events.append(await next_event(conn))
    if events[0]["type"] != "error":
        assert [e["sequence_number"] for e in events] == list(range(len(events)))
    return events


def kinds(events: list[dict[str, Any]]) -> list[str]:
    return [e["type"] for e in events]


def text(events: list[dict[str, Any]]) -> str:
    return "".join(e["delta"] for e in events if e["type"] == "response.output_text.delta")


@pytest.fixture
async def url(app: FastAPI) -> AsyncIterator[str]:
    async with serving(app, ws=WS) as base:
        yield base


# ------------------------------------------------------------------------------ local (fake engines)


async def test_a_response_over_the_socket_is_a_streamed_posts_events(url: str) -> None:
    async with connect(url) as conn:
        await conn.response.create(model=CHAT_MODEL, input="one two three four")
        events = await answer(conn)
    async with httpx.AsyncClient(base_url=url) as http:
        r = await http.post("/v1/responses", json={"model": CHAT_MODEL, "input": "one two three four", "stream": True})
    posted = [json.loads(line.removeprefix("data: ")) for line in r.text.splitlines() if line.startswith("data: ")]
    assert kinds(events) == kinds(posted) and kinds(events)[0] == "response.created"
    assert text(events) == text(posted) == "one two three four"
    done = events[-1]["response"]
    assert done["status"] == "completed" and done["output"][0]["content"][0]["text"] == "one two three four"
    assert all("stream_id" not in e for e in events)  # no lane named, none echoed


async def test_two_turns_go_on_by_previous_response_id_over_one_socket(url: str, chat_engine: FakeEngine) -> None:
    async with connect(url) as conn:
        await conn.response.create(model=CHAT_MODEL, input="first words", store=False)  # as Codex asks
        first = (await answer(conn))[-1]["response"]
        await conn.response.create(model=CHAT_MODEL, input="second words", previous_response_id=first["id"])
        second = (await answer(conn))[-1]["response"]
        await conn.response.create(model=CHAT_MODEL, input="third", previous_response_id=second["id"], store=False)
        third = (await answer(conn))[-1]["response"]
    assert second["status"] == "completed" and second["previous_response_id"] == first["id"]
    seen = [m["content"] for m in chat_engine.generations[-1].request.get("messages", [])]
    assert seen == ["first words", "first words", "second words", "second words", "third"]
    assert third["previous_response_id"] == second["id"]
    async with sdk(url) as client:
        with pytest.raises(openai.NotFoundError):  # `store: false` kept nothing, over the socket as over a POST
            await client.responses.retrieve(first["id"])
        assert (await client.responses.retrieve(second["id"])).output_text == "second words"  # stored by default


async def test_a_chain_of_store_false_turns_is_the_sockets_own(url: str) -> None:
    async with connect(url) as conn:
        await conn.response.create(model=CHAT_MODEL, input="private", store=False)
        first = (await answer(conn))[-1]["response"]
    async with connect(url) as other:  # another connection: not stored, so not found
        await other.response.create(model=CHAT_MODEL, input="go on", previous_response_id=first["id"])
        [error] = await answer(other)
    assert error["status"] == 400 and error["error"]["param"] == "previous_response_id"
    assert error["error"]["code"] == "previous_response_not_found"


async def test_a_response_in_a_conversation_joins_it_as_a_posts_does(url: str, chat_engine: FakeEngine) -> None:
    async with sdk(url) as client:
        conv = await client.conversations.create(items=[{"role": "user", "content": "My name is Ada."}])
        async with connect(url) as conn:
            await conn.response.create(model=CHAT_MODEL, input="What is my name?", conversation=conv.id, store=False)
            events = await answer(conn)
        items = (await client.conversations.items.list(conv.id, order="asc")).data
    assert events[-1]["type"] == "response.completed" and events[-1]["response"]["conversation"]["id"] == conv.id
    assert [item.type for item in items] == ["message"] * 3  # the first, this input, this answer
    assert [m["content"] for m in chat_engine.generations[-1].request.get("messages", [])] == [
        "My name is Ada.",
        "What is my name?",
    ]


# A compaction item a client sealed itself, nested past any parser (Python's raised a RecursionError: the socket died).
DEEP = {"type": "compaction", "encrypted_content": "orch-cmp-v1." + base64.urlsafe_b64encode(b"[" * 100_000).decode()}
DEEP_PARAM = "input[0].encrypted_content"


async def test_bad_messages_get_an_error_event_and_the_socket_goes_on(url: str) -> None:
    async with connect(url) as conn:
        for raw, status, param in [
            ("not json", 400, None),
            ("[1, 2]", 400, None),
            ('{"model": "fake-chat"}', 400, "type"),
            ('{"type": "response.cancel"}', 400, "type"),
            ('{"type": "response.steer", "input": "x", "previous_response_id": "resp_1"}', 400, "type"),
            ('{"type": "response.create", "input": "no model"}', 400, "model"),
            ('{"type": "response.create", "model": "fake-chat", "input": "x", "stream_id": "a b"}', 400, "stream_id"),
            ('{"type": "response.create", "model": "fake-chat", "input": "x", "generate": "no"}', 400, "generate"),
            ('{"type": "response.create", "model": "fake-chat", "input": "x", "background": true}', 400, "background"),
            ('{"type": "response.create", "model": "no-such-model", "input": "x"}', 404, "model"),
            (json.dumps({"type": "response.create", "model": CHAT_MODEL, "input": [DEEP]}), 400, DEEP_PARAM),
        ]:
            await conn.send_raw(raw)
            [error] = await answer(conn)
            assert (error["status"], error["error"]["param"]) == (status, param), (raw, error)
            assert error["error"]["message"] and error["error"]["type"] == "invalid_request_error"
        await conn.send_raw('{"type": "response.processed", "response_id": "resp_1"}')  # Codex's ack: no answer
        await conn.response.create(model=CHAT_MODEL, input="still here")
        events = await answer(conn)
    assert text(events) == "still here" and events[-1]["type"] == "response.completed"


async def test_a_client_gone_mid_stream_stops_the_generation(url: str, chat_engine: FakeEngine) -> None:
    words = 60
    chat_engine.enqueue([" ".join(["tick"] * words)])
    chat_engine.token_delay = 0.05  # the whole reply would take 3 s
    async with connect(url) as conn:
        await conn.response.create(model=CHAT_MODEL, input="go", max_output_tokens=words, store=False)
        while (await next_event(conn))["type"] != "response.output_text.delta":
            pass
    [gen] = chat_engine.generations
    await asyncio.wait_for(gen.done.wait(), 2)
    assert gen.stopped_early, gen.outcome
    assert gen.batches < words


async def test_a_second_create_waits_for_the_first_and_lanes_go_at_once(url: str, chat_engine: FakeEngine) -> None:
    chat_engine.token_delay = 0.02
    async with connect(url) as conn:
        await conn.response.create(model=CHAT_MODEL, input="a b c d e")
        await conn.response.create(model=CHAT_MODEL, input="f g h")  # the same (default) lane: in its turn
        first, second = await answer(conn), await answer(conn)
        assert (text(first), text(second)) == ("a b c d e", "f g h")
        for lane, words in (("left", "l m n o p"), ("right", "r s t u v")):
            await conn.response.create(model=CHAT_MODEL, input=words, stream_id=lane)
        events: list[dict[str, Any]] = []
        while sum(e["type"] == "response.completed" for e in events) < 2:
            events.append(await next_event(conn))
    by_lane = {lane: [e for e in events if e["stream_id"] == lane] for lane in ("left", "right")}
    assert len(by_lane["left"]) + len(by_lane["right"]) == len(events)  # every event names its lane
    for lane, words in (("left", "l m n o p"), ("right", "r s t u v")):
        assert [e["sequence_number"] for e in by_lane[lane]] == list(range(len(by_lane[lane])))
        assert text(by_lane[lane]) == words
    started = [i for i, e in enumerate(events) if e["type"] == "response.created"]
    assert started[1] < events.index(by_lane["left"][-1])  # the second lane began before the first ended


async def test_past_sixteen_waiting_a_message_is_refused(url: str, chat_engine: FakeEngine) -> None:
    chat_engine.token_delay = 0.2
    async with connect(url) as conn:
        for _ in range(17):
            await conn.response.create(model=CHAT_MODEL, input="slow words here", store=False)
        while (event := await next_event(conn))["type"] != "error":
            pass
    assert event["status"] == 400 and event["error"]["code"] == "websocket_stream_limit_reached"


async def test_generate_false_warms_up_a_response_to_continue_from(url: str, chat_engine: FakeEngine) -> None:
    warm_up = {"type": "response.create", "model": CHAT_MODEL, "input": [], "generate": False, "store": False}
    async with connect(url) as conn:
        await conn.send(warm_up)  # type: ignore[arg-type]  # as Codex warms up: no input yet
        warm = await answer(conn)
        assert kinds(warm) == ["response.created", "response.in_progress", "response.completed"]
        assert warm[-1]["response"]["output"] == [] and chat_engine.generations == []  # no model was asked
        warm_id = warm[-1]["response"]["id"]
        await conn.response.create(model=CHAT_MODEL, input="now answer", previous_response_id=warm_id)
        events = await answer(conn)
    assert text(events) == "now answer" and events[-1]["response"]["previous_response_id"] == warm_id


async def test_a_message_over_the_body_limit_is_refused(chat_engine: FakeEngine) -> None:
    pipeline = await build_pipeline({"local": (chat_engine, chat_engine.info())})
    async with serving(build_app(pipeline, max_body_bytes=64 << 10), ws=WS) as base:
        async with connect(base) as conn:
            await conn.response.create(model=CHAT_MODEL, input="x" * (80 << 10))
            [error] = await answer(conn)
            assert error["status"] == 413 and error["error"]["code"] == "request_too_large"
            await conn.response.create(model=CHAT_MODEL, input="small")
            assert text(await answer(conn)) == "small"


async def test_a_socket_remembers_its_latest_responses_within_four_messages_worth() -> None:
    """32 lanes of full-size `store: false` messages kept 32 bodies' worth in the replica's memory for as long
    as the socket stayed open (and any number of sockets may be open): now four messages' worth, the oldest
    going first; a continuation of one forgotten is OpenAI's `previous_response_not_found`."""
    engine = FakeEngine(CHAT_MODEL, max_model_len=1024)  # the fake parrots each input: ~30 KB in, ~30 KB out
    pipeline = await build_pipeline({"local": (engine, engine.info())})
    async with serving(build_app(pipeline, max_body_bytes=64 << 10), ws=WS) as base, connect(base) as conn:
        ids = []
        for lane in range(6):
            words = f"lane{lane} " + ("w" * 999 + " ") * 30  # 30 KB in 31 words: a quick parrot
            create: Any = {"type": "response.create", "model": CHAT_MODEL, "input": words, "store": False}
            await conn.send({**create, "stream_id": f"l{lane}"})
            ids.append((await answer(conn))[-1]["response"]["id"])
        found = []
        for response_id in ids:
            await conn.response.create(model=CHAT_MODEL, input="go on", store=False, previous_response_id=response_id)
            events = await answer(conn)
            found.append(events[-1]["type"] == "response.completed")
            if not found[-1]:
                assert events[0]["error"]["code"] == "previous_response_not_found", events
    assert found[-1] and not found[0] and sum(found) <= 4, found


async def test_a_socket_lives_its_hour_then_refuses_new_work_and_closes_once_done(
    app: FastAPI, chat_engine: FakeEngine
) -> None:
    """An idle socket held one of the replica's ongoing requests (Serve's `max_ongoing_requests`) and its
    memory for as long as its client kept it open: one key's idle sockets could take them all. Now a socket
    lives as OpenAI's do (an hour; here half a second): past it a message is refused with
    `websocket_connection_limit_reached` (clients reconnect on it), the answer in progress goes on to its end,
    and then the socket is closed."""
    [route] = [r for r in app.router.routes if isinstance(r, WebSocketRoute)]
    route.app.max_age_s = 0.5
    async with serving(app, ws=WS) as base:
        ws_url = base.replace("http", "ws", 1) + "/v1/responses"
        async with raw_connect(ws_url) as idle:
            await asyncio.wait_for(idle.wait_closed(), 5)
            assert idle.close_code == 1000
        chat_engine.token_delay = 0.1  # ten words: a second
        async with raw_connect(ws_url) as busy:
            create = {"type": "response.create", "model": CHAT_MODEL}
            await busy.send(json.dumps({**create, "input": "a b c d e f g h i j"}))
            await asyncio.sleep(0.7)
            await busy.send(json.dumps({**create, "input": "more", "stream_id": "x"}))
            events = []
            with contextlib.suppress(ConnectionClosedOK):
                while True:
                    events.append(check(json.loads(await asyncio.wait_for(busy.recv(), 5))))
            assert busy.close_code == 1000
    [refused] = [e for e in events if e["type"] == "error"]
    assert refused["error"]["code"] == "websocket_connection_limit_reached" and refused["stream_id"] == "x"
    assert events[-1]["type"] == "response.completed" and text(events) == "a b c d e f g h i j"


async def test_socket_responses_are_accounted_as_responses(url: str) -> None:
    async with connect(url) as conn:
        for words in ("one", "two"):
            await conn.response.create(model=CHAT_MODEL, input=words)
            await answer(conn)
    async with httpx.AsyncClient(base_url=url) as http:
        metrics = (await http.get("/metrics")).text
    [line] = [m for m in metrics.splitlines() if m.startswith("orchestrator_requests_total{") and 'status="200"' in m]
    assert 'endpoint="/v1/responses"' in line and line.endswith(" 2.0")


# ------------------------------------------------------------------------------ keys (fake providers)


@pytest.fixture
async def keyed(fakes: dict[str, FakeProvider], tmp_path: Path) -> AsyncIterator[str]:
    heal(fakes)
    async with gateway(fakes, tmp_path) as app, serving(app, ws=WS) as base:
        yield base


async def test_a_bad_key_is_refused_at_the_handshake(keyed: str) -> None:
    with pytest.raises(InvalidStatus) as wrong:
        async with connect(keyed, "sk-orch-not-a-key"):
            pass
    with pytest.raises(InvalidStatus) as missing:  # no Authorization at all (the SDK always sends one)
        async with raw_connect(keyed.replace("http", "ws", 1) + "/v1/responses"):
            pass
    for refused in (wrong.value, missing.value):
        assert refused.response.status_code == 401
        body = json.loads(refused.response.body or b"")
        validate("ErrorResponse", body)
        assert body["error"]["code"] == "invalid_api_key" and body["error"]["message"]


async def test_one_keys_open_sockets_are_capped_and_never_shut_out_another_key(
    fakes: dict[str, FakeProvider], tmp_path: Path
) -> None:
    """Each open socket holds one of the replica's places (`gateway.max_ongoing_requests`) for up to an hour,
    working or idle: a key may hold a quarter of them (here 1 of 4); past that the handshake is a 429, and
    another key's socket opens as ever."""
    heal(fakes)
    async with gateway(fakes, tmp_path, replica={"max_ongoing_requests": 4}) as app, serving(app, ws=WS) as url:
        async with connect(url, TEAM_KEY):
            with pytest.raises(InvalidStatus) as refused:
                async with connect(url, TEAM_KEY):
                    pass
            assert refused.value.response.status_code == 429
            body = json.loads(refused.value.response.body or b"")
            validate("ErrorResponse", body)
            assert "WebSockets open" in body["error"]["message"]
            async with connect(url, OTHER_KEY) as other:
                await other.response.create(model="alpha/m", input="hi")
                assert (await answer(other))[-1]["type"] == "response.completed"
        async with connect(url, TEAM_KEY) as again:  # the first one closed: its place is free
            await again.response.create(model="alpha/m", input="hi")
            assert (await answer(again))[-1]["type"] == "response.completed"


async def test_a_response_made_with_generate_false_is_one_of_the_keys_requests_per_minute(
    fakes: dict[str, FakeProvider], tmp_path: Path
) -> None:
    """No model is asked, but the gateway makes, keeps and sends it: over the key's rpm it is refused as a
    POST is (the `error` event with a 429); it takes no tokens of the minute (a tpm of 1 stays free for a turn)."""
    heal(fakes)
    warm_up = {"type": "response.create", "model": "alpha/m", "input": [], "generate": False, "store": False}
    async with (
        gateway(fakes, tmp_path, limits={"team": {"rpm": 3, "tpm": 1}}) as app,
        serving(app, ws=WS) as url,
        connect(url, TEAM_KEY) as conn,
    ):
        for _ in range(2):
            await conn.send(warm_up)  # type: ignore[arg-type]
            assert (await answer(conn))[-1]["type"] == "response.completed"
        await conn.response.create(model="alpha/m", input="hi", store=False)
        assert (await answer(conn))[-1]["type"] == "response.completed"
        await conn.send(warm_up)  # type: ignore[arg-type]
        [error] = await answer(conn)
        assert error["status"] == 429 and error["error"]["type"] == "requests"
        assert error["error"]["message"].startswith("Rate limit reached for requests per min (RPM): Limit 3")
        async with connect(url, OTHER_KEY) as other:
            await other.send(warm_up)  # type: ignore[arg-type]
            assert (await answer(other))[-1]["type"] == "response.completed"


async def test_one_key_never_sees_anothers_responses(keyed: str) -> None:
    async with connect(keyed, TEAM_KEY) as team:
        await team.response.create(model="alpha/m", input="a secret")
        mine = (await answer(team))[-1]["response"]
        async with connect(keyed, OTHER_KEY) as other:
            await other.response.create(model="alpha/m", input="go on", previous_response_id=mine["id"])
            [error] = await answer(other)
        assert error["status"] == 400 and error["error"]["code"] == "previous_response_not_found"
        await team.response.create(model="alpha/m", input="go on", previous_response_id=mine["id"])
        assert (await answer(team))[-1]["type"] == "response.completed"
    async with sdk(keyed, OTHER_KEY) as other_client, sdk(keyed, TEAM_KEY) as team_client:
        with pytest.raises(openai.NotFoundError):
            await other_client.responses.retrieve(mine["id"])
        assert (await team_client.responses.retrieve(mine["id"])).id == mine["id"]


async def test_a_failure_mid_stream_ends_with_errors_and_the_socket_goes_on(
    keyed: str, fakes: dict[str, FakeProvider]
) -> None:
    fakes["alpha"].set_fault("stream_error", stall_after=2)
    async with connect(keyed, TEAM_KEY) as conn:
        await conn.response.create(model="alpha/m", input="one two three four five")
        events = await answer(conn)
        assert "response.output_text.delta" in kinds(events)
        assert kinds(events)[-2:] == ["error", "response.failed"]
        assert "status" not in events[-2] and events[-2]["error"]["message"]  # the stream's own: no HTTP status
        assert events[-1]["response"]["status"] == "failed"
        fakes["alpha"].clear_fault()
        await conn.response.create(model="alpha/m", input="again")
        assert (await answer(conn))[-1]["type"] == "response.completed"


async def test_a_compaction_whose_client_leaves_is_billed_for_what_the_route_read_and_made(
    keyed: str, fakes: dict[str, FakeProvider], caplog: pytest.LogCaptureFixture
) -> None:
    """A compaction is asked whole, its whole conversation read first. A client that closed its socket while
    the summary was being written (or a POST's, behind Serve) left what the provider had read and made, and
    bills, to nobody: the request's row said 0 tokens and $0, and no budget saw it (and a 500, as if the gateway
    had failed)."""
    caplog.set_level(logging.INFO, logger="orchestrator.requests")
    alpha = fakes["alpha"]
    alpha.set_fault("stall", stall_after=2)  # two words of the summary, then nothing until the client leaves
    history = [{"role": "user", "content": "Plan a long trip. " * 40}, {"type": "compaction_trigger"}]
    async with connect(keyed, TEAM_KEY) as conn:
        await conn.response.create(model="alpha/m", input=history, store=False)  # type: ignore[arg-type]
        for _ in range(200):
            if alpha.requests and alpha.requests[-1].events_sent >= 2:
                break
            await asyncio.sleep(0.01)
    for _ in range(200):
        if alpha.requests[-1].outcome == "disconnected":
            break
        await asyncio.sleep(0.01)
    assert alpha.requests[-1].outcome == "disconnected"  # the socket's close stopped the route's work
    await asyncio.sleep(0.1)  # the answer's tab is closed as its task ends
    [row] = [json.loads(r.getMessage()) for r in caplog.records if r.name == "orchestrator.requests"]
    assert row["key_id"] == "team" and row["complete"] is False
    assert row["status"] == 499  # its client left: not a 500, which says the gateway failed
    assert row["prompt_tokens"] > 40 * 4 and row["completion_tokens"] >= 2  # the conversation, the words so far


# ------------------------------------------------------------------------------ fuzzed messages

FUZZ_MODELS = Models(chat=[CHAT_MODEL], completion=[CHAT_MODEL], embedding=["fake-embed"])
ENVELOPES = st.fixed_dictionaries(
    {},
    optional={
        "stream_id": st.sampled_from(["a", "lane.2", "", "bad id", "x" * 300, 5]),
        "generate": st.sampled_from([True, False, "no", None]),
    },
)


@dataclass
class FuzzSocket:
    """One socket to the app, on an event loop of its own (hypothesis runs examples synchronously)."""

    loop: asyncio.AbstractEventLoop
    ws: ClientConnection

    def exchange(self, message: bytes, binary: bool) -> list[dict[str, Any]]:
        async def go() -> list[dict[str, Any]]:
            await self.ws.send(message if binary else message.decode())
            events = [check(json.loads(await asyncio.wait_for(self.ws.recv(), 10)))]
            while events[-1]["type"] not in ENDS and not (events[-1]["type"] == "error" and "status" in events[-1]):
                events.append(check(json.loads(await asyncio.wait_for(self.ws.recv(), 10))))
            return events

        return self.loop.run_until_complete(go())


@pytest.fixture(scope="module")
def fuzz_socket() -> Iterator[FuzzSocket]:
    loop = asyncio.new_event_loop()
    stack = contextlib.AsyncExitStack()

    async def start() -> ClientConnection:
        engine = FakeEngine(CHAT_MODEL, max_model_len=64)
        app = build_app(await build_pipeline({"local": (engine, engine.info())}))
        base = await stack.enter_async_context(serving(app, ws=WS))
        return await stack.enter_async_context(raw_connect(base.replace("http", "ws", 1) + "/v1/responses"))

    try:
        yield FuzzSocket(loop, loop.run_until_complete(start()))
    finally:
        loop.run_until_complete(stack.aclose())
        loop.close()


@settings(
    max_examples=80,
    deadline=None,
    derandomize=True,
    database=None,
    print_blob=False,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large, HealthCheck.function_scoped_fixture],
)
@given(
    message=st.one_of(
        st.builds(
            lambda body, envelope: (encode({"type": "response.create", **envelope, **body}), False),
            mutated(responses_bodies(FUZZ_MODELS)),
            ENVELOPES,
        ),
        st.builds(lambda raw: (raw, True), raw_bodies()),
    )
)
@pytest.mark.filterwarnings("ignore:Generating overly large repr:hypothesis.errors.HypothesisWarning")
def test_no_message_gets_a_5xx_or_a_hang(fuzz_socket: FuzzSocket, message: tuple[bytes, bool]) -> None:
    events = fuzz_socket.exchange(*message)
    refused = events[0] if events[0]["type"] == "error" else None
    assert refused is None or refused["status"] < 500, refused
    assert refused is not None or events[0]["type"] == "response.created", events[0]


async def test_a_compaction_trigger_over_the_socket_answers_with_one_compaction_item() -> None:
    """Codex CLI's remote compaction over its WebSocket: the history and a `compaction_trigger`, then the next
    turn with the compaction item in place of what it replaced."""
    chat_engine = FakeEngine(CHAT_MODEL, max_model_len=1024)  # room for the request for a summary
    app = build_app(await build_pipeline({"local": (chat_engine, chat_engine.info())}))
    history: Any = [
        {"role": "user", "content": "Plan a trip."},
        {"role": "assistant", "content": "Where to?"},
        {"role": "user", "content": "Rome."},
    ]
    chat_engine.enqueue(["Trip to Rome."])
    async with serving(app, ws=WS) as url, connect(url) as conn:
        await conn.response.create(model=CHAT_MODEL, input=[*history, {"type": "compaction_trigger"}], store=False)
        events = await answer(conn)
        assert kinds(events) == [
            "response.created",
            "response.in_progress",
            "response.output_item.added",
            "response.output_item.done",
            "response.completed",
        ]
        item = events[-1]["response"]["output"][0]
        assert item["type"] == "compaction"
        await conn.response.create(model=CHAT_MODEL, input=[*history, item, {"role": "user", "content": "Go on."}])
        assert text(await answer(conn)) == "Go on."
    seen = json.dumps(chat_engine.generations[-1].request["messages"])
    assert "Trip to Rome." in seen and "Where to?" not in seen
