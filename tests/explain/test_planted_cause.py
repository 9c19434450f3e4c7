"""On the synthetic shop, the explanation must find the cause the generator planted."""

import numpy as np
import pyarrow.parquet as pq
import torch

from attnrec.explain.explain import explain
from attnrec.model.config import ModelConfig, TrainConfig
from attnrec.model.data import load_tables
from attnrec.model.synthetic import ShopConfig, write_shop
from attnrec.model.train import prepare, train

SHOP = ShopConfig(n_users=600, n_items=100, mean_length=20, seed=5)
WINDOW = 20


def planted_cases(path, n_users=300):
    """Per user, the first planted effect whose cause is the only item of its category in the
    preceding window (otherwise the data itself cannot say which of two phones a case is for)."""
    by_user: dict[str, list[dict]] = {}
    for r in pq.read_table(path).to_pylist():
        by_user.setdefault(r["user_id"], []).append(r)
    for user, rows in list(by_user.items())[:n_users]:
        for i, r in enumerate(rows):
            if r["cause_item_id"] is None or i < 2:
                continue
            history = [x["item_id"] for x in rows[max(0, i - WINDOW) : i]]
            category = int(r["cause_item_id"][1:]) % SHOP.n_categories
            if sum(int(h[1:]) % SHOP.n_categories == category for h in history) == 1:
                yield user, history, r["item_id"], history.index(r["cause_item_id"])
                break


def test_combined_ranks_the_planted_cause_first(tmp_path):
    paths = write_shop(tmp_path, SHOP)
    torch.manual_seed(0)
    config = ModelConfig(n_items=1, max_len=WINDOW, d_model=32, n_layers=1, n_heads=2, dropout=0.1)
    ckpt = train(prepare(load_tables(**paths)), None, config, TrainConfig(epochs=15, batch_size=64), progress=False)
    hits, cases = 0, 0
    for user, history, effect, cause_position in planted_cases(paths["interactions"]):
        codes = [c[0] for c in ckpt.user_inputs(ckpt.users.lookup([user]))]
        e = explain(ckpt.model, ckpt.items.lookup(history), [c.numpy() for c in codes],
                    int(ckpt.items.lookup([effect])[0]))
        cases += 1
        hits += int(np.argmax(e.combined[e.item_slice]) == cause_position)
    assert cases >= 100
    assert hits / cases >= 0.9, f"planted cause ranked first in {hits}/{cases}"
