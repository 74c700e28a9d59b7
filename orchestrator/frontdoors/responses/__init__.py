"""OpenAI's Responses API front door (`door`), its request (`wire`), its translation to and from
chat (`translate`), its stream events (`events`) and the stored responses (`store`)."""

from orchestrator.frontdoors.responses.door import ResponsesDoor, add_stored_routes
from orchestrator.frontdoors.responses.store import DiskResponses, InProcessStore, ResponseStore, WriteBehind

__all__ = ["DiskResponses", "InProcessStore", "ResponseStore", "ResponsesDoor", "WriteBehind", "add_stored_routes"]
