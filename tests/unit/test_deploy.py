"""Deploying like a Ray user: the Serve config `orchestrator build-config` writes is one Ray's own schema
accepts, its builder makes the same application `orchestrator serve` runs, and the committed KubeRay
RayService is what the generator makes of the default config."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
import yaml
from ray.serve._private.build_app import build_app
from ray.serve.schema import ServeDeploySchema

from orchestrator.actors import HEAD_NODE
from orchestrator.cli import main
from orchestrator.deploy import LOCAL_RESOURCE, app_builder, cluster_settings, render, serve_config
from orchestrator.runtime import serve_env
from orchestrator.settings import DEFAULT_CONFIG, load_settings

RAYSERVICE = DEFAULT_CONFIG.parent / "rayservice.yaml"


def _deployments(app: Any) -> dict[str, dict[str, Any]]:
    return {d.name: dict(d.ray_actor_options) for d in build_app(app, name="orchestrator").deployments}


def test_the_serve_config_is_valid_and_carries_the_settings_whole() -> None:
    # Some values the default config sets otherwise than the settings' own defaults (no embedder).
    settings = load_settings(server={"port": 8123}, local={"max_num_seqs": 7}, embedding={"model": None})
    config = serve_config(settings)
    ServeDeploySchema.model_validate(config)  # what `serve deploy` checks
    [application] = config["applications"]
    assert application["import_path"] == "orchestrator.deploy:app_builder"
    assert application["runtime_env"]["env_vars"] == serve_env(settings)
    assert config["http_options"]["port"] != 8123  # direct ingress: the Gateway listens there, not Serve's proxy
    from orchestrator.settings import Settings

    rebuilt = Settings.model_validate(json.loads(json.dumps(application["args"]["settings"])))
    assert rebuilt == settings and rebuilt.embedding.model is None


def test_the_builder_makes_the_deployments_serve_would_run() -> None:
    app = app_builder(serve_config(load_settings())["applications"][0]["args"])
    assert set(_deployments(app)) == {"Gateway", "LoadBoard", "LocalModel", "LocalEmbedder"}


@pytest.mark.parametrize("args", [None, {}, {"settings": "nope"}, {"config": "x.yaml"}])
def test_the_builder_refuses_other_args(args: Any) -> None:
    with pytest.raises(ValueError, match="settings"):
        app_builder(args)


def test_on_a_cluster_local_models_go_to_gpu_workers_only() -> None:
    settings = cluster_settings(load_settings())
    deployments = _deployments(app_builder(serve_config(settings)["applications"][0]["args"]))
    assert deployments["LocalModel"]["resources"] == {LOCAL_RESOURCE: 1}
    assert deployments["LocalModel"]["num_gpus"] == 1
    assert "resources" not in deployments["Gateway"]
    assert deployments["LoadBoard"]["resources"] == HEAD_NODE  # with the ledger actor, on the head
    assert settings.server.host == "0.0.0.0"


def test_the_committed_rayservice_is_the_generated_one_and_wires_the_cluster() -> None:
    text = RAYSERVICE.read_text()
    assert text == render(load_settings(), kube=True), (
        "regenerate: orchestrator build-config --rayservice -o config/rayservice.yaml"
    )
    manifest = yaml.safe_load(text)
    assert manifest["kind"] == "RayService" and manifest["apiVersion"] == "ray.io/v1"
    serve = yaml.safe_load(manifest["spec"]["serveConfigV2"])
    ServeDeploySchema.model_validate(serve)
    cluster = manifest["spec"]["rayClusterConfig"]
    head = cluster["headGroupSpec"]
    [gpu] = cluster["workerGroupSpecs"]
    assert head["rayStartParams"]["num-gpus"] == "0"
    assert json.loads(json.loads(gpu["rayStartParams"]["resources"])) == {LOCAL_RESOURCE: 1}
    for group in (head, gpu):
        [container] = group["template"]["spec"]["containers"]
        env = {e["name"]: e.get("value") for e in container["env"]}
        assert env["RAY_SERVE_ENABLE_DIRECT_INGRESS"] == "1"  # Serve's controller reads it: every node has it
        assert "ORCHESTRATOR_MASTER_KEY" in env and env["ORCHESTRATOR_MASTER_KEY"] is None  # from a Secret
    [gpu_container] = gpu["template"]["spec"]["containers"]
    assert gpu_container["resources"]["limits"]["nvidia.com/gpu"] == "1"


def test_the_command_writes_the_config(tmp_path: Path) -> None:
    out = tmp_path / "serve.yaml"
    assert main(["build-config", "-o", str(out)]) == 0
    text = out.read_text()
    assert text.startswith("# Ray Serve config") and "ray start --head" in text
    ServeDeploySchema.model_validate(yaml.safe_load(text))


def test_haproxy_takes_the_port_and_the_gateways_the_ports_after_it() -> None:
    settings = load_settings(server={"port": 8123, "haproxy": True}, gateway={"num_replicas": 3})
    env = serve_env(settings)
    assert env["RAY_SERVE_ENABLE_HA_PROXY"] == "1" and env["RAY_SERVE_ENABLE_DIRECT_INGRESS"] == "1"
    assert (env["RAY_SERVE_DIRECT_INGRESS_MIN_HTTP_PORT"], env["RAY_SERVE_DIRECT_INGRESS_MAX_HTTP_PORT"]) == (
        "8124",
        "8127",  # exclusive: one port per Gateway replica
    )
    config = serve_config(settings)
    ServeDeploySchema.model_validate(config)
    assert config["http_options"]["port"] == 8123  # Serve's HAProxy listens there
    assert "RAY_SERVE_ENABLE_HA_PROXY" not in serve_env(load_settings())  # off by default
    with pytest.raises(ValueError, match="server.haproxy needs server.direct_ingress"):
        load_settings(server={"haproxy": True, "direct_ingress": False})


def test_the_replicas_run_at_normal_priority_unless_the_environment_says_otherwise(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # Ray starts every worker at nice 15, behind its own daemons: the Gateway and the engine lost their CPU
    # to them (benchmarks/README.md, "Worker priority"). The replicas' environment says 0; an operator's own
    # setting stands.
    monkeypatch.delenv("RAY_worker_niceness", raising=False)
    assert serve_env(load_settings())["RAY_worker_niceness"] == "0"
    assert serve_config(load_settings())["applications"][0]["runtime_env"]["env_vars"]["RAY_worker_niceness"] == "0"
    monkeypatch.setenv("RAY_worker_niceness", "5")
    assert serve_env(load_settings())["RAY_worker_niceness"] == "5"
