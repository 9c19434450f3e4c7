"""`attnrec explain-eval`: deletion faithfulness of each explanation method, measured.

For N users' top-1 recommendation, remove the top-k history positions as ranked by each
method and record how far the item's logit and rank fall (ERASER comprehensiveness; the
mean over k = 1, 3, 5 is AOPC-style). Rows: combined, IG alone, raw attention, rollout,
deletion alone (single-position ablation), the k most recent items, k random items (mean
of several draws).
"""

from __future__ import annotations

import itertools
import time
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import torch
from tqdm.auto import tqdm

from attnrec.explain.attribution import integrated_gradients
from attnrec.explain.config import ExplainConfig
from attnrec.explain.counterfactual import CounterfactualConfig, counterfactual, score_removals
from attnrec.explain.curves import sizes, still_in_top, summarise, user_curves
from attnrec.explain.explain import Explanation, explain, explain_batch
from attnrec.explain.faithfulness import scores_without, top_k
from attnrec.explain.feature_reasons import (
    feature_reasons,
    necessity_sufficiency,
    neutralised,
    value_attributions,
    values_of,
)
from attnrec.explain.lrp import attn_lrp
from attnrec.model.sasrec import SASRec

METHODS = ("combined", "ig", "deletion", "attention", "rollout", "recent", "random")


def method_scores(e: Explanation) -> dict[str, np.ndarray]:
    """Per history position (user token excluded): larger = removed first."""
    s = e.item_slice
    T = len(e.history)
    return {"combined": e.combined[s], "ig": e.attribution[s], "deletion": e.deletion[s], "attention": e.attention[s],
            "rollout": e.rollout[s], "recent": np.arange(T, dtype=np.float64)}


@dataclass
class UserResult:
    score_drop: dict[tuple[str, int], float]
    rank_drop: dict[tuple[str, int], float]
    delta: float
    gap: float


def evaluate_user(model: SASRec, history: np.ndarray, user: list[np.ndarray] | None, target: int,
                  ks: tuple[int, ...], config: ExplainConfig, rng: np.random.Generator,
                  n_random: int = 5) -> UserResult:
    e = explain(model, history, user, target, config)
    ranked = method_scores(e)
    removals, keys = [], []
    for k in ks:
        for name in METHODS[:-1]:
            removals.append(top_k(ranked[name], k))
            keys.append((name, k))
        for _ in range(n_random):
            removals.append(rng.choice(len(history), size=min(k, len(history)), replace=False))
            keys.append(("random", k))
    logits, ranks, full_logit, full_rank = scores_without(model, history, user, target, removals)
    score_drop: dict[tuple[str, int], list[float]] = {}
    rank_drop: dict[tuple[str, int], list[float]] = {}
    for key, lg, rk in zip(keys, logits, ranks):
        score_drop.setdefault(key, []).append(full_logit - float(lg))
        rank_drop.setdefault(key, []).append(float(rk) - full_rank)
    return UserResult({k: float(np.mean(v)) for k, v in score_drop.items()},
                      {k: float(np.mean(v)) for k, v in rank_drop.items()},
                      e.convergence_delta, e.score - e.baseline_score)


@torch.inference_mode()
def top_1(model: SASRec, history: np.ndarray, user: list[np.ndarray] | None) -> int:
    """The item a user is recommended first (history items masked): the one explained."""
    seq = torch.as_tensor(history[None, :], device=model.item_emb.weight.device)
    u = None if user is None else [torch.as_tensor(np.asarray(c)[None]) for c in user]
    scores = model.score_all(seq, u)[0]
    scores[torch.as_tensor(history)] = float("-inf")
    return int(scores.argmax())


def explain_eval(model: SASRec, histories: list[np.ndarray], users: list[list[np.ndarray] | None],
                 ks: tuple[int, ...] = (1, 3, 5), config: ExplainConfig = ExplainConfig(), seed: int = 0,
                 progress: bool = True) -> dict:
    """Mean deletion drops per (method, k) over users, each explained at their top-1 item."""
    rng = np.random.default_rng(seed)
    results = []
    for history, user in tqdm(list(zip(histories, users)), desc="explain-eval", unit="user", disable=not progress):
        results.append(evaluate_user(model, history, user, top_1(model, history, user), ks, config, rng))
    rows = {}
    for name in METHODS:
        rows[name] = {f"score_drop@{k}": float(np.mean([r.score_drop[(name, k)] for r in results])) for k in ks}
        rows[name].update({f"rank_drop@{k}": float(np.mean([r.rank_drop[(name, k)] for r in results])) for k in ks})
        rows[name]["aopc"] = float(np.mean([rows[name][f"score_drop@{k}"] for k in ks]))
    deltas = np.abs([r.delta for r in results])
    rel = deltas / np.maximum(np.abs([r.gap for r in results]), 1e-9)
    return {"users": len(results), "ks": list(ks), "n_steps": config.n_steps, "methods": rows,
            "convergence_delta": {"median_abs": float(np.median(deltas)), "median_rel": float(np.median(rel)),
                                  "p90_rel": float(np.quantile(rel, 0.9))}}


def counterfactual_eval(model: SASRec, histories: list[np.ndarray], users: list[list[np.ndarray] | None],
                        config: CounterfactualConfig = CounterfactualConfig(), progress: bool = True,
                        exhaustive: int = 0) -> dict:
    """Counterfactual sets for each user's top-1 item against greedy recency (remove the newest
    items one by one until the item leaves the top k): sizes found, and the search's latency.
    `exhaustive` > 0 also finds each user's true smallest set up to that size by scoring every
    set (a bound on what any search can reach: "minimal_*")."""
    sizes, recency, seconds, minimal = [], [], [], []
    for history, user in tqdm(list(zip(histories, users)), desc="counterfactuals", unit="user",
                              disable=not progress):
        target = top_1(model, history, user)
        started = time.perf_counter()
        found = counterfactual(model, history, user, target, config)
        seconds.append(time.perf_counter() - started)
        sizes.append(len(found.positions) if found.found else None)
        recency.append(recency_size(model, history, user, target, config))
        if exhaustive:  # only sizes below the best set known need trying
            known = min((s for s in (sizes[-1], recency[-1]) if s is not None), default=None)
            up_to = min(exhaustive, known - 1) if known else exhaustive
            minimal.append(minimal_size(model, history, user, target, config, up_to) or known)
    found_sizes = np.array([s for s in sizes if s is not None])
    both = [(s, r) for s, r in zip(sizes, recency) if s is not None and r is not None]
    n = len(sizes)
    return {
        "users": n, "k": config.k, "max_size": config.max_size,
        "found_within": {m: float(np.mean([s is not None and s <= m for s in sizes]))
                         for m in range(1, config.max_size + 1)},
        "recency_within": {m: float(np.mean([r is not None and r <= m for r in recency]))
                           for m in range(1, config.max_size + 1)},
        "median_size": float(np.median(found_sizes)) if len(found_sizes) else None,
        "larger_than_recency": sum(s > r for s, r in both),
        "smaller_than_recency": float(np.mean([s is not None and (r is None or s < r)
                                               for s, r in zip(sizes, recency)])),
        "latency_ms": {"p50": 1000 * float(np.quantile(seconds, 0.5)), "p95": 1000 * float(np.quantile(seconds, 0.95))},
        **({} if not exhaustive else {
            "exhaustive_up_to": exhaustive,
            # the share of users for whom some set is smaller than newest-first's: the most any search can reach
            "minimal_smaller_than_recency": float(np.mean([m is not None and (r is None or m < r)
                                                           for m, r in zip(minimal, recency)])),
            "search_is_minimal": float(np.mean([m == s for m, s in zip(minimal, sizes)])),
            "minimal_within": {m: float(np.mean([x is not None and x <= m for x in minimal]))
                               for m in range(1, config.max_size + 1)},
        }),
    }


def minimal_size(model: SASRec, history: np.ndarray, user: list[np.ndarray] | None, target: int,
                 config: CounterfactualConfig, up_to: int) -> int | None:
    """The size of the smallest set of history positions whose removal takes `target` out of the
    top k, trying every set of each size up to `up_to` (never the whole history); None: none."""
    n = len(history)
    device = model.item_emb.weight.device
    user_t = None if user is None else [torch.as_tensor(np.asarray(c), device=device)[None] for c in user]
    seen = np.asarray(history, dtype=np.int64)
    for size in range(1, min(up_to, n - 1) + 1):
        sets = itertools.combinations(range(n), size)
        while chunk := list(itertools.islice(sets, 4 * config.batch)):
            if (score_removals(model, seen, user_t, target, chunk, config.k, config.batch).margin < 0).any():
                return size
    return None


def recency_size(model: SASRec, history: np.ndarray, user: list[np.ndarray] | None, target: int,
                 config: CounterfactualConfig) -> int | None:
    """How many of the newest items must go, newest first, before `target` leaves the top k
    (None: more than max_size)."""
    n = len(history)
    device = model.item_emb.weight.device
    user_t = None if user is None else [torch.as_tensor(np.asarray(c), device=device)[None] for c in user]
    sets = [tuple(range(n - s, n)) for s in range(1, min(config.max_size, n - 1) + 1)]
    if not sets:
        return None
    scored = score_removals(model, np.asarray(history, dtype=np.int64), user_t, target, sets, config.k, config.batch)
    out = np.flatnonzero(scored.margin < 0)
    return int(out[0]) + 1 if len(out) else None


def curves_eval(model: SASRec, histories: list[np.ndarray], users: list[list[np.ndarray] | None],
                config: ExplainConfig = ExplainConfig(), seed: int = 0, progress: bool = True) -> dict:
    """Comprehensiveness and sufficiency curves of every method (and recency, random, and the
    search bounds) in both removal modes, with normalised AOPC and POS@10 (explain/curves.py)."""
    rng = np.random.default_rng(seed)
    per_user, pos, cost = [], {}, {"ig": [], "attnlrp": []}
    for history, user in tqdm(list(zip(histories, users)), desc="curves", unit="user", disable=not progress):
        target = top_1(model, history, user)
        scores = method_scores(explain(model, history, user, target, config))
        seq = torch.as_tensor(history[None, :], device=model.item_emb.weight.device)
        u = None if user is None else [torch.as_tensor(np.asarray(c)[None]) for c in user]
        started = time.perf_counter()
        integrated_gradients(model, seq, u, target, config)
        cost["ig"].append(time.perf_counter() - started)
        started = time.perf_counter()
        relevance = attn_lrp(model, seq, u, torch.as_tensor([target]))[0]
        cost["attnlrp"].append(time.perf_counter() - started)
        scores["attnlrp"] = per_position(relevance.parts, len(model.config.item_features))
        orders = {name: top_k(v, len(history)) for name, v in scores.items()}
        orders["random"] = rng.permutation(len(history))
        per_user.append(user_curves(model, history, user, target, orders))
        ks = sizes(len(history))
        for name, order in orders.items():
            kept = still_in_top(model, history, user, target, [order[:k] for k in ks])
            pos.setdefault(name, []).append(float(kept.mean()))
    return {"users": len(per_user), **summarise(per_user, pos), "n_steps": config.n_steps,
            "ms_per_explanation": {k: round(1000 * float(np.mean(v)), 2) for k, v in cost.items()}}


def per_position(parts: Sequence[torch.Tensor], n_item_features: int) -> np.ndarray:
    """(T,) an attribution's item parts (id and item features, per value summed) per history position."""
    return sum(p.double().cpu().numpy().reshape(len(p), -1).sum(-1) for p in parts[: 1 + n_item_features])


def feature_reasons_eval(model: SASRec, histories: list[np.ndarray], users: list[list[np.ndarray] | None],
                         config: ExplainConfig = ExplainConfig(), size: int = 2, k: int = 10, seed: int = 0,
                         progress: bool = True) -> dict:
    """PN, PS and F_NS (explain/feature_reasons.py) of `size` side-feature values per user's top-1
    item: the values integrated gradients credits most, `size` random present values, and the
    explained item's own values (those the history shares with it)."""
    rng = np.random.default_rng(seed)
    outcomes: dict[str, list[tuple[bool, bool]]] = {"ig": [], "neutralising": [], "random": [], "item's own": []}
    skipped = 0
    for history, user in tqdm(list(zip(histories, users)), desc="feature reasons", unit="user",
                              disable=not progress):
        target = top_1(model, history, user)
        present = values_of(model, history, user)
        if not present:
            skipped += 1
            continue
        e = explain_batch(model, [history], [user], [target], config, deletion=False)[0]
        credit = value_attributions(e.part_attribution, model, history, user)
        positive = [v for v in sorted(credit, key=lambda v: -credit[v]) if credit[v] > 0]
        with torch.no_grad():
            own = {("item", f, int(c)) for f, cs in enumerate(model.item_codes(torch.as_tensor([target])))
                   for c in np.ravel(cs.cpu().numpy()) if c != 0}
        _, logits = neutralised(model, history, user, target, [[], *[[v] for v in present]])
        picks = {"ig": positive[:size],
                 "neutralising": [present[i] for i in np.argsort(logits[1:], kind="stable")[:size]],
                 "random": [present[i] for i in rng.choice(len(present), min(size, len(present)), replace=False)],
                 "item's own": sorted(own & set(present), key=lambda v: -credit.get(v, 0.0))[:size]}
        for name, chosen in picks.items():
            outcomes[name].append(necessity_sufficiency(model, history, user, target, chosen, present, k)
                                  if chosen else (False, False))
    rows = {}
    for name, pairs in outcomes.items():
        pn, ps = (float(np.mean([p[i] for p in pairs])) if pairs else 0.0 for i in (0, 1))
        rows[name] = {"PN": pn, "PS": ps, "F_NS": 2 * pn * ps / (pn + ps) if pn + ps else 0.0}
    return {"users": len(histories) - skipped, "without_side_features": skipped, "size": size, "k": k,
            "methods": rows}


def planted_brand_eval(ckpt, histories: list[np.ndarray], users: list[list[np.ndarray] | None],
                       loyal: set[str], progress: bool = True) -> dict:
    """On a shop with the planted brand rule (ShopConfig.n_loyal_brands): among users whose top-1
    item is of a loyal brand that their newest item also has, how often the first feature
    reason is that brand."""
    model = ckpt.model
    names = [e.name for e in ckpt.item_encoders]
    if "brand" not in names:
        raise ValueError("the checkpoint has no item feature 'brand': not a synthetic shop model")
    f = names.index("brand")
    encoder = ckpt.item_encoders[f]
    with torch.no_grad():
        brands = model.item_codes(torch.arange(len(ckpt.items) + 1))[f].cpu().numpy()  # (N+1,) code per item
    eligible = first = 0
    for history, user in tqdm(list(zip(histories, users)), desc="planted brands", unit="user", disable=not progress):
        target = top_1(model, history, user)
        brand = encoder.describe(int(brands[target]))
        if brand not in loyal or brands[history[-1]] != brands[target]:
            continue
        eligible += 1
        labels = ckpt.items.ids_of(history)
        reasons = feature_reasons(model, history, user, target, ckpt.item_encoders, ckpt.user_encoders, labels)
        first += bool(reasons) and (reasons[0].feature, reasons[0].value) == ("brand", brand)
    return {"users": len(histories), "eligible": eligible, "brand_ranked_first": first / eligible if eligible else None}
