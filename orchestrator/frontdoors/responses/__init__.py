"""OpenAI's Responses API front door (`door`), its request (`wire`), its translation to and from
chat (`translate`), its output items (`output_items`) and `Response` object (`response_object`),
its stream events (`events`) and the stored responses (`store`); compaction (`compaction`, its
door `compact_door`, and server-side compaction, `context_management`); OpenAI's Conversations API
over it: the policy (`conversations`), the stored conversations (`conversation_store`) and their
routes (`conversation_routes`)."""

from orchestrator.frontdoors.responses.compact_door import CompactDoor
from orchestrator.frontdoors.responses.conversation_routes import add_conversation_routes
from orchestrator.frontdoors.responses.conversation_store import (
    ConversationStore,
    DiskConversations,
    InProcessConversations,
    Limits,
)
from orchestrator.frontdoors.responses.conversations import limits
from orchestrator.frontdoors.responses.door import ResponsesDoor, ResponsesTokenCount, add_stored_routes
from orchestrator.frontdoors.responses.store import DiskResponses, InProcessStore, ResponseStore, WriteBehind

__all__ = [
    "CompactDoor",
    "ConversationStore",
    "DiskConversations",
    "DiskResponses",
    "InProcessConversations",
    "InProcessStore",
    "Limits",
    "ResponseStore",
    "ResponsesDoor",
    "ResponsesTokenCount",
    "WriteBehind",
    "add_conversation_routes",
    "add_stored_routes",
    "limits",
]
