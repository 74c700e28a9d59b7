"""The same engine on a CUDA GPU: a realistic-size model with dummy weights.

`load_format="dummy"` builds random weights from a config, so Qwen2.5-7B's
shape runs with no weights on disk. Skipped where no GPU exists.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from local_models.engine import EngineConfig, VllmEngine

pytestmark = pytest.mark.gpu

QWEN_7B_SHAPE = {
    "architectures": ["Qwen2ForCausalLM"],
    "model_type": "qwen2",
    "hidden_size": 3584,
    "intermediate_size": 18944,
    "num_hidden_layers": 28,
    "num_attention_heads": 28,
    "num_key_value_heads": 4,
    "max_position_embeddings": 32768,
    "vocab_size": 152064,
    "rms_norm_eps": 1e-6,
    "rope_theta": 1000000.0,
    "torch_dtype": "bfloat16",
    "tie_word_embeddings": False,
    "hidden_act": "silu",
}


async def test_dummy_7b_streams_on_gpu(tmp_path: Path) -> None:
    from local_models.catalog import prepare

    tok = prepare("tiny-random", tmp_path, progress=False).path  # any tokenizer will do
    model = tmp_path / "qwen7b-dummy"
    model.mkdir()
    (model / "config.json").write_text(json.dumps({**QWEN_7B_SHAPE, "vocab_size": 152064}))
    for f in tok.iterdir():
        if f.name.startswith(("tokenizer", "special_tokens", "chat_template")):
            (model / f.name).write_bytes(f.read_bytes())
    engine = await VllmEngine.start(
        EngineConfig(
            model_path=str(model),
            served_name="qwen7b-dummy",
            max_model_len=4096,
            kv_cache_bytes=8 << 30,
            dtype="bfloat16",
            extra_engine_args={"load_format": "dummy"},
        )
    )
    try:
        batches = [
            b
            async for b in engine.generate(
                {
                    "request_id": "gpu-1",
                    "kind": "completion",
                    "prompts": ["hello"],
                    "sampling": {"temperature": 0, "max_tokens": 32},
                    "stream": True,
                }
            )
        ]
        assert batches[-1]["usage"]["completion_tokens"] == 32
    finally:
        engine.shutdown()
