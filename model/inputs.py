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

    def codes(f: int, spec: FeatureSpec) -> np.ndarray:  # (B,) or (B, L)
        missing = np.zeros(spec.max_values if spec.multi else (), np.int64)
        return np.stack([np.asarray(u[f]) if u is not None else missing for u in users])

    return [torch.as_tensor(codes(f, spec), device=device) for f, spec in enumerate(specs)]
