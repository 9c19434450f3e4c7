"""Evaluation beyond accuracy: quality per user group, what the catalogue gets to show, and
calibration. Pure numpy over what evaluation already computed (each user's target rank and
top 10); no model, no torch.

- Per group: NDCG@10 and HR@10 per value of a user feature (or history-length bucket), with
  a 95% bootstrap interval of the mean, and the largest gap between two groups with its own
  bootstrap interval (corrected for the number of group pairs), flagged when that excludes 0.
- Catalogue: coverage@10 (share of items in anyone's top 10), long-tail share@10 (share of
  recommended slots outside the 20% most popular items), mean popularity percentile of the
  recommended items against the held-out ones, and the Gini coefficient of exposure.
- Calibration (Steck, RecSys 2018): KL divergence between a multi-valued item feature's
  distribution over a user's history and over their top 10, averaged over users.
"""

from __future__ import annotations

import re
from collections.abc import Sequence

import numpy as np

K = 10
BOOTSTRAP = 1_000  # resamples per interval
GAP_BOOTSTRAP = 4_000  # the largest gap's interval reaches far into the tails (Bonferroni)
TAIL_HEAD_SHARE = 0.2  # the "head": the 20% most popular items
CALIBRATION_ALPHA = 0.01  # Steck's smoothing of the recommended distribution, so KL stays finite


def per_user_metrics(ranks: np.ndarray, k: int = K) -> tuple[np.ndarray, np.ndarray]:
    """(NDCG@k, HR@k) of each user from the target's rank (0 = first)."""
    ranks = np.asarray(ranks, dtype=np.float64)
    hit = ranks < k
    return np.where(hit, 1.0 / np.log2(ranks + 2), 0.0), hit.astype(np.float64)


def bootstrap_mean(values: np.ndarray, rng: np.random.Generator, n: int = BOOTSTRAP) -> tuple[float, float]:
    """95% percentile interval of the mean."""
    if len(values) == 0:
        return float("nan"), float("nan")
    means = values[rng.integers(0, len(values), (n, len(values)))].mean(axis=1)
    return float(np.quantile(means, 0.025)), float(np.quantile(means, 0.975))


def group_table(ndcg: np.ndarray, hr: np.ndarray, labels: Sequence[str], order: Sequence[str] | None = None,
                seed: int = 0) -> tuple[dict, dict | None]:
    """({value: {users, HR@10, NDCG@10, NDCG@10_low, NDCG@10_high}}, the largest NDCG@10 gap);
    values in `order` where given (a feature's own code order), else in natural order."""
    rng = np.random.default_rng(seed)
    labels = np.asarray(labels, dtype=object)
    present = set(labels.tolist())
    values = [v for v in order if v in present] if order is not None else sorted(present, key=_natural)
    table = {}
    for value in values:
        mine = labels == value
        low, high = bootstrap_mean(ndcg[mine], rng)
        table[str(value)] = {"users": int(mine.sum()), "HR@10": float(hr[mine].mean()),
                             "NDCG@10": float(ndcg[mine].mean()), "NDCG@10_low": low, "NDCG@10_high": high}
    return table, largest_gap(ndcg, labels, table, rng)


def _natural(value: str) -> tuple:
    """Sort key that orders "19-43 items" before "121-2390 items"."""
    return tuple(int(part) if part.isdigit() else part for part in re.split(r"(\d+)", str(value)))


def largest_gap(ndcg: np.ndarray, labels: np.ndarray, table: dict, rng: np.random.Generator) -> dict | None:
    """The best- and worst-served groups (of at least 2 users), the NDCG@10 gap between them and
    its bootstrap interval (both groups resampled), `flagged` when the interval excludes 0. The
    pair is the most extreme of all pairs, so the interval is widened for their number
    (Bonferroni: 95% for the family of comparisons, not for this one pair alone)."""
    sized = {v: row for v, row in table.items() if row["users"] >= 2}
    if len(sized) < 2:
        return None
    best = max(sized, key=lambda v: sized[v]["NDCG@10"])
    worst = min(sized, key=lambda v: sized[v]["NDCG@10"])
    a, b = ndcg[labels == best], ndcg[labels == worst]
    draws = GAP_BOOTSTRAP
    gaps = (a[rng.integers(0, len(a), (draws, len(a)))].mean(axis=1)
            - b[rng.integers(0, len(b), (draws, len(b)))].mean(axis=1))
    pairs = len(sized) * (len(sized) - 1) // 2
    tail = 0.05 / pairs / 2
    low, high = float(np.quantile(gaps, tail)), float(np.quantile(gaps, 1 - tail))
    return {"best": best, "worst": worst, "gap": float(a.mean() - b.mean()), "gap_low": low, "gap_high": high,
            "pairs": pairs, "flagged": bool(low > 0 or high < 0)}


def history_buckets(lengths: np.ndarray) -> list[str]:
    """History-length groups: short, middle and long thirds by the users' own lengths."""
    lengths = np.asarray(lengths)
    edges = np.unique(np.quantile(lengths, [1 / 3, 2 / 3]).round())
    bucket = np.searchsorted(edges, lengths, side="right")
    bounds = [int(lengths.min()), *[int(e) for e in edges], int(lengths.max()) + 1]
    names = [f"{bounds[i]}-{bounds[i + 1] - 1} items" for i in range(len(bounds) - 1)]
    return [names[b] for b in bucket]


def gini(exposure: np.ndarray) -> float:
    """Gini coefficient of non-negative exposure counts (0 = every item shown equally often)."""
    x = np.sort(np.asarray(exposure, dtype=np.float64))
    if x.sum() == 0:
        return 0.0
    n = len(x)
    return float((2 * np.arange(1, n + 1) - n - 1) @ x / (n * x.sum()))


def popularity_percentile(counts: np.ndarray) -> np.ndarray:
    """Per item index (0 = padding), its popularity percentile in [0, 100] (100 = most popular)."""
    order = np.argsort(np.argsort(counts[1:], kind="stable"), kind="stable")
    return np.r_[np.nan, 100.0 * order / max(1, len(order) - 1)]


def catalogue_report(top: np.ndarray, targets: np.ndarray, counts: np.ndarray) -> dict:
    """top (U, K) recommended item indices (0 = none), targets (U,) held-out items, counts
    (N + 1,) training interactions per item index."""
    n_items = len(counts) - 1
    shown = top[top > 0]
    exposure = np.bincount(shown, minlength=n_items + 1)[1:]
    head = head_items(counts)
    percentile = popularity_percentile(counts)
    return {
        "coverage_at_10": float((exposure > 0).mean()),
        "long_tail_share_at_10": float(1.0 - np.isin(shown, head).mean()) if len(shown) else 0.0,
        "mean_popularity_percentile_at_10": float(np.nanmean(percentile[shown])) if len(shown) else float("nan"),
        "mean_popularity_percentile_held_out": float(np.nanmean(percentile[targets])),
        "exposure_gini_at_10": gini(exposure),
        "lorenz_at_10": lorenz(exposure),
    }


def head_items(counts: np.ndarray) -> np.ndarray:
    """Item indices of the head: the 20% most popular items by counts (N + 1,); the rest is the long tail."""
    n_items = len(counts) - 1
    return np.argsort(-counts[1:], kind="stable")[: max(1, int(round(TAIL_HEAD_SHARE * n_items)))] + 1


def popularity_groups(counts: np.ndarray) -> np.ndarray:
    """Per item index, a one-hot of (head, long tail): the popularity mix calibrated re-ranking
    balances beside a feature's (Abdollahpouri et al., "Calibrated popularity", 2021); row 0
    (padding) is all zeros. (N + 1, 2)."""
    groups = np.zeros((len(counts), 2))
    groups[1:, 1] = 1.0
    head = head_items(counts)
    groups[head] = (1.0, 0.0)
    return groups


def lorenz(exposure: np.ndarray, points: int = 51) -> list[float]:
    """The Lorenz curve of exposure at `points` evenly spaced shares of the catalogue."""
    x = np.sort(np.asarray(exposure, dtype=np.float64))
    cumulative = np.r_[0.0, np.cumsum(x)] / max(x.sum(), 1.0)
    at = np.linspace(0, len(x), points).round().astype(int)
    return [round(float(v), 4) for v in cumulative[at]]


def item_distributions(codes: np.ndarray, n_values: int) -> np.ndarray:
    """Steck's p(g | item) for each row of codes (rows of item feature codes, (n, L), 0 = none):
    each item spreads weight 1 evenly over its values; (n, n_values)."""
    present = codes > 0
    weights = np.where(present, 1.0 / np.maximum(present.sum(axis=1, keepdims=True), 1), 0.0)
    out = np.zeros((len(codes), n_values))
    rows = np.repeat(np.arange(len(codes)), codes.shape[1]).reshape(codes.shape)
    np.add.at(out, (rows[present], codes[present]), weights[present])
    return out


def normalized(mass: np.ndarray) -> np.ndarray:
    """Rows (..., G) scaled to sum to 1; a row of zeros stays zeros."""
    totals = mass.sum(axis=-1, keepdims=True)
    return np.divide(mass, totals, out=np.zeros(mass.shape), where=totals > 0)


def feature_distribution(items: np.ndarray, codes: np.ndarray, n_values: int) -> np.ndarray:
    """p(g | items) of a set of items (codes (N + 1, L) per item index); (n_values,), summing to
    1 (or all 0)."""
    return normalized(item_distributions(codes[items], n_values).sum(axis=0))


def smoothed_kl(p: np.ndarray, q: np.ndarray, alpha: float = CALIBRATION_ALPHA) -> np.ndarray:
    """KL(p || (1 - alpha) q + alpha p) for a distribution p (G,) and distributions q (..., G)."""
    support = p > 0
    smoothed = (1 - alpha) * q[..., support] + alpha * p[support]
    return (p[support] * np.log(p[support] / smoothed)).sum(axis=-1)


def calibration_kl(histories: Sequence[np.ndarray], top: np.ndarray, codes: np.ndarray,
                   alpha: float = CALIBRATION_ALPHA) -> float:
    """Mean over users of KL(p || q~): p over the history, q over the top 10, q~ = (1 - alpha) q + alpha p."""
    n_values = int(codes.max()) + 1
    kls = []
    for history, recommended in zip(histories, top):
        p = feature_distribution(np.asarray(history), codes, n_values)
        if p.sum() == 0:
            continue
        kls.append(float(smoothed_kl(p, feature_distribution(recommended[recommended > 0], codes, n_values), alpha)))
    return float(np.mean(kls)) if kls else float("nan")
