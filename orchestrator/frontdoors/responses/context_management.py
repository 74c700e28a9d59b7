"""Server-side compaction: `context_management` on `POST /v1/responses`, as OpenAI's.

OpenAI's `context_management: [{"type": "compaction", "compact_threshold": N}]`
compacts a response's context when its rendered input crosses N tokens: the
response (whole or streamed) begins with a `compaction` item, and its answer is
the model's from the compacted context. A client goes on as it always does:
it appends the output to its input (and may drop every item before the latest
compaction), or chains with `previous_response_id` (or a conversation), which
continues from the compacted context. Here (`compact_first`, before the flow
answers the response's call):

    over        the input counted as `POST /v1/responses/input_tokens` counts it (the chat request the
                response is: instructions, tools, its chain or conversation; `Pipeline.tokens`, not a request
                of the key's minute of its own, as a count is) is past the threshold; a null
                threshold (OpenAI documents no default): it no longer fits any route of the model whose
                context is known, where `truncation: "auto"` would begin to drop turns
    summarize   the conversation's summary, asked as a `compaction_trigger` asks it
                (`compaction.asking_for_summary`) but without the answer's `max_output_tokens`: a call of its
                own through the flow, on the same model (resolved, admitted, spilled, billed to the key like
                any request, on a tab of its own accounted under `/v1/responses/compact`), its oldest turns
                dropped where they don't fit a route (as `/v1/responses/compact` drops them)
    answer      the response's call again, the route reading its conversation past the compaction item
                (`Turn.compaction`), which carries the user's messages and the tools its searches had loaded
                (`tool_search.carried`, as `/v1/responses/compact`'s item does) as well as the summary
                (`compaction.seal`): a client that drops what came before it loses nothing

A conversation with nothing a compaction would replace (only the user's, developer
and system messages since its last compaction) is answered as it is: its user
messages are kept as they are, so a summary would only add to them. A failure of
the compaction is the response's (its status and error, before any event).
"""

from __future__ import annotations

from dataclasses import replace
from typing import TYPE_CHECKING

from orchestrator.calls import CHAT, Call
from orchestrator.errors import OrchestratorError
from orchestrator.frontdoors.responses.compaction import SUMMARY_TURNS, compacted, compaction_item, unseal
from orchestrator.frontdoors.responses.tool_search import carried
from orchestrator.frontdoors.responses.translate import Json, Turn, chat_messages, to_chat

if TYPE_CHECKING:  # the edge hands the pipeline over
    from orchestrator.pipeline import Pipeline

COMPACT_PATH = "/v1/responses/compact"  # what a server-side compaction is accounted as


async def compact_first(call: Call, pipeline: Pipeline) -> Call:
    """The Responses `call` as the flow answers it: from its context compacted first where its request asks
    for server-side compaction and its input crossed the threshold; else as it is."""
    turn: Turn = call.origin
    asked = turn.request.compaction()
    if asked is None or turn.compacting or not _replaceable([*turn.context, *turn.items]):
        return call
    over = (
        not await pipeline.fits(call)
        if asked.compact_threshold is None
        else await pipeline.tokens(call) > asked.compact_threshold
    )
    if not over:
        return call
    answered = replace(turn, compaction=await _compaction(call, turn, pipeline))
    return replace(call, body=to_chat(answered), origin=answered)


def _replaceable(items: list[Json]) -> bool:
    """Whether the conversation, as a route reads it, holds what a compaction replaces: a turn of the model's
    (its messages, tool calls, reasoning) or a tool's output since its last compaction."""
    return any(
        item["type"] not in ("message", "compaction") or (item["type"] == "message" and item["role"] == "assistant")
        for item in compacted(items)
    )


async def _compaction(call: Call, turn: Turn, pipeline: Pipeline) -> Json:
    """The compaction item for `turn`'s conversation: its summary asked through the flow on a tab of its own,
    the key's (billed and accounted as any request), and the user's messages and loaded tools it carries."""
    asking = replace(turn, compacting=True)
    body = to_chat(asking).model_copy(update={"max_tokens": None})  # the answer's limit: not the summary's
    tab = call.tab
    with tab.accounts.open("POST", COMPACT_PATH) as own:
        own.request_id, own.key, own.ingress_id = f"{tab.request_id}-compaction", tab.key, tab.ingress_id
        summary = Call(CHAT, body, call.headers, own, call.tenant, origin=asking, keep_turns=SUMMARY_TURNS)
        try:
            completion = (await pipeline.serve(summary)).result
            item = compaction_item(completion, messages=_user_messages(turn), tools=carried(turn.context + turn.items))
        except OrchestratorError as e:
            own.error_code = e.code
            tab.accounts.response_started(own, e.status_code)
            raise
        finally:
            tab.upstream_s += own.upstream_s  # waiting on a model: not the response's own overhead
        tab.accounts.response_started(own, 200)
    return item


def _user_messages(turn: Turn) -> list[Json]:
    """The user's messages of `turn`'s conversation as a route reads it, as chat messages: those a compaction
    item before them carries, and the rest."""
    out: list[Json] = []
    for item in compacted([*turn.context, *turn.items]):
        if item["type"] == "compaction":
            out += unseal(item["encrypted_content"]).messages or []
        elif item["type"] == "message" and item["role"] == "user":
            out += chat_messages([item])
    return out
