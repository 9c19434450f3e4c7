"""A seeded synthetic shop with planted causes, in the same Parquet schema as real data.

Shaped like the article's shop: users have age, gender and region; items have category,
price and brand. Item j belongs to category j % n_categories and has popularity rank
j // n_categories inside it (Zipf). A user's taste (three favourite categories) follows
from their region and age group, so user features carry signal.

Planted causes: categories come in pairs (2k -> 2k+1, "phone -> phone case") for the
first `n_cause_pairs` pairs. Buying cause item j makes its accessory j + 1 (the next
category, same rank) follow `gap` = 1..max_gap steps later with probability
`p_follow`. Accessories are bought for no other reason (their categories are never an
ordinary pick), so each planted effect has one true cause. The interactions table
records this in `cause_item_id` (null for ordinary purchases), so an explanation can be
checked against the truth.

Optionally, a planted feature rule (`n_loyal_brands`): buying a loyal brand makes the next
purchase another item of the same brand, recorded in `cause_item_id` too.

Users are generated in chunks and written row group by row group: memory holds one
chunk plus the items table, so 1M items / 10M interactions fit comfortably.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
from tqdm.auto import tqdm


@dataclass(frozen=True)
class ShopConfig:
    n_users: int = 2_000
    n_items: int = 1_000
    n_categories: int = 20
    n_brands: int = 50
    n_regions: int = 8
    n_cause_pairs: int = 5  # category pairs (2k -> 2k+1) with planted causes
    mean_length: float = 40.0  # mean interactions per user (geometric-ish, at least 5)
    p_follow: float = 0.8  # chance that buying a cause item plants its accessory
    max_gap: int = 4  # the accessory follows 1..max_gap steps after its cause
    p_taste: float = 0.75  # chance an ordinary purchase comes from the user's favourite categories
    zipf: float = 1.1  # popularity skew inside a category
    seed: int = 0
    chunk_users: int = 20_000  # users generated and written at a time
    # A planted feature rule: buying an item of one of the first `n_loyal_brands` brands makes
    # the next purchase another item of that brand with probability `p_loyal` ("bought brand B,
    # gets brand B"), so a feature-level explanation can be checked against the truth. 0 = off
    # (and the data are exactly as without the rule).
    n_loyal_brands: int = 0
    p_loyal: float = 0.8


def is_cause(item: np.ndarray, config: ShopConfig) -> np.ndarray:
    category = item % config.n_categories
    return (category % 2 == 0) & (category < 2 * config.n_cause_pairs) & (item + 1 < config.n_items)


def ordinary_categories(config: ShopConfig) -> np.ndarray:
    """Categories bought for their own sake: every one but the accessory side of a cause pair
    (a phone case is bought because of a phone), so a planted effect has exactly one cause."""
    c = np.arange(config.n_categories)
    return c[~((c % 2 == 1) & (c < 2 * config.n_cause_pairs))]


def _items(config: ShopConfig, rng: np.random.Generator) -> pa.Table:
    j = np.arange(config.n_items)
    category = j % config.n_categories
    base_price = np.exp(rng.normal(3.0, 1.0, config.n_categories))
    price = np.round(base_price[category] * np.exp(rng.normal(0, 0.3, config.n_items)), 2)
    brands_per_category = rng.integers(0, config.n_brands, (config.n_categories, 5))
    brand = brands_per_category[category, rng.integers(0, 5, config.n_items)]
    return pa.table({
        "item_id": pa.array([f"i{x}" for x in j], pa.string()),
        "category": pa.array([f"cat{c}" for c in category], pa.string()),
        "price": pa.array(price, pa.float64()),
        "brand": pa.array([f"brand{b}" for b in brand], pa.string()),
    })


def _taste(config: ShopConfig, region: np.ndarray, age: np.ndarray) -> np.ndarray:
    """(U, 3) favourite categories, a function of region and age group only."""
    group = region * 4 + np.clip((age - 18) // 13, 0, 3)
    rng = np.random.default_rng(config.seed + 7)
    table = np.stack([rng.choice(ordinary_categories(config), 3, replace=False) for _ in range(config.n_regions * 4)])
    return table[group]


def _sample_ranks(n: int, per_category: int, config: ShopConfig, rng: np.random.Generator) -> np.ndarray:
    weights = 1.0 / np.arange(1, per_category + 1) ** config.zipf
    return np.searchsorted(np.cumsum(weights) / weights.sum(), rng.random(n), side="right").clip(0, per_category - 1)


def brand_index(items: pa.Table) -> np.ndarray:
    """Each item's brand number ("brand7" -> 7), in item order."""
    return np.array([int(b.removeprefix("brand")) for b in items.column("brand").to_pylist()])


def _chunk(config: ShopConfig, first_user: int, n: int, rng: np.random.Generator,
           brand: np.ndarray | None = None) -> tuple[pa.Table, pa.Table]:
    age = rng.integers(18, 70, n)
    gender = rng.choice(np.array(["f", "m", "x"]), n, p=[0.48, 0.48, 0.04])
    region = rng.integers(0, config.n_regions, n)
    taste = _taste(config, region, age)
    lengths = np.maximum(5, rng.geometric(1.0 / config.mean_length, n))
    T = int(lengths.max())
    per_category = max(1, config.n_items // config.n_categories)
    items = np.full((n, T), -1, dtype=np.int64)
    causes = np.full((n, T), -1, dtype=np.int64)
    rows = np.arange(n)
    ordinary = ordinary_categories(config)
    for t in range(T):
        free = items[:, t] < 0
        category = np.where(rng.random(n) < config.p_taste, taste[rows, rng.integers(0, 3, n)],
                            rng.choice(ordinary, n))
        pick = _sample_ranks(n, per_category, config, rng) * config.n_categories + category
        pick = np.where(pick < config.n_items, pick, category)
        items[free, t] = pick[free]
        # a cause item plants its accessory a few steps later, where that slot is still free
        plant = is_cause(items[:, t], config) & (rng.random(n) < config.p_follow)
        at = t + rng.integers(1, config.max_gap + 1, n)
        ok = plant & (at < lengths)
        ok[ok] &= items[rows[ok], at[ok]] < 0
        items[rows[ok], at[ok]] = items[rows[ok], t] + 1
        causes[rows[ok], at[ok]] = items[rows[ok], t]
        if config.n_loyal_brands and t + 1 < T:  # the planted brand rule (no draws when it is off)
            _plant_brand(items, causes, t, lengths, brand, config, rng)
    mask = np.arange(T)[None, :] < lengths[:, None]
    user_index = np.repeat(np.arange(first_user, first_user + n), lengths)
    start = rng.integers(1_600_000_000, 1_700_000_000, n)
    steps = np.cumsum(rng.integers(60, 86_400, (n, T)), axis=1) + start[:, None]
    cause = causes[mask]
    interactions = pa.table({
        "user_id": pa.array([f"u{u}" for u in user_index], pa.string()),
        "item_id": pa.array([f"i{x}" for x in items[mask]], pa.string()),
        "timestamp": pa.array(steps[mask], pa.int64()),
        "cause_item_id": pa.array([f"i{c}" if c >= 0 else None for c in cause], pa.string()),
    })
    users = pa.table({
        "user_id": pa.array([f"u{u}" for u in range(first_user, first_user + n)], pa.string()),
        "age": pa.array(age, pa.int64()),
        "gender": pa.array(gender, pa.string()),
        "region": pa.array([f"region{r}" for r in region], pa.string()),
    })
    return interactions, users


def _plant_brand(items: np.ndarray, causes: np.ndarray, t: int, lengths: np.ndarray, brand: np.ndarray,
                 config: ShopConfig, rng: np.random.Generator) -> None:
    """Where step t bought a loyal brand, step t+1 (if still free) buys another item of it."""
    n = len(items)
    bought = brand[items[:, t]]
    follow = (bought < config.n_loyal_brands) & (rng.random(n) < config.p_loyal) & (t + 1 < lengths)
    follow &= items[:, t + 1] < 0
    for row in np.flatnonzero(follow):
        same = np.flatnonzero(brand == bought[row])
        same = same[same != items[row, t]]
        if len(same):
            items[row, t + 1] = same[rng.integers(len(same))]
            causes[row, t + 1] = items[row, t]


def write_shop(directory: str | Path, config: ShopConfig = ShopConfig(), progress: bool = False) -> dict[str, Path]:
    """Write interactions.parquet, items.parquet and users.parquet; returns their paths."""
    d = Path(directory)
    d.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(config.seed)
    paths = {name: d / f"{name}.parquet" for name in ("interactions", "items", "users")}
    items = _items(config, rng)
    pq.write_table(items, paths["items"])
    writers: dict[str, pq.ParquetWriter] = {}
    try:
        starts = range(0, config.n_users, config.chunk_users)
        for first in tqdm(starts, desc="synthetic users", unit="chunk", disable=not progress):
            n = min(config.chunk_users, config.n_users - first)
            for name, table in zip(("interactions", "users"), _chunk(config, first, n, rng, brand_index(items))):
                if name not in writers:
                    writers[name] = pq.ParquetWriter(paths[name], table.schema)
                writers[name].write_table(table)
    finally:
        for w in writers.values():
            w.close()
    return paths
