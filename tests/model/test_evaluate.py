import numpy as np
import torch

from attnrec.model.evaluate import ranking_metrics, target_ranks


def test_ranks_mask_seen_items_and_break_ties_by_index():
    scores = torch.tensor([[0.0, 5.0, 4.0, 3.0, 3.0, 9.0]])
    # item 5 is seen (masked), item 1 beats the target 3, item 2 too; item 4 ties but has a larger index
    assert target_ranks(scores, torch.tensor([3]), [np.array([5])]).tolist() == [2]
    # same tie, target 4: item 3 has the smaller index and counts as above
    assert target_ranks(scores, torch.tensor([4]), [np.array([5])]).tolist() == [3]


def test_metrics():
    m = ranking_metrics(np.array([0, 1, 10]))
    assert m["HR@10"] == 2 / 3
    assert np.isclose(m["NDCG@10"], (1 + 1 / np.log2(3)) / 3)
