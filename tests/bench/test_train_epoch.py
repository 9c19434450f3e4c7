from attnrec.bench.train_epoch import MILLION, time_epoch


def test_an_epoch_is_timed_by_part(shop):
    result = time_epoch({k: str(v) for k, v in shop.items()}, max_batches=2)
    assert result["steps"] == 2 and result["targets"] > 0
    assert set(result["parts_s"]) == {"batches", "forward_and_loss", "backward", "optimizer"}
    assert 0 <= result["valid_NDCG@10"] <= 1


def test_the_default_data_is_shaped_like_a_million_interactions():
    assert (MILLION.n_users, MILLION.n_items) == (6_040, 3_704)
    assert 0.9e6 < MILLION.n_users * MILLION.mean_length < 1.1e6
