"""The model's batched user input, built in one place for training, evaluation, serving
and explanations: per user feature, one tensor with a row per example."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import torch

from attnrec.model.config import FeatureSpec


def user_input(codes: Sequence[np.ndarray], rows: np.ndarray, device: torch.device | str) -> list[torch.Tensor]:
    """codes[f]: feature f's codes, one row per user (row 0 = the unknown user); rows (B,): users
    to take. Returns per feature (B,) for single-valued, (B, L) for multi-valued features."""
    rows = np.asarray(rows, dtype=np.int64)
    return [torch.as_tensor(np.asarray(c)[rows], device=device) for c in codes]


def stack_users(users: Sequence[Sequence[np.ndarray] | None], specs: Sequence[FeatureSpec],
                device: torch.device | str) -> list[torch.Tensor] | None:
    """Per-example user codes (None = an unknown user: every feature missing, code 0) as the
    batched user input; None when the model has no user features (no user token)."""
    if not specs:
        return None
    codes = [np.stack([np.asarray(u[f]) if u is not None else np.zeros(s.max_values if s.multi else (), np.int64)
                       for u in users]) for f, s in enumerate(specs)]
    return user_input(codes, np.arange(len(users)), device)
