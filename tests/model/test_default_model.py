import json

import pytest

from attnrec.model.checkpoint import DEFAULT_CHECKPOINT, load_checkpoint
from attnrec.model.cli import embedded_movielens
from attnrec.model.data import load_tables
from attnrec.model.evaluate import evaluate_checkpoint


def test_kept_checkpoint_loads_and_scores_what_it_says():
    ckpt = load_checkpoint(DEFAULT_CHECKPOINT)
    recorded = json.loads((DEFAULT_CHECKPOINT / "eval.json").read_text())
    assert recorded["model_version"] == ckpt.metadata["model_version"] == ckpt.model_version
    paths = embedded_movielens()
    result = evaluate_checkpoint(DEFAULT_CHECKPOINT, load_tables(paths["interactions"], paths["items"]), device="cpu")
    assert result["dropped_unknown_interactions"] == 0
    for name in ("model", "popularity"):
        for metric in ("HR@10", "NDCG@10"):
            assert result[name][metric] == pytest.approx(recorded[name][metric], abs=1e-6)
    assert result["model"]["NDCG@10"] >= 0.0553  # the SASRec-CE bar for this split (docs/accuracy.md)
