"""Calibrated re-ranking on cases with known answers."""

import numpy as np

from attnrec.model.beyond import calibration_kl, catalogue_report, item_distributions, popularity_groups
from attnrec.model.rerank import calibrated, rerank_mixes, rerank_top

# items 1-3: genre 2; items 4-6: genre 3; item 7: both
CODES = np.array([[0, 0], [2, 0], [2, 0], [2, 0], [3, 0], [3, 0], [3, 0], [2, 3]])
DIST = item_distributions(CODES, 4)
MIXES = ((DIST, 1.0),)


def test_item_distributions_spread_one_over_an_items_values():
    assert DIST[1].tolist() == [0, 0, 1, 0] and DIST[7].tolist() == [0, 0, 0.5, 0.5] and DIST[0].sum() == 0


def test_weight_zero_keeps_the_models_order():
    candidates, scores = np.array([4, 1, 5, 2]), np.array([4.0, 3.0, 2.0, 1.0])
    assert calibrated(candidates, scores, np.array([1, 4]), MIXES, 3, 0.0).tolist() == [0, 1, 2]


def test_calibration_brings_the_historys_mix_into_the_list():
    history = np.array([1, 2, 4])  # two thirds genre 2, one third genre 3
    candidates, scores = np.array([4, 5, 6, 3, 7]), np.array([5.0, 4.9, 4.8, 1.0, 0.5])  # the model: all genre 3
    plain = candidates[calibrated(candidates, scores, history, MIXES, 3, 0.0)]
    fair = candidates[calibrated(candidates, scores, history, MIXES, 3, 0.9)]
    assert plain.tolist() == [4, 5, 6]
    assert len(set(fair.tolist())) == 3 and set(fair.tolist()) <= set(candidates.tolist())
    assert 3 in fair.tolist()  # a genre-2 item enters
    kl = lambda top: calibration_kl([history], np.array([top]), CODES)  # noqa: E731
    assert kl(fair) < kl(plain)
    again = candidates[calibrated(candidates, scores, history, MIXES, 3, 0.9)]
    assert again.tolist() == fair.tolist()  # deterministic


def test_rerank_top_handles_short_candidate_lists():
    top = np.array([[4, 5, 0], [1, 0, 0]])
    scores = np.array([[2.0, 1.0, -np.inf], [1.0, -np.inf, -np.inf]])
    out = rerank_top(top, scores, [np.array([1]), np.array([4])], MIXES, k=2, weight=0.5)
    assert out.shape == (2, 2) and out[1].tolist() == [1, 0] and set(out[0].tolist()) == {4, 5}


def test_popularity_groups_split_head_from_tail():
    counts = np.array([0, 50, 1, 2, 3, 40, 4, 5, 6, 7, 8])  # items 1 and 5 are the 20% most popular
    groups = popularity_groups(counts)
    assert groups[[1, 5]].tolist() == [[1, 0], [1, 0]] and groups[0].sum() == 0
    assert (groups[[2, 3, 4, 6, 7, 8, 9, 10]] == [0, 1]).all()


def test_calibrating_popularity_lifts_the_long_tail_for_a_tail_user():
    counts = np.array([0, 90, 80, 5, 4, 3, 2, 1, 1, 1, 1])  # 10 items: the head is items 1 and 2
    codes = np.zeros((11, 1), dtype=np.int64)  # no feature mix: popularity alone
    mixes = rerank_mixes(None, counts)
    history = np.array([3, 5, 6])  # long-tail items only
    candidates, scores = np.array([1, 2, 4, 7]), np.array([3.0, 2.9, 2.8, 0.0])
    plain = candidates[calibrated(candidates, scores, history, mixes, 2, 0.0)]
    lifted = candidates[calibrated(candidates, scores, history, mixes, 2, 0.5)]
    assert plain.tolist() == [1, 2]
    tail = lambda top: catalogue_report(np.array([top]), np.array([3]), counts)["long_tail_share_at_10"]  # noqa: E731
    assert tail(plain) == 0 and tail(lifted) > 0
    assert len(rerank_mixes(codes + 1, counts)) == 2


def test_without_counts_only_the_feature_mix_is_calibrated():
    assert len(rerank_mixes(CODES, None)) == 1 and rerank_mixes(None, None) == ()
