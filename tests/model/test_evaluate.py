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


def test_two_stage_evaluation_matches_exact_when_the_index_scans_everything(shop, checkpoint, tmp_path):
    import shutil

    import pytest

    from attnrec.model.checkpoint import load_checkpoint
    from attnrec.model.data import DataError, load_tables
    from attnrec.model.evaluate import evaluate_checkpoint
    from attnrec.model.retrieval import IndexConfig, write_index

    directory = tmp_path / "ckpt"
    shutil.copytree(checkpoint, directory)
    with pytest.raises(DataError, match="no item index"):
        evaluate_checkpoint(directory, load_tables(**shop), device="cpu", retrieval_candidates=50)
    ckpt = load_checkpoint(directory)
    write_index(directory, ckpt.model, ckpt.model_version, ckpt.item_counts,
                IndexConfig(n_lists=4, n_probe=4, codec="flat"))
    exact = evaluate_checkpoint(directory, load_tables(**shop), device="cpu")
    two_stage = evaluate_checkpoint(directory, load_tables(**shop), device="cpu", retrieval_candidates=50)
    assert two_stage["retrieval_candidates"] == 50 and exact["retrieval_candidates"] == 0
    assert two_stage["model"]["NDCG@10"] == pytest.approx(exact["model"]["NDCG@10"], abs=1e-6)
    assert two_stage["model"]["HR@10"] == exact["model"]["HR@10"]
