import pytest

from attnrec.model.synthetic import ShopConfig, write_shop


@pytest.fixture(scope="session")
def shop(tmp_path_factory):
    """A small seeded synthetic shop (interactions, items, users Parquet paths)."""
    return write_shop(tmp_path_factory.mktemp("shop"), ShopConfig(n_users=300, n_items=200, mean_length=20, seed=3))
