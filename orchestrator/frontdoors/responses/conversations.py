"""OpenAI's Conversations API as policy: its request bodies, its items, its limits and its errors (no I/O).

    bodies      `CreateConversationBody` (`items` up to 20, `metadata` up to 16 pairs),
                `UpdateConversationBody` (`metadata`), `ItemsBody` (`items` up to 20)
    items       what a client adds, as the items a conversation holds: each with an id (its
                own, else a new one), in the shape `GET …/items` lists them
    limits      how large a conversation may grow (`conversations.max_items`, `max_mb`),
                checked before a response is asked for, so a full one costs no model call
    refusals    the store's `Refused` as OpenAI's errors: a missing (or another key's)
                conversation or item a 404, a full one or a repeated item id a 400

The items are those a response's input takes (messages, function and custom tool calls and their outputs,
reasoning, a tool search's call and output, compaction items), checked as it checks them. An
`item_reference` is not added to a conversation (a 400): send the item; nor is a `compaction_trigger`,
which asks a response for a compaction and is no item of one.
"""

from __future__ import annotations

from typing import Annotated, Any

from pydantic import Field, model_validator

from orchestrator.errors import InvalidRequest, NotFound, OrchestratorError
from orchestrator.frontdoors.responses.conversation_store import Conversation, Limits, Refused, item_bytes
from orchestrator.frontdoors.responses.ids import new_id
from orchestrator.frontdoors.responses.request_checks import INPUT_ITEMS, check_items
from orchestrator.frontdoors.responses.translate import Json, items_of
from orchestrator.frontdoors.responses.wire import StoredItem, _Wire
from orchestrator.protocol import Metadata

MAX_ITEMS_PER_REQUEST = 20  # OpenAI's, for `items` on create and on add
# The items a conversation takes: what a response's input may hold (and its output writes into a conversation),
# but for a reference to a stored one and a request control (`compaction_trigger`). Codex's older name for a
# compaction item is one too, added as a `compaction` (`items_of`).
_ITEMS = tuple(t for t in INPUT_ITEMS if t not in ("item_reference", "compaction_trigger"))
# `include`'s values (the spec's IncludeEnum): items are kept whole, so none changes what is listed.
INCLUDE = frozenset(
    {
        "file_search_call.results",
        "web_search_call.results",
        "web_search_call.action.sources",
        "message.input_image.image_url",
        "computer_call_output.output.image_url",
        "code_interpreter_call.outputs",
        "reasoning.encrypted_content",
        "message.output_text.logprobs",
    }
)
ITEM_PREFIXES = {  # each item's id begins as the one a response makes (`translate.items_of`)
    "message": "msg",
    "function_call": "fc",
    "function_call_output": "fco",
    "custom_tool_call": "ctc",
    "custom_tool_call_output": "ctco",
    "reasoning": "rs",
    "compaction": "cmp",
    "tool_search_call": "tsc",
    "tool_search_output": "tso",
}


class _Items(_Wire):
    @model_validator(mode="before")
    @classmethod
    def _served(cls, data: Any) -> Any:
        if isinstance(data, dict):
            check_items(data.get("items"), "items", _ITEMS)
        return data


class CreateConversationBody(_Items):
    """`POST /v1/conversations`."""

    items: Annotated[list[StoredItem], Field(max_length=MAX_ITEMS_PER_REQUEST)] | None = None
    metadata: Metadata | None = None


class UpdateConversationBody(_Wire):
    """`POST /v1/conversations/{id}`: the metadata, replaced."""

    metadata: Metadata


class ItemsBody(_Items):
    """`POST /v1/conversations/{id}/items`."""

    items: Annotated[list[StoredItem], Field(max_length=MAX_ITEMS_PER_REQUEST)]


def conversation_items(items: list[Any]) -> list[Json]:
    """What a client adds, as a conversation's items: each with an id, none twice (a 400, as OpenAI's)."""
    out = [item if item.get("id") else {**item, "id": new_id(ITEM_PREFIXES[item["type"]])} for item in items_of(items)]
    seen: set[str] = set()
    for item in out:
        if item["id"] in seen:
            raise duplicate(item["id"])
        seen.add(item["id"])
    return out


def limits(max_items: int, max_mb: float) -> Limits:
    return Limits(max_items=max_items, max_bytes=int(max_mb * 2**20))


def check_room(conversation: Conversation, adding: list[Json], room: Limits) -> None:
    """A 400 before anything is asked when `adding` would take `conversation` past its limits, in items
    or in bytes as the store counts them (a response's output still goes in after: its request's limits
    were checked), or repeat an item id."""
    held = {item.get("id") for item in conversation.items}
    if dup := next((item["id"] for item in adding if item.get("id") in held), None):
        raise duplicate(dup)
    if len(conversation.items) + len(adding) > room.max_items:
        raise full(conversation.id, f"at most {room.max_items} items")
    if sum(map(item_bytes, [*conversation.items, *adding])) > room.max_bytes:
        raise full(conversation.id, f"at most {room.max_bytes / 2**20:g} MB of items")


def refusal(refused: Refused, conversation_id: str, item_id: str = "") -> OrchestratorError:
    """The store's refusal as the error OpenAI answers with."""
    if refused.reason == "missing":
        return not_found(conversation_id)
    if refused.reason == "missing_item":
        return NotFound(f"Item with id '{item_id}' not found.", param="item_id")
    if refused.reason == "duplicate":
        return duplicate(refused.detail)
    return full(conversation_id, refused.detail)


def not_found(conversation_id: str, param: str | None = None) -> NotFound:
    return NotFound(f"Conversation with id '{conversation_id}' not found.", param=param)


def duplicate(item_id: str) -> InvalidRequest:
    return InvalidRequest(
        f"Duplicate item found with id {item_id}. Remove duplicate items from your input and try again.",
        param="items",
        code="invalid_value",
    )


def full(conversation_id: str, limit: str) -> InvalidRequest:
    return InvalidRequest(
        f"Conversation '{conversation_id}' is full: this gateway keeps {limit} in a conversation "
        "(conversations.max_items, conversations.max_mb). Start a new conversation.",
        param="items",
        code="conversation_too_large",
    )


def check_include(values: list[str]) -> None:
    """`include` on the items routes: a value OpenAI doesn't know is a 400."""
    for i, value in enumerate(values):
        if value not in INCLUDE:
            raise InvalidRequest(
                f"Invalid value for 'include[{i}]': {value!r} is not one of {', '.join(sorted(INCLUDE))}.",
                param=f"include[{i}]",
                code="invalid_value",
            )
