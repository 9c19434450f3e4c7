"""The scale bench's catalogues and records (sizes far below the real run's)."""

import numpy as np
import torch

from attnrec.bench.scale import ScaleConfig, grown, run
from attnrec.model.checkpoint import load_checkpoint


def test_a_grown_catalogue_keeps_the_trained_items_and_adds_structured_ones(checkpoint):
    base = load_checkpoint(checkpoint)
    big = grown(base, 1_000, noise=0.5, seed=0)
    n0 = len(base.items)
    assert len(big.items) == big.config.n_items == 1_000 and big.items.ids[:n0] == base.items.ids
    history = torch.tensor([[1, 2, 3, 4]])
    with torch.inference_mode():
        torch.testing.assert_close(big.model.score_all(history)[:, : n0 + 1],
                                   base.model.score_all(history, base.user_inputs(np.zeros(1, np.int64))))
        vectors = big.model.all_item_vectors()
        copy, source = vectors[n0 + 5], vectors[5]  # item n0 + 5 grew from item 5
        assert torch.nn.functional.cosine_similarity(copy, source, dim=0) > 0.5
    assert big.item_counts[n0 + 5] == base.item_counts[5]


def test_the_scale_run_records_both_paths_per_size_and_history(checkpoint):
    config = ScaleConfig(sizes=(300, 600), histories=(10,), queries=64, timed_s=0.05)
    result = run(str(checkpoint), config)
    records = result["scale"]
    grown_records = [r for r in records if r["structure"] == "grown"]
    assert [(r["items"], r["path"]) for r in grown_records] == [(300, "exact"), (300, "two_stage"),
                                                                (600, "exact"), (600, "two_stage")]
    assert {r["structure"] for r in records} == {"grown", "random"}
    for r in records:
        assert r["model_recs_s"] > 0 and r["one_query_p50_ms"] > 0 and r["load_s"] >= 0
        # exact is exact; the index's n_probe was chosen to reach 0.99 on sampled histories
        assert r["recall_at_10"] == 1.0 if r["path"] == "exact" else r["recall_at_10"] >= 0.95
