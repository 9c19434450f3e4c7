"""`attnrec bench`'s one frozen config, and what a run records about the machine and the code."""

from __future__ import annotations

import os
import platform
import subprocess
from dataclasses import dataclass
from pathlib import Path

from attnrec.serving.config import BatchConfig


@dataclass(frozen=True)
class BenchConfig:
    checkpoint: str
    concurrency: tuple[int, ...] = (1, 8, 32, 128)
    duration_s: float = 5.0  # per load point
    history: int = 50  # items per request history
    k: int = 10
    batch_users: int = 64  # users per RecommendBatch call
    model_batch_sizes: tuple[int, ...] = (1, 8, 32, 64, 128)
    model_rounds: int = 20  # pytest-benchmark rounds per batch size (after 3 warm-up rounds)
    explain_steps: tuple[int, ...] = (16, 32, 64)
    explain_repeats: int = 5
    # open-loop rates, each a share of that server's own saturated closed-loop rate: light load
    # (where batching's wait shows) to heavy load (where queueing shows)
    open_loop_fractions: tuple[float, ...] = (0.05, 0.5, 0.8)
    max_batch_size: int = BatchConfig.max_batch_size  # both servers batch as the Recommender does by default
    batch_wait_timeout_s: float = BatchConfig.batch_wait_timeout_s
    adaptive_wait: bool = BatchConfig.adaptive_wait  # both servers skip the wait while requests do not overlap
    throughput_optimized: bool = False  # RAY_SERVE_THROUGHPUT_OPTIMIZED=1 for Ray Serve (set before Ray starts)
    # torch threads of the plain server and of the Ray replica alike; the model-alone limit is
    # read at this count. 1 = what Ray gives a replica with num_cpus: 1 (serve.yaml's default).
    threads: int = 1
    # "cuda": the model alone, the plain server and both Ray deployments run on the GPU
    # (the two Ray replicas take half a GPU each). Torch threads then matter little.
    device: str = "cpu"
    # False: the model alone, the plain server and Explain in-process only; nothing imports Ray
    # (a machine without Ray)
    ray: bool = True
    # the servers' layers measured this many times in a row on the same servers; each goal ratio is
    # then the median over rounds, with its range (the machine drifts 10-30% between runs)
    rounds: int = 1

    @staticmethod
    def quick(checkpoint: str) -> BenchConfig:
        return BenchConfig(checkpoint, concurrency=(1, 8), duration_s=1.5, model_batch_sizes=(1, 32), model_rounds=3,
                           open_loop_fractions=(0.5,), explain_steps=(16,), explain_repeats=2)


def git_commit() -> str | None:
    """The measured code's commit, "+dirty" when tracked files differ from it. ATTNREC_GIT_COMMIT
    names it where the code is a copy without git or .git."""
    if commit := os.environ.get("ATTNREC_GIT_COMMIT"):
        return commit

    def git(*args: str) -> str:
        try:
            done = subprocess.run(["git", *args], capture_output=True, text=True, cwd=Path(__file__).parent)
            return done.stdout.strip()
        except OSError:  # no git on this machine
            return ""

    commit = git("rev-parse", "--short", "HEAD")
    if commit and git("status", "--porcelain", "--untracked-files=no"):
        commit += "+dirty"
    return commit or None


def versions(with_ray: bool) -> dict:
    import grpc
    import torch

    return {"python": platform.python_version(), "torch": torch.__version__,
            "ray": _ray_version() if with_ray else None,
            "grpcio": grpc.__version__, "git_commit": git_commit(),
            "machine": {"cpus": os.cpu_count(), "processor": platform.processor() or platform.machine(),
                        "gpu": torch.cuda.get_device_name(0) if torch.cuda.is_available() else None}}


def _ray_version() -> str:
    import ray

    return ray.__version__


def single_replicas(threads: int) -> dict:
    """Serve options for one replica of each deployment, the Recommender's torch held to
    `threads` (1 = a num_cpus: 1 replica's), access logs off as in serve.yaml. Options for a
    deployment the application does not have (FeedbackLog without a log) are left out by Serve's config."""
    actor = {"num_cpus": 0, "runtime_env": {"env_vars": {"OMP_NUM_THREADS": str(threads)}}}
    return {"Recommender": {"num_replicas": 1, "max_ongoing_requests": 512, "ray_actor_options": actor,
                            "logging_config": {"enable_access_log": False}},
            "Explainer": {"num_replicas": 1, "ray_actor_options": {"num_cpus": 0}},
            "FeedbackLog": {"num_replicas": 1, "ray_actor_options": {"num_cpus": 0},
                            "logging_config": {"enable_access_log": False}}}
