"""Training on the Ray cluster that serves (`attnrec train --ray`): the same training as
model/train.py, run by Ray Train's TorchTrainer on N workers with DDP (gloo on CPU, nccl on
GPU), the data read by Ray Data.

- The Parquet files are read with `ray.data.read_parquet` (a local path or any pyarrow
  filesystem URI such as s3://), checked like local files, and prepared once on the driver;
  the workers share that through Ray's object store.
- Each worker takes its share of every global batch (model/train.py `World`), so N workers
  compute what one would, with gradients averaged by DDP.
- After every epoch each worker calls `ray.train.report`; the first also hands Ray Train a
  checkpoint: `best/` (the best epoch so far, the directory `attnrec serve` loads) and
  `resume/` (this epoch's weights, optimizer state, progress; safetensors and JSON, no pickle).
- A worker that dies (FailureConfig) makes Ray Train restart the group, which resumes from
  the last checkpoint and replays the interrupted epoch exactly.
- The result is `best/` of the last checkpoint, copied to --out.
"""

from __future__ import annotations

import argparse
import json
import shutil
import tempfile
import time
from dataclasses import asdict, dataclass
from pathlib import Path

import pyarrow as pa
import torch
from safetensors.torch import load_file, save_file

from attnrec.model.checkpoint import Checkpoint as ModelCheckpoint
from attnrec.model.checkpoint import copy_checkpoint, load_checkpoint
from attnrec.model.config import ModelConfig, TrainConfig
from attnrec.model.data import DataError, Tables, load_tables
from attnrec.model.sasrec import SASRec
from attnrec.model.train import Prepared, Progress, World, train


@dataclass(frozen=True)
class ClusterConfig:
    """How `attnrec train --ray` uses the cluster."""

    num_workers: int = 1
    use_gpu: bool = False
    cpus_per_worker: float = 1.0  # Ray Train's default; on a small machine less, or workers wait forever
    max_failures: int = 2  # worker-group restarts before the run fails
    storage_path: str | None = None  # where Ray Train keeps checkpoints (default: ~/ray_results)
    name: str | None = None  # the run's name under storage_path (default: attnrec-train-<time>-<out's name>);
    # a name already there resumes that run, so every command gets a new one


def run_name(cluster: ClusterConfig, out: str | Path) -> str:
    return cluster.name or f"attnrec-train-{time.strftime('%Y%m%d-%H%M%S')}-{Path(out).name}"


def read_with_ray_data(path: str | Path, what: str) -> pa.Table:
    """One Parquet file or directory through Ray Data (a local path or any pyarrow filesystem URI)."""
    import ray

    try:
        refs = ray.data.read_parquet(str(path)).to_arrow_refs()
    except (FileNotFoundError, OSError, ValueError) as e:
        raise DataError(f"{path}: cannot read {what} as Parquet: {str(e).splitlines()[0]}") from e
    return pa.concat_tables(ray.get(refs))


def read_tables(paths: dict[str, str | Path | None]) -> Tables:
    """The Parquet files through Ray Data, checked as local files are (`load_tables`)."""
    return load_tables(**paths, read=read_with_ray_data)


def _optimizer_tensors(optimizer: torch.optim.Optimizer) -> tuple[dict[str, torch.Tensor], dict]:
    """AdamW's state as flat tensors (safetensors) and its param groups (JSON)."""
    state = optimizer.state_dict()
    tensors = {f"{i}.{k}": torch.as_tensor(v).detach().cpu().contiguous()
               for i, s in state["state"].items() for k, v in s.items()}
    return tensors, {"param_groups": state["param_groups"]}


def _restore_optimizer(optimizer: torch.optim.Optimizer, tensors: dict[str, torch.Tensor], groups: dict) -> None:
    state: dict[int, dict] = {}
    for key, value in tensors.items():
        i, name = key.split(".", 1)
        state.setdefault(int(i), {})[name] = value
    optimizer.load_state_dict({"state": state, "param_groups": groups["param_groups"]})


def save_resume(directory: Path, progress: Progress, model: SASRec, optimizer: torch.optim.Optimizer) -> None:
    directory.mkdir(parents=True, exist_ok=True)
    save_file({k: v.detach().cpu().contiguous() for k, v in model.state_dict().items()},
              str(directory / "model.safetensors"))
    tensors, groups = _optimizer_tensors(optimizer)
    save_file(tensors, str(directory / "optimizer.safetensors"))
    (directory / "progress.json").write_text(json.dumps({"progress": asdict(progress), "optimizer": groups}))


def load_resume(directory: Path, model: SASRec, optimizer: torch.optim.Optimizer) -> Progress:
    device = model.item_emb.weight.device
    model.load_state_dict(load_file(str(directory / "model.safetensors"), device=str(device)))
    saved = json.loads((directory / "progress.json").read_text())
    _restore_optimizer(optimizer, load_file(str(directory / "optimizer.safetensors"), device=str(device)),
                       saved["optimizer"])
    return Progress(**saved["progress"])


def worker_loop(config: dict) -> None:
    """One Ray Train worker: model/train.py's loop with this worker's place in the group."""
    import ray
    import ray.train
    import ray.train.torch

    context = ray.train.get_context()
    rank, size = context.get_world_rank(), context.get_world_size()
    torch.set_num_threads(config["threads"])
    prepared: Prepared = ray.get(config["prepared"])
    best_dir = Path(tempfile.mkdtemp(prefix="attnrec-best-"))  # rank 0 writes the best epoch here

    def resume(model: SASRec, optimizer: torch.optim.Optimizer) -> Progress | None:
        checkpoint = ray.train.get_checkpoint()
        if checkpoint is None:
            return None
        with checkpoint.as_directory() as d:
            if (Path(d) / "best").exists():
                shutil.copytree(Path(d) / "best", best_dir, dirs_exist_ok=True)
            if not (Path(d) / "resume").exists():  # the run had finished: nothing to resume
                return None
            return load_resume(Path(d) / "resume", model, optimizer)

    def on_epoch(progress: Progress, model: SASRec, optimizer: torch.optim.Optimizer) -> None:
        metrics = {"epoch": progress.epoch, "best_epoch": progress.best_epoch, **progress.history[-1]}
        if rank != 0:
            ray.train.report(metrics)
            return
        with tempfile.TemporaryDirectory() as d:
            save_resume(Path(d) / "resume", progress, model, optimizer)
            if (best_dir / "config.json").exists():
                shutil.copytree(best_dir, Path(d) / "best")
            ray.train.report(metrics, checkpoint=ray.train.Checkpoint.from_directory(d))

    world = World(rank=rank, size=size, on_epoch=on_epoch, resume=resume,
                  wrap=lambda module: ray.train.torch.prepare_model(module) if size > 1 else module)
    try:
        train(prepared, best_dir, config["model_config"], config["train_config"], progress=False,
              data_fingerprint=config["fingerprint"], world=world)
        if rank == 0:  # the last report: the finished best (complete metadata)
            with tempfile.TemporaryDirectory() as d:
                shutil.copytree(best_dir, Path(d) / "best")
                ray.train.report({"epoch": -1, "finished": 1}, checkpoint=ray.train.Checkpoint.from_directory(d))
        else:
            ray.train.report({"epoch": -1, "finished": 1})
    finally:
        shutil.rmtree(best_dir, ignore_errors=True)


def train_on_ray(prepared: Prepared, out: str | Path, model_config: ModelConfig, config: TrainConfig,
                 cluster: ClusterConfig = ClusterConfig(), fingerprint: str = "") -> ModelCheckpoint:
    """Run training on the connected Ray cluster; the best checkpoint ends up in `out`."""
    import ray
    from ray.train import CheckpointConfig, FailureConfig, RunConfig, ScalingConfig
    from ray.train.torch import TorchConfig, TorchTrainer

    threads = max(1, int(cluster.cpus_per_worker))
    trainer = TorchTrainer(
        worker_loop,
        train_loop_config={"prepared": ray.put(prepared), "model_config": model_config, "train_config": config,
                           "fingerprint": fingerprint, "threads": threads},
        torch_config=TorchConfig(backend="nccl" if cluster.use_gpu else "gloo"),
        scaling_config=ScalingConfig(num_workers=cluster.num_workers, use_gpu=cluster.use_gpu,
                                     resources_per_worker={"CPU": cluster.cpus_per_worker}),
        run_config=RunConfig(name=run_name(cluster, out), storage_path=cluster.storage_path,
                             failure_config=FailureConfig(max_failures=cluster.max_failures),
                             checkpoint_config=CheckpointConfig(num_to_keep=2)),
    )
    result = trainer.fit()
    if result.checkpoint is None:
        raise RuntimeError(f"training on Ray ended without a checkpoint: {result.error}")
    with result.checkpoint.as_directory() as d:
        copy_checkpoint(Path(d) / "best", out)
    return load_checkpoint(out)


def add_options(train_parser: argparse.ArgumentParser) -> None:
    """`attnrec train --ray ...`: the options, and the command that honours them."""
    g = train_parser.add_argument_group("on a Ray cluster (Ray Train and Ray Data)")
    g.add_argument("--ray", action="store_true", help="train with Ray Train, the data read by Ray Data")
    g.add_argument("--address", help="Ray cluster to join (host:6379, auto); default: start one on this machine")
    g.add_argument("--num-workers", type=int, default=ClusterConfig.num_workers, help="training workers (DDP)")
    g.add_argument("--use-gpu", action="store_true", help="one GPU per worker, nccl between them")
    g.add_argument("--cpus-per-worker", type=float, default=ClusterConfig.cpus_per_worker,
                   help="CPUs each worker reserves (and its torch threads)")
    g.add_argument("--storage", help="where Ray Train keeps checkpoints (a path every node sees, or s3://...); "
                                     "default ~/ray_results")
    train_parser.set_defaults(run=cmd_train)


def connect(address: str | None) -> None:
    """Join the Ray cluster at `address`, or start one on this machine."""
    if address:
        from attnrec.serving.network import prepare_to_connect

        prepare_to_connect(address)
        import ray

        ray.init(address=address, log_to_driver=False)
    else:
        from attnrec.serving.server import start_ray

        start_ray()


def cmd_train(args: argparse.Namespace) -> int:
    from attnrec.model import cli as model_cli

    if not args.ray:
        return model_cli.cmd_train(args)
    connect(args.address)
    cluster = ClusterConfig(num_workers=args.num_workers, use_gpu=args.use_gpu, cpus_per_worker=args.cpus_per_worker,
                            storage_path=args.storage)

    def fit(prepared, out, model_config, config, fingerprint, progress):
        return train_on_ray(prepared, out, model_config, config, cluster, fingerprint)

    return model_cli.cmd_train(args, read_tables=read_tables, fit=fit)
