"""The GenAI semantic conventions' metrics, one record per front-door request.

    gen_ai.client.token.usage           {token}  input and output tokens of each answer (`gen_ai.token.type`)
    gen_ai.server.request.duration      s        each request, first byte in to last byte out (`error.type`)
    gen_ai.server.time_to_first_token   s        each streamed answer's first byte out

Attributes: `gen_ai.operation.name`, and where the request was answered `gen_ai.provider.name`
(`cache` for a hit), `gen_ai.request.model` (the alias the client asked for) and
`gen_ai.response.model` (the route's model). A request that got no answer is counted without
them: its model name is the client's text, and a client must not be able to grow the metrics
without bound (so `error.type` is the HTTP status, or `incomplete` for a broken-off answer).
Buckets are the conventions' advice.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from opentelemetry.metrics import Meter

    from orchestrator.accounting.accounts import Tab

TOKEN_BUCKETS = [1, 4, 16, 64, 256, 1024, 4096, 16384, 65536, 262144, 1048576, 4194304, 16777216, 67108864]
DURATION_BUCKETS = [0.01, 0.02, 0.04, 0.08, 0.16, 0.32, 0.64, 1.28, 2.56, 5.12, 10.24, 20.48, 40.96, 81.92]
TTFT_BUCKETS = [0.001, 0.005, 0.01, 0.02, 0.04, 0.06, 0.08, 0.1, 0.25, 0.5, 0.75, 1.0, 2.5, 5.0, 7.5, 10.0]


class GenAiMetrics:
    """The instruments, made once per gateway replica from its meter."""

    def __init__(self, meter: Meter):
        self.tokens = meter.create_histogram(
            "gen_ai.client.token.usage", unit="{token}", description="Tokens used per answer",
            explicit_bucket_boundaries_advisory=TOKEN_BUCKETS,
        )  # fmt: skip
        self.duration = meter.create_histogram(
            "gen_ai.server.request.duration", unit="s", description="Request duration",
            explicit_bucket_boundaries_advisory=DURATION_BUCKETS,
        )  # fmt: skip
        self.ttft = meter.create_histogram(
            "gen_ai.server.time_to_first_token", unit="s", description="Time to the first byte of a streamed answer",
            explicit_bucket_boundaries_advisory=TTFT_BUCKETS,
        )  # fmt: skip

    def record(self, operation: str, tab: Tab) -> None:
        attributes: dict[str, Any] = {"gen_ai.operation.name": operation}
        answer = tab.answer
        if answer is not None:
            attributes["gen_ai.provider.name"] = answer.provider
            attributes["gen_ai.request.model"] = answer.model
            attributes["gen_ai.response.model"] = answer.provider_model
        failed = tab.status >= 400 or (answer is not None and not answer.complete)
        if failed:
            # The HTTP status, not the error's code: an upstream's code is its own text, of no bounded set.
            attributes["error.type"] = str(tab.status) if tab.status >= 400 else "incomplete"
        self.duration.record(tab.elapsed(), attributes)
        if answer is None:
            return
        self.tokens.record(answer.prompt_tokens, {**attributes, "gen_ai.token.type": "input"})
        self.tokens.record(answer.completion_tokens, {**attributes, "gen_ai.token.type": "output"})
        if answer.stream and not failed and tab.first_byte_s is not None:
            self.ttft.record(tab.first_byte_s, attributes)
