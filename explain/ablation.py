"""Deletion attribution through Captum's FeatureAblation: the target's logit drop when one
history position is removed (not zeroed: removed, so later items' positions and the
attention over the rest change as they would without it)."""

from __future__ import annotations

import numpy as np
import torch
from captum.attr import FeatureAblation
from torch import Tensor

from attnrec.model.sasrec import SASRec
from attnrec.model.sequences import left_pad


def deletion_attribution(model: SASRec, history: np.ndarray, user: list[np.ndarray] | None, target: int) -> np.ndarray:
    """(T,) logit drop of `target` when each history position alone is deleted; one padded pass."""
    device = model.item_emb.weight.device
    T = len(history)

    @torch.no_grad()
    def forward(presence: Tensor) -> Tensor:  # (n, T) 1 = kept, 0 = deleted -> (n,) target logits
        keep = presence.cpu().numpy() > 0.5
        seq = torch.as_tensor(left_pad([history[k] for k in keep], model.config.max_len), device=device)
        u = None if user is None else [torch.as_tensor(np.stack([np.asarray(c)] * len(keep)), device=device)
                                       for c in user]
        return model.score(seq, torch.full((len(keep), 1), target, device=device), u)[:, 0]

    ones = torch.ones(1, T, device=device)
    attribution = FeatureAblation(forward).attribute(
        ones, baselines=0.0, feature_mask=torch.arange(T, device=device)[None], perturbations_per_eval=T,
    )
    return attribution[0].double().cpu().numpy()
