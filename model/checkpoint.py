"""A checkpoint is a directory; loading one never executes code (no pickle).

    config.json      ModelConfig
    model.safetensors weights and per-item feature codes
    items.parquet    item vocabulary: row i is item index i + 1, with its training interactions
                     and its title where the data has one (shown to people, never a model input)
    users.parquet    user vocabulary and each user's feature codes: row u is user index u + 1
    encoders.json    how item and user feature columns turn into codes
    metadata.json    data fingerprint, metrics, library versions, training time
"""

from __future__ import annotations

import hashlib
import json
import shutil
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import torch
from safetensors import SafetensorError
from safetensors.torch import load_file, save_file

from attnrec.model.config import ModelConfig
from attnrec.model.features import FeatureEncoder, encode_table, encoders_from_json, encoders_to_json
from attnrec.model.inputs import user_input
from attnrec.model.sasrec import SASRec
from attnrec.model.sequences import Vocab

DEFAULT_CHECKPOINT = Path(__file__).with_name("default_model")  # the embedded MovieLens model, served by default


def resolve_checkpoint(path: str | Path | None) -> str:
    """"default" (or nothing) means the embedded checkpoint; anything else, that directory."""
    return str(DEFAULT_CHECKPOINT if path in (None, "", "default") else Path(path).resolve())


@dataclass
class Checkpoint:
    """A model with everything needed to turn external ids into its inputs."""

    model: SASRec
    items: Vocab
    users: Vocab
    item_encoders: tuple[FeatureEncoder, ...]
    user_encoders: tuple[FeatureEncoder, ...]
    user_codes: list[np.ndarray]  # per user feature: (n_users + 1,) or (n_users + 1, L); row 0 = unknown user
    metadata: dict = field(default_factory=dict)
    item_counts: np.ndarray | None = None  # (n_items + 1,) interactions per item in training; None = not recorded
    titles: tuple[str, ...] | None = None  # per item (vocabulary order), "" where it has none; None = no titles

    @property
    def config(self) -> ModelConfig:
        return self.model.config

    @property
    def model_version(self) -> str:
        """Names these weights: the training run (data fingerprint and best epoch) and a digest of
        every parameter, so two runs on the same data with other seeds never share a version."""
        run = f"{self.metadata.get('data_fingerprint') or 'data'}-e{self.metadata.get('best_epoch', 0)}"
        return f"{run}-{weights_digest(self.model)}"

    def user_inputs(self, user_index: np.ndarray, device: torch.device | str = "cpu") -> list[torch.Tensor] | None:
        """The model's user input for user indices (B,), 0 = unknown; None when the model has no user token."""
        if not self.config.has_user_token:
            return None
        return user_input(self.user_codes, user_index, device)

    def save(self, directory: str | Path) -> None:
        d = Path(directory)
        d.mkdir(parents=True, exist_ok=True)
        (d / "config.json").write_text(self.config.to_json())
        state = {k: v.detach().cpu().contiguous() for k, v in self.model.state_dict().items()}
        save_file(state, str(d / "model.safetensors"))
        items = {"item_id": pa.array(self.items.ids, pa.string())}
        if self.item_counts is not None:
            items["train_count"] = pa.array(np.asarray(self.item_counts[1:], dtype=np.int64))
        if self.titles is not None:
            items["title"] = pa.array(self.titles, pa.string())
        pq.write_table(pa.table(items), d / "items.parquet")
        users = {"user_id": pa.array(self.users.ids, pa.string())}
        for e, codes in zip(self.user_encoders, self.user_codes):
            users[f"code:{e.name}"] = pa.array(list(codes[1:])) if codes.ndim == 2 else pa.array(codes[1:])
        pq.write_table(pa.table(users), d / "users.parquet")
        encoders = {"items": encoders_to_json(self.item_encoders), "users": encoders_to_json(self.user_encoders)}
        (d / "encoders.json").write_text(json.dumps(encoders, indent=1))
        (d / "metadata.json").write_text(json.dumps(self.metadata, indent=2, default=str))


def copy_checkpoint(source: str | Path, out: str | Path) -> None:
    """Make `out` a copy of the checkpoint directory `source`, replacing whatever was there."""
    out = Path(out)
    if out.exists():
        shutil.rmtree(out)
    shutil.copytree(source, out)


def weights_digest(model: torch.nn.Module) -> str:
    """12 hex digits of SHA-256 over every parameter and buffer, by name: equal exactly when the weights are."""
    h = hashlib.sha256()
    for name, tensor in sorted(model.state_dict().items()):
        h.update(name.encode())
        h.update(tensor.detach().cpu().contiguous().view(-1).view(torch.uint8).numpy().tobytes())
    return h.hexdigest()[:12]


class CheckpointError(ValueError):
    """A checkpoint directory that cannot be served: a file missing or unreadable, or weights
    that do not fit the model its config.json describes."""


def load_checkpoint(directory: str | Path, device: torch.device | str = "cpu") -> Checkpoint:
    d = Path(directory)
    if not (d / "config.json").exists():
        raise FileNotFoundError(f"{d}: not a checkpoint directory (no config.json)")
    missing = [f for f in ("model.safetensors", "items.parquet", "users.parquet", "encoders.json")
               if not (d / f).exists()]
    if missing:
        raise CheckpointError(f"{d}: incomplete checkpoint, missing {', '.join(missing)}")
    try:
        config = ModelConfig.from_json((d / "config.json").read_text())
        model = SASRec(config)
        model.load_state_dict(load_file(str(d / "model.safetensors")))
    except (RuntimeError, ValueError, TypeError, KeyError, OSError, SafetensorError) as e:  # wrong shapes, a torn file
        raise CheckpointError(f"{d}: the weights do not fit the model config.json describes: "
                              f"{str(e).splitlines()[0][:300]}") from e
    model.to(device).eval()
    encoders = json.loads((d / "encoders.json").read_text())
    users = pq.read_table(d / "users.parquet")
    user_encoders = encoders_from_json(encoders["users"])
    user_codes = []
    for e in user_encoders:
        col = users.column(f"code:{e.name}")
        codes = np.array(col.to_pylist(), dtype=np.int64) if e.kind == "multi" else col.to_numpy().astype(np.int64)
        pad = np.zeros((1, *codes.shape[1:]), dtype=np.int64)
        user_codes.append(np.concatenate([pad, codes.reshape(len(codes), *codes.shape[1:])]))
    items = pq.read_table(d / "items.parquet")
    counts = (np.r_[0, items.column("train_count").to_numpy()].astype(np.int64)
              if "train_count" in items.column_names else None)
    return Checkpoint(
        model=model,
        items=Vocab(tuple(items.column("item_id").to_pylist())),
        users=Vocab(tuple(users.column("user_id").to_pylist())),
        item_encoders=encoders_from_json(encoders["items"]),
        user_encoders=user_encoders,
        user_codes=user_codes,
        metadata=json.loads((d / "metadata.json").read_text()) if (d / "metadata.json").exists() else {},
        item_counts=counts,
        titles=tuple(items.column("title").to_pylist()) if "title" in items.column_names else None,
    )


TITLE_COLUMNS = ("title", "name")  # an items table's column that names each item for people


def item_titles(table: pa.Table | None, vocab: Vocab) -> tuple[str, ...] | None:
    """Each vocabulary item's title from the items table's first text column of TITLE_COLUMNS
    ("" for an item without one); None when the table has no such column."""
    if table is None:
        return None
    column = next((c for c in TITLE_COLUMNS if c in table.column_names
                   and pa.types.is_string(table.schema.field(c).type)), None)
    if column is None:
        return None
    by_id = dict(zip(table.column("item_id").to_pylist(), table.column(column).to_pylist()))
    return tuple(by_id.get(item) or "" for item in vocab.ids)


def feature_codes(
    table: pa.Table | None, id_column: str, vocab: Vocab, encoders: Sequence[FeatureEncoder]
) -> list[np.ndarray]:
    """Per-feature codes for every vocabulary entry with a leading all-missing row (index 0)."""
    codes = encode_table(table, id_column, vocab.ids, encoders)
    return [np.concatenate([np.zeros((1, *codes[e.name].shape[1:]), np.int64), codes[e.name]]) for e in encoders]


def calibration_codes(ckpt: Checkpoint, name: str | None = None) -> tuple[str | None, np.ndarray | None]:
    """The item feature calibration is measured on: `name`, else the first multi-valued one
    (genres), else the first categorical one (category); its codes (N + 1, L) per item index."""
    encoders = list(ckpt.item_encoders)
    if name is not None:
        chosen = [e for e in encoders if e.name == name]
        if not chosen:
            raise ValueError(f"--calibration-feature {name}: not an item feature of this model "
                             f"({[e.name for e in encoders]})")
    else:
        chosen = [e for e in encoders if e.kind == "multi"] or [e for e in encoders if e.kind == "categorical"]
    if not chosen:
        return None, None
    codes = getattr(ckpt.model, f"item_codes_{encoders.index(chosen[0])}").cpu().numpy()
    return chosen[0].name, codes.reshape(len(codes), -1)
