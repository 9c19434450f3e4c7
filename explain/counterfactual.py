"""Counterfactual explanation: the smallest set of history items whose removal takes the
explained item out of the top `k` (PRINCE, WSDM 2020; ACCENT, SIGIR 2021).

Removing a set means what a caller does who leaves those items out of the history: the
model then sees the most recent `max_len` of what is left (older items may slide into the
window), and the removed items are no longer masked as seen, so they may themselves be
recommended. Finding a smallest set is NP-hard in general; this is a bounded beam search:

1. Every single removal is scored in batched passes (one forward pass scores many sets).
2. Level by level, each set of the beam grows by one of the most promising positions (those
   whose removal alone lowers the item most, and the most recent ones), children are scored
   in batches, and the beam keeps the sets that bring the item closest to leaving the top k
   (its margin over the k-th other item). The recency prefix of each size is always a child,
   so the answer is never larger than removing the most recent items one by one would give.
3. The first level with a set that works answers; a set is re-scored alone before it is
   returned. `found` is False when `max_size` or the budget of scored sets is reached first.
   A set never holds the whole history: "without everything you did" explains nothing (and
   an empty history is no request Recommend accepts without user features).
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import partial

import numpy as np
import torch

from attnrec.model.retrieval import Retrieval, beside_target
from attnrec.model.sasrec import SASRec
from attnrec.model.sequences import left_pad


@dataclass(frozen=True)
class CounterfactualConfig:
    max_size: int = 5  # largest set searched
    k: int = 10  # the item must leave the top k
    beam: int = 12  # sets kept per level
    branch: int = 12  # positions a set may grow by: the strongest single removals (and the newest few)
    budget: int = 1_500  # candidate sets scored at most, over all levels
    batch: int = 128  # sets scored per forward pass


@dataclass(frozen=True)
class Counterfactual:
    positions: tuple[int, ...]  # into `seen` (the whole known history, oldest first), ascending; () if not found
    found: bool
    new_rank: int  # the item's rank without them, 1 = first (not found: its rank now)
    new_top: int  # item index ranked first without them (not found: the first now)
    sets_scored: int


@dataclass(frozen=True)
class Standing:
    margin: np.ndarray  # (S,) target score minus the k-th best other item's: < 0 = out of the top k
    rank: np.ndarray  # (S,) 1-based rank of the target
    top: np.ndarray  # (S,) the item ranked first


@torch.no_grad()
def score_removals(model: SASRec, seen: np.ndarray, user: list[torch.Tensor] | None, target: int,
                   sets: list[tuple[int, ...]], k: int, batch: int, retrieval: Retrieval | None = None) -> Standing:
    """The target's standing after removing each set of positions from `seen`: among the
    whole catalogue, or with `retrieval` among the candidates its index proposes for each
    set, as two-stage Recommend ranks (model/retrieval.py, `beside_target`)."""
    device = model.item_emb.weight.device
    margins, ranks, tops = [], [], []
    for s in range(0, len(sets), batch):
        chunk = sets[s : s + batch]
        kept = [np.delete(seen, list(removed)) for removed in chunk]
        seq = torch.as_tensor(left_pad([h[-model.config.max_len :] for h in kept], model.config.max_len),
                              device=device)  # (S, T)
        u = None if user is None else [c.expand(len(chunk), *c.shape[1:]) for c in user]
        columns, scores, t = beside_target(model, model.encode(seq, u), kept, target, retrieval)
        still_seen = torch.as_tensor([bool((h == target).any()) for h in kept], device=device)
        t = t.masked_fill(still_seen, float("-inf"))  # never recommended while in the history
        ranks.append(((scores > t[:, None]).sum(1) + 1).cpu().numpy())
        best_score, best = scores.max(1)
        best = best if columns is None else columns.gather(1, best[:, None])[:, 0]
        tops.append(torch.where(t >= best_score, target, best).cpu().numpy())
        kth = scores.topk(min(k, scores.shape[1] - 1), dim=1).values[:, -1]  # (S,) the k-th best other item
        margins.append((t - kth).cpu().numpy())
    return Standing(np.concatenate(margins), np.concatenate(ranks), np.concatenate(tops))


def counterfactual(model: SASRec, seen: np.ndarray, user: list[np.ndarray] | None, target: int,
                   config: CounterfactualConfig = CounterfactualConfig(),
                   retrieval: Retrieval | None = None) -> Counterfactual:
    """The smallest set of positions of `seen` (item indices, oldest first) whose removal takes
    `target` out of the top `config.k`, within the search's bounds; ranked as `score_removals`."""
    score = partial(score_removals, retrieval=retrieval)
    device = model.item_emb.weight.device
    user_t = None if user is None else [torch.as_tensor(np.asarray(c), device=device)[None] for c in user]
    seen = np.asarray(seen, dtype=np.int64)
    n = len(seen)
    now = score(model, seen, user_t, target, [()], config.k, config.batch)
    if now.margin[0] < 0 or n == 0:  # not in the top k to begin with: nothing to take it out of
        return Counterfactual((), False, int(now.rank[0]), int(now.top[0]), 1)
    window = range(max(0, n - model.config.max_len), n)  # only what the model sees can matter at first
    singles = [(p,) for p in window][: max(0, config.budget - 1)] if n > 1 else []
    if not singles:
        return Counterfactual((), False, int(now.rank[0]), int(now.top[0]), 1)
    scored = score(model, seen, user_t, target, singles, config.k, config.batch)
    used = 1 + len(singles)
    by_effect = [singles[i][0] for i in np.argsort(scored.margin, kind="stable")]
    newest = list(window)[::-1][:3]
    growth = list(dict.fromkeys(by_effect[: config.branch] + newest))
    level, result = singles, scored
    for size in range(1, min(config.max_size, n - 1) + 1):  # an emptied history explains nothing
        if size > 1:
            parents = [level[i] for i in np.argsort(result.margin, kind="stable")[: config.beam]]
            # the recency prefix first (the answer is never larger than greedy recency's), then the
            # children of the best parents first, so that a budget cut drops the least promising
            children = [tuple(range(n - size, n))] + [tuple(sorted((*p, g))) for p in parents for g in growth
                                                      if g not in p]
            level = list(dict.fromkeys(children))[: max(0, config.budget - used)]
            if not level:
                break
            result = score(model, seen, user_t, target, level, config.k, config.batch)
            used += len(level)
        for i in np.argsort(result.margin, kind="stable"):
            if result.margin[i] >= 0:
                break
            check = score(model, seen, user_t, target, [level[i]], config.k, 1)  # alone, as a caller would
            if check.margin[0] < 0:
                return Counterfactual(level[i], True, int(check.rank[0]), int(check.top[0]), used)
        if used >= config.budget:
            break
    return Counterfactual((), False, int(now.rank[0]), int(now.top[0]), used)
