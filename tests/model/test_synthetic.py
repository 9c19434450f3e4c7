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


def test_the_planted_brand_rule_makes_the_next_purchase_the_same_brand(tmp_path):
    import numpy as np

    config = ShopConfig(n_users=300, n_items=200, mean_length=20, seed=5, n_loyal_brands=10, p_loyal=1.0)
    paths = write_shop(tmp_path / "loyal", config)
    plain = pq.read_table(write_shop(tmp_path / "plain", ShopConfig(n_users=300, n_items=200, mean_length=20,
                                                                    seed=5))["interactions"])
    items = pq.read_table(paths["items"])
    brand = dict(zip(items.column("item_id").to_pylist(), items.column("brand").to_pylist()))
    t = pq.read_table(paths["interactions"]).sort_by([("user_id", "ascending"), ("timestamp", "ascending")])
    users, bought = t.column("user_id").to_pylist(), [brand[i] for i in t.column("item_id").to_pylist()]
    pairs = [(a, b) for (ua, a), (ub, b) in zip(zip(users, bought), zip(users[1:], bought[1:])) if ua == ub]
    loyal = [b == a for a, b in pairs if int(a.removeprefix("brand")) < 10]
    other = [b == a for a, b in pairs if int(a.removeprefix("brand")) >= 10]
    assert len(loyal) > 100 and np.mean(loyal) > 0.8 > 0.3 > np.mean(other)  # slots taken first by causes stay
    assert plain.num_rows != t.num_rows or plain.column("item_id") != t.column("item_id")  # the rule did something
