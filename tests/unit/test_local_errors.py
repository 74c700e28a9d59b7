"""`local_models` raises its own errors; the gateway translates them where it calls a local model."""

from __future__ import annotations

import pickle

import pytest
from ray.exceptions import ActorDiedError, ActorUnavailableError, RayTaskError

from local_models.errors import BadRequest, EngineFailure, LocalModelError, PromptTooLong
from orchestrator.errors import ContextLengthExceeded, EngineError, InvalidRequest, OrchestratorError, ReplicaLost
from orchestrator.protocol import ChatCompletionRequest, EmbeddingRequest
from orchestrator.providers.local import HandleClient, LocalProvider
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


class _DyingHandle:
    """A Serve handle whose replica goes away under the request, the way Ray reports it."""

    def __init__(self, error: BaseException):
        self.error = error
        self.cancelled = False

    def options(self, **_: object) -> _DyingHandle:
        return self

    @property
    def generate(self) -> _DyingHandle:
        return self

    def remote(self, _request: object) -> _DyingHandle:
        return self

    def __aiter__(self) -> _DyingHandle:
        return self

    async def __anext__(self) -> object:
        raise self.error

    def cancel(self) -> None:
        self.cancelled = True


@pytest.mark.parametrize(
    "error",
    [
        ActorDiedError(),
        ActorUnavailableError("Actor is unavailable.", b"\0" * 16),
        RayTaskError("generate", "traceback", ActorDiedError()),
    ],
    ids=["died", "unavailable", "wrapped"],
)
async def test_a_replica_gone_under_the_request_is_a_lost_replica_not_an_engine_failure(error: Exception) -> None:
    """A 503 `replica_lost` the failover retries on another replica at once, never counted against the route."""
    handle = _DyingHandle(error)
    with pytest.raises(ReplicaLost) as info:
        async for _ in HandleClient(handle).generate({"prompt": "hi"}):  # type: ignore[typeddict-item]
            pass
    assert handle.cancelled and info.value.status_code == 503 and info.value.code == "replica_lost"
