"""`local_models` raises its own errors; the gateway translates them where it calls a local model."""

from __future__ import annotations

import pickle

import pytest

from local_models.errors import BadRequest, EngineFailure, LocalModelError, PromptTooLong
from orchestrator.errors import ContextLengthExceeded, EngineError, InvalidRequest, OrchestratorError
from orchestrator.protocol import ChatCompletionRequest, EmbeddingRequest
from orchestrator.providers.local import LocalProvider
from orchestrator.testing.engine import FakeEngine


@pytest.mark.parametrize(
    "error", [BadRequest("b", param="messages"), PromptTooLong("p", param="prompt"), EngineFailure("e")]
)
def test_they_cross_a_ray_handle_with_every_attribute(error: LocalModelError) -> None:
    again = pickle.loads(pickle.dumps(error))
    assert (type(again), again.message, again.param) == (type(error), error.message, error.param)


@pytest.mark.parametrize(
    ("raised", "expected", "status"),
    [
        (BadRequest("template says no", param="messages"), InvalidRequest, 400),
        (PromptTooLong("too long", param="messages"), ContextLengthExceeded, 400),
        (EngineFailure("the engine died"), EngineError, 500),
    ],
)
async def test_the_local_provider_translates_them(
    raised: LocalModelError, expected: type[OrchestratorError], status: int
) -> None:
    provider = LocalProvider(FakeEngine("m", fail_after=0, error=raised))
    request = ChatCompletionRequest.model_validate({"model": "m", "messages": [{"role": "user", "content": "hi"}]})
    with pytest.raises(expected) as info:
        async for _ in provider.chat(request, "m"):
            pass
    assert info.value.status_code == status and info.value.message == raised.message
    assert info.value.param == raised.param
    embedder = LocalProvider(FakeEngine("e", task="embed", fail_after=0, error=raised))
    with pytest.raises(expected):
        await embedder.embed(EmbeddingRequest(model="e", input="hi"), "e")
