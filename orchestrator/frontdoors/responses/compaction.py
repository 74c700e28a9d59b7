"""Compaction: a conversation's earlier turns as a summary the next turns carry instead of them.

OpenAI's `POST /v1/responses/compact` answers a conversation with all its user
messages and one `compaction` item, whose `encrypted_content` stands for the
rest (the assistant's turns, its tool calls and their results) from then on:
the client sends that output, plus its next turns, instead of the whole history
(Codex CLI does so when its context fills, on every provider it calls `openai`).
Here the summary is the route's model's own, asked for with `PROMPT` after the
conversation (`asking_for_summary`: by `compact_door`, or by a request whose
input ends with a `compaction_trigger`), and the item carries it sealed
(`compaction_item`, `seal`): its text, not encrypted, behind a prefix that
says it is this gateway's, so any replica reads it back, after a restart too,
and no store holds it (nor can another key's request find it). With it go the
tools the conversation's tool searches had loaded (`tool_search.carried`): the
searches are among the turns it replaces, and what they loaded stays offered
(checked as a search's output is, `wire.CompactionItem`). It says nothing the
client couldn't send as a message and a search's output: a client that crafts
one only sends itself those. Sent back, the item is a user message with the
summary (`compaction_messages`), where it stands in the conversation, and what
it replaced is sent no more (`compacted`). Another service's item (OpenAI's own
are encrypted) can't be read here: a 400 that says so.

A server-side compaction's item (`context_management`) carries the user's
messages it stood among too (`seal`'s `messages`), as OpenAI's does: OpenAI
tells clients they may drop every item before the latest compaction, and one
that does so loses nothing. Past such an item a route reads the `developer` and
`system` messages before it, then the user's messages it carries and its
summary (`compaction_messages`).

One payload, read by one function (`unseal`, a `Sealed`): the summary, and
where sealed, the user's messages and the loaded tools; anything in it that
can't be read is the one `DAMAGED` error.
"""

from __future__ import annotations

import base64
import binascii
import json
import re
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import pydantic_core

from orchestrator.errors import UpstreamError
from orchestrator.frontdoors.responses.ids import new_id
from orchestrator.protocol import ChatCompletion

Json = dict[str, Any]

SEALED = "orch-cmp-v1."  # what begins this gateway's `encrypted_content`
DAMAGED = "this compaction item's 'encrypted_content' is damaged: send it as it was given"

PROMPT = (
    "Stop here and compact the conversation so far: it is about to be replaced by your summary of it, "
    "and the user's own messages, which are kept as they are. Write the summary for whoever continues "
    "the work from it, with nothing else to go on: the task and what the user asked for, the decisions "
    "made and why, what was done (the files, commands and tool results that matter, with the exact names, "
    "paths and values), where things stand now, what is left and what to do next. Keep every fact that "
    "is needed to continue; leave out what isn't. Write notes, not a reply to the user, and call no tools."
)

SUMMARY_HEADER = "[A summary of the conversation before this point, which was compacted to save context:]\n\n"

_SURROGATE = re.compile("[\ud800-\udfff]")  # in a `str`, a surrogate is always a lone one


@dataclass(frozen=True)
class Sealed:
    """What a compaction item carries: the summary; (a server-side compaction's) the user's messages it stood
    among, as chat messages; and the tools the searches it replaced had loaded, as sealed (a client's own are
    checked as a search's output is by the item's reader, `wire.CompactionItem`)."""

    summary: str
    messages: list[Json] | None = None
    tools: list[Any] = field(default_factory=list)


def seal(summary: str, *, messages: list[Json] | None = None, tools: Sequence[Json] = ()) -> str:
    """The `encrypted_content` of a compaction item that carries `summary` (and the user's `messages`, chat
    messages, where it stands for them too; and the `tools` a search had loaded, as a request has them: they
    were read from one). A lone surrogate (a model's broken output) is U+FFFD: no route could be sent one, and
    the item would not read back (`unseal`)."""
    payload: Json = {"summary": summary}
    if messages is not None:
        payload["messages"] = messages
    if tools:
        payload["tools"] = list(tools)
    text = _SURROGATE.sub("\ufffd", json.dumps(payload, ensure_ascii=False))  # not ASCII: a surrogate stays one
    return SEALED + base64.urlsafe_b64encode(text.encode()).decode("ascii")


def unseal(content: str) -> Sealed:
    """What a compaction item's `encrypted_content` carries; a `ValueError` that says why not.
    Read as the request body is (`pydantic_core`): a client may seal anything, and Python's own parser let
    a payload nested 100,000 deep raise a `RecursionError` (a 500) and a lone surrogate through (which no
    route can be sent: a 500 later)."""
    if not content.startswith(SEALED):
        raise ValueError(
            "this compaction item was not made by this gateway (its 'encrypted_content' is another "
            "service's, which only that service can read); send the conversation's items instead, or "
            "compact them here with POST /v1/responses/compact"
        )
    try:
        payload: Any = pydantic_core.from_json(base64.urlsafe_b64decode(content[len(SEALED) :].encode("ascii")))
    except (ValueError, binascii.Error, UnicodeError):  # bad base64, JSON, UTF-8, nesting or a lone surrogate
        payload = None
    summary = payload.get("summary") if isinstance(payload, dict) else None
    if not isinstance(summary, str):
        raise _damaged()
    carried, tools = payload.get("messages"), payload.get("tools", [])
    if not isinstance(tools, list):
        raise _damaged()
    return Sealed(summary, None if carried is None else _user_messages(carried), tools)


def _damaged() -> ValueError:
    return ValueError(DAMAGED)


def _user_messages(value: Any) -> list[Json]:
    """The user's messages an item carries, as chat messages of text and image parts, made anew (a client may
    seal anything: what reaches a route is only ever these); a `ValueError` for anything else."""
    if not isinstance(value, list):
        raise _damaged()
    out: list[Json] = []
    for message in value:
        content = message.get("content") if isinstance(message, dict) and message.get("role") == "user" else None
        if not isinstance(content, list):
            raise _damaged()
        out.append({"role": "user", "content": [_part(p) for p in content]})
    return out


def _part(part: Any) -> Json:
    if isinstance(part, dict) and part.get("type") == "text" and isinstance(part.get("text"), str):
        return {"type": "text", "text": part["text"]}
    image = part.get("image_url") if isinstance(part, dict) and part.get("type") == "image_url" else None
    if isinstance(image, dict) and isinstance(image.get("url"), str) and isinstance(image.get("detail", ""), str):
        return {"type": "image_url", "image_url": {"url": image["url"], "detail": image.get("detail", "auto")}}
    raise _damaged()


def compaction_messages(content: str) -> list[Json]:
    """A compaction item sent back, as the chat messages that stand in its place: the user's messages it
    carries (a server-side compaction's), then its summary."""
    sealed = unseal(content)
    return [*(sealed.messages or []), _summary(sealed.summary)]


def _summary(summary: str) -> Json:
    return {"role": "user", "content": [{"type": "text", "text": SUMMARY_HEADER + summary}]}


# What truncation keeps of a request for a summary: the conversation's last turn and the request itself (a
# conversation whose last turn alone is too long is a 400, never a summary of nothing: `truncation`).
SUMMARY_TURNS = 2


def asking_for_summary(body: Json) -> None:
    """A chat body for the next turn of a conversation made into the request for its summary:
    `PROMPT` after the conversation, its tools offered as before (a provider's prompt cache keeps the prefix)
    but none to be called, no output format, answered whole."""
    body["messages"].append({"role": "user", "content": PROMPT})
    if body.get("tools"):
        body["tool_choice"] = "none"
    for name in ("response_format", "logprobs", "top_logprobs", "stream_options"):
        body.pop(name, None)
    body["stream"] = False


def compaction_item(
    completion: ChatCompletion, *, messages: list[Json] | None = None, tools: Sequence[Json] = ()
) -> Json:
    """A summary asked for (`asking_for_summary`) as the compaction item that carries it (and the user's
    `messages`, a server-side compaction's; and the `tools` the conversation's searches had loaded,
    `tool_search.carried`)."""
    summary = (completion.choices[0].message.content or "").strip() if completion.choices else ""
    if not summary:
        raise UpstreamError("The model gave no summary to compact the conversation into; try again.")
    content = seal(summary, messages=messages, tools=tools)
    return {"id": new_id("cmp"), "type": "compaction", "encrypted_content": content}


def compacted(items: list[Json]) -> list[Json]:
    """`items` as a route reads them past a compaction: before the last compaction item, only the messages
    that are no turn of the model's (what a compaction's output keeps, the user's, and the instructions a
    client puts there, `developer` and `system`; the item's summary stands for the rest), so a client that
    appends a compaction to the whole history, or chains after one, sends what it replaced no more. Codex
    puts its permissions and instructions (`developer` messages) before the compaction item it got back,
    as OpenAI reads them: dropped, every later turn ran without them. An item that carries the user's
    messages (a server-side compaction's) keeps only the `developer` and `system` ones before it: the user's
    are in it."""
    last = next((i for i in range(len(items) - 1, -1, -1) if items[i]["type"] == "compaction"), None)
    if last is None:
        return items
    carries = unseal(items[last]["encrypted_content"]).messages is not None
    dropped = ("assistant", "user") if carries else ("assistant",)
    kept = [item for item in items[:last] if item["type"] == "message" and item["role"] not in dropped]
    return [*kept, *items[last:]]
