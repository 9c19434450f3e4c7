"""Starting Ray and Serve for attnrec on one machine (the CLI and the tests share this)."""

from __future__ import annotations

import logging
import os
import socket
import time
from dataclasses import replace
from pathlib import Path

from attnrec.serving.app import APP_NAME, ServeFile, app_config
from attnrec.serving.config import ServingConfig
from attnrec.serving.network import PortInUse, is_wildcard, keep_ray_on_loopback
from attnrec.serving.proxy_hooks import worker_runtime_env

log = logging.getLogger(__name__)


def port_free(port: int, host: str = "127.0.0.1") -> bool:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        try:
            s.bind((host, port))
        except OSError:
            return False
    return True


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def start_ray(num_cpus: int | None = None, host: str = "127.0.0.1", dashboard: bool = False,
              direct_ingress: bool = False, throughput_optimized: bool = False,
              resources: dict[str, float] | None = None, metrics_port: int | None = None) -> None:
    """A local Ray that binds `host`: by default loopback, for Serve's ports and Ray's own
    (Ray's single-machine mode); a wildcard host leaves Ray as it is on a cluster node.
    No dashboard by default.

    direct_ingress: every Recommender replica also serves the gRPC API on its own port
    (Ray Serve's RAY_SERVE_ENABLE_DIRECT_INGRESS), skipping the proxy; see
    `direct_ingress_targets`. throughput_optimized: RAY_SERVE_THROUGHPUT_OPTIMIZED, which in
    Ray 2.60 turns direct ingress on as well. Both are read when Ray starts its processes,
    so they only take effect on the Ray this call starts. resources: custom resources this
    machine offers (ServeFile.custom_resources). metrics_port: where Ray serves every metric,
    Serve's and attnrec's, as Prometheus text (http://HOST:PORT/metrics); None = a port of Ray's choosing.
    """
    if metrics_port is not None and not port_free(metrics_port, "" if is_wildcard(host) else "127.0.0.1"):
        # Ray would otherwise fail half a minute later with a startup timeout that does not say why
        raise PortInUse(f"metrics port {metrics_port} is in use: pick another with --metrics-port")
    # Without this, two Ray clusters on one host silently share Serve's ports and calls
    # land on the wrong one. It must be set before Ray starts its processes.
    os.environ["SERVE_SOCKET_REUSE_PORT_ENABLED"] = "0"
    # Replicas run our methods on their own event loop rather than on a second thread, as Ray's
    # throughput-optimized mode does: +15-25% Recommend throughput here (direct ingress, 32 in
    # flight: 794-873 -> 1,005-1,059 calls/s; batching off 356 -> 447). A caller's own setting wins.
    os.environ.setdefault("RAY_SERVE_RUN_USER_CODE_IN_SEPARATE_THREAD", "0")
    # A draining proxy counts as drained once its calls are done and this long has passed; 30 s
    # by default, for load balancers to notice. One machine has none to wait for.
    os.environ.setdefault("RAY_SERVE_PROXY_MIN_DRAINING_PERIOD_S", "1")
    if direct_ingress:
        os.environ["RAY_SERVE_ENABLE_DIRECT_INGRESS"] = "1"
    if throughput_optimized:
        os.environ["RAY_SERVE_THROUGHPUT_OPTIMIZED"] = "1"
    local = not is_wildcard(host)
    if local:  # every socket of Ray's on loopback too, not only Serve's ports (docs/operations.md)
        keep_ray_on_loopback()
    import ray

    if not ray.is_initialized():
        ray.init(num_cpus=num_cpus, include_dashboard=dashboard, dashboard_host=host,
                 _node_ip_address="127.0.0.1" if local else None,
                 runtime_env=worker_runtime_env(host), resources=resources or None,
                 _metrics_export_port=metrics_port)


def metrics_address() -> str:
    """Where this node's Ray serves its metrics as Prometheus text."""
    import ray

    node = next(n for n in ray.nodes() if n["NodeID"] == ray.get_runtime_context().get_node_id())
    return f"http://{node['NodeManagerAddress']}:{node['MetricsExportPort']}/metrics"


def page_address(host: str, http_port: int, route_prefix: str = "/") -> str:
    """Where a browser finds the page for people (serving/page.py)."""
    from attnrec.serving.page import PAGE

    shown = "127.0.0.1" if is_wildcard(host) else f"[{host}]" if ":" in host else host
    return f"http://{shown}:{http_port}{route_prefix.rstrip('/')}{PAGE}"


def start_service(config: ServingConfig, serve_file: ServeFile, grpc_port: int, http_port: int,
                  host: str = "127.0.0.1", blocking_timeout_s: float = 600) -> None:
    """Start Serve's proxies and deploy the attnrec app; returns once it is running."""
    from ray import serve
    from ray.serve.config import gRPCOptions

    for name, port in (("gRPC", grpc_port), ("HTTP", http_port)):
        if not port_free(port, host):
            raise PortInUse(f"{name} port {port} on {host} is in use: pick another with --port/--http-port")
    serve.start(
        http_options={"host": host, "port": http_port},
        grpc_options=gRPCOptions(port=grpc_port, grpc_servicer_functions=serve_file.servicer_functions,
                                 request_timeout_s=serve_file.request_timeout_s),
    )
    deploy(config, serve_file, host, blocking_timeout_s)


def deploy(config: ServingConfig, serve_file: ServeFile, host: str = "127.0.0.1", timeout_s: float = 600) -> None:
    """Deploy (or redeploy) attnrec with `serve_file`'s deployment options; returns once it runs."""
    apply(app_config(config, serve_file.deployments, serve_file.route_prefix, worker_runtime_env(host)))
    wait_running(timeout_s)


def apply(app: dict) -> None:
    """Hand Serve's controller an application config, as `serve deploy` does through the dashboard
    (which attnrec does not start): the application moves to it, replica by replica."""
    from ray.serve.context import _get_global_client
    from ray.serve.schema import ServeDeploySchema

    _get_global_client().deploy_apps(ServeDeploySchema(applications=[app]))


def deployed_app() -> dict | None:
    """The application config attnrec last deployed on this Ray cluster, None where there is none."""
    import ray
    from ray.serve.context import _get_global_client

    configs = ray.get(_get_global_client()._controller.get_app_configs.remote())
    return configs[APP_NAME].model_dump(exclude_unset=True) if APP_NAME in configs else None


def wait_running(timeout_s: float) -> None:
    """Until Serve reports the application RUNNING: every deployment at its target config."""
    from ray import serve

    deadline = time.monotonic() + timeout_s
    while (status := serve.status().applications[APP_NAME]).status != "RUNNING":
        if status.status == "DEPLOY_FAILED":
            raise RuntimeError(f"attnrec failed to deploy: {status.message}")
        if time.monotonic() > deadline:
            raise TimeoutError(f"attnrec not running after {timeout_s:.0f} s: {status.status} {status.message}")
        time.sleep(0.5)


DRAIN_S = 30.0  # how long a stop waits for calls in flight (docs/operations.md)


def drain(bound_s: float = DRAIN_S) -> bool:
    """Before Serve stops: every Serve proxy reports unhealthy (load balancers take it out) and
    we wait, up to `bound_s`, until none has a call in flight. True when all drained."""
    import ray

    try:  # Serve's proxies are named actors; draining them is what Serve does to a node it removes
        proxies = [ray.get_actor(a["name"], namespace=a.get("namespace", "serve"))
                   for a in ray.util.list_named_actors(all_namespaces=True)
                   if a["name"].startswith("SERVE_PROXY_ACTOR")]
        ray.get([p.update_draining.remote(True) for p in proxies], timeout=10)
        deadline = time.monotonic() + bound_s
        while time.monotonic() < deadline:
            if all(ray.get([p.is_drained.remote() for p in proxies], timeout=10)):
                return True
            time.sleep(0.2)
    except (ray.exceptions.RayError, AttributeError, ValueError) as e:
        log.warning("attnrec: could not drain Serve's proxies (%s); stopping without", e)
    return False


def direct_ingress_targets(host: str = "127.0.0.1", wait_s: float = 30) -> list[str]:
    """host:port of every Recommender replica that serves gRPC itself (empty unless direct ingress is on).

    The ports come from Serve's controller (`get_target_groups`, the list Ray hands to load
    balancers); replicas on one node take ports upward from RAY_SERVE_DIRECT_INGRESS_MIN_GRPC_PORT
    (40000). A replica binds `host`, so a loopback service is reached on 127.0.0.1. Waits up to
    `wait_s` for a running replica to report its port."""
    import ray

    try:  # the data is public (the target_groups of Serve's REST details); the way to it is not
        from ray.serve.context import _get_global_client

        controller = _get_global_client()._controller
        controller.get_target_groups  # noqa: B018 (fail here, with the message below)
    except (ImportError, AttributeError) as e:
        raise RuntimeError("cannot list direct-ingress ports with this Ray version; each replica logs "
                           "'Started ... gRPC server on port N' in Serve's replica logs") from e
    local = not is_wildcard(host)
    deadline = time.monotonic() + wait_s
    while True:
        groups = ray.get(controller.get_target_groups.remote(APP_NAME))
        targets = sorted(f"{host if local else t.ip}:{t.port}" for g in groups if g.protocol == "gRPC"
                         for t in g.targets if t.name.startswith("SERVE_REPLICA::"))  # else: the proxy's
        if targets or time.monotonic() > deadline:
            return targets
        time.sleep(0.5)


def serving_config(serve_file: ServeFile, checkpoint: str | None, device: str | None,
                   feedback_dir: str | None = None, models: list[str] | None = None) -> ServingConfig:
    """The config's args with the command line's overrides (models: `NAME=DIR:SHARE` each)."""
    from attnrec.serving.variants import parse_model

    args = dict(serve_file.args)
    if checkpoint:
        args["checkpoint"] = checkpoint
    if models:
        if checkpoint:
            raise ValueError("--checkpoint and --model: give the first model as --model NAME=DIR:SHARE instead")
        args["models"] = [parse_model(m) for m in models]
    if feedback_dir:  # a local directory is made absolute: replicas do not share the CLI's working directory
        args["feedback_dir"] = feedback_dir if "://" in feedback_dir else str(Path(feedback_dir).resolve())
    config = ServingConfig(**{"checkpoint": "default", **args})
    return replace(config, device=device) if device else config
