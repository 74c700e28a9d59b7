"""The front-door seams: parse a wire format into a `Call`, encode the answer and errors back
(`FrontDoor`); or answer without asking a model, as Anthropic's token count does (`SideDoor`)."""

from __future__ import annotations

from collections.abc import Mapping
from typing import TYPE_CHECKING, Any, Protocol

from starlette.responses import Response

from orchestrator.accounting.accounts import Tab
from orchestrator.calls import Call
from orchestrator.errors import OrchestratorError
from orchestrator.routes import Routed

if TYPE_CHECKING:  # the pipeline is handed to a side door by the edge
    from orchestrator.pipeline import Pipeline


class FrontDoor(Protocol):
    """One inbound protocol at one path."""

    path: str

    async def parse(self, raw: bytes, headers: Mapping[str, str], tab: Tab) -> Call:
        """The body as a `Call`, or an `InvalidRequest` naming what is wrong (async: a door may
        read state, as the Responses door reads a `previous_response_id`)."""
        ...

    async def encode(self, call: Call, routed: Routed[Any]) -> Response:
        """The flow's answer (whole, or a stream open at its first content) in this protocol
        (async: a door may keep what it answered, as the Responses door stores responses)."""
        ...

    def error(self, exc: OrchestratorError) -> Response:
        """An error in this protocol's own shape and status."""
        ...


class SideDoor(Protocol):
    """One inbound route the gateway answers itself, from what the pipeline knows (no model is asked).
    The edge authenticates the key and reads the body as for a front door."""

    path: str

    async def answer(self, raw: bytes, headers: Mapping[str, str], tab: Tab, pipeline: Pipeline) -> Response:
        """The answer to the body, or an `OrchestratorError` (then `error` says it)."""
        ...

    def error(self, exc: OrchestratorError) -> Response:
        """An error in this protocol's own shape and status."""
        ...


def tenant(tab: Tab) -> str:
    """Whose cache entries and flights the request may share: its key's (everyone's on an open endpoint)."""
    return f"key:{tab.key.id}" if tab.key is not None else "open"
