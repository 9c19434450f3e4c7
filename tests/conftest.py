import pytest
import torch

from attnrec.model.config import ModelConfig, TrainConfig
from attnrec.model.data import load_tables
from attnrec.model.synthetic import ShopConfig, write_shop
from attnrec.model.train import prepare, train


@pytest.fixture(scope="session")
def shop(tmp_path_factory):
    """A small seeded synthetic shop (interactions, items, users Parquet paths)."""
    return write_shop(tmp_path_factory.mktemp("shop"), ShopConfig(n_users=300, n_items=200, mean_length=20, seed=3))


@pytest.fixture(scope="session")
def checkpoint(shop, tmp_path_factory):
    """A tiny trained checkpoint on the synthetic shop (with item and user features)."""
    out = tmp_path_factory.mktemp("ckpt")
    torch.manual_seed(0)
    config = ModelConfig(n_items=1, max_len=20, d_model=16, n_layers=1, n_heads=2, dropout=0.1)
    train(prepare(load_tables(**shop)), out, config, TrainConfig(epochs=2, batch_size=64), progress=False)
    return out
