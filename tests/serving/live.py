"""The one Ray Serve service the integration tests share (a tiny model, free ports,
no CPU reservations), and helpers to reach it."""

from __future__ import annotations

import os

AUTOSCALE = {"min_replicas": 1, "max_replicas": 2, "target_ongoing_requests": 2, "upscale_delay_s": 1,
             "downscale_delay_s": 3, "metrics_interval_s": 0.5, "look_back_period_s": 2}


def options(batch_size=8, wait=0.05):
    return {"Recommender": {"ray_actor_options": {"num_cpus": 0}, "max_ongoing_requests": 64,
                            "user_config": {"max_batch_size": batch_size, "batch_wait_timeout_s": wait},
                            "autoscaling_config": AUTOSCALE},
            "Explainer": {"ray_actor_options": {"num_cpus": 0}, "num_replicas": 1, "max_ongoing_requests": 8},
            "FeedbackLog": {"ray_actor_options": {"num_cpus": 0}, "num_replicas": 1}}


def start_ray() -> None:
    """The session's one Ray: loopback only, direct ingress on, the Explainer's resource offered,
    metrics at a port of the session's (exported every second, not every 10)."""
    from attnrec.serving.app import ServeFile
    from attnrec.serving.config import DEFAULT_CONFIG
    from attnrec.serving.server import free_port, start_ray

    # Replicas leave quickly on scale-down (Ray's 30 s default lets load balancers notice).
    os.environ.setdefault("RAY_SERVE_DIRECT_INGRESS_MIN_DRAINING_PERIOD_S", "1")
    os.environ.setdefault("RAY_metrics_report_interval_ms", "1000")
    start_ray(num_cpus=2, direct_ingress=True, resources=ServeFile.load(DEFAULT_CONFIG).custom_resources(),
              metrics_port=free_port())


def start(checkpoint, feedback_dir) -> dict:
    """The service, logging feedback and impressions under `feedback_dir` (flushed every 0.2 s)."""
    from attnrec.serving.app import ServeFile
    from attnrec.serving.config import DEFAULT_CONFIG, ServingConfig
    from attnrec.serving.server import free_port, start_service

    start_ray()
    serve_file = ServeFile.load(DEFAULT_CONFIG)
    serve_file.deployments = options()
    port, http_port = free_port(), free_port()
    config = ServingConfig(checkpoint=str(checkpoint), device="cpu", max_k=100, feedback_dir=str(feedback_dir),
                           impression_flush_s=0.2)
    start_service(config, serve_file, port, http_port)
    return {"port": port, "http_port": http_port, "config": config, "serve_file": serve_file,
            "feedback_dir": feedback_dir}


def redeploy(service: dict, deployments: dict[str, dict]) -> None:
    """The shared service with other deployment options (Serve keeps replicas whose options
    differ only in user_config)."""
    from dataclasses import replace

    from attnrec.serving.server import deploy

    deploy(service["config"], replace(service["serve_file"], deployments=deployments))


LOOPBACK = ("127.0.0.1", "::1", "::ffff:127.0.0.1")


def listening(pid: int) -> list[tuple[str, str, int]]:
    """(process name, address, port) of every TCP socket listening in `pid` and the processes it started."""
    import psutil

    root = psutil.Process(pid)
    found = []
    for p in [root, *root.children(recursive=True)]:
        try:
            found += [(p.name(), c.laddr.ip, c.laddr.port) for c in p.net_connections(kind="tcp")
                      if c.status == psutil.CONN_LISTEN]
        except (psutil.NoSuchProcess, psutil.AccessDenied):  # a worker that ended meanwhile
            continue
    return found


def direct_target() -> str:
    from attnrec.serving.server import direct_ingress_targets

    targets = direct_ingress_targets()
    assert targets, "direct ingress is on, yet no replica reported a gRPC port"
    return targets[0]
