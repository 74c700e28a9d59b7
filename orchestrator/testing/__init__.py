"""Real fakes for the project's seams, shipped with the package as httpx ships `MockTransport`.

They are not mocks: each implements the real interface, or speaks the real wire format over a real socket,
deterministically, and records what it was asked, so tests, benchmarks and users' own tests exercise the
gateway the way production does, with nothing patched.

- `engine.FakeEngine` — a local engine (`local_models.interface.Engine`, and so the gateway's
  `LocalModelClient`): scripted replies (`enqueue`), failures and pacing, embeddings; no vLLM, no torch.
- `provider.FakeProvider` — a pay-per-token provider on 127.0.0.1 speaking OpenAI's and Anthropic's wire
  formats (JSON and SSE, error bodies, `Retry-After`), with a fault table (`faults`: 429, 5xx, resets,
  stalls, malformed or dropped streams, slow first tokens). Also a CLI:
  `python -m orchestrator.testing.provider --port 9100`. Its parts: `replies` (what both formats share),
  `openai_wire`, `anthropic_wire`, `faults`, `delivery` (pacing), `recorder` (what it saw), `control`
  (health, models, its own controls), `loop_thread` (serving from a thread).
- `clock.FakeClock` — a clock that moves only when told to.

Import them from here (`from orchestrator.testing import FakeEngine, FakeProvider`) or from their modules.
"""

from __future__ import annotations

from orchestrator.testing.clock import FakeClock
from orchestrator.testing.engine import FakeEngine, Generation
from orchestrator.testing.faults import FAULT_MODES, Fault
from orchestrator.testing.provider import FakeProvider
from orchestrator.testing.recorder import RecordedRequest

__all__ = ["FAULT_MODES", "FakeClock", "FakeEngine", "FakeProvider", "Fault", "Generation", "RecordedRequest"]
