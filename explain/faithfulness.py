"""Deletion faithfulness (ERASER comprehensiveness): how much the explained item's score
falls when the history positions an explanation ranks highest are removed."""

from __future__ import annotations

from typing import Sequence

import numpy as np
import torch

from attnrec.model.sasrec import SASRec
from attnrec.model.sequences import left_pad


@torch.inference_mode()
def scores_without(
    model: SASRec, history: np.ndarray, user: list[np.ndarray] | None, target: int,
    removals: Sequence[np.ndarray],
) -> tuple[np.ndarray, np.ndarray, float, int]:
    """(logits, ranks) of the target after each removal of history positions, then its
    logit and rank with nothing removed. Rank 0 = best among items outside the original
    history. One padded forward pass for all variants."""
    variants = [np.delete(history, np.asarray(r, dtype=np.int64)) for r in [np.zeros(0, np.int64), *removals]]
    device = model.item_emb.weight.device
    seq = torch.as_tensor(left_pad(variants, model.config.max_len), device=device)
    u = None if user is None else [torch.as_tensor(np.stack([np.asarray(c)] * len(variants)), device=device)
                                   for c in user]
    scores = model.score_all(seq, u)  # (V, N+1)
    scores[:, torch.as_tensor(history, device=device)] = float("-inf")  # the original history stays masked
    target_scores = scores[:, target]
    ranks = (scores > target_scores[:, None]).sum(1)
    return target_scores.cpu().numpy()[1:], ranks.cpu().numpy()[1:], float(target_scores[0]), int(ranks[0])
