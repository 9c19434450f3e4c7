import numpy as np
import pytest

from attnrec.explain.curves import MODES, perturbed, sizes, summarise, user_curves
from attnrec.model.checkpoint import load_checkpoint
from attnrec.model.sasrec import PAD


@pytest.fixture(scope="module")
def model(checkpoint):
    return load_checkpoint(checkpoint).model


def test_deleting_closes_the_sequence_up_and_masking_keeps_positions():
    h = np.array([5, 6, 7, 8])
    assert perturbed(h, np.array([1, 3]), "delete").tolist() == [5, 7]
    assert perturbed(h, np.array([1, 3]), "mask").tolist() == [5, PAD, 7, PAD]
    assert sizes(50) == [1, 2, 5, 10, 25] and sizes(3) == [1, 1, 1, 1, 2]


def test_the_search_bounds_hold_every_order_at_one_removal_and_normalise_to_one_and_zero(model):
    rng = np.random.default_rng(0)
    per_user = []
    for _ in range(3):
        history = rng.choice(np.arange(1, 150), size=12, replace=False)
        orders = {"recent": np.arange(12)[::-1], "random": rng.permutation(12)}
        curves = user_curves(model, history, None, 3, orders)
        for mode in MODES:
            first = {name: c["comprehensiveness"][0] for name, c in curves[mode].items()}
            assert first["search_lower"] - 1e-6 <= min(first.values()) and max(first.values()) <= \
                first["search_upper"] + 1e-6  # the best and the worst single removal, by search
        per_user.append(curves)
    summary = summarise(per_user, {"recent": [1.0, 0.0, 1.0]})
    for mode in MODES:
        rows = summary["modes"][mode]
        assert rows["search_upper"]["normalised_comprehensiveness"] == pytest.approx(1.0)
        assert rows["search_lower"]["normalised_comprehensiveness"] == pytest.approx(0.0)
    assert summary["pos_at_10"] == {"recent": pytest.approx(2 / 3)}
