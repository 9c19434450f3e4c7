"""Deletion faithfulness (ERASER comprehensiveness): how much the explained item's score
falls when the history positions an explanation ranks highest are removed."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import torch

from attnrec.explain.explain import Explanation
from attnrec.model.inputs import stack_users
from attnrec.model.sasrec import SASRec
from attnrec.model.sequences import left_pad

COMPREHENSIVENESS_K = 3  # history items removed per row
RANDOM_DRAWS = 5  # random k-subsets averaged for the random row


@dataclass(frozen=True)
class Comprehensiveness:
    """Logit drops of the explained item when k history items are removed."""

    k: int
    combined_drop: float  # the top k by combined score
    recent_drop: float  # the k most recent
    random_drop: float  # mean over RANDOM_DRAWS random k-subsets


def top_k(scores: np.ndarray, k: int) -> np.ndarray:
    """Positions of the k largest scores, ties broken by position."""
    return np.argsort(-scores, kind="stable")[:k]


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
    u = stack_users([user] * len(variants), model.config.user_features, device)
    scores = model.score_all(seq, u)  # (V, N+1)
    scores[:, torch.as_tensor(history, device=device)] = float("-inf")  # the original history stays masked
    target_scores = scores[:, target]
    ranks = (scores > target_scores[:, None]).sum(1)
    return target_scores.cpu().numpy()[1:], ranks.cpu().numpy()[1:], float(target_scores[0]), int(ranks[0])


@torch.inference_mode()
def logits(model: SASRec, rows: Sequence[np.ndarray], user: list[np.ndarray] | None, target: int) -> np.ndarray:
    """The target's logit for each history variant, one padded pass (no catalogue scored)."""
    device = model.item_emb.weight.device
    seq = torch.as_tensor(left_pad(list(rows), model.config.max_len), device=device)  # (V, T)
    u = stack_users([user] * len(rows), model.config.user_features, device)
    return model.score(seq, torch.full((len(rows), 1), target, device=device), u)[:, 0].double().cpu().numpy()


def logits_without(model: SASRec, history: np.ndarray, user: list[np.ndarray] | None, target: int,
                   removals: Sequence[np.ndarray]) -> np.ndarray:
    """The target's logit with nothing removed, then after each removal of history positions:
    the same numbers as `scores_without` for a fraction of the work."""
    variants = [np.delete(history, np.asarray(r, dtype=np.int64)) for r in [np.zeros(0, np.int64), *removals]]
    return logits(model, variants, user, target)


def comprehensiveness(model: SASRec, history: np.ndarray, user: list[np.ndarray] | None, e: Explanation,
                      k: int = COMPREHENSIVENESS_K, seed: int = 0) -> Comprehensiveness:
    """Logit drop when the top-k positions by combined score, the k most recent, or k random are removed."""
    T = len(history)
    k = min(k, T)
    rng = np.random.default_rng(seed)
    removals = [top_k(e.combined[e.item_slice], k), np.arange(T - k, T)]
    removals += [rng.choice(T, size=k, replace=False) for _ in range(RANDOM_DRAWS)]
    logits = logits_without(model, history, user, e.target, removals)
    drops = logits[0] - logits[1:]
    return Comprehensiveness(k=k, combined_drop=float(drops[0]), recent_drop=float(drops[1]),
                             random_drop=float(drops[2:].mean()))
