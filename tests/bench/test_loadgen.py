import json

import pytest

from attnrec.bench.loadgen import item_ids, make_requests
from attnrec.model.checkpoint import load_checkpoint


def test_item_ids_from_a_checkpoint_or_a_json_list(checkpoint, tmp_path):
    vocabulary = list(load_checkpoint(checkpoint).items.ids)
    assert item_ids(str(checkpoint)) == vocabulary
    listed = tmp_path / "ids.json"
    listed.write_text(json.dumps([7, "b", "c"]))
    assert item_ids(str(listed)) == ["7", "b", "c"]
    empty = tmp_path / "empty.json"
    empty.write_text("[]")
    with pytest.raises(ValueError, match="no item ids"):
        item_ids(str(empty))


def test_requests_draw_distinct_history_ids_of_the_asked_length():
    ids = [str(i) for i in range(100)]
    batches = make_requests(ids, "batch", n=3, history=20, k=5, batch=4, seed=0)
    assert len(batches) == 3 and all(len(b.requests) == 4 for b in batches)
    for r in (r for b in batches for r in b.requests):
        assert len(set(r.history)) == 20 and set(r.history) <= set(ids) and r.k == 5
    assert make_requests(ids, "batch", 3, 20, 5, 4, seed=0) == batches  # seeded: every run sends the same load
