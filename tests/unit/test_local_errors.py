"""`local_models` raises its own errors; the gateway translates them where it calls a local model."""

from __future__ import annotations

import pickle
from typing import Any

import pytest
from ray.exceptions import ActorDiedError, ActorUnavailableError, RayTaskError

from local_models.deployment import LocalModel
from local_models.errors import BadRequest, EngineFailure, LocalModelError, PromptTooLong
from local_models.interface import Engine, EngineConfig, GenerateRequest
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


def test_a_prompt_too_long_crosses_with_its_counts() -> None:
    """The counts the Messages door says in Anthropic's words (Claude Code retries with what fits)."""
    error = PromptTooLong("p", param="messages", prompt_tokens=9, max_tokens=32000, context=8192)
    again = pickle.loads(pickle.dumps(error))
    assert (again.prompt_tokens, again.max_tokens, again.context) == (9, 32000, 8192)


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


class _ReplicaHandle:
    """A Serve handle onto a `LocalModel` replica in this process: each call gets what the replica's method
    answered, as a handle does (what it raises, Serve logs as the replica's failure first)."""

    def __init__(self, replica: LocalModel):
        self.replica = replica

    def options(self, **_: object) -> _ReplicaHandle:
        return self

    @property
    def generate(self) -> _ReplicaHandle:
        self._method = "generate"
        return self

    @property
    def embed(self) -> _ReplicaHandle:
        self._method = "embed"
        return self

    def remote(self, arg: Any) -> Any:
        if self._method == "embed":
            return self.replica.embed(arg)
        self._stream = self.replica.generate(arg)
        return self

    def __aiter__(self) -> Any:
        return self._stream

    def cancel(self) -> None:
        pass


async def _replica(engine: FakeEngine) -> LocalModel:
    async def given(_: EngineConfig) -> Engine:
        return engine

    replica = LocalModel.__new__(LocalModel)
    await replica.__init__(EngineConfig("m", "m"), engine_factory=given)  # type: ignore[misc]
    return replica


ASK = GenerateRequest(
    request_id="r", kind="chat", messages=[{"role": "user", "content": "hi"}], sampling={"top_p": 0.0}, stream=True
)


@pytest.mark.parametrize(
    ("raised", "expected"),
    [
        (BadRequest("Invalid sampling parameters: top_p must be in (0, 1], got 0.0.", param="top_p"), InvalidRequest),
        (PromptTooLong("This model's maximum context length is 64 tokens.", param="messages"), ContextLengthExceeded),
    ],
    ids=["bad-request", "prompt-too-long"],
)
async def test_a_replica_answers_the_requests_own_fault_and_the_client_gets_the_same_4xx(
    raised: BadRequest, expected: type[OrchestratorError]
) -> None:
    """Raised out of the replica's method, Serve logged every client mistake (a bad top_p, a prompt over the
    context) as the replica's failure, ERROR "Request failed" with a traceback, and counted it an error."""
    replica = await _replica(FakeEngine("m", fail_after=0, error=raised))
    embedder = await _replica(FakeEngine("e", task="embed", fail_after=0, error=raised))
    try:
        assert [item async for item in replica.generate(ASK)] == [{"refused": raised}]  # nothing raised
        assert await embedder.embed(["hi"]) == {"refused": raised}
        with pytest.raises(expected) as info:
            async for _ in HandleClient(_ReplicaHandle(replica)).generate(ASK):
                pass
        assert (info.value.status_code, info.value.message, info.value.param) == (400, raised.message, raised.param)
        with pytest.raises(expected):
            await HandleClient(_ReplicaHandle(embedder)).embed(["hi"])
    finally:
        replica.__del__()
        embedder.__del__()


async def test_an_engine_failure_is_still_raised_by_the_replica() -> None:
    replica = await _replica(FakeEngine("m", fail_after=0, error=EngineFailure("the engine failed")))
    try:
        with pytest.raises(EngineFailure):
            async for _ in replica.generate(ASK):
                pass
    finally:
        replica.__del__()
