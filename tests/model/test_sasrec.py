import pytest
import torch
import torch.nn.functional as F

from attnrec.model.config import FeatureSpec, ModelConfig
from attnrec.model.sasrec import Batch, LinearCrossEntropy, SASRec

CONFIG = ModelConfig(
    n_items=30,
    item_features=(FeatureSpec("category", 6), FeatureSpec("genres", 5, max_values=3, multi=True)),
    user_features=(FeatureSpec("age", 4), FeatureSpec("region", 3)),
    max_len=12, d_model=16, n_layers=2, n_heads=2, dropout=0.0,
)


@pytest.fixture
def model():
    torch.manual_seed(0)
    m = SASRec(CONFIG)
    g = torch.Generator().manual_seed(1)
    m.set_item_codes([torch.randint(0, 6, (31,), generator=g), torch.randint(0, 5, (31, 3), generator=g)])
    return m.eval()


def user(b):
    return [torch.arange(b) % 4, torch.arange(b) % 3]


def test_a_later_item_never_changes_an_earlier_output(model):
    seq = torch.tensor([[0, 0, 3, 4, 5, 6, 7]])
    changed = seq.clone()
    changed[0, -1] = 20
    h, h2 = model(seq, user(1)), model(changed, user(1))
    torch.testing.assert_close(h[:, :-1], h2[:, :-1])
    assert not torch.allclose(h[:, -1], h2[:, -1])


def test_padding_changes_nothing(model):
    seq = torch.tensor([[3, 4, 5]])
    padded = torch.tensor([[0, 0, 0, 0, 3, 4, 5]])
    torch.testing.assert_close(model.encode(seq, user(1)), model.encode(padded, user(1)))
    torch.testing.assert_close(model(seq, user(1)), model(padded, user(1))[:, 4:])


def test_batched_equals_one_by_one(model):
    seqs = [[3, 4, 5, 6], [7], [1, 2, 9, 10, 11, 12, 13]]
    T = max(map(len, seqs))
    batch = torch.tensor([[0] * (T - len(s)) + s for s in seqs])
    u = user(3)
    together = model.score_all(batch, u)
    for b, s in enumerate(seqs):
        alone = model.score_all(torch.tensor([s]), [x[b : b + 1] for x in u])
        torch.testing.assert_close(together[b : b + 1], alone, rtol=1e-5, atol=1e-5)


def test_score_matches_score_all_and_padding_is_never_scored(model):
    seq = torch.tensor([[0, 3, 4, 5], [6, 7, 8, 9]])
    all_ = model.score_all(seq, user(2))
    cands = torch.tensor([[1, 5, 30], [2, 2, 17]])
    torch.testing.assert_close(model.score(seq, cands, user(2)), all_.gather(1, cands))
    assert torch.isinf(all_[:, 0]).all()


def test_attention_is_exposed_causal_and_from_the_scoring_pass(model):
    seq = torch.tensor([[0, 3, 4, 5]])
    h, att = model(seq, user(1), return_attention=True)
    assert len(att) == CONFIG.n_layers and att[0].shape == (1, CONFIG.n_heads, 5, 5)  # user token + 4
    assert torch.all(att[0].triu(1) == 0)  # causal
    assert torch.all(att[-1][..., 2:, 1] == 0)  # no real position attends the padding (only itself)
    torch.testing.assert_close(att[-1].sum(-1), torch.ones(1, CONFIG.n_heads, 5))
    torch.testing.assert_close(h, model(seq, user(1)))


def test_inference_gathers_the_item_vectors_training_pools(model):
    seq = torch.tensor([[0, 3, 4, 5], [6, 7, 8, 30]])
    pooled = model.embed(seq, user(2)).detach()  # grad on: item features pooled per position
    with torch.no_grad():  # inference: a gather from the cached item table
        torch.testing.assert_close(model.embed(seq, user(2)), pooled)
        model.set_item_codes([torch.zeros(31, dtype=torch.long), torch.zeros(31, 3, dtype=torch.long)])
        gathered = model.embed(seq, user(2))
    torch.testing.assert_close(gathered, model.embed(seq, user(2)).detach())  # the table follows new codes
    assert not torch.allclose(gathered, pooled)


def test_last_only_and_the_fused_kernel_give_the_full_pass_values_and_gradients(model):
    seq = torch.tensor([[0, 0, 3, 4, 5], [6, 7, 8, 9, 30]])
    x = model.embed(seq, user(2)).detach().requires_grad_()
    allowed = model.attention_mask(seq)
    full, full_att = model.transform(x, allowed)
    (full_grad,) = torch.autograd.grad(full[:, -1].sum(), x)
    last, last_att = model.transform(x, allowed, last_only=True)
    (last_grad,) = torch.autograd.grad(last.sum(), x)
    assert last.shape == (2, 1, CONFIG.d_model) and last_att[-1].shape == (2, CONFIG.n_heads, 1, 6)
    torch.testing.assert_close(last[:, 0], full[:, -1])
    torch.testing.assert_close(last_grad, full_grad)  # integrated gradients rely on it
    torch.testing.assert_close(last_att[-1], full_att[-1][:, :, -1:])
    torch.testing.assert_close(last_att[0], full_att[0])  # earlier blocks run whole
    fused, no_maps = model.transform(x, allowed, last_only=True, need_weights=False)  # the fused kernel
    (fused_grad,) = torch.autograd.grad(fused.sum(), x)
    assert no_maps == []
    torch.testing.assert_close(fused, last)
    torch.testing.assert_close(fused_grad, last_grad)
    torch.testing.assert_close(model.encode(seq, user(2)), model(seq, user(2))[:, -1])


def test_history_longer_than_the_window_is_refused(model):
    with pytest.raises(ValueError, match="max_len"):
        model(torch.ones(1, CONFIG.max_len + 1, dtype=torch.long))


def test_linear_cross_entropy_equals_full_softmax():
    torch.manual_seed(0)
    h = torch.randn(300, 8, dtype=torch.float64, requires_grad=True)
    w = torch.randn(50, 8, dtype=torch.float64, requires_grad=True)
    t = torch.randint(0, 50, (300,))
    ref = F.cross_entropy(h @ w.T, t)
    ours = LinearCrossEntropy.apply(h, w, t, 64)
    torch.testing.assert_close(ours, ref)
    for a, b in zip(torch.autograd.grad(ref, (h, w)), torch.autograd.grad(ours, (h, w))):
        torch.testing.assert_close(a, b)


def test_linear_cross_entropy_weighs_rows():
    torch.manual_seed(0)
    h = torch.randn(300, 8, dtype=torch.float64, requires_grad=True)
    w = torch.randn(50, 8, dtype=torch.float64, requires_grad=True)
    t = torch.randint(0, 50, (300,))
    rows = torch.rand(300, dtype=torch.float64) * 3
    ref = (F.cross_entropy(h @ w.T, t, reduction="none") * rows).sum() / rows.sum()
    ours = LinearCrossEntropy.apply(h, w, t, 64, rows)
    torch.testing.assert_close(ours, ref)
    for a, b in zip(torch.autograd.grad(ref, (h, w)), torch.autograd.grad(ours, (h, w))):
        torch.testing.assert_close(a, b)


@pytest.mark.parametrize("negatives", [0, 8])
def test_loss_trains_both_ways(negatives):
    torch.manual_seed(0)
    from dataclasses import replace

    m = SASRec(replace(CONFIG, n_negatives=negatives))
    seq = torch.tensor([[0, 1, 2, 3], [4, 5, 6, 7]])
    batch = Batch(seq, torch.tensor([[0, 2, 3, 4], [5, 6, 7, 8]]), user(2))
    opt = torch.optim.Adam(m.parameters(), lr=1e-2)
    first = m.loss(batch).item()
    for _ in range(30):
        opt.zero_grad()
        m.loss(batch).backward()
        opt.step()
    assert m.loss(batch).item() < first


def test_encoding_with_the_looked_up_codes_is_encoding(model):
    seq = torch.tensor([[0, 3, 5, 7], [2, 4, 6, 8]])
    with torch.no_grad():
        torch.testing.assert_close(model.encode_codes(seq, model.item_codes(seq), user(2)), model.encode(seq, user(2)))


def test_the_inference_table_filled_in_slices_is_the_whole_table(model, monkeypatch):
    from attnrec.model import sasrec

    whole = model.item_vectors(torch.arange(model.config.n_items + 1)).detach()
    monkeypatch.setattr(sasrec, "ITEM_TABLE_SLICE", 7)  # 31 rows: five slices, the last one short
    model.eval()  # the table is made anew
    with torch.no_grad():
        torch.testing.assert_close(model.all_item_vectors(), whole)
