"""Interactions as per-user item-index sequences, and the leave-one-out split.

Item index 0 is padding; item i >= 1 is `item_ids[i - 1]`. User index 0 is "unknown user";
user u >= 1 is `user_ids[u - 1]`. A user's sequence is sorted by timestamp; ties keep the
order of the file (a stable sort), so the split is the same on every run.
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc


@dataclass(frozen=True)
class Vocab:
    """External ids to indices; index 0 is reserved (padding / unknown)."""

    ids: tuple[str, ...]

    def __len__(self) -> int:
        return len(self.ids)

    def lookup(self, ids: Sequence[str] | pa.Array | pa.ChunkedArray) -> np.ndarray:
        """Indices of ids, 0 for ids not in the vocabulary."""
        arr = ids if isinstance(ids, (pa.Array, pa.ChunkedArray)) else pa.array(list(ids), pa.string())
        index = pc.index_in(arr, value_set=pa.array(self.ids, pa.string()))
        return pc.fill_null(pc.add(index, 1), 0).to_numpy(zero_copy_only=False).astype(np.int64)

    def ids_of(self, indices: Sequence[int] | np.ndarray) -> list[str]:
        """External ids of indices (each >= 1): the inverse of `lookup`."""
        return [self.ids[i - 1] for i in np.asarray(indices).ravel().tolist()]

    @staticmethod
    def from_columns(*columns: pa.ChunkedArray | pa.Array) -> Vocab:
        """A sorted vocabulary of the distinct values of string columns."""
        values = pa.chunked_array([c for col in columns for c in getattr(col, "chunks", [col])], pa.string())
        unique = pc.unique(values)
        return Vocab(tuple(pc.take(unique, pc.sort_indices(unique)).to_pylist()))


@dataclass(frozen=True)
class Sequences:
    """Every user's items in time order, flattened: user u's items are items[offsets[u-1]:offsets[u]]."""

    users: np.ndarray  # (n_users,) user index of each sequence
    offsets: np.ndarray  # (n_users + 1,) start of each sequence in `items`
    items: np.ndarray  # (n_interactions,) item indices, >= 1
    weights: np.ndarray | None = None  # (n_interactions,) each as a training target; None = all 1

    def __len__(self) -> int:
        return len(self.users)

    def get(self, i: int) -> np.ndarray:
        return self.items[self.offsets[i] : self.offsets[i + 1]]

    @property
    def lengths(self) -> np.ndarray:
        return np.diff(self.offsets)


def build_sequences(interactions: pa.Table, items: Vocab, users: Vocab) -> tuple[Sequences, int]:
    """Group interactions by user in time order (with their `weight` column, if any); returns
    the sequences and the number of dropped unknown items."""
    item_idx = items.lookup(interactions.column("item_id"))
    user_idx = users.lookup(interactions.column("user_id"))
    ts = interactions.column("timestamp").to_numpy()
    known = item_idx > 0
    item_idx, user_idx, ts = item_idx[known], user_idx[known], ts[known]
    order = np.lexsort((ts, user_idx))  # stable: equal timestamps keep file order
    user_sorted = user_idx[order]
    starts = np.flatnonzero(np.r_[True, user_sorted[1:] != user_sorted[:-1]]) if len(order) else np.array([], int)
    offsets = np.r_[starts, len(order)].astype(np.int64)
    weights = None
    if "weight" in interactions.column_names:
        weights = interactions.column("weight").to_numpy().astype(np.float32)[known][order]
    return (Sequences(users=user_sorted[starts], offsets=offsets, items=item_idx[order], weights=weights),
            int((~known).sum()))


def newest_item_known(interactions: pa.Table, items: Vocab, users: Vocab) -> np.ndarray:
    """Per user index (0 = padding, False): whether the user's newest interaction is with an
    item in `items`. Where it is not, leave-one-out over the known items would hold out an
    older item instead of the one the user really went on to."""
    item_idx = items.lookup(interactions.column("item_id"))
    user_idx = users.lookup(interactions.column("user_id"))
    order = np.lexsort((interactions.column("timestamp").to_numpy(), user_idx))  # as build_sequences
    user_sorted = user_idx[order]
    newest = np.flatnonzero(np.r_[user_sorted[1:] != user_sorted[:-1], True]) if len(order) else np.zeros(0, int)
    known = np.zeros(len(users) + 1, dtype=bool)
    known[user_sorted[newest]] = item_idx[order][newest] > 0
    return known


@dataclass(frozen=True)
class Split:
    """Leave-one-out by time: per user the last item is test, the one before it validation.

    `train` holds every user's sequence without its last two items (users with fewer than
    three interactions keep their whole sequence for training and are not evaluated).
    Evaluation users are `eval_rows` (rows of `full`).
    """

    full: Sequences
    train: Sequences
    eval_rows: np.ndarray  # rows of `full` with >= 3 interactions


def leave_one_out(seqs: Sequences) -> Split:
    return Split(full=seqs, train=held_out(seqs, 2), eval_rows=np.flatnonzero(seqs.lengths >= 3))


def held_out(seqs: Sequences, n: int) -> Sequences:
    """Every sequence of three or more items without its newest `n` (shorter ones whole): n=2 is
    the training data of the leave-one-out split, n=1 adds each user's validation item back."""
    lengths = seqs.lengths
    cut = np.where(lengths >= 3, lengths - n, lengths)
    keep = np.asarray(np.concatenate([np.arange(s, s + k) for s, k in zip(seqs.offsets[:-1], cut)])
                      if len(seqs) else [], int)
    return Sequences(seqs.users, np.r_[0, np.cumsum(cut)].astype(np.int64), seqs.items[keep],
                     None if seqs.weights is None else seqs.weights[keep])


def fingerprint(table: pa.Table) -> str:
    """A short content hash of the interactions, saved with a checkpoint to tell data sets apart."""
    h = hashlib.sha256()
    for name in ("user_id", "item_id", "timestamp"):
        for chunk in table.column(name).chunks:
            for buf in chunk.buffers():
                if buf is not None:
                    h.update(memoryview(buf))
    return h.hexdigest()[:16]


def left_pad(seqs: Sequence[np.ndarray], max_len: int) -> np.ndarray:
    """Stack sequences right-aligned into (B, T) with 0 on the left; T = longest (<= max_len).
    Longer sequences keep their most recent max_len items."""
    T = min(max_len, max((len(s) for s in seqs), default=1)) or 1
    out = np.zeros((len(seqs), T), dtype=np.int64)
    for row, s in enumerate(seqs):
        s = s[-T:]
        if len(s):
            out[row, T - len(s):] = s
    return out
