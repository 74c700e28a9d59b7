"""The exception tree of the gateway.

Everything inside the gateway raises these; foreign exceptions (Ray, vLLM,
httpx, pydantic) are translated at the boundary where they appear, and the
tree is turned into OpenAI's error JSON in exactly one place, the HTTP edge
(`orchestrator.api`).

    OrchestratorError                    500 api_error
    ├── InvalidRequest                   400 invalid_request_error
    │   ├── ContextLengthExceeded        400 code=context_length_exceeded
    │   └── UnsupportedCapability        400 code=unsupported_<capability>
    ├── RequestTooLarge                  413 code=request_too_large (the body is over `server.max_body_mb`)
    ├── NotFound                         404 invalid_request_error
    │   └── ModelNotFound                404 code=model_not_found
    ├── InvalidApiKey                    401 code=invalid_api_key (no virtual key, or an unknown one)
    ├── ModelNotAllowed                  403 code=model_not_found (the key may not use this model)
    ├── MethodNotAllowed                 405 invalid_request_error
    ├── KeyRateLimited                   429 type=requests|tokens code=rate_limit_exceeded (a key's rpm/tpm)
    ├── KeyBudgetExhausted               429 insufficient_quota (a key's budget for its period is spent)
    ├── Overloaded                       503 code=overloaded (a route refused the request for load)
    ├── LedgerUnavailable                503 code=ledger_unavailable (keys and budgets can't be checked now)
    ├── OverflowBudgetExhausted          429 code=overflow_budget_exhausted (the hour's burst budget is spent)
    └── UpstreamError                    502 api_error (a model backend failed)
        ├── EngineError                  500 api_error (the local engine failed)
        │   └── ReplicaLost              503 code=replica_lost (the local replica went away mid-request)
        ├── UpstreamTimeout              504 (no first token / a stall / the deadline)
        ├── UpstreamRateLimited          429 rate_limit_exceeded (honours Retry-After)
        ├── UpstreamUnavailable          503 (connection failed or reset, 5xx)
        └── UpstreamRejected             4xx from the provider: never retried there

Each error carries what OpenAI's error object needs: `message`, `type`,
`param` and `code`; backend errors also say whether retrying can help
(`retryable`) and when (`retry_after`, seconds). The classes pickle cleanly,
with every attribute, because they cross Ray actor boundaries.
"""

from __future__ import annotations

from typing import Any


class OrchestratorError(Exception):
    """Base of the tree: an error with an HTTP status and OpenAI error fields."""

    status_code = 500
    error_type = "api_error"
    default_code: str | None = None

    def __init__(self, message: str, *, param: str | None = None, code: str | None = None):
        super().__init__(message)
        self.message = message
        self.param = param
        self.code = code if code is not None else self.default_code

    def __reduce__(self) -> tuple[Any, ...]:
        return (_rebuild, (type(self), self.message, self.param, self.code), dict(self.__dict__))

    def to_dict(self) -> dict[str, Any]:
        """The OpenAI error object: `{"error": {message, type, param, code}}`."""
        return {
            "error": {
                "message": self.message,
                "type": self.error_type,
                "param": self.param,
                "code": self.code,
            }
        }


def _rebuild(cls: type[OrchestratorError], message: str, param: str | None, code: str | None) -> OrchestratorError:
    # Bypass subclass constructors; pickle restores every attribute from __dict__.
    err = OrchestratorError.__new__(cls)
    OrchestratorError.__init__(err, message, param=param, code=code)
    return err


class InvalidRequest(OrchestratorError):
    """The client sent something we can't serve as asked (400)."""

    status_code = 400
    error_type = "invalid_request_error"


class ContextLengthExceeded(InvalidRequest):
    """The prompt plus the requested output doesn't fit the model's context. Where known, the counts that
    don't fit (`prompt_tokens`, `max_tokens`: the output asked for, `context`), which a front door may say
    in its own protocol's words (Anthropic's, which Claude Code reads to retry with less output)."""

    default_code = "context_length_exceeded"

    def __init__(
        self,
        message: str,
        *,
        param: str | None = None,
        code: str | None = None,
        prompt_tokens: int | None = None,
        max_tokens: int | None = None,
        context: int | None = None,
    ):
        super().__init__(message, param=param, code=code)
        self.prompt_tokens, self.max_tokens, self.context = prompt_tokens, max_tokens, context


class UnsupportedCapability(InvalidRequest):
    """The request needs a capability (tools, vision, ...) no route offers."""


class RequestTooLarge(OrchestratorError):
    """The request body is larger than the gateway accepts (413); read no further than the limit."""

    status_code = 413
    error_type = "invalid_request_error"
    default_code = "request_too_large"

    @classmethod
    def over(cls, limit: int, what: str = "request body") -> RequestTooLarge:
        """The error for a `what` (a body, a WebSocket message) over `limit` bytes, naming the setting."""
        return cls(f"The {what} is larger than this gateway accepts ({limit / 2**20:g} MB, server.max_body_mb).")


class UnsupportedEncoding(OrchestratorError):
    """A compressed request body (415): read as it came it would be a JSON error that hides the cause."""

    status_code = 415
    error_type = "invalid_request_error"
    default_code = "unsupported_content_encoding"


class RequestTimeout(OrchestratorError):
    """The request body arrived too slowly (408): a large body holds one of a few slots while it arrives."""

    status_code = 408
    error_type = "invalid_request_error"
    default_code = "request_timeout"


class NotFound(OrchestratorError):
    """No such route or resource (404)."""

    status_code = 404
    error_type = "invalid_request_error"
    default_code = "not_found"


class ModelNotFound(NotFound):
    """The request names a model this gateway doesn't serve."""

    default_code = "model_not_found"


class MethodNotAllowed(OrchestratorError):
    """The path exists but not for this HTTP method (405)."""

    status_code = 405
    error_type = "invalid_request_error"
    default_code = "method_not_allowed"


class InvalidApiKey(OrchestratorError):
    """No virtual key, or one the gateway doesn't know (401, as OpenAI answers a bad key)."""

    status_code = 401
    error_type = "invalid_request_error"
    default_code = "invalid_api_key"


class ModelNotAllowed(OrchestratorError):
    """The key may not use this model (OpenAI answers a project without access the same way)."""

    status_code = 403
    error_type = "invalid_request_error"
    default_code = "model_not_found"


class KeyRateLimited(OrchestratorError):
    """A key's requests or tokens per minute are used up; `error_type` says which (429)."""

    status_code = 429
    error_type = "requests"
    default_code = "rate_limit_exceeded"

    def __init__(self, message: str, *, kind: str, retry_after: float | None):
        super().__init__(message)
        self.error_type = kind
        self.retry_after = retry_after


class KeyBudgetExhausted(OrchestratorError):
    """A key's budget for its period is spent (429, as OpenAI's `insufficient_quota`)."""

    status_code = 429
    error_type = "insufficient_quota"
    default_code = "insufficient_quota"

    def __init__(self, message: str, *, retry_after: float | None):
        super().__init__(message)
        self.retry_after = retry_after


class LedgerUnavailable(OrchestratorError):
    """The ledger's owner didn't answer: a key's limits can't be checked, so the request waits (503)."""

    status_code = 503
    error_type = "api_error"
    default_code = "ledger_unavailable"
    retry_after: float | None = 1.0


class Overloaded(OrchestratorError):
    """Every route for the request refused it for load; retrying later helps (503)."""

    status_code = 503
    error_type = "api_error"
    default_code = "overloaded"
    retryable = True
    retry_after: float | None = None


class OverflowBudgetExhausted(OrchestratorError):
    """The hour's overflow (burst) budget is spent and the local model can't answer in time (429)."""

    status_code = 429
    error_type = "rate_limit_error"
    default_code = "overflow_budget_exhausted"

    def __init__(self, message: str, *, retry_after: float | None = None):
        super().__init__(message)
        self.retry_after = retry_after


class UpstreamError(OrchestratorError):
    """A model backend failed while serving the request (502).

    `retryable`: trying the same backend again may succeed. `retry_after`:
    the backend said when (seconds), or None.
    """

    status_code = 502
    error_type = "api_error"
    default_code = "upstream_error"
    retryable = True

    def __init__(
        self,
        message: str,
        *,
        param: str | None = None,
        code: str | None = None,
        retry_after: float | None = None,
    ):
        super().__init__(message, param=param, code=code)
        self.retry_after = retry_after


class UpstreamTimeout(UpstreamError):
    status_code = 504
    default_code = "upstream_timeout"


class FirstTokenTimeout(UpstreamTimeout):
    """No first token within the attempt's first-token timeout (the route's, or a plan's patience)."""


class UpstreamRateLimited(UpstreamError):
    status_code = 429
    error_type = "rate_limit_error"
    default_code = "rate_limit_exceeded"


class UpstreamUnavailable(UpstreamError):
    status_code = 503
    default_code = "upstream_unavailable"


class UpstreamRejected(UpstreamError):
    """The provider refused the request (4xx, or `insufficient_quota`): not retried there.

    `upstream_status` is what the provider answered. A 400 is the client's
    problem and reaches the client as a 400; a 401/403/404 or a quota error is
    the gateway's configuration problem and reaches it as a 502.
    """

    retryable = False

    def __init__(self, message: str, *, upstream_status: int, param: str | None = None, code: str | None = None):
        super().__init__(message, param=param, code=code)
        self.upstream_status = upstream_status
        if upstream_status in (400, 413, 422):
            self.status_code = 400
            self.error_type = "invalid_request_error"


class EngineError(UpstreamError):
    """The local inference engine failed (500)."""

    status_code = 500
    default_code = "engine_error"


class ReplicaLost(EngineError):
    """The local model's replica that held the request went away (its process or node died) before it answered.

    A fault of one replica, not of the route: the deployment's other replicas (and the one Serve starts in
    its place) can serve it, so failover tries the route again at once and no breaker counts it.
    """

    status_code = 503
    default_code = "replica_lost"
