"""A configuration mistake at the command line: one clear message naming each bad setting, exit 2, no traceback."""

from __future__ import annotations

from pathlib import Path

import pytest

from orchestrator.cli import main
from orchestrator.settings import load_settings


def run(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str]:
    code = main(list(argv))
    return code, capsys.readouterr().err


@pytest.mark.parametrize("command", ["serve", "prepare", "report", "build-config"])
def test_every_setting_that_is_wrong_is_named_and_nothing_starts(
    command: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    config = tmp_path / "c.yaml"
    config.write_text(
        "server:\n  port: sk-not-a-port-but-a-secret\n  prot: 8001\nlocal:\n  model: null\nscheduler:\n  hedge_at: -1\n"
    )
    code, err = run(capsys, command, "--config", str(config))
    assert code == 2
    assert f"orchestrator {command}: invalid configuration ({config}" in err
    assert "  server.port: Input should be a valid integer" in err
    assert "  server.prot: not a setting (a typo" in err  # silently ignored before
    assert "  local.model: Input should be a valid string" in err  # crashed the deployment with an AssertionError
    assert "  scheduler.hedge_at: Input should be greater than 0" in err  # would hedge every local request at once
    assert "sk-not-a-port-but-a-secret" not in err  # values are never echoed: one may be a key
    assert "Traceback" not in err


def test_a_config_that_is_not_yaml_or_not_there(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    broken = tmp_path / "broken.yaml"
    broken.write_text("server: [\n")
    code, err = run(capsys, "serve", "--config", str(broken))
    assert code == 2 and f"orchestrator serve: {broken} is not valid YAML" in err
    code, err = run(capsys, "serve", "--config", str(tmp_path / "missing.yaml"))
    assert code == 2 and "config file not found" in err


def test_an_environment_variable_with_a_typo_is_named_too(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    config = tmp_path / "c.yaml"
    config.write_text("{}\n")
    monkeypatch.setenv("ORCH_SCHEDULER__HEADROM", "0.7")
    code, err = run(capsys, "build-config", "--config", str(config))
    assert code == 2
    assert "  scheduler.headrom: not a setting" in err


def test_a_route_naming_no_configured_provider_or_model_is_named(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    config = tmp_path / "c.yaml"
    config.write_text(
        "models:\n  fast: [smollm2-135m, openruoter/llama-3.1-8b-instruct]\n  big: [openrouter/llama-9000]\n"
    )
    code, err = run(capsys, "build-config", "--config", str(config))
    assert code == 2
    # Both were dropped as "unavailable" before, the alias quietly served by what was left.
    assert "  models.fast.routes[1]: 'openruoter/llama-3.1-8b-instruct' names no provider 'openruoter' (" in err
    openrouter = (
        "providers:\n  openrouter:\n    base_url: https://openrouter.ai/api/v1\n    api_key_env: OPENROUTER_API_KEY\n"
        "    models:\n      llama-3.1-8b-instruct: {id: meta-llama/llama-3.1-8b-instruct}\n"
    )
    config.write_text(openrouter + "models:\n  big: [openrouter/llama-9000]\n")
    code, err = run(capsys, "build-config", "--config", str(config))
    assert code == 2 and "providers.openrouter.models has no 'llama-9000'" in err


def test_names_that_name_nothing_configured_are_named(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """A rule that could never apply, a key limited to (or downgraded to) a model nobody serves, a reference
    model with no price: all loaded before."""
    openrouter = (
        "providers:\n  openrouter:\n    base_url: https://openrouter.ai/api/v1\n    api_key_env: OPENROUTER_API_KEY\n"
        "    models:\n      small: {id: meta-llama/llama-3.1-8b-instruct}\n"
    )
    key = "a" * 64
    config = tmp_path / "c.yaml"
    config.write_text(
        openrouter + "models:\n  chat:\n    routes: [smollm2-135m]\n    rules: [{use: smarter, pattern: prove}]\n"
        f"keys:\n  team:\n    sha256: '{key}'\n    models: [chat, gpt-5]\n    downgrade_to: cheapest\n"
        "ledger:\n  reference_model: openrouter/gpt-5\n"
    )
    code, err = run(capsys, "build-config", "--config", str(config))
    assert code == 2, err
    assert "  models.chat.rules[0].use: 'smarter' names no alias, route or local model" in err
    assert "  keys.team.models[1]: 'gpt-5' names no alias, route or local model" in err
    assert "  keys.team.downgrade_to: 'cheapest' names no alias, route or local model" in err
    assert "  ledger.reference_model: 'openrouter/gpt-5' names no configured provider/model" in err
    assert "models[0]" not in err  # `chat`, an alias, is fine

    config.write_text(
        openrouter
        + "models:\n  chat:\n    routes: [smollm2-135m]\n    rules: [{use: openrouter/small, pattern: prove}]\n"
        "  openrouter/small: [openrouter/small, smollm2-135m]\n"  # an alias named like a route (LiteLLM's habit)
        f"keys:\n  team:\n    sha256: '{key}'\n    models: [chat, smollm2-135m, openrouter/small]\n"
        "    downgrade_to: smollm2-135m\nledger:\n  reference_model: openrouter/small\n"
    )
    code, err = run(capsys, "build-config", "--config", str(config))
    assert code == 0, err


def test_a_config_file_replaces_the_default_one(tmp_path: Path) -> None:
    """A `--config` file was merged into config/default.yaml: the presets' providers, models and aliases
    an operator left out came back (and served, where their keys were in the environment)."""
    config = tmp_path / "c.yaml"
    config.write_text(
        "providers:\n  openrouter:\n    base_url: https://openrouter.ai/api/v1\n    api_key_env: OPENROUTER_API_KEY\n"
        "    models:\n      only: {id: meta-llama/llama-3.1-8b-instruct}\nmodels:\n  chat: [openrouter/only]\n"
    )
    settings = load_settings(config)
    assert list(settings.providers) == ["openrouter"] and list(settings.providers["openrouter"].models) == ["only"]
    assert list(settings.models) == ["chat"]
    assert len(load_settings().providers) > 1  # the default file still has its presets


def test_the_documented_local_model_override_still_loads(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("ORCH_LOCAL__MODEL", "tiny-random")  # the default aliases name smollm2-135m: dropped, logged
    code, err = run(capsys, "build-config")
    assert code == 0, err


def test_limits_urls_and_key_hashes_that_could_never_work_are_named(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """Each loaded before: rpm 0 made every request of the key a 503 (an empty minute window read), a
    base_url that isn't http(s) a 500 on every request (or a gateway that couldn't start), a negative SLO
    sent everything past the local model at once, and a second id with the same hash silently took the
    first one's place (its limits gone)."""
    h = "a" * 64
    config = tmp_path / "c.yaml"
    config.write_text(
        f"keys:\n  k: {{sha256: '{h}', rpm: 0, budget_usd: -5}}\n"
        "providers:\n  p: {base_url: 'ftp://example.com', api_key_env: X}\n"
        "  q: {base_url: 'http://[::1', api_key_env: Y}\n"
        "scheduler: {ttft_slo_ms: -1}\n"
    )
    code, err = run(capsys, "build-config", "--config", str(config))
    assert code == 2 and "Traceback" not in err
    for line in (
        "keys.k.rpm:",
        "keys.k.budget_usd:",
        "providers.p.base_url: not an http(s) URL",
        "providers.q.base_url: not a URL",
        "scheduler.ttft_slo_ms:",
    ):
        assert line in err, err
    config.write_text(f"keys:\n  team: {{sha256: '{h}', budget_usd: 0}}\n  team2: {{sha256: '{h}'}}\n")
    code, err = run(capsys, "build-config", "--config", str(config))
    assert code == 2 and "keys.team2.sha256 is the same key as keys.team" in err


def test_hostile_files_get_a_line_not_a_traceback_or_a_hang(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """A bad regular expression in a rule, a config that isn't UTF-8, and LiteLLM files nested past the
    parser's limit, or with an alias in itself, or an alias bomb (9^12 paths), were tracebacks or a hang."""
    regex = tmp_path / "re.yaml"
    regex.write_text("models:\n  auto:\n    routes: [smollm2-135m]\n    rules: [{pattern: '(', use: local}]\n")
    code, err = run(capsys, "build-config", "--config", str(regex))
    assert code == 2 and "models.auto.rules.0.pattern: not a regular expression" in err
    latin = tmp_path / "latin.yaml"
    latin.write_bytes(b'local: {model: "caf\xe9"}\n')
    code, err = run(capsys, "build-config", "--config", str(latin))
    assert code == 2 and "is not UTF-8 text" in err and "Traceback" not in err
    deep = tmp_path / "deep.yaml"
    deep.write_text("a: " + "[" * 5000 + "]" * 5000 + "\n")
    code, err = run(capsys, "import-litellm", str(deep))
    assert code == 2 and "nested too deeply" in err
    bomb = "a0: &a0 [x, x, x, x, x, x, x, x, x]\n" + "".join(
        f"a{i}: &a{i} [{', '.join([f'*a{i - 1}'] * 9)}]\n" for i in range(1, 12)
    )
    for text in ("a: &a [*a]\n", bomb):
        (tmp_path / "l.yaml").write_text(text)
        code, err = run(capsys, "import-litellm", str(tmp_path / "l.yaml"))
        assert code == 0 and "not mapped" in err
