"""The servers' layers of `attnrec bench`: the plain grpc.aio server and Ray Serve (through
its gRPC proxy and by direct ingress), side by side under the same load, round after round.

Load comes from bench/loadgen.py in its own process, so the client never shares a GIL with
a server."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from contextlib import contextmanager
from dataclasses import replace
from pathlib import Path

from attnrec.bench.config import BenchConfig
from attnrec.bench.inprocess import pytest_benchmark
from attnrec.bench.records import Ingress, Load, Plain, Round


def _load(target: str, items: str, kind: str, config: BenchConfig, concurrency: int = 1, mode: str = "closed",
          rate: float = 0.0) -> Load:
    """One run of the load generator, in its own process."""
    cmd = [sys.executable, "-m", "attnrec.bench.loadgen", "--target", target, "--items", items, "--kind", kind,
           "--mode", mode, "--concurrency", str(concurrency), "--rate", str(rate or 1), "--duration",
           str(config.duration_s), "--history", str(config.history), "--k", str(config.k),
           "--batch", str(config.batch_users), "--warmup", "4" if kind == "explain" else "20"]
    out = subprocess.run(cmd, capture_output=True, text=True, timeout=config.duration_s * 4 + 300)
    if out.returncode != 0:
        raise RuntimeError(f"load generator failed: {out.stderr[-2000:]}")
    return Load.from_dict(json.loads(out.stdout.strip().splitlines()[-1]))


def _mean_batch_size(before: dict, after: dict) -> float | None:
    """Mean size of the batches formed between two cumulative histograms {size: count}."""
    formed = {int(size): n - before.get(size, 0) for size, n in after.items() if n > before.get(size, 0)}
    batches = sum(formed.values())
    return round(sum(size * n for size, n in formed.items()) / batches, 2) if batches else None


@contextmanager
def _plain_server(config: BenchConfig):
    """The plain grpc.aio server in its own process: yields (target, batch-size histogram getter)."""
    server = subprocess.Popen([sys.executable, "-m", "attnrec.bench.plain_server", "--checkpoint", config.checkpoint,
                               "--max-batch-size", str(config.max_batch_size),
                               "--batch-wait-timeout-s", str(config.batch_wait_timeout_s),
                               *(["--adaptive-wait"] if config.adaptive_wait else []),
                               "--threads", str(config.threads), "--device", config.device],
                              stdout=subprocess.PIPE, text=True)
    try:
        ready, _, port = server.stdout.readline().strip().partition(" ")
        if ready != "ready":
            raise RuntimeError("plain gRPC server did not start")

        def histogram() -> dict:
            server.send_signal(signal.SIGUSR1)
            return json.loads(server.stdout.readline())["histogram"]

        yield f"127.0.0.1:{port}", histogram
    finally:
        server.terminate()
        server.wait(timeout=30)


INGRESSES = {"proxy": "gRPC proxy", "direct_ingress": "direct ingress (replica port)"}


class RayService:
    """One Ray, one app, reached two ways: through Serve's gRPC proxy and straight at the
    Recommender replica's own gRPC port (Serve's direct ingress). Both go through the same
    replica, the same @serve.batch and the same code."""

    def __init__(self, config: BenchConfig):
        from ray import serve

        from attnrec.serving.app import APP_NAME, ServeFile
        from attnrec.serving.config import DEFAULT_CONFIG, ServingConfig
        from attnrec.serving.server import free_port, start_ray, start_service

        self.config = config
        # The bench redeploys; Ray's 30 s draining period for direct-ingress replicas is for load balancers.
        os.environ.setdefault("RAY_SERVE_DIRECT_INGRESS_MIN_DRAINING_PERIOD_S", "1")
        start_ray(direct_ingress=True, throughput_optimized=config.throughput_optimized)
        self.serve_file = ServeFile.load(DEFAULT_CONFIG)
        self.serve_file.deployments = self._options(config.max_batch_size)
        self.port = free_port()
        self.serving = ServingConfig(checkpoint=config.checkpoint, device=config.device)
        start_service(self.serving, self.serve_file, self.port, free_port())
        self.handle = serve.get_deployment_handle("Recommender", app_name=APP_NAME)
        self._settle()

    def _options(self, batch_size: int) -> dict:
        gpus = 0.5 if self.config.device == "cuda" else 0
        threads = {"OMP_NUM_THREADS": str(self.config.threads)}
        actor = {"num_cpus": 0, "num_gpus": gpus, "runtime_env": {"env_vars": threads}}
        return {"Recommender": {"num_replicas": 1, "max_ongoing_requests": 512, "ray_actor_options": actor,
                                "logging_config": {"enable_access_log": False},  # as serve.yaml
                                "user_config": {"max_batch_size": batch_size,
                                                "batch_wait_timeout_s": self.config.batch_wait_timeout_s,
                                                "adaptive_wait": self.config.adaptive_wait}},
                "Explainer": {"num_replicas": 1, "ray_actor_options": {"num_cpus": 0, "num_gpus": gpus}}}

    def _targets(self) -> dict[str, str]:
        from attnrec.serving.server import direct_ingress_targets

        return {"proxy": f"127.0.0.1:{self.port}", "direct_ingress": direct_ingress_targets()[0]}

    def redeploy(self, batch_size: int) -> None:
        """serve.run starts new replicas; each takes a fresh direct-ingress port."""
        from ray import serve

        from attnrec.serving.app import APP_NAME, build_app

        serve.run(build_app(self.serving, self._options(batch_size)), name=APP_NAME,
                  route_prefix=self.serve_file.route_prefix)
        self._settle()

    def _settle(self) -> None:
        """Wait until only the new replicas are left, then note their direct-ingress port. A deploy
        returns with the new replicas up, the old ones (of a redeploy, or of an application this
        one replaced) possibly still stopping: until they are gone, a histogram read may come
        from either, and the port listed first may be one that is closing."""
        from ray import serve

        from attnrec.serving.app import APP_NAME

        deadline = time.monotonic() + 120
        while time.monotonic() < deadline:
            states = serve.status().applications[APP_NAME].deployments
            if all(d.replica_states == {"RUNNING": 1} for d in states.values()):
                break
            time.sleep(0.2)
        self.targets = self._targets()

    def histogram(self) -> dict:
        return self.handle.stats_summary.remote().result()["histogram"]

    def close(self) -> None:
        from ray import serve

        serve.shutdown()


def _point(target: str, histogram, items: str, config: BenchConfig, c: int) -> Load:
    """One closed-loop Recommend load point, with the mean size of the batches the server formed."""
    before = histogram()
    row = _load(target, items, "recommend", config, c)
    return replace(row, mean_batch_size=_mean_batch_size(before, histogram()))


def _open_loop(target: str, sweep: list[Load], items: str, config: BenchConfig) -> list[Load]:
    """Fixed-rate Recommend at each of config.open_loop_fractions of the server's saturated rate."""
    saturated = max(r.calls_per_s for r in sweep)
    return [replace(_load(target, items, "recommend", config, mode="open", rate=f * saturated), fraction=f)
            for f in config.open_loop_fractions]


def _round(config: BenchConfig, plain_target: str, plain_histogram, ray: RayService | None, items: str, bar,
           beside_batch_json: Path) -> Round:
    """One round of the servers' layers: at each load point the plain server, the proxy and
    direct ingress are measured back to back, so the machine's drift between runs hardly
    enters their ratios; the model alone is measured again at RecommendBatch's batch size just
    before RecommendBatch, for the same reason. Leaves Ray's Recommender with batching off."""
    targets = ray.targets if ray else {}
    plain_sweep: list[Load] = []
    on: dict[str, list[Load]] = {ingress: [] for ingress in targets}
    names = "plain, proxy, direct" if ray else "plain"
    for c in config.concurrency:
        bar.set_postfix_str(f"Recommend, {c} in flight: {names}")
        plain_sweep.append(_point(plain_target, plain_histogram, items, config, c))
        for ingress, target in targets.items():
            on[ingress].append(_point(target, ray.histogram, items, config, c))
        bar.update()
    bar.set_postfix_str("open loop, RecommendBatch" + (", Explain" if ray else ""))
    plain_open = _open_loop(plain_target, plain_sweep, items, config)
    open_loops = {ingress: _open_loop(target, on[ingress], items, config) for ingress, target in targets.items()}
    (beside_batch,) = pytest_benchmark(config, config.threads, (config.batch_users,), beside_batch_json)
    plain = Plain(plain_sweep, plain_open, _load(plain_target, items, "batch", config, 2))
    batch_and_explain = {ingress: (_load(target, items, "batch", config, 2), _load(target, items, "explain", config, 1))
                         for ingress, target in targets.items()}
    bar.update()
    off: dict[str, list[Load]] = {ingress: [] for ingress in targets}
    if ray:
        ray.redeploy(batch_size=1)
        for c in config.concurrency:
            bar.set_postfix_str(f"Recommend, batching off, {c} in flight: proxy, direct")
            for ingress, target in ray.targets.items():
                off[ingress].append(_point(target, ray.histogram, items, config, c))
            bar.update()
    ingresses = {ingress: Ingress(on[ingress], off[ingress], open_loops[ingress], *batch_and_explain[ingress])
                 for ingress in targets}
    return Round(plain, ingresses, beside_batch)


def servers(config: BenchConfig, items: str, bar, out: Path) -> list[Round]:
    """The plain server and Ray Serve side by side, config.rounds rounds in a row on the same
    servers (`_round`)."""
    rounds = []
    with _plain_server(config) as (plain_target, plain_histogram):
        ray = RayService(config) if config.ray else None
        try:
            for n in range(1, config.rounds + 1):
                if ray and n > 1:
                    # batching back on: the previous round ended with it off
                    ray.redeploy(batch_size=config.max_batch_size)
                if config.rounds > 1:
                    bar.set_description(f"bench, round {n}/{config.rounds}")
                suffix = "" if n == 1 else f"_round{n}"
                rounds.append(_round(config, plain_target, plain_histogram, ray, items, bar,
                                     out / f"model_alone_beside_batch{suffix}.json"))
        finally:
            if ray:
                ray.close()
    return rounds
