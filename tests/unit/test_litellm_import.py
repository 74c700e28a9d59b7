"""`orchestrator import-litellm`: LiteLLM proxy configs (tests/fixtures/litellm/, adapted from LiteLLM's
documented examples) turned into ours; what can't map is a note; the result loads as our Settings."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import yaml

from orchestrator import cli
from orchestrator.litellm_import import Note, convert, key_lines, render
from orchestrator.settings import Settings, load_settings

FIXTURES = Path(__file__).resolve().parent.parent / "fixtures" / "litellm"
ALL = sorted(FIXTURES.glob("*.yaml"))
# Every secret value in the fixtures: none may reach the output or the notes.
SECRETS = ["sk-dummy-first-7Qx", "sk-dummy-second-9Lm", "dummy-redis-pw-5Kt", "sk-1234"]


def load(name: str) -> tuple[dict[str, Any], list[Note], str]:
    text = (FIXTURES / name).read_text()
    settings, notes = convert(yaml.safe_load(text))
    return settings, notes, text


def notes_at(notes: list[Note], key: str) -> list[str]:
    return [n.message for n in notes if n.key == key]


def as_settings(tmp_path: Path, settings: dict[str, Any]) -> Settings:
    """Loaded the way the app loads a config file."""
    path = tmp_path / "imported.yaml"
    path.write_text(render(settings, "test"))
    return load_settings(path)


def test_reliability_config_maps_groups_fallbacks_retries_cache_and_master_key(tmp_path: Path) -> None:
    settings, notes, _ = load("reliability.yaml")
    providers = settings["providers"]
    assert {n: (p["base_url"], p["api_key_env"]) for n, p in providers.items()} == {
        "openai": ("https://api.openai.com/v1", "OPENAI_API_KEY"),
        "openrouter": ("https://openrouter.ai/api/v1", "OPENROUTER_API_KEY"),
        "anthropic": ("https://api.anthropic.com", "ANTHROPIC_API_KEY"),
        "groq": ("https://api.groq.com/openai/v1", "GROQ_API_KEY"),
        "together": ("https://api.together.xyz/v1", "TOGETHERAI_API_KEY"),
        "vllm": ("http://localhost:8001/v1", "HOSTED_VLLM_API_KEY"),
        "deepseek": ("https://api.deepseek.com/v1", "DEEPSEEK_API_KEY"),
    }
    assert providers["anthropic"]["kind"] == "anthropic"
    assert providers["openrouter"]["models"]["gpt-4o"]["id"] == "openai/gpt-4o"
    sonnet = providers["anthropic"]["models"]["claude-3-5-sonnet-20241022"]
    assert (sonnet["input_per_mtok"], sonnet["output_per_mtok"], sonnet["vision"]) == (3.0, 15.0, True)
    assert providers["deepseek"]["quirks"]["max_tokens_ceiling"] == 8192  # our preset's known quirk
    # One alias per model_name, its deployments as routes, then the fallbacks' routes.
    assert settings["models"] == {
        "gpt-4o": ["openai/gpt-4o", "openrouter/gpt-4o", "anthropic/claude-3-5-sonnet-20241022"],
        "claude-3-5-sonnet": ["anthropic/claude-3-5-sonnet-20241022"],
        "llama-3.1-8b": [
            "groq/llama-3.1-8b-instant",
            "together/Meta-Llama-3.1-8B-Instruct-Turbo",
            "deepseek/deepseek-chat",
        ],
        "qwen-local": ["vllm/Qwen2.5-7B-Instruct"],
        "deepseek-chat": ["deepseek/deepseek-chat"],
    }
    assert settings["resilience"] == {
        "attempts": 3,
        "deadline_s": 30.0,
        "breaker_threshold": 3,
        "breaker_cooldown_s": 60.0,
    }
    assert settings["cache"] == {"enabled": True, "ttl_s": 600.0}
    assert settings["ledger"] == {"master_key_env": "LITELLM_MASTER_KEY"}
    # What can't map, each at its key.
    assert "disk cache" in notes_at(notes, "litellm_settings.cache_params.type")[0]
    assert "gpt-5" in notes_at(notes, "router_settings.fallbacks[1].llama-3.1-8b")[0]
    assert notes_at(notes, "litellm_settings.context_window_fallbacks")
    assert notes_at(notes, "router_settings.routing_strategy")
    assert notes_at(notes, "router_settings.redis_host")
    assert notes_at(notes, "general_settings.database_url")
    assert notes_at(notes, "model_list[6].litellm_params.temperature")
    assert "HOSTED_VLLM_API_KEY" in notes_at(notes, "model_list[5].litellm_params.api_key")[0]
    assert "load-balances" in notes_at(notes, "model_list[0].model_name")[0]

    loaded = as_settings(tmp_path, settings)
    assert loaded.ledger.master_key_env == "LITELLM_MASTER_KEY"
    assert loaded.models["gpt-4o"].routes[-1] == "anthropic/claude-3-5-sonnet-20241022"
    assert loaded.providers["anthropic"].kind == "anthropic"
    assert loaded.resilience.attempts == 3 and loaded.cache.ttl_s == 600.0


def test_load_balancer_config_keeps_no_literal_key(tmp_path: Path) -> None:
    settings, notes, _ = load("load_balancer.yaml")
    assert settings["models"] == {"gpt-3.5-turbo": ["openai/gpt-3.5-turbo", "openrouter/gpt-3.5-turbo"]}
    assert settings["providers"]["openai"]["api_key_env"] == "OPENAI_API_KEY"
    for i in (0, 1):
        assert "never copied" in notes_at(notes, f"model_list[{i}].litellm_params.api_key")[0]
        assert notes_at(notes, f"model_list[{i}].rpm") and notes_at(notes, f"model_list[{i}].tpm")
    assert "mistralai" in notes_at(notes, "model_list[3].litellm_params.model")[0]
    assert notes_at(notes, "environment_variables.REDIS_PASSWORD")
    assert notes_at(notes, "litellm_settings.drop_params")
    assert as_settings(tmp_path, settings).models["gpt-3.5-turbo"].routes[0] == "openai/gpt-3.5-turbo"


def test_azure_and_bedrock_are_skipped_with_notes_and_a_custom_base_gets_its_own_key(tmp_path: Path) -> None:
    settings, notes, _ = load("azure_config.yaml")
    assert settings == {}
    assert [n.key for n in notes] == ["model_list[0].litellm_params.model", "model_list[1].litellm_params.model"]
    assert all("Azure" in n.message for n in notes)
    as_settings(tmp_path, settings)

    settings, notes, _ = load("quickstart.yaml")
    # openai/ with an api_base: an OpenAI-compatible server, never sent OPENAI_API_KEY.
    assert settings["providers"] == {
        "openai-compatible": {
            "base_url": "http://0.0.0.0:4000/v1",
            "api_key_env": "OPENAI_COMPATIBLE_API_KEY",
            "models": {"opt-125m": {"id": "facebook/opt-125m"}},
        }
    }
    assert settings["models"] == {"vllm-models": ["openai-compatible/opt-125m"]}
    assert "bedrock" in notes_at(notes, "model_list[1].litellm_params.model")[0]
    assert "Azure" in notes_at(notes, "model_list[2].litellm_params.model")[0]
    assert "ORCHESTRATOR_MASTER_KEY" in notes_at(notes, "general_settings.master_key")[0]
    assert "ledger" not in settings
    as_settings(tmp_path, settings)


@pytest.mark.parametrize("path", ALL, ids=lambda p: p.name)
def test_every_fixture_validates_and_every_route_resolves(tmp_path: Path, path: Path) -> None:
    settings, notes = convert(yaml.safe_load(path.read_text()))
    loaded = as_settings(tmp_path, settings)
    for alias in settings.get("models", {}):
        for route in loaded.models[alias].routes:
            provider, _, model = route.partition("/")
            assert model in loaded.providers[provider].models, (alias, route)
            assert loaded.providers[provider].api_key_env == settings["providers"][provider]["api_key_env"]
    shown = render(settings, path.name) + "\n".join(n.render(key_lines(path.read_text())) for n in notes)
    assert not [s for s in SECRETS if s in shown]


def test_notes_carry_the_yaml_line() -> None:
    text = (FIXTURES / "quickstart.yaml").read_text()
    _, notes = convert(yaml.safe_load(text))
    master = next(n for n in notes if n.key == "general_settings.master_key")
    line = text.splitlines().index("  master_key: sk-1234") + 1
    assert master.render(key_lines(text)) == f"line {line}: {master.key}: {master.message}"


def test_cli_prints_the_config_and_the_notes(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert cli.main(["import-litellm", str(FIXTURES / "load_balancer.yaml")]) == 0
    out, err = capsys.readouterr()
    assert yaml.safe_load(out)["models"] == {"gpt-3.5-turbo": ["openai/gpt-3.5-turbo", "openrouter/gpt-3.5-turbo"]}
    assert "model_list[0].litellm_params.api_key: a literal key is never copied" in err
    assert not [s for s in SECRETS if s in out + err]

    target = tmp_path / "out.yaml"
    assert cli.main(["import-litellm", str(FIXTURES / "reliability.yaml"), "-o", str(target)]) == 0
    out, err = capsys.readouterr()
    assert out == "" and "disk cache" in err
    assert load_settings(target).ledger.master_key_env == "LITELLM_MASTER_KEY"


def test_cli_missing_or_invalid_file_exits_2(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert cli.main(["import-litellm", str(tmp_path / "nope.yaml")]) == 2
    assert "cannot import" in capsys.readouterr().err
    bad = tmp_path / "bad.yaml"
    bad.write_text("model_list: [\n  api_key: sk-secret-in-broken-yaml\n")
    assert cli.main(["import-litellm", str(bad)]) == 2
    err = capsys.readouterr().err
    assert "invalid YAML at line" in err and "sk-secret" not in err
    bad.write_text("- just\n- a list\n")
    assert cli.main(["import-litellm", str(bad)]) == 2
    assert cli.main(["import-litellm", str(FIXTURES / "quickstart.yaml"), "-o", str(tmp_path)]) == 2
    assert "cannot write" in capsys.readouterr().err


def test_cli_as_a_subprocess() -> None:
    done = subprocess.run(
        [sys.executable, "-m", "orchestrator.cli", "import-litellm", str(FIXTURES / "quickstart.yaml")],
        capture_output=True,
        text=True,
        check=False,
        timeout=120,
    )
    assert done.returncode == 0, done.stderr
    assert "openai-compatible/opt-125m" in done.stdout and "sk-1234" not in done.stdout + done.stderr


def test_a_prefix_without_a_model_or_a_key_variable_no_shell_can_set_is_a_note() -> None:
    """`openai/` became a model with an empty id, and `os.environ/MY KEY` a variable no one can set."""
    settings, notes = convert(
        {
            "model_list": [
                {"model_name": "a", "litellm_params": {"model": "openai/"}},
                {"model_name": "b", "litellm_params": {"model": "openai/gpt-4o", "api_key": "os.environ/MY KEY"}},
                {"model_name": "openai/gpt-4o-mini", "litellm_params": {"model": "openai/gpt-4o-mini"}},
            ]
        }
    )
    assert "names a provider but no model" in notes_at(notes, "model_list[0].litellm_params.model")[0]
    assert "not one a shell can set" in notes_at(notes, "model_list[1].litellm_params.api_key")[0]
    assert settings["models"] == {"openai/gpt-4o-mini": ["openai/gpt-4o-mini"]}
