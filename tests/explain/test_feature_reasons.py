import numpy as np
import pytest
import torch

from attnrec.explain.feature_reasons import feature_reasons, necessity_sufficiency, neutralised, values_of
from attnrec.model.checkpoint import load_checkpoint
from attnrec.model.inputs import stack_users
from attnrec.model.sequences import left_pad


@pytest.fixture(scope="module")
def ckpt(checkpoint):
    return load_checkpoint(checkpoint)


def rank_of(model, history, user, target):
    with torch.inference_mode():
        seq = torch.as_tensor(left_pad([history], model.config.max_len))
        scores = model.score_all(seq, stack_users([user], model.config.user_features, "cpu"))[0]
        scores[torch.as_tensor(history)] = float("-inf")
        return int((scores > scores[target]).sum()) + 1


def test_neutralising_nothing_ranks_as_the_model_does_and_a_value_changes_the_ranking(ckpt):
    model, history = ckpt.model, np.array([3, 8, 13, 21, 34])
    user = [c[5] for c in ckpt.user_codes]
    present = values_of(model, history, user)
    assert {side for side, _, _ in present} == {"item", "user"}  # the shop has both
    for target in (1, 50, 120):
        ranks, _ = neutralised(model, history, user, target, [[], *[[v] for v in present]])
        assert ranks[0] == rank_of(model, history, user, target)
        assert len(set(ranks[1:].tolist())) > 1  # neutralising values is no no-op
    target = int(np.argmin([rank_of(model, history, user, t) for t in range(1, 60)])) + 1  # the top-1
    _, ps = necessity_sufficiency(model, history, user, target, present, present, k=10)
    assert ps  # keeping every value is the model as it is: the top-1 stays in the top 10
    pn, _ = necessity_sufficiency(model, history, user, target, [], present, k=10)
    assert not pn  # neutralising nothing takes nothing out


def test_reasons_are_ranked_by_what_their_absence_does_and_name_their_items(ckpt):
    model, history = ckpt.model, np.array([3, 8, 13, 21, 34])
    labels = [ckpt.items.ids[i - 1] for i in history]
    reasons = feature_reasons(model, history, None, 7, ckpt.item_encoders, ckpt.user_encoders, labels)
    assert 0 < len(reasons) <= 5
    assert [r.score_drop for r in reasons] == sorted((r.score_drop for r in reasons), reverse=True)
    for r in reasons:
        assert r.items and set(r.items) <= set(labels)  # an item feature's carriers (no user given)


def test_an_item_the_history_holds_gets_finite_reasons(ckpt):
    """Explain may be asked about an item the user already has: masked in ranking, its logit still counts."""
    model, history = ckpt.model, np.array([3, 8, 13, 21, 34])
    labels = [ckpt.items.ids[i - 1] for i in history]
    reasons = feature_reasons(model, history, None, 13, ckpt.item_encoders, ckpt.user_encoders, labels)
    assert reasons and all(np.isfinite(r.score_drop) for r in reasons)
