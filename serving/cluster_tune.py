"""Hyper-parameter search on the Ray cluster (`attnrec tune`): Ray Tune runs model/train.py's
training with sampled learning rates, dropout, widths, depths, history windows and feature
families, and ASHA stops the trials that trail at each rung of epochs.

- The data are read once on the driver with Ray Data's `read_parquet` (a local path or any
  pyarrow filesystem URI), as `attnrec train --ray` reads them, prepared there, and shared
  with every trial through the object store.
- The first trial is always the defaults (with every feature family), so they are always
  among the trials compared (ASHA may stop them early like any other trial).
- Each trial reports after every epoch: its validation NDCG@10 and the best so far (ASHA
  compares trials on the best so far); at every new best it hands Tune the checkpoint, so the
  winner's weights survive the trial being stopped.
- The search ends at `--time-budget`; the best trial's checkpoint is copied to --out with
  `tune.json` (every trial that finished an epoch: its point, epochs, best validation NDCG@10).
"""

from __future__ import annotations

import argparse
import json
import re
import shutil
import sys
import tempfile
import time
from dataclasses import dataclass, replace
from pathlib import Path

import torch

from attnrec.model.checkpoint import copy_checkpoint
from attnrec.model.config import ModelConfig, TrainConfig
from attnrec.model.selection import BOTH, IDS, ITEMS, USERS, candidates
from attnrec.model.train import Prepared, Progress, World, train

METRIC = "best_valid_NDCG@10"


class SearchFailed(RuntimeError):
    """The search ended without a checkpoint to keep."""


FAMILIES = {c.name: c for c in (BOTH, ITEMS, USERS, IDS)}


@dataclass(frozen=True)
class TuneSettings:
    """How `attnrec tune` searches."""

    time_budget_s: float = 1800.0  # the whole search, then the running trials are stopped
    max_epochs: int = TrainConfig.epochs  # ASHA's max_t, in epochs
    grace_period: int = 4  # epochs every trial gets before ASHA may stop it
    reduction_factor: int = 3  # ASHA keeps the best third at each rung
    cpus_per_trial: float = 1.0  # and its torch threads; trials run side by side as CPUs allow
    max_trials: int = 1000  # an upper bound: the time budget ends the search first
    seed: int = 0  # the sampling of configurations (every trial trains with TrainConfig's seed)
    storage_path: str | None = None  # where Tune keeps trial results (default: ~/ray_results)


def search_space(has_items: bool, has_users: bool) -> dict:
    """What Tune samples; every dimension's range brackets the defaults."""
    from ray import tune

    space = {
        "lr": tune.loguniform(3e-4, 6e-3),
        "dropout": tune.uniform(0.05, 0.5),
        "d_model": tune.choice([32, 64, 128]),
        "n_layers": tune.choice([1, 2, 3]),
        "max_len": tune.choice([50, 100, 200]),
    }
    families = [c.name for c in candidates(has_items, has_users)]
    if len(families) > 1:
        space["features"] = tune.choice(families)
    return space


def defaults_point(model_config: ModelConfig, config: TrainConfig, has_items: bool, has_users: bool) -> dict:
    """The defaults of `attnrec train` (with every feature family) as a point of the search space."""
    point = {"lr": config.lr, "dropout": model_config.dropout, "d_model": model_config.d_model,
             "n_layers": model_config.n_layers, "max_len": model_config.max_len}
    families = candidates(has_items, has_users)
    if len(families) > 1:
        point["features"] = families[0].name
    return point


def trial_configs(point: dict, model_config: ModelConfig, config: TrainConfig) -> tuple[ModelConfig, TrainConfig]:
    """A sampled point applied to the base configurations."""
    model_config = replace(model_config, dropout=point["dropout"], d_model=point["d_model"],
                           n_layers=point["n_layers"], max_len=point["max_len"])
    config = replace(config, lr=point["lr"])
    if "features" in point:
        config = FAMILIES[point["features"]].apply(config)
    return model_config, config


def run_trial(point: dict, prepared: Prepared | None = None, model_config: ModelConfig | None = None,
              config: TrainConfig | None = None, fingerprint: str = "", threads: int = 1) -> None:
    """One Tune trial: local training with a report after every epoch (`tune.with_parameters`
    hands every trial the same prepared data from the object store)."""
    from ray import tune

    torch.set_num_threads(threads)
    model_config, config = trial_configs(point, model_config, config)
    out = Path(tempfile.mkdtemp(prefix="attnrec-trial-"))

    def on_epoch(progress: Progress, model, optimizer) -> None:
        metrics = {"epoch": progress.epoch, METRIC: progress.best, "best_epoch": progress.best_epoch,
                   "valid_NDCG@10": progress.history[-1].get("valid_NDCG@10", progress.best)}
        if progress.best_epoch == progress.epoch:  # a new best, just saved to `out`
            tune.report(metrics, checkpoint=tune.Checkpoint.from_directory(out))
        else:
            tune.report(metrics)

    try:
        train(prepared, out, model_config, config, progress=False, data_fingerprint=fingerprint,
              world=World(on_epoch=on_epoch))
    finally:
        shutil.rmtree(out, ignore_errors=True)


def tune_model(prepared: Prepared, out: str | Path, model_config: ModelConfig, config: TrainConfig,
               settings: TuneSettings = TuneSettings(), fingerprint: str = "") -> dict:
    """Search on the connected Ray cluster; the best trial's checkpoint ends up in `out`.
    Returns what `tune.json` holds."""
    import ray
    from ray import tune
    from ray.tune.schedulers import ASHAScheduler
    from ray.tune.search.basic_variant import BasicVariantGenerator

    has_items, has_users = bool(prepared.item_encoders), bool(prepared.user_encoders)
    trainable = tune.with_resources(
        tune.with_parameters(run_trial, prepared=prepared, model_config=model_config,
                             config=replace(config, epochs=settings.max_epochs), fingerprint=fingerprint,
                             threads=max(1, int(settings.cpus_per_trial))),
        {"cpu": settings.cpus_per_trial})
    start = defaults_point(model_config, config, has_items, has_users)
    # trials are sampled as slots free up, not all at once (or the budget ends with hundreds pending)
    slots = max(1, int(ray.cluster_resources().get("CPU", 1) / settings.cpus_per_trial))
    tuner = tune.Tuner(
        trainable,
        param_space=search_space(has_items, has_users),
        tune_config=tune.TuneConfig(
            metric=METRIC, mode="max", num_samples=settings.max_trials, time_budget_s=settings.time_budget_s,
            scheduler=ASHAScheduler(max_t=settings.max_epochs, grace_period=min(settings.grace_period,
                                                                                settings.max_epochs),
                                    reduction_factor=settings.reduction_factor),
            search_alg=BasicVariantGenerator(points_to_evaluate=[start], random_state=settings.seed,
                                             max_concurrent=slots)),
        run_config=tune.RunConfig(name=f"attnrec-tune-{time.strftime('%Y%m%d-%H%M%S')}",
                                  storage_path=settings.storage_path, verbose=0,
                                  checkpoint_config=tune.CheckpointConfig(num_to_keep=1)),
    )
    started = time.monotonic()
    grid = tuner.fit()
    trials = []
    for result in grid:
        metrics = result.metrics or {}
        if METRIC not in metrics:  # stopped by the budget before its first epoch ended
            continue
        config = trial_config(result)
        trials.append({"config": config, "best_valid_NDCG@10": metrics[METRIC], "epochs": metrics.get("epoch", 0),
                       "error": None if result.error is None else str(result.error).splitlines()[0],
                       "defaults": config == start})
    if not trials:
        raise SearchFailed(f"no trial finished an epoch within {settings.time_budget_s:g} s: give --time-budget more")
    best = grid.get_best_result(metric=METRIC, mode="max", scope="all")
    best_config = trial_config(best)
    if best.checkpoint is None:
        raise SearchFailed(f"the best trial left no checkpoint: {best.error}")
    with best.checkpoint.as_directory() as d:
        copy_checkpoint(d, out)
    trials.sort(key=lambda t: -(t["best_valid_NDCG@10"] or -1))
    return {"best": {"config": best_config, "best_valid_NDCG@10": best.metrics[METRIC]},
            "defaults": next((t for t in trials if t["defaults"]), None), "trials": trials,
            "settings": {**settings.__dict__}, "seconds": round(time.monotonic() - started, 1)}


def trial_config(result) -> dict:
    """A trial's sampled point; from its params.json when the budget stopped it mid-report."""
    if result.config:
        return result.config
    params = Path(result.path) / "params.json"
    return json.loads(params.read_text()) if params.exists() else {}


def parse_duration(text: str) -> float:
    """'30m', '90s', '1.5h' or plain seconds, as seconds."""
    match = re.fullmatch(r"\s*(\d+(?:\.\d+)?)\s*([smh]?)\s*", text)
    if not match or float(match.group(1)) <= 0:
        raise argparse.ArgumentTypeError(f"{text!r}: give a duration such as 30m, 90s or 1.5h")
    return float(match.group(1)) * {"": 1, "s": 1, "m": 60, "h": 3600}[match.group(2)]


def add_parsers(sub: argparse._SubParsersAction) -> None:
    from attnrec.model.cli import add_data_options, refit_option, training_options

    p = sub.add_parser("tune", help="search learning rate, dropout, width, depth, history window and feature "
                                    "families with Ray Tune (ASHA); the best checkpoint goes to --out")
    add_data_options(p)
    p.add_argument("--out", type=Path, required=True, help="directory for the best checkpoint and tune.json")
    p.add_argument("--time-budget", type=parse_duration, default=TuneSettings.time_budget_s, metavar="DURATION",
                   help="how long the search may run, e.g. 30m, 90s, 1.5h (default: %(default)g s)")
    p.add_argument("--cpus-per-trial", type=float, default=TuneSettings.cpus_per_trial,
                   help="CPUs each trial reserves (and its torch threads); trials run side by side as the "
                        "cluster allows (default: %(default)s)")
    p.add_argument("--grace-epochs", type=int, default=TuneSettings.grace_period,
                   help="epochs every trial gets before ASHA may stop it (default: %(default)s)")
    p.add_argument("--address", help="Ray cluster to join (host:6379, auto); default: start one on this machine")
    p.add_argument("--storage", help="where Tune keeps trial results (default ~/ray_results)")
    p.add_argument("--seed", type=int, default=TuneSettings.seed, help="the sampling of configurations")
    training_options(p)
    refit_option(p)
    p.set_defaults(run=cmd_tune)


def cmd_tune(args: argparse.Namespace) -> int:
    from attnrec.model import cli as model_cli
    from attnrec.model.ablation import held_out_metrics
    from attnrec.model.checkpoint import load_checkpoint
    from attnrec.model.train import data_fingerprint, popularity_metrics, prepare
    from attnrec.serving.cluster_train import connect, read_tables

    connect(args.address)
    paths = model_cli.data_paths(args)
    tables = read_tables(paths)
    prepared = prepare(tables, model_cli.columns(args.item_features), model_cli.columns(args.user_features))
    model_config, config = model_cli.configs(args, prepared)
    settings = TuneSettings(time_budget_s=args.time_budget, max_epochs=args.epochs, grace_period=args.grace_epochs,
                            cpus_per_trial=args.cpus_per_trial, seed=args.seed, storage_path=args.storage)
    print(f"tuning for {settings.time_budget_s:g} s, {settings.cpus_per_trial:g} CPUs a trial", flush=True)
    try:
        result = tune_model(prepared, args.out, model_config, config, settings, data_fingerprint(tables))
    except SearchFailed as e:
        print(f"attnrec tune: error: {e}", file=sys.stderr)
        return 2
    validated = load_checkpoint(args.out)
    best = model_cli.refit_chosen(args, prepared, validated.config, validated, model_cli.train_here,
                                  data_fingerprint(tables))
    result["best"]["test"] = held_out_metrics(best, prepared)
    if best is not validated:
        result["best"]["test_before_refit"] = held_out_metrics(validated, prepared)
    result["popularity_test"] = popularity_metrics(prepared, "test")
    result["data"] = {k: str(v) if v else None for k, v in paths.items()}
    best.metadata["tune"] = {"config": result["best"]["config"], "trials": len(result["trials"])}
    (args.out / "metadata.json").write_text(json.dumps(best.metadata, indent=2, default=str))
    (args.out / "tune.json").write_text(json.dumps(result, indent=2, default=str))
    print(trials_table(result))
    t = result["best"]["test"]
    before = result["best"].get("test_before_refit")
    refitted = f"; {before['NDCG@10']:.4f} before the refit" if before else ""
    print(f"best: validation NDCG@10 {result['best']['best_valid_NDCG@10']:.4f}; test NDCG@10 {t['NDCG@10']:.4f}, "
          f"HR@10 {t['HR@10']:.4f} (popularity {result['popularity_test']['NDCG@10']:.4f}{refitted}); "
          f"checkpoint {args.out}")
    return 0


def trials_table(result: dict, top: int = 10) -> str:
    """The best trials (and the defaults' trial), as people read them."""
    lines = [f"{len(result['trials'])} trials in {result['seconds']:.0f} s; best validation NDCG@10 first:",
             f"  {'valid':>7} {'epochs':>6}  configuration"]
    shown = result["trials"][:top]
    if result["defaults"] is not None and result["defaults"] not in shown:
        shown.append(result["defaults"])
    for t in shown:
        score = "-" if t["best_valid_NDCG@10"] is None else f"{t['best_valid_NDCG@10']:.4f}"
        c = t["config"]
        text = ", ".join(f"{k} {v:.2g}" if isinstance(v, float) else f"{k} {v}" for k, v in c.items())
        lines.append(f"  {score:>7} {t['epochs']:>6}  {text}{'  (the defaults)' if t['defaults'] else ''}")
    return "\n".join(lines)
