"""Starting and stopping the whole thing: Ray, Serve, the application.

Used by the CLI (`orchestrator serve`), the end-to-end tests and the
benchmarks, so all three run the same start-up path.
"""

from __future__ import annotations

import errno
import logging
import os
import signal
import socket
import threading
import time
from typing import TYPE_CHECKING

from orchestrator.settings import Settings

if TYPE_CHECKING:
    import psutil  # Ray's own copy where none is installed apart (ray/thirdparty_files, on sys.path once ray is)

APP_NAME = "orchestrator"
STOP_GRACE_S = 5.0  # how long `stop` lets Ray's processes end by themselves after `ray.shutdown()`

log = logging.getLogger(__name__)

# Serve variables given to the Ray workers only, never set in this (the driver's) process: see serve_env.
_WORKERS_ONLY = frozenset({"RAY_SERVE_THROUGHPUT_OPTIMIZED", "RAY_SERVE_LOG_TO_STDERR"})


def prepare_models(settings: Settings, *, progress: bool = True) -> None:
    """Prepare every configured catalog model up front, with progress on stderr."""
    from local_models.catalog import prepare

    for section in (settings.local, settings.embedding):
        if section.model:
            prepare(section.model, settings.data_dir, progress=progress)


def serve_env(settings: Settings) -> dict[str, str]:
    """Ray Serve's environment variables for `settings`, for every Ray worker.

    Serve reads them once per process, when `ray.serve` is first imported:
    `start` hands them to the workers it starts (the Serve controller, the
    proxy, the replicas) through the job's runtime_env, which also holds on a
    cluster started elsewhere. This process gets only the ingress ones: with
    the throughput bundle here, its own handles would run their router on the
    caller's event loop, and a synchronous call (a test, a tool) would fail.
    """
    server = settings.server
    env = {
        # Said either way: the throughput bundle would turn direct ingress on by itself.
        "RAY_SERVE_ENABLE_DIRECT_INGRESS": "1" if server.direct_ingress else "0",
        "RAY_SERVE_THROUGHPUT_OPTIMIZED": "1" if server.throughput_optimized else "0",
    }
    if server.direct_ingress:
        # The Gateway replicas listen themselves, on server.port (and the next ports, one per
        # replica); Serve's own proxy moves out of the way to a free port. With server.haproxy
        # Serve's HAProxy takes server.port and the replicas the ports after it.
        first = server.port + 1 if server.haproxy else server.port
        env["RAY_SERVE_DIRECT_INGRESS_MIN_HTTP_PORT"] = str(first)
        env["RAY_SERVE_DIRECT_INGRESS_MAX_HTTP_PORT"] = str(first + settings.gateway.num_replicas)  # exclusive
        # Serve holds a dead replica's port out of its pool for 150 s, so that an HAProxy worker still
        # running an old configuration can't send one app's traffic to another app's replica that took
        # the port. The pool here is exactly one port per replica, so a Gateway restarted on its node
        # would find no port and the node would take no requests for those 150 s. Behind HAProxy too:
        # every ingress replica on the node is this app's Gateway, so a port taken again within the
        # window is the same service (and HAProxy retries a refused connection on another replica).
        env["RAY_SERVE_PORT_QUARANTINE_S"] = os.environ.get("RAY_SERVE_PORT_QUARANTINE_S", "0")
        # Ray holds an ingress replica 30 s at shutdown for an external balancer to drain it.
        env["RAY_SERVE_DIRECT_INGRESS_MIN_DRAINING_PERIOD_S"] = os.environ.get(
            "RAY_SERVE_DIRECT_INGRESS_MIN_DRAINING_PERIOD_S", "1"
        )
    if server.haproxy:
        env["RAY_SERVE_ENABLE_HA_PROXY"] = "1"
    # Ray's GCS keeps the events of the last 100,000 tasks (for its dashboard's task list), ~4 KB each:
    # every plain actor call is one (Serve's handle calls are not). Our own actors record none
    # (`actors.named_actor`); this bounds what other plain actor calls on the cluster can add (~40 MB
    # instead of ~400; benchmarks/ray_rss.py). Read by the GCS when the head node starts: `start` sets
    # it for the Ray it starts; build-config's header says so.
    env["RAY_task_events_max_num_task_in_gcs"] = os.environ.get("RAY_task_events_max_num_task_in_gcs", "10000")
    # Ray lowers every worker process to nice 15 (its `worker_niceness`), below its own daemons (raylet, GCS,
    # log monitor) and anything else the machine runs at 0: the replicas, the Gateway and the local engine's
    # compute thread (vLLM's processes are the replica's children) then lose their CPU to whichever of those
    # wakes. Here the replicas are the service, so they run at the machine's normal priority. Each worker
    # applies it to itself when it starts, so this holds on a cluster started elsewhere too
    # (benchmarks/README.md, "Worker priority").
    env["RAY_worker_niceness"] = os.environ.get("RAY_worker_niceness", "0")
    if server.throughput_optimized:
        # The bundle also sends the replicas' logs, prints and stderr (vLLM's included) only to
        # files under the Ray session; keep them on the console as without it. With the access
        # log off nothing is logged per request, so this costs nothing on the request path.
        env["RAY_SERVE_LOG_TO_STDERR"] = os.environ.get("RAY_SERVE_LOG_TO_STDERR", "1")
    return env


class PortUnavailable(RuntimeError):
    """A port the gateways must listen on can't be bound on this machine (another program holds it, or the
    host or the port can't be used), found before anything starts: otherwise Serve retries the Gateway for good
    and `start` waits out its whole timeout for nothing."""


def gateway_ports(settings: Settings) -> range:
    """The ports a node running every Gateway replica listens on: Serve's proxy on `server.port`; with direct
    ingress one per Gateway from `server.port`, behind Serve's HAProxy (on `server.port`) from the next one."""
    server = settings.server
    if not server.direct_ingress:
        return range(server.port, server.port + 1)
    return range(server.port, server.port + settings.gateway.num_replicas + (1 if server.haproxy else 0))


def unusable_ports(host: str, ports: range) -> dict[int, str]:
    """Each port of `ports` that a listener on `host` can't bind now, with the reason. Bound as Serve's listeners
    bind (with address reuse: connections a stopped server left lingering don't count, orchestrator/rebind.py)."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    unusable: dict[int, str] = {}
    for port in ports:
        with socket.socket(family, socket.SOCK_STREAM) as s:
            s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            try:
                s.bind((host, port))
            except OSError as e:
                unusable[port] = "in use by another program" if e.errno == errno.EADDRINUSE else e.strerror or str(e)
    return unusable


def check_ports(settings: Settings) -> None:
    """Raise `PortUnavailable` if Ray will run here (no `ray.address`) and a gateway port can't be bound."""
    if settings.ray.address is not None:  # the gateways listen on the cluster's nodes, not necessarily here
        return
    server = settings.server
    unusable = unusable_ports(server.host, gateway_ports(settings))
    if unusable:
        reasons = "; ".join(f"{port}: {why}" for port, why in unusable.items())
        raise PortUnavailable(
            f"can't listen on {server.host} port {reasons}. Stop what holds it, or choose another server.port "
            "(ORCH_SERVER__PORT in the environment)."
        )


def start(settings: Settings, *, timeout_s: float = 900.0, verbose: bool = True) -> None:
    """Start Ray (or join `ray.address`), Serve on the configured port, and the app.

    Returns once every deployment is ready; raises `TimeoutError` if that
    takes longer than `timeout_s` (Serve itself would wait forever on a
    deployment it cannot place). `verbose`: the replicas' and engines' logs
    are shown here too (else they are only in Ray's session logs).
    """
    check_ports(settings)
    server = settings.server
    http_port = _free_port() if server.direct_ingress and not server.haproxy else server.port
    env = serve_env(settings) | (_haproxy_side_ports() if server.haproxy else {})
    os.environ.update({k: v for k, v in env.items() if k not in _WORKERS_ONLY})
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    os.environ.setdefault("VLLM_HOST_IP", "127.0.0.1")

    from ray import serve

    quiet_serve_driver(verbose)
    _init_ray(settings, env, verbose)
    serve.start(http_options={"host": settings.server.host, "port": http_port})
    _run_bounded(settings, timeout_s)


def quiet_serve_driver(verbose: bool) -> None:
    """Serve's own INFO lines in this process ("Started Serve in namespace", "Application is ready at
    http://<its proxy's port>/", which is not where clients connect with direct ingress) only with
    `verbose`; its warnings and errors always. Call it after importing `ray.serve` (which sets its level)."""
    logging.getLogger("ray.serve").setLevel(logging.INFO if verbose else logging.WARNING)


def _init_ray(settings: Settings, env: dict[str, str], verbose: bool = True) -> None:
    """Start Ray (or join `ray.address`) with the replicas' environment, unless this process already did.

    `ray.init` installs Ray's own SIGTERM handler in this process: it logs the signal, calls the handler before
    it, and ends the process with SIGABRT 3 s later, whatever it is doing (stopping Ray too: its agents were
    left running). The handler this process had is put back (on its main thread), so a SIGTERM does what its
    owner set (`orchestrator serve`: stop everything)."""
    import ray

    if not ray.is_initialized():
        own = signal.getsignal(signal.SIGTERM)
        ray.init(
            address=settings.ray.address,
            num_cpus=settings.ray.num_cpus,
            include_dashboard=False,
            log_to_driver=verbose,
            runtime_env={"env_vars": env},
        )
        if own is not None and threading.current_thread() is threading.main_thread():
            signal.signal(signal.SIGTERM, own)
    elif settings.server.throughput_optimized:
        log.warning(
            "Ray was initialised before start(): server.throughput_optimized needs "
            "RAY_SERVE_THROUGHPUT_OPTIMIZED=1 in that job's runtime_env env_vars to take effect"
        )


def _run_bounded(settings: Settings, timeout_s: float) -> None:
    """`serve.run` the application, giving up after `timeout_s` (Serve waits forever on what can't be placed)."""
    from ray import serve

    from orchestrator.app import build_application

    app = build_application(settings)
    failure: list[BaseException] = []

    def run() -> None:
        try:
            serve.run(
                app,
                name=APP_NAME,
                route_prefix="/",
                blocking=False,
                logging_config={"enable_access_log": settings.server.access_log},
            )
        except BaseException as e:  # reported to the caller below
            failure.append(e)

    runner = threading.Thread(target=run, daemon=True)
    runner.start()
    runner.join(timeout_s)
    if runner.is_alive():
        raise TimeoutError(
            f"the Serve application was not ready within {timeout_s:.0f} s "
            "(a deployment may not fit this cluster's resources)"
        )
    if failure:
        raise failure[0]


# Ports Serve's HAProxy mode binds besides server.port, at fixed defaults (8404, 9101, 8500): on one
# machine that may run several Ray instances (tests, benchmarks, another user's), free ones instead.
_HAPROXY_SIDE_PORTS = (
    "RAY_SERVE_HAPROXY_STATS_PORT",  # HAProxy's stats page
    "RAY_SERVE_HAPROXY_METRICS_PORT",  # HAProxy's Prometheus exporter
    "RAY_SERVE_FALLBACK_PROXY_HTTP_PORT",  # the head's Serve proxy, HAProxy's backup while no Gateway is up
)


def _haproxy_side_ports() -> dict[str, str]:
    """A free port for each of HAProxy mode's side listeners the environment doesn't set."""
    return {name: os.environ.get(name) or str(_free_port()) for name in _HAPROXY_SIDE_PORTS}


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def served_models(timeout_s: float = 10.0) -> list[str] | None:
    """The models the running application serves, asked of a Gateway replica through its Serve handle
    (`GET /v1/models` lists a client key's models: once keys are required it takes no master key and no key
    at all). None if no Gateway answers within `timeout_s`."""
    from ray import serve

    try:
        return list(serve.get_app_handle(APP_NAME).model_ids.remote().result(timeout_s=timeout_s))
    except Exception as e:  # said in the ready line; the endpoint itself may be fine
        log.warning("no Gateway said which models it serves (%s: %s)", type(e).__name__, e)
        return None


def stop(grace_s: float = STOP_GRACE_S) -> None:
    """Tear down the application, Serve and the Ray instance this process started, leaving no process of it.

    `ray.shutdown()` ends the processes it started itself (its GCS, raylet, monitors), and the raylet its workers,
    but not every process under them: its DashboardAgent and RuntimeEnvAgent were seen to outlive it as orphans
    that ignore SIGTERM, and a replica's engine processes can outlive their worker. So Ray's processes under this
    one are collected first (`ray_processes`), and what of them is left `grace_s` after `ray.shutdown()` is
    killed. A cluster this process only joined (`ray.address`) runs no process under it: nothing of it is ended.
    """
    import ray
    from ray import serve

    if not ray.is_initialized():
        return
    ours = ray_processes()
    try:
        serve.shutdown()  # type: ignore[no-untyped-call]
    finally:
        ray.shutdown()
        end_processes(ours, grace_s)


def ray_processes() -> list[psutil.Process]:
    """The processes of the Ray instance this process started: its children that run Ray's own programs (the GCS,
    the raylet, the monitors), and everything under them (workers, Ray's agents, the engines' processes).
    Others under this process (a test's own engine) are not Ray's, and a joined cluster's are not under it."""
    import psutil
    import ray

    home = os.path.dirname(ray.__file__) + os.sep
    found: dict[int, psutil.Process] = {}
    for child in psutil.Process().children():
        try:
            if not any(part.startswith(home) for part in child.cmdline()):
                continue
            for p in [child, *child.children(recursive=True)]:
                found[p.pid] = p
        except psutil.Error:  # gone meanwhile
            continue
    return list(found.values())


def end_processes(procs: list[psutil.Process], grace_s: float) -> None:
    """Wait up to `grace_s` for `procs` (and what they started meanwhile) to end, then kill what is left."""
    import psutil

    more: list[psutil.Process] = []
    for p in procs:
        try:
            more.extend(p.children(recursive=True))
        except psutil.Error:
            pass
    alive = _running(list({p.pid: p for p in [*procs, *more]}.values()), grace_s)
    if not alive:
        return
    names = ", ".join(sorted({_name(p) for p in alive}))
    log.warning("%d process(es) of Ray outlived ray.shutdown() by %.0f s; killed: %s", len(alive), grace_s, names)
    for p in alive:
        try:
            p.kill()
        except psutil.Error:
            pass
    _running(alive, 5.0)


def _running(procs: list[psutil.Process], wait_s: float) -> list[psutil.Process]:
    """Those of `procs` still running after up to `wait_s` (a zombie has ended: its parent may never reap it)."""
    import psutil

    def running(p: psutil.Process) -> bool:
        try:
            return bool(p.is_running() and p.status() != psutil.STATUS_ZOMBIE)
        except psutil.Error:
            return False

    deadline = time.monotonic() + wait_s
    while (procs := [p for p in procs if running(p)]) and time.monotonic() < deadline:
        time.sleep(0.1)
    return procs


def _name(p: psutil.Process) -> str:
    import psutil

    try:
        return str(p.name())
    except psutil.Error:
        return str(p.pid)
