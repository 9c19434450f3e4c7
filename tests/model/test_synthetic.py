import pyarrow.parquet as pq

from attnrec.model.synthetic import ShopConfig, write_shop


def test_seeded_and_schema(tmp_path):
    config = ShopConfig(n_users=50, n_items=100, seed=1, chunk_users=20)
    a = write_shop(tmp_path / "a", config)
    b = write_shop(tmp_path / "b", config)
    for name in ("interactions", "items", "users"):
        assert pq.read_table(a[name]).equals(pq.read_table(b[name]))
    assert set(pq.read_table(a["users"]).column_names) == {"user_id", "age", "gender", "region"}
    assert set(pq.read_table(a["items"]).column_names) == {"item_id", "category", "price", "brand"}
    assert pq.read_table(a["users"]).num_rows == 50


def test_planted_causes_precede_their_effects(shop):
    config = ShopConfig()
    t = pq.read_table(shop["interactions"]).to_pylist()
    effects = [(i, r) for i, r in enumerate(t) if r["cause_item_id"] is not None]
    assert len(effects) > 0.05 * len(t)
    for i, r in effects:
        cause = int(r["cause_item_id"][1:])
        assert int(r["item_id"][1:]) == cause + 1  # the accessory of its cause
        earlier = [x["item_id"] for x in t[max(0, i - config.max_gap) : i] if x["user_id"] == r["user_id"]]
        assert r["cause_item_id"] in earlier  # within max_gap steps before, same user
