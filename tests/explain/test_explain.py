import numpy as np
import pytest
import torch

from attnrec.explain.ablation import deletion_attribution
from attnrec.explain.attention import rollout
from attnrec.explain.attribution import integrated_gradients
from attnrec.explain.config import ExplainConfig
from attnrec.explain.explain import ATTENTION_WEIGHT, combine, explain, explain_batch
from attnrec.explain.faithfulness import logits_without, scores_without
from attnrec.explain.features import feature_attributions
from attnrec.model.config import FeatureSpec, ModelConfig
from attnrec.model.features import FeatureEncoder
from attnrec.model.sasrec import SASRec

CONFIG = ModelConfig(
    n_items=20, item_features=(FeatureSpec("category", 5), FeatureSpec("genres", 4, max_values=2, multi=True)),
    user_features=(FeatureSpec("age", 3),), max_len=10, d_model=16, n_layers=2, n_heads=2, dropout=0.0,
)


def tiny(seed=0, config=CONFIG):
    torch.manual_seed(seed)
    m = SASRec(config)
    if config.item_features:
        g = torch.Generator().manual_seed(seed)
        m.set_item_codes([torch.randint(0, 5, (21,), generator=g), torch.randint(0, 4, (21, 2), generator=g)])
    return m.eval()


def test_ig_matches_the_closed_form_of_a_linear_path():
    """With no transformer blocks the logit is linear in the content embeddings up to the
    final LayerNorm; with LayerNorm replaced by identity it is exactly linear, and IG must
    equal (input - baseline) * gradient: the last item's embedding dotted with the target."""
    config = ModelConfig(n_items=20, max_len=10, d_model=8, n_layers=0, n_heads=1, dropout=0.0)
    m = tiny(config=config)
    m.ln_f = torch.nn.Identity()
    seq = torch.tensor([[3, 4, 5]])
    target = 7
    a = integrated_gradients(m, seq, None, target, ExplainConfig(n_steps=8))
    w = m.item_vectors(torch.tensor([target]))[0].detach()
    with torch.no_grad():
        expected_last = float((m.item_emb(torch.tensor(5)) * np.sqrt(8)) @ w)  # only the last position reaches h[-1]
    np.testing.assert_allclose(a.parts[0].numpy(), [0.0, 0.0, expected_last], atol=1e-5)
    assert abs(a.convergence_delta) < 1e-5


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_completeness_at_the_default_steps(seed):
    m = tiny(seed)
    seq = torch.tensor([[0, 0, 3, 9, 4, 12, 5]])
    user = [torch.tensor([2])]
    a = integrated_gradients(m, seq, user, 11)
    total = sum(float(p.sum()) for p in a.parts)
    gap = a.score - a.baseline_score
    assert abs(total - gap - a.convergence_delta) < 1e-4  # delta is what it says it is
    assert abs(a.convergence_delta) < 0.05 * abs(gap)  # completeness within 5% of the gap


def test_explanations_ignore_left_padding_and_shapes_line_up():
    m = tiny()
    user = [np.array(1)]
    e = explain(m, np.array([3, 9, 4]), user, target=11)
    assert e.attribution.shape == e.attention.shape == e.rollout.shape == e.combined.shape == (4,)  # user token + 3
    assert e.deletion[0] == 0.0 and e.has_user_token
    np.testing.assert_allclose(e.attention.sum(), 1.0, rtol=1e-5)
    np.testing.assert_allclose(e.combined, combine(e.deletion, e.attention))


def test_batched_explanations_equal_one_by_one():
    m = tiny()
    histories = [np.array([3, 9, 4]), np.array([7]), np.array([1, 2, 3, 4, 5, 6])]
    users = [[np.array(0)], [np.array(2)], None]  # None: an unknown user
    targets = [11, 3, 19]
    together = explain_batch(m, histories, users, targets)
    for h, u, t, e in zip(histories, users, targets, together):
        alone = explain(m, h, u, t)
        for field in ("attention", "rollout", "attribution", "deletion", "combined"):
            np.testing.assert_allclose(getattr(e, field), getattr(alone, field), rtol=1e-4, atol=1e-5, err_msg=field)
        for a, b in zip(e.part_attribution, alone.part_attribution):
            np.testing.assert_allclose(a, b, rtol=1e-4, atol=1e-5)
        assert abs(e.score - alone.score) < 1e-4 and e.attention_heads.shape == alone.attention_heads.shape


def test_deletion_attribution_is_the_brute_force_drop():
    m = tiny()
    history = np.array([3, 9, 4, 12])
    got = deletion_attribution(m, history, [np.array(2)], target=11)
    logits, _, full, _ = scores_without(m, history, [np.array(2)], 11, [np.array([i]) for i in range(4)])
    np.testing.assert_allclose(got, full - logits, rtol=1e-5, atol=1e-6)
    cheap = logits_without(m, history, [np.array(2)], 11, [np.array([i]) for i in range(4)])
    np.testing.assert_allclose(cheap, [full, *logits], rtol=1e-5, atol=1e-6)  # no catalogue, the same logits


def test_rollout_of_identity_attention_stays_on_the_last_position():
    att = torch.eye(4).expand(1, 2, 4, 4)
    np.testing.assert_allclose(rollout([att, att]).numpy(), [[0, 0, 0, 1]])
    uniform = torch.tril(torch.ones(3, 3)) / torch.arange(1, 4)[:, None]
    r = rollout([uniform.expand(1, 1, 3, 3)], residual=0.0)
    np.testing.assert_allclose(r.numpy(), [[1 / 3, 1 / 3, 1 / 3]], rtol=1e-6)


def test_combine_formula():
    deletion, attention = np.array([1.0, -2.0, 0.5]), np.array([0.2, 0.3, 0.5])
    np.testing.assert_allclose(combine(deletion, attention), deletion + ATTENTION_WEIGHT * attention * 3.5)


def test_feature_attributions_sum_per_value_and_skip_padding():
    cat = FeatureEncoder("category", "categorical", values=("a", "b"))
    genres = FeatureEncoder("genres", "multi", values=("x", "y"), max_values=2)
    age = FeatureEncoder("age", "numeric", edges=(30.0,))
    parts = [np.array([0.5, 0.25]), np.array([1.0, 2.0]), np.array([[0.1, 9.0], [0.2, 0.3]]), np.array(0.7)]
    out = feature_attributions(parts, ["i1", "i2"], [np.array([2, 2]), np.array([[2, 0], [2, 3]])],
                               [np.array(2)], [cat, genres], [age])
    got = {(f, v): a for f, v, a in out}
    assert got[("category", "a")] == pytest.approx(3.0)
    assert got[("genres", "x")] == pytest.approx(0.3) and got[("genres", "y")] == pytest.approx(0.3)
    assert ("genres", "missing") not in got  # the padding slot's 9.0 is not a value
    assert got[("age", "≥ 30")] == pytest.approx(0.7) and got[("item_id", "i1")] == 0.5
    assert [abs(a) for *_, a in out] == sorted((abs(a) for *_, a in out), reverse=True)
