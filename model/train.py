"""Training: next-item cross-entropy on every history position, early stopping on validation.

Long histories are cut into windows of `max_len` targets (newest window first), so every
interaction is a training target once per epoch rather than only the newest `max_len`.
Each epoch the windows are shuffled and batched; a batch is left-padded to its longest
window. After every `eval_every` epochs the model ranks each user's validation item
(full ranking, seen items masked); the best epoch's weights are saved as the checkpoint.
"""

from __future__ import annotations

import logging
import platform
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path

import numpy as np
import torch
from safetensors.torch import load_file
from torch import nn
from tqdm.auto import tqdm

from attnrec.model.checkpoint import Checkpoint, feature_codes, item_titles
from attnrec.model.config import FeatureSpec, ModelConfig, TrainConfig
from attnrec.model.data import DataError, Tables
from attnrec.model.evaluate import cases, evaluate, model_scorer, popularity_scorer
from attnrec.model.features import EncoderConfig, FeatureEncoder, fit_encoders
from attnrec.model.inputs import user_input
from attnrec.model.sasrec import Batch, SASRec
from attnrec.model.sequences import Split, Vocab, build_sequences, fingerprint, leave_one_out

log = logging.getLogger(__name__)


@dataclass
class Prepared:
    """Data turned into what the model needs; everything but the weights of a checkpoint."""

    items: Vocab
    users: Vocab
    item_encoders: tuple[FeatureEncoder, ...]
    user_encoders: tuple[FeatureEncoder, ...]
    item_codes: list[np.ndarray]
    user_codes: list[np.ndarray]
    split: Split
    titles: tuple[str, ...] | None = None  # per item, for people (checkpoint.item_titles)


def prepare(
    tables: Tables,
    item_columns: Sequence[str] | None = None,
    user_columns: Sequence[str] | None = None,
    encoder_config: EncoderConfig = EncoderConfig(),
) -> Prepared:
    """Vocabularies, feature encoders and codes, sequences and the leave-one-out split."""
    items = Vocab.from_columns(tables.interactions.column("item_id"))
    user_id_columns = [tables.interactions.column("user_id")]
    if tables.users is not None:
        user_id_columns.append(tables.users.column("user_id"))
    users = Vocab.from_columns(*user_id_columns)
    item_encoders = (
        fit_encoders(tables.items, "item_id", item_columns, encoder_config, "items") if tables.items is not None else ()
    )
    user_encoders = (
        fit_encoders(tables.users, "user_id", user_columns, encoder_config, "users") if tables.users is not None else ()
    )
    seqs, dropped = build_sequences(tables.interactions, items, users)
    assert dropped == 0  # the vocabulary was built from these interactions
    if tables.items is not None:
        described = tables.items.column("item_id").to_numpy(zero_copy_only=False)
        missing = len(items) - int(np.isin(items.ids, described).sum())
        if missing:
            log.warning("items table: %d of %d interacted items have no row; their features are 'missing'",
                        missing, len(items))
    return Prepared(
        items=items,
        users=users,
        item_encoders=item_encoders,
        user_encoders=user_encoders,
        item_codes=feature_codes(tables.items, "item_id", items, item_encoders),
        user_codes=feature_codes(tables.users, "user_id", users, user_encoders),
        split=leave_one_out(seqs),
        titles=item_titles(tables.items, items),
    )


def specs(encoders: Sequence[FeatureEncoder]) -> tuple[FeatureSpec, ...]:
    return tuple(FeatureSpec(e.name, e.cardinality, e.max_values, e.kind == "multi") for e in encoders)


def training_windows(split: Split, max_len: int) -> np.ndarray:
    """(W, 3) rows of (sequence row, first target offset, end offset) into split.train.items."""
    out = []
    for row, (start, end) in enumerate(zip(split.train.offsets[:-1], split.train.offsets[1:])):
        e = end
        while e - start >= 2:  # at least one input and one target
            first = max(start + 1, e - max_len)
            out.append((row, first, e))
            e = first
    return np.asarray(out, dtype=np.int64).reshape(-1, 3)


def make_batch(split: Split, windows: np.ndarray, user_codes: list[np.ndarray], device: torch.device) -> Batch:
    items = split.train.items
    T = int((windows[:, 2] - windows[:, 1]).max())
    seq = np.zeros((len(windows), T), dtype=np.int64)
    targets = np.zeros((len(windows), T), dtype=np.int64)
    weights = None if split.train.weights is None else np.zeros((len(windows), T), dtype=np.float32)
    for b, (_, first, end) in enumerate(windows):
        n = end - first
        seq[b, T - n :] = items[first - 1 : end - 1]
        targets[b, T - n :] = items[first:end]
        if weights is not None:
            weights[b, T - n :] = split.train.weights[first:end]
    user = user_input(user_codes, split.train.users[windows[:, 0]], device) if user_codes else None
    return Batch(torch.as_tensor(seq, device=device), torch.as_tensor(targets, device=device), user,
                 None if weights is None else torch.as_tensor(weights, device=device))


def resolve_device(name: str) -> torch.device:
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if name == "cuda" and not torch.cuda.is_available():
        raise RuntimeError("--device cuda asked for, but torch sees no CUDA device")
    return torch.device(name)


@dataclass
class Progress:
    """Where a run stands after an epoch: with the weights and the optimizer, enough to resume it."""

    epoch: int = 0
    best: float = -1.0  # validation NDCG@10 of the best epoch
    best_epoch: int = 0
    # Early stopping's reference: the last epoch whose validation NDCG@10 beat the reference
    # before it by more than TrainConfig.min_improvement; patience counts from its epoch.
    mark: float = -1.0
    mark_epoch: int = 0
    history: list[dict] = field(default_factory=list)
    resumed_after: list[int] = field(default_factory=list)  # epochs a restarted run went on from


@dataclass
class World:
    """How this process shares a run with others (Ray Train's workers; see serving/cluster_train.py).

    Every step, the epoch's shuffled windows are cut into batches of `batch_size`, and each of
    the `size` processes takes every `size`-th window of a batch: together they compute the
    same global batch as one process would, and `wrap` (DDP) averages their gradients. One
    process alone (the default) is plain local training."""

    rank: int = 0
    size: int = 1
    wrap: Callable[[nn.Module], nn.Module] = lambda module: module
    # after every epoch: (progress, model, optimizer); Ray Train reports and checkpoints here
    on_epoch: Callable[[Progress, SASRec, torch.optim.Optimizer], None] = lambda *_: None
    resume: Callable[[SASRec, torch.optim.Optimizer], Progress | None] = lambda *_: None


class NextItemLoss(nn.Module):
    """The training loss as a module's forward, so that DDP (which hooks forward) can wrap it."""

    def __init__(self, model: SASRec):
        super().__init__()
        self.model = model

    def forward(self, seq: torch.Tensor, targets: torch.Tensor, user: list[torch.Tensor] | None,
                weights: torch.Tensor | None = None) -> torch.Tensor:
        return self.model.loss(Batch(seq, targets, user, weights))


def step_seed(seed: int, epoch: int, rank: int) -> int:
    """Dropout's seed for one process's epoch: a resumed epoch replays exactly."""
    return (seed * 1_000_003 + epoch * 1_009 + rank) % 2**63


def train(
    prepared: Prepared,
    out: str | Path | None,
    model_config: ModelConfig | None = None,
    config: TrainConfig = TrainConfig(),
    progress: bool = True,
    data_fingerprint: str = "",
    should_stop: Callable[[], bool] = lambda: False,
    world: World = World(),
) -> Checkpoint:
    """Fit a model on prepared data; writes the best epoch to `out` as it goes (if given).
    `should_stop` is asked before every batch (Ctrl-C, SIGTERM): when it says so, training
    ends there and the best epoch so far is kept, with its complete metadata."""
    torch.manual_seed(config.seed)  # the same initial weights in every process
    device = resolve_device(config.device)
    split = prepared.split
    item_encoders = prepared.item_encoders if config.use_item_features else ()
    user_encoders = prepared.user_encoders if config.use_user_features else ()
    item_codes = prepared.item_codes if config.use_item_features else []
    user_codes = prepared.user_codes if config.use_user_features else []
    base = model_config or ModelConfig(n_items=len(prepared.items))
    model_config = replace(base, n_items=len(prepared.items), item_features=specs(item_encoders),
                           user_features=specs(user_encoders))
    model = SASRec(model_config).to(device)
    model.set_item_codes([torch.tensor(c) for c in item_codes])  # a copy: arrays from Ray are read-only
    ckpt = Checkpoint(model, prepared.items, prepared.users, item_encoders, user_encoders, user_codes,
                      item_counts=np.bincount(split.train.items, minlength=len(prepared.items) + 1),
                      titles=prepared.titles)
    windows = training_windows(split, model_config.max_len)
    if len(windows) == 0:
        raise DataError("interactions: no user has two or more interactions, nothing to train on")
    optimizer = torch.optim.AdamW(model.parameters(), lr=config.lr, weight_decay=config.weight_decay)
    loss_fn = world.wrap(NextItemLoss(model))
    valid = cases(split, "valid")
    scorer = model_scorer(model, lambda rows: ckpt.user_inputs(split.full.users[rows], device))
    state = world.resume(model, optimizer) or Progress()
    if state.epoch:
        state.resumed_after.append(state.epoch)
        log.warning("resuming after epoch %d (best so far: epoch %d)", state.epoch, state.best_epoch)
    started = time.monotonic() - (state.history[-1]["seconds"] if state.history else 0.0)
    if state.best_epoch and out is not None and Path(out, "model.safetensors").exists():
        best_state = load_file(str(Path(out) / "model.safetensors"))  # a resumed run's best epoch, as saved
    else:
        best_state = {k: v.detach().clone() for k, v in model.state_dict().items()}
    n_batches = -(-len(windows) // config.batch_size)
    # The bar's length is the epoch where early stopping would end the run as things stand
    # (the last real gain + patience), so its ETA never assumes every allowed epoch.
    bar = tqdm(total=planned_epochs(config, state.epoch, state.mark_epoch), initial=state.epoch,
               desc="train" if config.validate else "refit",
               unit="epoch", disable=not progress)
    stopped = "max_epochs"
    for epoch in range(state.epoch + 1, config.epochs + 1):
        model.train()
        order = np.random.default_rng([config.seed, epoch]).permutation(len(windows))
        torch.manual_seed(step_seed(config.seed, epoch, world.rank))
        losses = []
        steps = tqdm(total=n_batches, desc=f"epoch {epoch}", unit="batch", leave=False, mininterval=2,
                     disable=not progress)
        for start in range(0, len(order), config.batch_size):
            if should_stop():
                break
            mine = windows[order[start : start + config.batch_size]][world.rank :: world.size]
            if len(mine) == 0:  # a last batch smaller than the world: no process takes it
                break
            batch = make_batch(split, mine, user_codes, device)
            loss = loss_fn(batch.seq, batch.targets, batch.user, batch.weights)
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
            losses.append(loss.item())
            steps.update()
            if len(losses) % 50 == 0:
                steps.set_postfix(loss=f"{np.mean(losses[-50:]):.3f}", refresh=False)
        steps.close()
        if should_stop():
            stopped = "interrupted"
            log.warning("stopped during epoch %d: keeping the best epoch (%d)", epoch, state.best_epoch)
            if state.best_epoch == 0 and config.validate:  # nothing validated yet: the partial weights are all there is
                model.eval()
                state.best = evaluate(scorer, valid)["NDCG@10"]
                best_state = {k: v.detach().clone() for k, v in model.state_dict().items()}
            break
        record = {"epoch": epoch, "loss": float(np.mean(losses)), "seconds": round(time.monotonic() - started, 1)}
        kept = not config.validate  # without validation every epoch is the newest, kept as the best is
        if config.validate and (epoch % config.eval_every == 0 or epoch == config.epochs):
            model.eval()  # every process validates the same weights: all take the same decisions
            record.update({f"valid_{k}": v for k, v in evaluate(scorer, valid).items() if k != "users"})
            kept = record["valid_NDCG@10"] > state.best
            if kept:
                state.best = record["valid_NDCG@10"]
            if gained(record["valid_NDCG@10"], state.mark, config.min_improvement):
                state.mark, state.mark_epoch = record["valid_NDCG@10"], epoch
        if kept:  # saved at once, so a checkpoint exists from the first epoch and a restarted worker resumes from it
            state.best_epoch = epoch
            ckpt.metadata = _metadata(config, prepared, epoch, _validated(config, state), state.history + [record],
                                      data_fingerprint)
            best_state = {k: v.detach().clone() for k, v in model.state_dict().items()}
            if out is not None and world.rank == 0:
                ckpt.save(out)
        state.history.append(record)
        state.epoch = epoch
        world.on_epoch(state, model, optimizer)
        bar.total = planned_epochs(config, epoch, state.mark_epoch)
        bar.update()
        previous = state.history[-2]["seconds"] if len(state.history) > 1 else 0
        validation = (dict(ndcg=f"{record.get('valid_NDCG@10', float('nan')):.4f}",
                           best=f"{state.best:.4f}@{state.best_epoch}") if config.validate else {})
        bar.set_postfix(epoch_s=f"{record['seconds'] - previous:.0f}", loss=f"{record['loss']:.3f}", **validation)
        if config.validate and epoch - state.mark_epoch >= config.patience:
            stopped = "early_stopping"
            log.info("early stop at epoch %d: validation NDCG@10 has not gained more than %g%% since epoch %d "
                     "(best epoch %d)", epoch, 100 * config.min_improvement, state.mark_epoch, state.best_epoch)
            break
        if config.max_minutes and time.monotonic() - started > 60 * config.max_minutes:
            stopped = "max_minutes"
            log.warning("stopping after %.1f minutes (max_minutes), best epoch %d", config.max_minutes,
                        state.best_epoch)
            break
    bar.close()
    model.load_state_dict(best_state)
    model.eval()
    ckpt.metadata = _metadata(config, prepared, state.best_epoch, _validated(config, state), state.history,
                              data_fingerprint)
    ckpt.metadata.update(train_seconds=round(time.monotonic() - started, 1), stopped_by=stopped,
                         epochs_run=len(state.history), resumed_after=state.resumed_after)
    ckpt.metadata["model_version"] = ckpt.model_version  # for people reading metadata.json; served from the weights
    if out is not None and world.rank == 0:
        ckpt.save(out)
    return ckpt


def gained(ndcg: float, mark: float, min_improvement: float) -> bool:
    """Whether a validation NDCG@10 is progress for early stopping: better than the reference
    by more than `min_improvement` of it. Smaller gains still give a better checkpoint, kept
    as always, but do not keep training going: on a million interactions they came every few
    epochs for another 30 or more, each within the validation split's noise."""
    return ndcg > mark + min_improvement * max(mark, 0.0)


def planned_epochs(config: TrainConfig, epoch: int, mark_epoch: int) -> int:
    """The epoch where training ends as things stand: early stopping `patience` epochs after
    the last real gain (Progress.mark_epoch), or the last allowed epoch."""
    if not config.validate:
        return config.epochs
    return min(config.epochs, max(mark_epoch + config.patience, epoch))


def _validated(config: TrainConfig, state: Progress) -> float | None:
    """The best epoch's validation NDCG@10 as metadata records it: None for a run without validation."""
    return state.best if config.validate else None


def _metadata(config: TrainConfig, prepared: Prepared, epoch: int, ndcg: float | None, history: list,
              fp: str) -> dict:
    return {
        "data_fingerprint": fp,
        "n_items": len(prepared.items),
        "n_users": len(prepared.users),
        "n_interactions": int(len(prepared.split.full.items)),
        "best_epoch": epoch,
        "valid_NDCG@10": ndcg,
        "train_config": asdict(config),
        "history": history,
        "versions": {"python": platform.python_version(), "torch": torch.__version__, "numpy": np.__version__},
        "created": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
    }


def popularity_metrics(prepared: Prepared, stage: str = "test") -> dict[str, float]:
    return evaluate(popularity_scorer(prepared.split, len(prepared.items), stage), cases(prepared.split, stage))


def data_fingerprint(tables: Tables) -> str:
    return fingerprint(tables.interactions)
