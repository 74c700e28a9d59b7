"""The error tree: statuses, OpenAI's error object, and pickling across Ray."""

from __future__ import annotations

import pickle

import pytest

from orchestrator.errors import (
    ContextLengthExceeded,
    EngineError,
    InvalidRequest,
    MethodNotAllowed,
    ModelNotFound,
    NotFound,
    OrchestratorError,
    Overloaded,
    UnsupportedCapability,
    UpstreamError,
)

TREE = [
    # class, status, type, default code
    (OrchestratorError, 500, "api_error", None),
    (InvalidRequest, 400, "invalid_request_error", None),
    (ContextLengthExceeded, 400, "invalid_request_error", "context_length_exceeded"),
    (UnsupportedCapability, 400, "invalid_request_error", None),
    (NotFound, 404, "invalid_request_error", "not_found"),
    (ModelNotFound, 404, "invalid_request_error", "model_not_found"),
    (MethodNotAllowed, 405, "invalid_request_error", "method_not_allowed"),
    (Overloaded, 503, "api_error", "overloaded"),
    (UpstreamError, 502, "api_error", "upstream_error"),
    (EngineError, 500, "api_error", "engine_error"),
]


@pytest.mark.parametrize(("cls", "status", "error_type", "code"), TREE)
def test_status_type_and_default_code(cls: type[OrchestratorError], status: int, error_type: str, code: str) -> None:
    e = cls("boom")
    assert (e.status_code, e.error_type, e.code, e.param) == (status, error_type, code, None)
    assert str(e) == e.message == "boom"
    assert e.to_dict() == {"error": {"message": "boom", "type": error_type, "param": None, "code": code}}


def test_explicit_param_and_code_win() -> None:
    e = ContextLengthExceeded("too long", param="messages", code="custom")
    assert e.to_dict() == {
        "error": {"message": "too long", "type": "invalid_request_error", "param": "messages", "code": "custom"}
    }


@pytest.mark.parametrize("cls", [row[0] for row in TREE])
def test_pickle_round_trip_keeps_everything(cls: type[OrchestratorError]) -> None:
    e = cls("it broke", param="tools", code="unsupported_tools")
    back = pickle.loads(pickle.dumps(e))
    assert type(back) is cls
    assert (back.message, back.param, back.code, str(back)) == ("it broke", "tools", "unsupported_tools", "it broke")
    assert back.to_dict() == e.to_dict()


def test_pickle_keeps_the_default_code() -> None:
    back = pickle.loads(pickle.dumps(ModelNotFound("nope", param="model")))
    assert back.code == "model_not_found" and back.param == "model"


def test_tree_shape() -> None:
    assert issubclass(ContextLengthExceeded, InvalidRequest)
    assert issubclass(UnsupportedCapability, InvalidRequest)
    assert issubclass(ModelNotFound, NotFound)
    assert issubclass(EngineError, UpstreamError)
    for cls, *_ in TREE:
        assert issubclass(cls, OrchestratorError)
