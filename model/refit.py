"""The last step of `attnrec train`: the chosen recipe trained once more, on the validation items too.

Validation chooses how to train (the feature families, and the number of epochs: the best
epoch). Its price is each user's second-newest interaction, held out of training, and that
item is the closest one to what the user does next. The refit trains the chosen recipe again
from its first weights on every interaction but each user's test item, for exactly the best
epoch's number of epochs, and serves that. On the embedded MovieLens it raised test NDCG@10
on each of three seeds, by 12% on average; on a synthetic shop it was level (docs/accuracy.md).

The refit's own validation items are training data, so nothing can check it but the run
that chose it: it replaces the validated checkpoint only when it trains every epoch it was
given. Ctrl-C, SIGTERM or --max-minutes during the refit keep the validated checkpoint, and
a run stopped before the refit (interrupted, or out of --max-minutes) never starts one. It
costs about one more training run, so `auto` refits data up to `max_interactions` and, above
that, keeps the validated checkpoint and says so.
"""

from __future__ import annotations

import shutil
import tempfile
import time
from dataclasses import dataclass, replace
from pathlib import Path

from attnrec.model.checkpoint import Checkpoint, copy_checkpoint
from attnrec.model.config import ModelConfig, TrainConfig
from attnrec.model.selection import Fit, SelectionConfig
from attnrec.model.sequences import held_out

REFIT_MODES = ("auto", "on", "off")


@dataclass(frozen=True)
class RefitConfig:
    """Whether `attnrec train` refits the chosen recipe on the validation items too."""

    mode: str = "auto"  # one of REFIT_MODES
    max_interactions: int = SelectionConfig.max_interactions  # auto refits data up to this size


def refit_epochs(metadata: dict, n_interactions: int, config: RefitConfig,
                 minutes_left: float | None) -> tuple[int, str]:
    """How many epochs the refit trains (0: no refit), and why, from the validated run's metadata.
    `minutes_left` is what --max-minutes leaves (None: no limit)."""
    epochs = int(metadata.get("best_epoch") or 0)
    stopped = metadata.get("stopped_by")
    if config.mode == "off":
        return 0, "off (--refit off)"
    if stopped in ("interrupted", "max_minutes"):
        return 0, f"skipped: training was stopped ({'a stop signal' if stopped == 'interrupted' else '--max-minutes'})"
    if epochs == 0:
        return 0, "skipped: no epoch was validated"
    if config.mode == "auto" and n_interactions > config.max_interactions:
        return 0, (f"skipped: {n_interactions:,} interactions is above {config.max_interactions:,}, where it would "
                   "be another whole training (--refit on refits anyway)")
    if minutes_left is not None:
        per_epoch = float(metadata.get("train_seconds") or 0) / int(metadata.get("epochs_run") or 1)
        needed = epochs * per_epoch / 60
        if needed > minutes_left or minutes_left <= 0:
            return 0, (f"skipped: {epochs} epochs need about {needed:.1f} minutes, "
                       f"--max-minutes leaves {max(0.0, minutes_left):.1f}")
    return epochs, f"{epochs} epochs, the best epoch by validation"


def refit(prepared, out: Path, model_config: ModelConfig, validated: Checkpoint, epochs: int, fit: Fit,
          fingerprint: str, progress: bool, minutes_left: float | None = None) -> Checkpoint | None:
    """The validated checkpoint's recipe trained for `epochs` epochs on all but each user's test
    item, written to `out`; None (and `out` untouched) when it did not train every epoch."""
    split = prepared.split
    refit_data = replace(prepared, split=replace(split, train=held_out(split.full, 1)))
    config = replace(TrainConfig(**validated.metadata["train_config"]), epochs=epochs, validate=False,
                     max_minutes=minutes_left or 0.0)
    out = Path(out)
    scratch = Path(tempfile.mkdtemp(prefix=f".{out.name}-refit-", dir=out.parent))
    started = time.monotonic()
    try:
        ckpt = fit(refit_data, scratch, model_config, config, fingerprint, progress)
        if ckpt.metadata.get("epochs_run") != epochs:
            return None
        added = len(refit_data.split.train.items) - len(split.train.items)
        ckpt.metadata = {**validated.metadata, "refit": {
            "epochs": epochs, "train_seconds": round(time.monotonic() - started, 1),
            "interactions": int(len(refit_data.split.train.items)), "validation_items_added": int(added),
            "note": "weights trained again on the validation items too; valid_NDCG@10, best_epoch and history "
                    "are of the validated run that chose this recipe"}}
        ckpt.metadata["model_version"] = ckpt.model_version
        ckpt.save(scratch)
        copy_checkpoint(scratch, out)
        return ckpt
    finally:
        shutil.rmtree(scratch, ignore_errors=True)
