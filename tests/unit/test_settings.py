"""Configuration: YAML, environment and overrides, in that order of priority."""

from __future__ import annotations

import os
import pickle
from pathlib import Path

import pytest
from pydantic import ValidationError

from orchestrator.settings import DEFAULT_CONFIG, Settings, load_settings

YAML = """\
data_dir: state/here
local:
  model: from-yaml
  max_model_len: 1024
server:
  port: 9000
"""


@pytest.fixture(autouse=True)
def clean_env(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    """No ORCH_ variable of the developer's shell leaks in; relative paths land in tmp."""
    for name in list(os.environ):
        if name.startswith("ORCH_"):
            monkeypatch.delenv(name)
    monkeypatch.chdir(tmp_path)


@pytest.fixture
def config(tmp_path: Path) -> Path:
    path = tmp_path / "config.yaml"
    path.write_text(YAML)
    return path


def test_values_come_from_the_yaml(config: Path, tmp_path: Path) -> None:
    s = load_settings(config)
    assert s.local.model == "from-yaml"
    assert s.local.max_model_len == 1024
    assert s.server.port == 9000
    assert s.server.host == "127.0.0.1"  # unset in the file: the default
    assert s.embedding.model is None


def test_data_dir_becomes_absolute(config: Path, tmp_path: Path) -> None:
    s = load_settings(config)
    assert s.data_dir.is_absolute()
    assert s.data_dir == (tmp_path / "state" / "here").resolve()


def test_data_dir_expands_the_home(config: Path, monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    assert load_settings(config, data_dir="~/x").data_dir == (tmp_path / "home" / "x").resolve()


def test_env_overrides_the_yaml(config: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("ORCH_LOCAL__MODEL", "from-env")
    monkeypatch.setenv("ORCH_SERVER__PORT", "9100")
    s = load_settings(config)
    assert s.local.model == "from-env"
    assert s.local.max_model_len == 1024  # the rest of the section still comes from the file
    assert s.server.port == 9100


def test_overrides_beat_the_env(config: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("ORCH_SERVER__PORT", "9100")
    assert load_settings(config, server={"port": 9200}).server.port == 9200


def test_missing_file(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError, match="config file not found"):
        load_settings(tmp_path / "nope.yaml")


def test_unknown_keys_are_refused(tmp_path: Path) -> None:
    path = tmp_path / "typo.yaml"
    path.write_text("locl:\n  model: x\n")
    with pytest.raises(ValidationError):
        load_settings(path)


def test_default_config_loads() -> None:
    if not DEFAULT_CONFIG.is_file():
        pytest.skip("config/default.yaml is not there")
    s = load_settings()
    assert s.data_dir.is_absolute()


def test_settings_pickle_as_the_plain_class(config: Path) -> None:
    s = load_settings(config)
    assert type(s) is Settings
    assert pickle.loads(pickle.dumps(s)) == s


def test_local_autoscaling_is_checked_against_serves_own_config_at_load() -> None:
    """A typo'd or impossible autoscaling_config is refused when the config loads, not ignored by Serve later."""
    ok = {"min_replicas": 1, "max_replicas": 2, "target_ongoing_requests": 2}
    assert load_settings(local={"autoscaling": ok}).local.autoscaling == ok
    with pytest.raises(ValidationError, match="not fields of Serve's autoscaling_config: max_replica"):
        load_settings(local={"autoscaling": {"max_replica": 2}})
    with pytest.raises(ValidationError, match="min_replicas"):
        load_settings(local={"autoscaling": {"min_replicas": 3, "max_replicas": 2}})
