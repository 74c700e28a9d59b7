"""Deploying the way Ray users do: a Serve config file for `serve run` / `serve deploy`, and a KubeRay RayService.

    orchestrator build-config [--config FILE] [--rayservice] [-o OUT]

`app_builder` is the Serve application builder the config's `import_path` names
(`orchestrator.deploy:app_builder`). Its `args` carry the orchestrator's settings whole
(`settings:`, the validated config as plain data), so nothing but the installed package need be on
the cluster's nodes; they hold no secret (provider keys and the master key are read from each
node's environment, virtual keys are kept as their sha256).

What Serve reads from its processes' environment (direct ingress, the throughput bundle: see
`runtime.serve_env`) must be set on every node before Ray starts there, since Serve's controller
reads it too: the Serve config says so in its header, and the RayService sets it in the head's and
the workers' containers. There, the head runs the Gateway, the LoadBoard and the ledger actor (CPU);
the GPU worker group runs the LocalModel replicas, placed by a custom resource (`local_model: 1`) that
only those workers offer.

Clients reach the gateway as under `orchestrator serve`: with direct ingress each Gateway replica
listens on `server.port` (+ its index) on its own node, so several gateway nodes need a load balancer
in front (a Kubernetes Service over the head pods, a cloud load balancer); with `server.haproxy`
Serve's HAProxy listens on `server.port` on every node and spreads requests over every Gateway
replica of the cluster (they listen on the ports after it); with `server.direct_ingress: false`
Serve's proxy listens on `server.port` on every node instead. The
response cache is on each gateway node's local disk (`cache.directory`): a hit is local and costs no
network round trip, at the price of each node warming its own.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import yaml

from orchestrator.runtime import APP_NAME, serve_env
from orchestrator.settings import Settings

IMPORT_PATH = "orchestrator.deploy:app_builder"
LOCAL_RESOURCE = "local_model"  # the custom resource only GPU workers offer: LocalModel replicas go there
PROXY_PORT_OFFSET = 1000  # with direct ingress Serve's own proxy moves out of the gateway's way
CLUSTER_DATA_DIR = Path("/home/ray/.cache/burst-orchestrator")  # the home of Ray's images' user


def app_builder(args: dict[str, Any]) -> Any:
    """The Serve application for a config file's `import_path`: `args` is `{"settings": {...}}`."""
    from orchestrator.app import build_application

    if not isinstance(args, dict) or not isinstance(args.get("settings"), dict):
        raise ValueError("orchestrator.deploy:app_builder takes args: {settings: <the orchestrator's settings>}")
    return build_application(Settings.model_validate(args["settings"]))


def serve_config(settings: Settings) -> dict[str, Any]:
    """A Serve config file (Ray's `ServeDeploySchema`) that runs `settings` as `orchestrator serve` would."""
    server = settings.server
    # Serve's proxy on server.port, or its HAProxy (server.haproxy); with plain direct ingress the Gateway is there.
    port = server.port + PROXY_PORT_OFFSET if server.direct_ingress and not server.haproxy else server.port
    return {
        "proxy_location": "EveryNode",
        "http_options": {"host": server.host, "port": port},
        "logging_config": {"enable_access_log": server.access_log},
        "applications": [
            {
                "name": APP_NAME,
                "route_prefix": "/",
                "import_path": IMPORT_PATH,
                "runtime_env": {"env_vars": serve_env(settings)},
                # Whole: validating settings fills what is missing from the node's default.yaml, not from these.
                "args": {"settings": settings.model_dump(mode="json")},
            }
        ],
    }


def cluster_settings(settings: Settings) -> Settings:
    """`settings` for a KubeRay cluster: listening on every interface, each LocalModel replica on a GPU of
    a GPU worker, prepared models under the Ray image user's home."""
    local = settings.local.model_copy(
        update={
            "resources": {**settings.local.resources, LOCAL_RESOURCE: 1},
            "num_gpus": max(settings.local.num_gpus, 1),
        }
    )
    server = settings.server.model_copy(update={"host": "0.0.0.0"})
    return settings.model_copy(update={"local": local, "server": server, "data_dir": CLUSTER_DATA_DIR})


def rayservice(
    settings: Settings, *, name: str = "burst-orchestrator", image: str = "burst-orchestrator:latest"
) -> dict[str, Any]:
    """A KubeRay `RayService` embedding the Serve config: a CPU head (Gateway, LoadBoard, ledger) and a
    GPU worker group (LocalModel), the Serve environment on both."""
    cluster = cluster_settings(settings)
    env: list[dict[str, Any]] = [{"name": k, "value": v} for k, v in serve_env(cluster).items()]
    env += [
        {
            "name": "ORCHESTRATOR_MASTER_KEY",
            "valueFrom": {"secretKeyRef": {"name": f"{name}-keys", "key": "master", "optional": True}},
        }
    ]

    def container(kind: str, resources: dict[str, Any], ports: list[dict[str, Any]] | None = None) -> dict[str, Any]:
        spec: dict[str, Any] = {"name": kind, "image": image, "env": env, "resources": resources}
        spec["envFrom"] = [{"secretRef": {"name": f"{name}-provider-keys", "optional": True}}]
        if ports:
            spec["ports"] = ports
        return spec

    port = cluster.server.port
    head = container(
        "ray-head",
        {"limits": {"cpu": "4", "memory": "16Gi"}, "requests": {"cpu": "4", "memory": "16Gi"}},
        [{"containerPort": port, "name": "gateway"}, {"containerPort": 6379, "name": "gcs"}],
    )
    worker = container(
        "ray-worker",
        {"limits": {"nvidia.com/gpu": "1", "cpu": "8", "memory": "64Gi"}, "requests": {"cpu": "8", "memory": "64Gi"}},
    )
    return {
        "apiVersion": "ray.io/v1",
        "kind": "RayService",
        "metadata": {"name": name},
        "spec": {
            "serveConfigV2": _yaml(serve_config(cluster)),
            "rayClusterConfig": {
                "headGroupSpec": {
                    # No GPU and no `local_model` resource on the head: LocalModel replicas never land there.
                    "rayStartParams": {"num-gpus": "0", "dashboard-host": "0.0.0.0"},
                    "template": {"spec": {"containers": [head]}},
                },
                "workerGroupSpecs": [
                    {
                        "groupName": "gpu",
                        "replicas": 1,
                        "minReplicas": 1,
                        "maxReplicas": 4,
                        "rayStartParams": {"resources": f'"{{\\"{LOCAL_RESOURCE}\\": 1}}"'},
                        "template": {"spec": {"containers": [worker]}},
                    }
                ],
            },
        },
    }


def render(settings: Settings, *, kube: bool) -> str:
    """The Serve config (or the RayService) as YAML, headed by what to set where."""
    if kube:
        header = (
            "# KubeRay RayService for the burst orchestrator (orchestrator build-config --rayservice).\n"
            "# Secrets: <name>-provider-keys (the providers' API key variables), <name>-keys (master).\n"
        )
        return header + _yaml(rayservice(settings))
    env = " ".join(f"{k}={v}" for k, v in serve_env(settings).items())
    header = (
        "# Ray Serve config for the burst orchestrator (orchestrator build-config).\n"
        "# Serve's controller reads these too: set them on every node before Ray starts there, e.g.\n"
        f"#   {env} ray start --head\n"
        "#   serve deploy THIS_FILE        (or, on one machine: the same variables before `serve run THIS_FILE`)\n"
    )
    return header + _yaml(serve_config(settings))


class _Dumper(yaml.SafeDumper):
    """YAML with multi-line strings (the embedded Serve config) as literal blocks."""


def _block(dumper: yaml.SafeDumper, text: str) -> yaml.Node:
    return dumper.represent_scalar("tag:yaml.org,2002:str", text, style="|" if "\n" in text else None)


_Dumper.add_representer(str, _block)


def _yaml(data: Any) -> str:
    return yaml.dump(data, Dumper=_Dumper, sort_keys=False, width=120)


def build_config(settings: Settings, *, kube: bool, output: Path | None) -> int:
    text = render(settings, kube=kube)
    if output is None:
        print(text, end="")
    else:
        output.write_text(text)
    return 0
