"""The gateway's own FastAPI app under plain uvicorn, without Ray: the baseline for fixed overhead.

    python -m benchmarks.plain_gateway --port 8123 [--model tiny-random]

Same app (`orchestrator.api.build_app`), same pipeline (`orchestrator.app.build_pipeline`),
but the local model is an in-process stub instead of a Ray `DeploymentHandle`. Routes
that never reach a model (GET /v1/models, /health) therefore run exactly the code the
Serve ingress replica runs, minus Ray Serve. The stub "generates" instantly: one
one-token delta per `max_tokens`, each its own batch, the way the real engine
streams when the consumer keeps up. Streaming through it measures what the
gateway's own code (provider, wire models, SSE, FastAPI, uvicorn) costs per
token, with no model and no Ray hop.
"""

from __future__ import annotations

import argparse
import asyncio
from collections.abc import AsyncIterator

from local_models.interface import Batch, Delta, EmbedResult, GenerateRequest, ModelInfo


class StubClient:
    """A `LocalModelClient` that needs no engine."""

    async def generate(self, request: GenerateRequest) -> AsyncIterator[Batch]:
        n = request["sampling"].get("max_tokens") or 16
        for i in range(n - 1):
            yield Batch(deltas=[Delta(index=0, text=f" t{i}", finish_reason=None)])
            await asyncio.sleep(0)  # let the response side run, as a real engine would
        yield Batch(
            deltas=[Delta(index=0, text=" end", finish_reason="length")],
            usage={"prompt_tokens": 1, "completion_tokens": n, "cached_tokens": 0},
        )

    async def embed(self, inputs: list[str] | list[list[int]]) -> EmbedResult:
        return EmbedResult(embeddings=[[0.0] for _ in inputs], prompt_tokens=len(inputs))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="benchmarks.plain_gateway")
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--model", default="tiny-random")
    parser.add_argument("--max-model-len", type=int, default=512)
    args = parser.parse_args(argv)

    import uvicorn

    from orchestrator.api import build_app
    from orchestrator.app import LOCAL, build_pipeline

    info = ModelInfo(name=args.model, task="generate", max_model_len=args.max_model_len, has_chat_template=True)
    pipeline = asyncio.run(build_pipeline({LOCAL: (StubClient(), info)}))
    uvicorn.run(build_app(pipeline), host=args.host, port=args.port, log_level="warning", access_log=False)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
