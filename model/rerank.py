"""Calibrated re-ranking (Steck, "Calibrated Recommendations", RecSys 2018): from a user's top
candidates, pick k greedily so that the list's mix of an item feature (genres, category)
comes close to the mix in the user's history, trading relevance for it by a weight.

    objective(S) = (1 - weight) * sum of relevance over S - weight * KL(p || q~(S))

p is the feature's distribution over the history, q~(S) = (1 - alpha) q(S) + alpha p the
list's, smoothed so the divergence stays finite. Relevance is the softmax of the model's
scores over the candidates, so one weight means the same for every user and model:
weight 0 keeps the model's order, weight 1 cares only for calibration. Pure numpy.
"""

from __future__ import annotations

import numpy as np

from attnrec.model.beyond import CALIBRATION_ALPHA, item_distributions, normalized, smoothed_kl

CANDIDATES = 100  # the model's top candidates the re-ranking chooses from


def calibrated(candidates: np.ndarray, scores: np.ndarray, history: np.ndarray, item_dist: np.ndarray,
               k: int, weight: float, alpha: float = CALIBRATION_ALPHA) -> np.ndarray:
    """Positions into `candidates` (best first) of the k items the greedy objective picks.

    candidates (C,) item indices, scores (C,) the model's scores for them (best first is not
    required), history (H,) item indices, item_dist from `item_distributions`."""
    k = min(k, len(candidates))
    p = normalized(item_dist[history].sum(axis=0))
    if weight <= 0 or p.sum() == 0:
        return np.argsort(-scores, kind="stable")[:k]
    relevance = np.exp(scores - scores.max())
    relevance /= relevance.sum()
    dist = item_dist[candidates]  # (C, G)
    chosen: list[int] = []
    mass = np.zeros_like(p)  # sum of chosen items' distributions
    gain = 0.0
    available = np.ones(len(candidates), dtype=bool)
    for _ in range(k):
        kl = smoothed_kl(p, normalized(mass[None, :] + dist), alpha)  # (C,): the list with each candidate added
        objective = (1 - weight) * (gain + relevance) - weight * kl
        objective[~available] = -np.inf
        best = int(np.argmax(objective))  # ties: the earlier candidate, i.e. the model's order
        chosen.append(best)
        available[best] = False
        mass += dist[best]
        gain += relevance[best]
    return np.asarray(chosen, dtype=np.int64)


def rerank_top(top: np.ndarray, scores: np.ndarray, histories, codes: np.ndarray, k: int,
               weight: float) -> np.ndarray:
    """Calibrated top-k for many users at once: top (U, C) candidate items (0 = none), scores
    (U, C); returns (U, k) items, 0 where fewer."""
    item_dist = item_distributions(codes, int(codes.max()) + 1)
    out = np.zeros((len(top), k), dtype=np.int64)
    for u, (candidates, s, history) in enumerate(zip(top, scores, histories)):
        real = candidates > 0
        picked = calibrated(candidates[real], s[real], np.asarray(history), item_dist, k, weight)
        out[u, : len(picked)] = candidates[real][picked]
    return out

