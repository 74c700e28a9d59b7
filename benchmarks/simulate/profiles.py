"""What a simulated local engine and a simulated remote provider are made of.

An `EngineProfile` is one replica of a vLLM engine as a step-time model:

    step = (base + per_seq x decoding sequences + per_token x prefill tokens in the step) x noise

with vLLM's scheduler limits around it (`max_num_seqs` running at once, `max_batched_tokens` per
step with chunked prefill, `kv_capacity_tokens` of KV cache) and the hop between gateway and engine.
Profiles are JSON files under `profiles/` that cite where their figures come from: one measured on
this machine (`python -m benchmarks.simulate.measure_engine`), one for a GPU from published figures
(to be replaced by `benchmarks/gpu_check.sh`'s measurement when a GPU is lent).

A `RemoteProfile` is one pay-per-token route: its time to first token (lognormal), its prices
(from the config's provider presets), and how often it answers 429 or fails.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, fields, replace
from pathlib import Path
from typing import Any

PROFILES = Path(__file__).resolve().parent / "profiles"


@dataclass(frozen=True)
class EngineProfile:
    name: str
    max_num_seqs: int
    max_batched_tokens: int  # prefill + decode tokens per step (chunked prefill)
    kv_capacity_tokens: int
    step_base_ms: float
    step_per_seq_ms: float  # each decoding sequence in the step
    prefill_ms_per_token: float  # each prompt token computed in the step
    step_noise: float = 0.0  # sigma of a lognormal factor on every step (a shared CPU, clocks)
    hop_ms: float = 0.0  # gateway -> engine -> gateway, added to every local first token
    first_token_ms: float = 0.0  # the engine's fixed cost of a new request outside its steps (chat template,
    # tokenizer, output path), added to every local first token
    capacity_concurrency: int = 4  # streams per replica of the closed loop that defines capacity C
    source: str = ""
    measured_capacity_rps: float | None = None  # the C `measure_engine` measured on the real engine, if it did

    @classmethod
    def load(cls, name_or_path: str) -> EngineProfile:
        path = Path(name_or_path)
        if not path.suffix:
            path = PROFILES / f"{name_or_path}.json"
        raw: dict[str, Any] = json.loads(path.read_text())
        known = {f.name for f in fields(cls)} - {"measured_capacity_rps"}  # derived from `measured`, below
        measured = raw.get("measured") or {}
        c = measured.get("capacity_rps") or measured.get("capacity_rps_at_4")  # (the older profiles' name)
        return cls(**{k: v for k, v in raw.items() if k in known}, measured_capacity_rps=c)

    def slowed(self, factor: float) -> EngineProfile:
        """The same engine `factor` times slower (its steps, its prefill and its fixed cost a request;
        not the hop): its capacity C divided by `factor`."""
        return replace(
            self,
            step_base_ms=self.step_base_ms * factor,
            step_per_seq_ms=self.step_per_seq_ms * factor,
            prefill_ms_per_token=self.prefill_ms_per_token * factor,
            first_token_ms=self.first_token_ms * factor,
        )

    def to_json(self, extra: dict[str, Any] | None = None) -> str:
        """The profile's file: its fields and `extra` (`measure_engine`'s `measured`, where `load` finds C)."""
        fields_ = {k: v for k, v in asdict(self).items() if k != "measured_capacity_rps"}
        return json.dumps({**fields_, **(extra or {})}, indent=1) + "\n"


@dataclass(frozen=True)
class RemoteProfile:
    provider: str
    model: str  # the gateway-side model name ("provider/model" is the route)
    ttft_median_ms: float
    ttft_sigma: float  # lognormal sigma of the time to first token
    input_per_mtok: float
    output_per_mtok: float
    tokens_per_s: float = 100.0  # output speed after the first token
    p_429: float = 0.0  # answered 429 (after `error_ms`): the next route is tried
    p_fail: float = 0.0  # failed before its first token (after about its TTFT): the next route is tried
    error_ms: float = 50.0

    @property
    def route(self) -> str:
        return f"{self.provider}/{self.model}"

    def cost_usd(self, prompt_tokens: int, output_tokens: int) -> float:
        return (prompt_tokens * self.input_per_mtok + output_tokens * self.output_per_mtok) / 1e6


# Latency and error figures are assumptions (no provider can be reached from here), chosen in the
# range providers' status pages and public latency boards show for hosted 8B models; prices come
# from config/default.yaml's presets at run time (`remote_from_presets`).
PRESET_BEHAVIOUR: dict[str, dict[str, float]] = {
    "groq": {"ttft_median_ms": 200.0, "ttft_sigma": 0.4, "tokens_per_s": 600.0, "p_429": 0.03, "p_fail": 0.005},
    "together": {"ttft_median_ms": 350.0, "ttft_sigma": 0.3, "tokens_per_s": 150.0, "p_429": 0.01, "p_fail": 0.005},
    "openrouter": {"ttft_median_ms": 400.0, "ttft_sigma": 0.3, "tokens_per_s": 100.0, "p_429": 0.01, "p_fail": 0.01},
}


def remote_from_presets(model: str, providers: list[str] | None = None) -> list[RemoteProfile]:
    """The config presets' hosts of `model` (prices as configured), with `PRESET_BEHAVIOUR`'s latency."""
    from orchestrator.settings import load_settings

    settings = load_settings()
    out = []
    for name in providers or list(PRESET_BEHAVIOUR):
        cfg = settings.providers.get(name)
        if cfg is None or model not in cfg.models:
            continue
        m = cfg.models[model]
        behaviour = PRESET_BEHAVIOUR[name]
        out.append(
            RemoteProfile(name, model, input_per_mtok=m.input_per_mtok, output_per_mtok=m.output_per_mtok, **behaviour)
        )
    return out
