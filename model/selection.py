"""Defaults chosen from the data: the history window, and which feature families a model keeps.

A feature family (the items' side features, the users' own features) earns its place only
where a model trained with it ranks the validation items better than one trained without
it: on small data the extra embeddings can overfit and lose to item ids alone. With
`features="auto"` (the default) `attnrec train` trains one candidate per family set, each
to its own early stop, and keeps the one with the best validation NDCG@10; a family left
out is said so in a line of the output and in the checkpoint's metadata. Every candidate is
a whole training, so above `max_interactions` auto keeps every family and says so.
"""

from __future__ import annotations

import shutil
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass, replace
from pathlib import Path

import numpy as np

from attnrec.model.checkpoint import Checkpoint, copy_checkpoint
from attnrec.model.config import ModelConfig, TrainConfig
from attnrec.model.sequences import Split

FEATURE_MODES = ("auto", "all", "items", "users", "none")


@dataclass(frozen=True)
class SelectionConfig:
    """How `attnrec train` chooses its feature families and history window."""

    features: str = "auto"  # one of FEATURE_MODES
    max_interactions: int = 300_000  # auto trains candidates up to this size; above, every family is kept
    window_quantile: float = 0.9  # the history window covers this share of users' histories whole...
    min_window: int = 20  # ...but is at least this...
    max_window: int = ModelConfig.max_len  # ...and at most this (attention's cost grows with its square)


@dataclass(frozen=True)
class Candidate:
    """A set of feature families to train with."""

    name: str
    items: bool
    users: bool

    def apply(self, config: TrainConfig) -> TrainConfig:
        return replace(config, use_item_features=self.items, use_user_features=self.users)


IDS = Candidate("ids", False, False)
ITEMS = Candidate("items", True, False)
USERS = Candidate("users", False, True)
BOTH = Candidate("items+users", True, True)


def candidates(has_items: bool, has_users: bool) -> list[Candidate]:
    """The family sets worth comparing, richest first: each family is added on top of the last
    (ids, + item features, + user features), as an ablation reads."""
    if has_items and has_users:
        return [BOTH, ITEMS, IDS]
    if has_items:
        return [ITEMS, IDS]
    if has_users:
        return [USERS, IDS]
    return [IDS]


def fixed_candidate(mode: str, has_items: bool, has_users: bool) -> Candidate:
    """The one family set a mode other than auto names (families the data lacks are simply absent)."""
    return {
        "all": Candidate("all", has_items, has_users),
        "items": replace(ITEMS, items=has_items),
        "users": replace(USERS, users=has_users),
        "none": IDS,
    }[mode]


def history_window(split: Split, config: SelectionConfig = SelectionConfig()) -> tuple[int, int]:
    """(window, the quantile's history length): the training histories' `window_quantile`
    length rounded up to a multiple of 10, within [min_window, max_window]."""
    lengths = np.diff(split.train.offsets)
    q = int(np.quantile(lengths, config.window_quantile, method="inverted_cdf")) if len(lengths) else 0
    return int(min(config.max_window, max(config.min_window, -(-q // 10) * 10))), q


# fit(prepared, out, model_config, train_config, fingerprint, progress) -> Checkpoint: local or Ray Train
Fit = Callable[..., Checkpoint]


@dataclass
class Selected:
    checkpoint: Checkpoint
    report: dict  # what was compared and why the winner won; the checkpoint's metadata["feature_selection"]
    lines: list[str]  # the same for people
    interrupted: bool = False  # a stop signal ended one of the trainings


def train_selected(prepared, out: Path, model_config: ModelConfig, config: TrainConfig, fit: Fit,
                   fingerprint: str, progress: bool, selection: SelectionConfig = SelectionConfig()) -> Selected:
    """Train with the feature families `selection.features` asks for; with auto, train each
    candidate and keep the best on the validation split. The winner is written to `out`."""
    has_items, has_users = bool(prepared.item_encoders), bool(prepared.user_encoders)
    n = len(prepared.split.full.items)
    if selection.features != "auto":
        only = fixed_candidate(selection.features, has_items, has_users)
        ckpt = fit(prepared, out, model_config, only.apply(config), fingerprint, progress)
        return _alone(ckpt, {"mode": selection.features, "chosen": only.name}, [])
    options = candidates(has_items, has_users)
    if len(options) == 1:
        ckpt = fit(prepared, out, model_config, IDS.apply(config), fingerprint, progress)
        return _alone(ckpt, {"mode": "auto", "chosen": IDS.name, "why": "the data have no side features"}, [])
    if n > selection.max_interactions:
        why = (f"every family kept without comparing: {n:,} interactions is above {selection.max_interactions:,}, "
               "where each candidate would be another whole training (--features chooses)")
        ckpt = fit(prepared, out, model_config, options[0].apply(config), fingerprint, progress)
        return _alone(ckpt, {"mode": "auto", "chosen": options[0].name, "why": why}, [f"feature families: {why}"])
    return _compare(prepared, Path(out), model_config, config, fit, fingerprint, progress, options)


def _alone(ckpt: Checkpoint, report: dict, lines: list[str]) -> Selected:
    return Selected(ckpt, report, lines, ckpt.metadata.get("stopped_by") == "interrupted")


def _compare(prepared, out: Path, model_config: ModelConfig, config: TrainConfig, fit: Fit, fingerprint: str,
             progress: bool, options: list[Candidate]) -> Selected:
    """The first (richest) candidate trains straight into `out`, so a checkpoint is there from
    its first epoch on; the others train beside it and replace it only if they win."""
    started = time.monotonic()
    trained: dict[str, Checkpoint] = {}
    interrupted = False
    out.parent.mkdir(parents=True, exist_ok=True)
    scratch = Path(tempfile.mkdtemp(prefix=f".{out.name}-candidates-", dir=out.parent))
    places = {c.name: out if i == 0 else scratch / c.name for i, c in enumerate(options)}
    try:
        for i, candidate in enumerate(options):
            budget = config.max_minutes
            if budget:  # --max-minutes bounds the whole selection: share what is left
                budget = max(0.1, (budget - (time.monotonic() - started) / 60) / (len(options) - i))
            if progress:
                print(f"feature families: candidate {i + 1}/{len(options)}: {candidate.name}", flush=True)
            ckpt = fit(prepared, places[candidate.name], model_config,
                       replace(candidate.apply(config), max_minutes=budget), fingerprint, progress)
            trained[candidate.name] = ckpt
            if ckpt.metadata.get("stopped_by") == "interrupted":
                interrupted = True
                print(f"stopped during candidate {candidate.name}: choosing among the candidates trained so far",
                      flush=True)
                break
        scores = {name: c.metadata["valid_NDCG@10"] for name, c in trained.items()}
        chosen = max(trained, key=lambda name: (scores[name], -list(trained).index(name)))
        winner = trained[chosen]
        if places[chosen] != out:
            copy_checkpoint(places[chosen], out)
    finally:
        shutil.rmtree(scratch, ignore_errors=True)
    lines = ["feature families by validation NDCG@10: "
             + ", ".join(f"{name} {score:.4f}" for name, score in scores.items()) + f"; keeping {chosen}"]
    kept = _by_name(options, chosen)
    richest = options[0]
    for family, had, has in (("item", richest.items, kept.items), ("user", richest.users, kept.users)):
        if had and not has:
            with_it = max(s for name, s in scores.items() if getattr(_by_name(options, name), family + "s"))
            lines.append(f"{family} features switched off: validation NDCG@10 {scores[chosen]:.4f} without them, "
                         f"at best {with_it:.4f} with them")
    report = {"mode": "auto", "chosen": chosen,
              "candidates": {name: {"valid_NDCG@10": c.metadata["valid_NDCG@10"],
                                    "best_epoch": c.metadata["best_epoch"],
                                    "train_seconds": c.metadata.get("train_seconds"),
                                    "stopped_by": c.metadata.get("stopped_by")} for name, c in trained.items()},
              "selection_seconds": round(time.monotonic() - started, 1)}
    return Selected(winner, report, lines, interrupted)


def _by_name(options: list[Candidate], name: str) -> Candidate:
    return next(c for c in options if c.name == name)
