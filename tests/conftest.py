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


def _tiny(paths: dict, out, seed: int):
    torch.manual_seed(seed)
    config = ModelConfig(n_items=1, max_len=20, d_model=16, n_layers=1, n_heads=2, dropout=0.1)
    train(prepare(load_tables(**paths)), out, config, TrainConfig(epochs=2, batch_size=64, seed=seed),
          progress=False)
    return out


@pytest.fixture(scope="session")
def checkpoint(shop, tmp_path_factory):
    """A tiny trained checkpoint on the synthetic shop (with item and user features)."""
    return _tiny(shop, tmp_path_factory.mktemp("ckpt"), seed=0)


@pytest.fixture(scope="session")
def retrained(shop, tmp_path_factory):
    """The same data and model shape as `checkpoint`, trained with another seed: other weights."""
    return _tiny(shop, tmp_path_factory.mktemp("ckpt_retrained"), seed=1)


@pytest.fixture(scope="session")
def other_shop_checkpoint(tmp_path_factory):
    """A tiny checkpoint of another shop: another item catalogue."""
    paths = write_shop(tmp_path_factory.mktemp("shop2"), ShopConfig(n_users=200, n_items=150, mean_length=20, seed=4))
    return _tiny(paths, tmp_path_factory.mktemp("ckpt_other"), seed=0)
