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


# An SDK retries a 429 or 503 by itself after its `Retry-After`: the anthropic SDK waits whatever it says (a spent
# budget's is the rest of its period, weeks), the openai SDK gives up past two minutes. A longer wait is the
# caller's to decide, so it comes with `x-should-retry: false`, which both SDKs obey: the error reaches the caller.
RETRY_WITHIN_S = 60.0


def retry_headers(exc: OrchestratorError) -> dict[str, str] | None:
    """`Retry-After` for an error that says when to retry, and `x-should-retry: false` when that is too far off."""
    retry_after = getattr(exc, "retry_after", None)
    if retry_after is None:
        return None
    headers = {"Retry-After": str(max(1, round(retry_after)))}
    if retry_after > RETRY_WITHIN_S:
        headers["x-should-retry"] = "false"
    return headers


def tenant(tab: Tab) -> str:
    """Whose cache entries and flights the request may share: its key's (everyone's on an open endpoint)."""
    return f"key:{tab.key.id}" if tab.key is not None else "open"
