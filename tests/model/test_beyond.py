"""Beyond-accuracy figures on small cases with known answers."""

import math

import numpy as np
import pytest

from attnrec.model.beyond import (
    calibration_kl,
    catalogue_report,
    feature_distribution,
    gini,
    group_table,
    history_buckets,
    per_user_metrics,
)


def test_per_user_metrics_from_ranks():
    ndcg, hr = per_user_metrics(np.array([0, 1, 9, 10]))
    np.testing.assert_allclose(ndcg, [1.0, 1 / math.log2(3), 1 / math.log2(11), 0.0])
    assert hr.tolist() == [1, 1, 1, 0]


def test_gini_of_exposure():
    assert gini(np.array([5, 5, 5, 5])) == pytest.approx(0.0)
    assert gini(np.array([0, 0, 0, 8])) == pytest.approx(0.75)  # (n - 1) / n: one item gets everything
    assert gini(np.zeros(3)) == 0.0


def test_a_real_gap_between_groups_is_flagged_and_none_is_not():
    rng = np.random.default_rng(0)
    served_well, served_badly = rng.uniform(0.5, 1.0, 200), rng.uniform(0.0, 0.3, 200)
    ndcg = np.r_[served_well, served_badly]
    table, gap = group_table(ndcg, (ndcg > 0).astype(float), ["a"] * 200 + ["b"] * 200)
    a = table["a"]
    assert a["users"] == 200 and a["NDCG@10_low"] < a["NDCG@10"] < a["NDCG@10_high"]
    assert (gap["best"], gap["worst"], gap["flagged"]) == ("a", "b", True) and gap["gap_low"] > 0
    same = rng.uniform(0, 1, 400)
    assert not group_table(same, same, ["a", "b"] * 200)[1]["flagged"]


def test_history_buckets_cover_every_user_in_thirds():
    labels = history_buckets(np.arange(3, 33))
    assert len(set(labels)) == 3 and labels[0].startswith("3-") and labels[-1].endswith("-32 items")


def test_catalogue_figures():
    counts = np.array([0, 100, 50, 10, 5, 1], dtype=float)  # item 1 most popular; head = 20% of 5 = item 1
    top = np.array([[1, 2], [1, 3], [1, 0]])  # 0: fewer than k eligible
    report = catalogue_report(top, targets=np.array([5, 4, 3]), counts=counts)
    assert report["coverage_at_10"] == pytest.approx(3 / 5)
    assert report["long_tail_share_at_10"] == pytest.approx(2 / 5)  # items 2 and 3 of 5 slots
    assert report["mean_popularity_percentile_at_10"] > report["mean_popularity_percentile_held_out"]
    assert report["exposure_gini_at_10"] > 0.4
    assert report["lorenz_at_10"][0] == 0.0 and report["lorenz_at_10"][-1] == 1.0


def test_calibration_is_zero_when_the_list_mirrors_the_history_and_large_when_it_does_not():
    codes = np.array([[0, 0], [2, 0], [2, 0], [3, 0], [2, 3]])  # items 1, 2: genre 2; 3: genre 3; 4: both
    assert feature_distribution(np.array([4]), codes, 4).tolist() == [0, 0, 0.5, 0.5]
    mirrored = calibration_kl([np.array([1, 3])], np.array([[2, 3]]), codes)
    assert mirrored == pytest.approx(0.0, abs=1e-12)
    opposite = calibration_kl([np.array([1, 2])], np.array([[3, 0]]), codes)
    assert opposite == pytest.approx(math.log(1 / 0.01))  # q~ = 0.99 q + 0.01 p puts 0.01 on genre 2
