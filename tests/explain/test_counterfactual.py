"""Counterfactual sets: exact (checked by ranking without them), bounded, and never larger
than removing the newest items one by one."""

import numpy as np
import pytest
import torch

from attnrec.explain.counterfactual import CounterfactualConfig, counterfactual
from attnrec.explain.evaluate import recency_size
from attnrec.model.checkpoint import load_checkpoint
from attnrec.model.sequences import left_pad


@pytest.fixture(scope="module")
def model(checkpoint):
    return load_checkpoint(checkpoint).model


def top(model, history: np.ndarray, k: int) -> list[int]:
    """The model's top k for a history, its items masked: what Recommend would answer."""
    with torch.inference_mode():
        scores = model.score_all(torch.as_tensor(left_pad([history], model.config.max_len)))[0]
        scores[torch.as_tensor(history)] = float("-inf")
        return scores.topk(k).indices.tolist()


def histories(n=12, length=15, seed=0):
    rng = np.random.default_rng(seed)
    return [rng.choice(np.arange(1, 150), size=length, replace=False) for _ in range(n)]


def test_a_found_set_takes_the_item_out_of_the_top_k_and_is_no_larger_than_recency(model):
    config = CounterfactualConfig(max_size=5, k=5)
    found = 0
    for history in histories():
        target = top(model, history, 1)[0]
        cf = counterfactual(model, history, None, target, config)
        recency = recency_size(model, history, None, target, config)
        if not cf.found:
            assert recency is None and cf.positions == ()
            continue
        found += 1
        without = np.delete(history, list(cf.positions))
        assert target not in top(model, without, config.k)
        assert cf.new_rank > config.k and cf.new_top == top(model, without, 1)[0]
        assert list(cf.positions) == sorted(cf.positions) and 1 <= len(cf.positions) <= config.max_size
        assert recency is None or len(cf.positions) <= recency
    assert found >= 6  # the search is no stub: most top-1 items of a tiny model can be moved


def test_an_item_outside_the_top_k_and_a_spent_budget_find_nothing(model):
    history = histories(1)[0]
    outside = top(model, history, 30)[-1]
    cf = counterfactual(model, history, None, outside, CounterfactualConfig(k=5))
    assert not cf.found and cf.positions == () and cf.new_rank > 5
    first = top(model, history, 1)[0]
    cf = counterfactual(model, history, None, first, CounterfactualConfig(budget=1))
    assert not cf.found and cf.sets_scored == 1 and cf.new_rank == 1
    cf = counterfactual(model, history, None, first, CounterfactualConfig(budget=20, max_size=5, k=1))
    assert cf.sets_scored <= 20 + 1  # the check of a found set comes on top
    short = history[:3]  # a bound above the history's length: sets never hold more than it has
    cf = counterfactual(model, short, None, top(model, short, 1)[0], CounterfactualConfig(max_size=10, k=1))
    assert len(cf.positions) <= 2  # and never all of it
    assert not counterfactual(model, history[:1], None, top(model, history[:1], 1)[0]).found


def test_trying_every_set_finds_the_true_smallest_and_bounds_the_search(model):
    from itertools import combinations

    from attnrec.explain.evaluate import counterfactual_eval, minimal_size

    config = CounterfactualConfig(max_size=3, k=5)
    short = histories(n=6, length=8, seed=1)
    for history in short:
        target = top(model, history, 1)[0]
        smallest = minimal_size(model, history, None, target, config, 3)
        works = [len(s) for size in (1, 2, 3) for s in combinations(range(len(history)), size)
                 if target not in top(model, np.delete(history, list(s)), config.k)]
        assert smallest == (min(works) if works else None)  # brute force, one set at a time, agrees
        cf = counterfactual(model, history, None, target, config)
        assert not cf.found or len(cf.positions) >= smallest  # no search beats the true smallest
    result = counterfactual_eval(model, short, [None] * len(short), config, progress=False, exhaustive=3)
    assert result["exhaustive_up_to"] == 3
    assert result["minimal_smaller_than_recency"] >= result["smaller_than_recency"]
    assert result["minimal_within"][3] >= result["found_within"][3]
