"""The checkpoint a replica serves, as one value that is swapped whole on a rollout, and the
checks a new checkpoint must pass before any replica is asked to load it. Pure: no Ray."""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from attnrec.model.checkpoint import Checkpoint, CheckpointError, load_checkpoint, resolve_checkpoint
from attnrec.model.onnx_encoder import OnnxEncoder, encoder_for
from attnrec.model.retrieval import Ranker, Retrieval, has_index, load_retriever
from attnrec.model.train import resolve_device
from attnrec.serving.codec import Catalog
from attnrec.serving.config import ServingConfig

log = logging.getLogger("ray.serve")


@dataclass(frozen=True)
class Loaded:
    """Weights and the ids that go with them. A call reads `replica.loaded` once and uses that
    value to the end, so an answer is always decoded, scored and labelled by one model_version."""

    path: str
    ckpt: Checkpoint
    catalog: Catalog
    retrieval: Retrieval | None = None  # two-stage Recommend; None = exact scoring
    encode: OnnxEncoder | None = None  # what computes user states for ranking; None = ckpt.model.encode

    @property
    def ranker(self) -> Ranker:
        return Ranker(self.ckpt.model, self.retrieval, self.encode)

    @property
    def model_version(self) -> str:
        return self.catalog.model_version


def load(path: str, device: str = "auto", config: ServingConfig | None = None) -> Loaded:
    """Load a checkpoint directory ("default" = the embedded one) for serving; with `config`,
    its item index too where config.retrieval says to use one, and the engine config.engine names."""
    resolved = resolve_checkpoint(path)
    ckpt = load_checkpoint(resolved, resolve_device(device))
    with torch.inference_mode():  # the item table every query multiplies: filled now, not by the first
        ckpt.model.all_item_vectors()  # calls (seconds at a million items, while they wait)
    catalog = Catalog(ckpt)
    if config is None:
        return Loaded(resolved, ckpt, catalog)
    return Loaded(resolved, ckpt, catalog, retrieval_for(resolved, catalog, config),
                  encoder_for(ckpt.model, config.engine))


def retrieval_for(path: str, catalog: Catalog, config: ServingConfig) -> Retrieval | None:
    """The checkpoint's two-stage retrieval, or None for exact scoring (a log line says why
    when a catalogue that should have an index has none)."""
    n_items = len(catalog.item_index)
    wanted = config.retrieval == "on" or (config.retrieval == "auto" and n_items >= config.retrieval_min_items)
    if not wanted:
        return None
    retriever = load_retriever(path, catalog.model_version, n_items, config.retrieval_probe)
    if retriever is None:
        log.warning("%s: %d items and no item index for these weights: every Recommend scores the whole "
                    "catalogue; `attnrec index --checkpoint %s` builds one", path, n_items, path)
        return None
    log.info("%s: two-stage retrieval, %d candidates from %s (%d lists, %d probed)", path,
             config.retrieval_candidates, retriever.meta.get("kind"), retriever.index.nlist, retriever.n_probe)
    return Retrieval(retriever, config.retrieval_candidates)


def check_replacement(current: Checkpoint, new: Checkpoint, allow_new_catalog: bool = False) -> None:
    """Raise CheckpointError when `new` cannot take over from `current` without callers noticing
    more than a new model_version: another item catalogue (ids callers hold would become unknown
    or change meaning) unless allowed, other user features (requests naming them would fail),
    or weights that do not give finite scores."""
    if new.items.ids != current.items.ids and not allow_new_catalog:
        gone = len(set(current.items.ids) - set(new.items.ids))
        added = len(set(new.items.ids) - set(current.items.ids))
        raise CheckpointError(f"another item catalogue ({len(new.items)} items: {gone} of the served "
                              f"{len(current.items)} gone, {added} new, or reordered); pass --allow-new-catalog "
                              "if callers expect it")
    old_features = sorted(e.name for e in current.user_encoders)
    new_features = sorted(e.name for e in new.user_encoders)
    if new_features != old_features and not allow_new_catalog:
        raise CheckpointError(f"other user features ({new_features}, served: {old_features}); requests that "
                              "name a feature would change meaning; pass --allow-new-catalog if callers expect it, or "
                              "train with --features all to keep every family")
    with torch.inference_mode():
        model = new.model
        device = model.item_emb.weight.device
        history = torch.arange(1, min(len(new.items), model.config.max_len) + 1, device=device)[None]  # (1, T)
        scores = model.score_all(history, new.user_inputs(np.zeros(1, np.int64), device))  # (1, N + 1), unknown user
    if not torch.isfinite(scores[:, 1:]).all():
        raise CheckpointError("the weights give non-finite scores")


def check_rollout(current_path: str, new_path: str, allow_new_catalog: bool = False) -> tuple[str, str]:
    """Load both checkpoints and check the new one may replace the current; returns
    (current model_version, new model_version). Raises CheckpointError or FileNotFoundError."""
    if not (Path(resolve_checkpoint(new_path)) / "config.json").exists():
        raise FileNotFoundError(f"{new_path}: not a checkpoint directory (no config.json)")
    current, new = load(current_path, "cpu"), load(new_path, "cpu")
    check_replacement(current.ckpt, new.ckpt, allow_new_catalog)
    indexed = [has_index(c.path, c.model_version, len(c.catalog.item_index)) for c in (current, new)]
    if indexed == [True, False]:  # the new one would be served by exact scoring: many times slower on a big catalogue
        raise CheckpointError(f"the served checkpoint has an item index and {new_path} has none for its weights; "
                              f"build it first: attnrec index --checkpoint {new_path}")
    return current.model_version, new.model_version
