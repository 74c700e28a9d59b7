"""The cluster's single owners: one named, detached Ray actor per file (ledger, stored responses, conversations).

Every gateway replica, on every node, gets the same actor by name (get-or-create); it outlives the
replica that happened to create it, asks for no CPU, and comes back after a crash (its state is on
disk, at the path its name is derived from). It lives on the head node, whatever node created it: its
file is on that node's local disk, so a restart elsewhere (a worker scaled away) would open an empty
one; the head lives as long as the cluster does.
"""

from __future__ import annotations

import hashlib
from pathlib import Path
from typing import Any

NAMESPACE = "orchestrator"
# Ray's marker of the head node (every head offers 1 of it; Serve pins its controller the same way).
HEAD_NODE = {"node:__internal_head__": 0.001}


def actor_name(kind: str, path: Path) -> str:
    """One actor per file: two applications with different files never share one."""
    return f"{kind}-" + hashlib.sha256(str(path).encode()).hexdigest()[:12]


def named_actor(cls: type, kind: str, path: Path, *args: Any, retry_tasks: bool, **kwargs: Any) -> Any:
    """The actor handle for `kind` at `path`, started with `cls(*args, **kwargs)` if no one has yet.
    `retry_tasks`: its methods are safe to run again after a crash (else a call that was running fails)."""
    import ray

    options: Any = ray.remote(cls).options(  # type: ignore[attr-defined]
        name=actor_name(kind, path),
        namespace=NAMESPACE,
        get_if_exists=True,
        lifetime="detached",
        num_cpus=0,
        resources=HEAD_NODE,
        max_restarts=-1,
        max_task_retries=-1 if retry_tasks else 0,
        # Called for every request: a task event each would fill the GCS's store (~4 KB a call, up to its
        # cap; benchmarks/ray_rss.py), as Serve's own handle calls don't.
        enable_task_events=False,
    )
    return options.remote(*args, **kwargs)
