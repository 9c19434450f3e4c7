"""Deletion curves that can be compared across methods, models and data (ERASER, ACL 2020;
Edin et al., ACL 2025): comprehensiveness (remove an explanation's top positions, how far does
the explained item's logit fall) and sufficiency (keep only them, how far does it fall), at
fractions of the history, in two removal modes:

- "delete": the items are taken out and the sequence closes up, as a caller leaving them out
  of the history would see it;
- "mask": each removed item is replaced by padding in place, so every other item keeps its
  position.

AOPC is the mean over the fractions. Raw AOPC depends on the model and the user, so it is
normalised by bounds found by search: the greedy order that lowers the logit most at each
step (upper) and the one that lowers it least (lower): normalised = (AOPC - lower) / (upper -
lower), 1 = as good as the search, 0 = as bad as the worst order it found. POS@10 (LXR, WWW
2024) is the share of users whose item is still in their top 10 once the top positions are
deleted (lower is more faithful).
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from attnrec.explain.faithfulness import logits, scores_without
from attnrec.model.sasrec import PAD, SASRec

FRACTIONS = (0.01, 0.05, 0.10, 0.20, 0.50)
MODES = ("delete", "mask")


def sizes(length: int, fractions: Sequence[float] = FRACTIONS) -> list[int]:
    """Positions removed at each fraction of a history: at least 1."""
    return [max(1, round(f * length)) for f in fractions]


def perturbed(history: np.ndarray, removed: np.ndarray, mode: str) -> np.ndarray:
    """The history without the positions `removed` (delete), or with padding there (mask)."""
    if mode == "delete":
        return np.delete(history, removed)
    out = history.copy()
    out[removed] = PAD
    return out


def greedy_order(model: SASRec, history: np.ndarray, user: list[np.ndarray] | None, target: int, mode: str,
                 steps: int, lowest: bool = True) -> np.ndarray:
    """The first `steps` positions of the order that, one removal at a time, lowers the target's
    logit most (lowest=True: the upper bound of comprehensiveness) or least (the lower bound)."""
    removed: list[int] = []
    for _ in range(steps):
        left = [p for p in range(len(history)) if p not in removed]
        scores = logits(model, [perturbed(history, np.array(removed + [p]), mode) for p in left], user, target)
        removed.append(left[int(np.argmin(scores) if lowest else np.argmax(scores))])
    return np.asarray(removed, dtype=np.int64)


def user_curves(model: SASRec, history: np.ndarray, user: list[np.ndarray] | None, target: int,
                orders: dict[str, np.ndarray], fractions: Sequence[float] = FRACTIONS) -> dict:
    """Per mode and method (orders: positions, most important first; the search bounds are
    added): comprehensiveness and sufficiency at each fraction, in logits."""
    ks = sizes(len(history), fractions)
    full = float(logits(model, [history], user, target)[0])
    out: dict = {}
    for mode in MODES:
        every = {**orders, "search_upper": greedy_order(model, history, user, target, mode, max(ks)),
                 "search_lower": greedy_order(model, history, user, target, mode, max(ks), lowest=False)}
        rows, keys = [], []
        for name, order in every.items():
            for k in ks:
                top = order[:k]
                rows += [perturbed(history, top, mode),
                         perturbed(history, np.setdiff1d(np.arange(len(history)), top), mode)]
                keys.append((name, k))
        values = full - logits(model, rows, user, target)
        out[mode] = {name: {"comprehensiveness": [], "sufficiency": []} for name in every}
        for i, (name, _) in enumerate(keys):
            out[mode][name]["comprehensiveness"].append(float(values[2 * i]))
            out[mode][name]["sufficiency"].append(float(values[2 * i + 1]))
    return out


def still_in_top(model: SASRec, history: np.ndarray, user: list[np.ndarray] | None, target: int,
                 removals: Sequence[np.ndarray], k: int = 10) -> np.ndarray:
    """Whether the target stays in the top k (original history masked) after each deletion."""
    return scores_without(model, history, user, target, removals)[1] < k


def summarise(per_user: list[dict], pos: dict[str, list[float]], fractions: Sequence[float] = FRACTIONS) -> dict:
    """Mean curves, AOPC and normalised AOPC per mode and method, and POS@10 per method."""
    out: dict = {"fractions": list(fractions), "modes": {}}
    for mode in MODES:
        names = per_user[0][mode].keys()
        rows = {}
        for name in names:
            comp = np.mean([u[mode][name]["comprehensiveness"] for u in per_user], axis=0)
            suff = np.mean([u[mode][name]["sufficiency"] for u in per_user], axis=0)
            rows[name] = {"comprehensiveness": comp.tolist(), "sufficiency": suff.tolist(),
                          "aopc_comprehensiveness": float(comp.mean()), "aopc_sufficiency": float(suff.mean())}
        upper, lower = rows["search_upper"]["aopc_comprehensiveness"], rows["search_lower"]["aopc_comprehensiveness"]
        for row in rows.values():
            row["normalised_comprehensiveness"] = (row["aopc_comprehensiveness"] - lower) / (upper - lower) \
                if upper > lower else float("nan")
        out["modes"][mode] = rows
    out["pos_at_10"] = {name: float(np.mean(v)) for name, v in pos.items()}
    return out
